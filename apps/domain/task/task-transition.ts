import type { Db, EventSource, Prisma, TaskStatus } from "../db/prisma-client.ts";
import { isTerminal, statusesBefore } from "./task-status.ts";

export type TransitionRequest = {
  taskId: string;
  to: TaskStatus;
  source: EventSource;
  // Defaults to every status ranked below `to`: the guard that keeps transitions monotonic.
  from?: TaskStatus[];
  data?: Omit<Prisma.TaskUpdateManyMutationInput, "status">;
  detail?: Prisma.InputJsonValue;
};

export type TransitionResult = { applied: true; from: TaskStatus } | { applied: false; current: TaskStatus | null };

type Tx = Prisma.TransactionClient;

// A guarded update (`where status in from`) plus its event, in one transaction: late or duplicate
// events cannot move a task backwards, and history never disagrees with the row.
export const transitionTaskInTx = async (tx: Tx, request: TransitionRequest): Promise<TransitionResult> => {
  const allowed = request.from ?? statusesBefore(request.to);
  const current = await tx.task.findUnique({ where: { id: request.taskId }, select: { status: true } });
  if (!current) return { applied: false, current: null };
  if (!allowed.includes(current.status)) return { applied: false, current: current.status };
  const now = new Date();
  const { count } = await tx.task.updateMany({
    where: { id: request.taskId, status: current.status },
    data: {
      ...request.data,
      status: request.to,
      ...(isTerminal(request.to) ? { finishedAt: now, nextCheckAt: null } : {}),
    },
  });
  if (count === 0) {
    const raced = await tx.task.findUnique({ where: { id: request.taskId }, select: { status: true } });
    return { applied: false, current: raced?.status ?? null };
  }
  await tx.taskEvent.create({
    data: {
      taskId: request.taskId,
      fromStatus: current.status,
      toStatus: request.to,
      source: request.source,
      detail: request.detail,
    },
  });
  return { applied: true, from: current.status };
};

export const transitionTask = (db: Db, request: TransitionRequest): Promise<TransitionResult> =>
  db.$transaction((tx) => transitionTaskInTx(tx, request));
