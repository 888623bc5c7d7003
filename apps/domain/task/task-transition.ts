import { sql, type Updateable } from "kysely";
import { asJson, type DB, type Db, type EventSource, type Task, type TaskStatus, type Tx } from "../db/database.ts";
import { recordTransition } from "../metrics/task-metrics.ts";
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

// A guarded update plus its event, in one statement: late or duplicate events cannot move a task
// backwards, and history never disagrees with the row. The status it moves from is read under a row
// lock in the same statement, so two reports racing for the same task apply one after the other,
// each against the status the other left. One round trip (a callback's hot path; measured by
// `npm run bench:api`), inside a transaction or alone.
export const transitionTaskInTx = async (tx: Tx | Db, request: TransitionRequest): Promise<TransitionResult> => {
  const allowed = request.from ?? statusesBefore(request.to);
  const now = new Date();
  const moved = await tx
    .with("before", (db) => db.selectFrom("task").select(["id", "status", "updatedAt"]).where("id", "=", request.taskId).forUpdate())
    .with("moved", (db) =>
      db
        .updateTable("task")
        .from("before")
        .set({
          ...request.data,
          status: request.to,
          updatedAt: now,
          ...(isTerminal(request.to) ? { finishedAt: now, nextCheckAt: null } : {}),
        })
        .whereRef("task.id", "=", "before.id")
        .where("before.status", "in", allowed)
        .returningAll("task")
        .returning(sql<TaskStatus>`before.status`.as("fromStatus"))
        .returning(sql<Date>`before.updated_at`.as("fromUpdatedAt")),
    )
    .with("event", (db) =>
      db
        .insertInto("taskEvent")
        .columns(["taskId", "fromStatus", "toStatus", "source", "detail"])
        .expression((eb) =>
          eb
            .selectFrom("moved")
            .select((s) => [
              "moved.id",
              "moved.fromStatus",
              s.val(request.to).as("toStatus"),
              s.val(request.source).as("source"),
              sql`${asJson(request.detail)}::jsonb`.as("detail"),
            ]),
        ),
    )
    .selectFrom("moved")
    .selectAll()
    .executeTakeFirst();
  if (moved) {
    const { fromStatus, fromUpdatedAt, ...task } = moved;
    recordTransition(fromStatus, task, fromUpdatedAt);
    return { applied: true, from: fromStatus, task };
  }
  const current = await tx.selectFrom("task").select("status").where("id", "=", request.taskId).executeTakeFirst();
  return { applied: false, current: current?.status ?? null };
};

export const transitionTask = (db: Db, request: TransitionRequest): Promise<TransitionResult> => transitionTaskInTx(db, request);
