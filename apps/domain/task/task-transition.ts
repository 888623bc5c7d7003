import type { Updateable } from "kysely";
import { asJson, type DB, type Db, type EventSource, type Task, type TaskStatus, type Tx } from "../db/database.ts";
import { isTerminal, statusesBefore } from "./task-status.ts";

export type TransitionRequest = {
  taskId: string;
  to: TaskStatus;
  source: EventSource;
  // Defaults to every status ranked below `to`: the guard that keeps transitions monotonic.
  from?: readonly TaskStatus[];
  data?: Omit<Updateable<DB["task"]>, "status" | "id">;
  detail?: Record<string, unknown>;
};

export type TransitionResult = { applied: true; from: TaskStatus; task: Task } | { applied: false; current: TaskStatus | null };

// A guarded update plus its event, in one transaction: late or duplicate events cannot move a task
// backwards, and history never disagrees with the row. The row is locked while its current status
// is read, so two reports racing for the same task apply one after the other, each against the
// status the other left.
export const transitionTaskInTx = async (tx: Tx, request: TransitionRequest): Promise<TransitionResult> => {
  const allowed = request.from ?? statusesBefore(request.to);
  const current = await tx.selectFrom("task").select("status").where("id", "=", request.taskId).forUpdate().executeTakeFirst();
  if (!current) return { applied: false, current: null };
  if (!allowed.includes(current.status)) return { applied: false, current: current.status };
  const now = new Date();
  const task = await tx
    .updateTable("task")
    .set({
      ...request.data,
      status: request.to,
      updatedAt: now,
      ...(isTerminal(request.to) ? { finishedAt: now, nextCheckAt: null } : {}),
    })
    .where("id", "=", request.taskId)
    .returningAll()
    .executeTakeFirstOrThrow();
  await tx
    .insertInto("taskEvent")
    .values({ taskId: request.taskId, fromStatus: current.status, toStatus: request.to, source: request.source, detail: asJson(request.detail) })
    .execute();
  return { applied: true, from: current.status, task };
};

export const transitionTask = (db: Db, request: TransitionRequest): Promise<TransitionResult> =>
  db.transaction().execute((tx) => transitionTaskInTx(tx, request));
