import { sql, type Updateable } from "kysely";
import { asJson, type DB, type Db, type EventSource, type Task, type TaskStatus, type Tx } from "../db/database.ts";
import type { TaskChangeNotifier } from "../live-progress/task-change.ts";
import { initialDeliveryStatusSql, notifyDeliverySql, taskEventTypeSql } from "../webhooks/outbound-events.ts";
import { recordTransition } from "../metrics/task-metrics.ts";
import { isTerminal, statusesBefore } from "./task-status.ts";
import { settleCredits } from "../credits/credit-ledger.ts";

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
// The same statement records the outbound callback the change causes (outbound-events.ts), as a
// snapshot of the row, for tasks with a callback_url: every status change passes through here, so
// no change goes without its event and no event without its change.
export const transitionTaskInTx = async (tx: Tx | Db, request: TransitionRequest): Promise<TransitionResult> => {
  const allowed = request.from ?? statusesBefore(request.to);
  const now = new Date();
  // `null` (no insert) for statuses that no task is called back about.
  const eventType = taskEventTypeSql(request.to, "moved", "moved.from_status") ?? sql<null>`null`;
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
    .with("outbound", (db) =>
        db
          .insertInto("webhookDelivery")
          // A batch item's events carry its batch too, so the delivery log filtered by batch shows them.
          .columns(["accountId", "taskId", "batchId", "eventType", "url", "payloadKind", "payload", "status"])
          .expression((eb) =>
            eb
              .selectFrom("moved")
              .select([
                "moved.accountId",
                "moved.id",
                "moved.batchId",
                sql<string>`${eventType}`.as("eventType"),
                "moved.callbackUrl",
                sql<string>`case when moved.origin = 'dropin' then 'provider_task' else 'native_task' end`.as("payloadKind"),
                // The row as it is now (less its secrets): rendered at each attempt, so links are fresh.
                sql`to_jsonb(moved) - 'from_status' - 'callback_token' - 'request_hash'`.as("payload"),
                initialDeliveryStatusSql(sql.ref("moved.account_id"), sql.ref("moved.callback_url")).as("status"),
              ])
              .where(sql<boolean>`${eventType} is not null`),
          )
          .returning((eb) => notifyDeliverySql(eb.ref("id")).as("notified")),
    )
    .selectFrom("moved")
    .selectAll()
    .executeTakeFirst();
  if (moved) {
    const { fromStatus, fromUpdatedAt, ...task } = moved;
    // Every end settles the task's credit hold (a bulk move calls settleCredits with all its ids,
    // in its own transaction). transitionTask runs ends in a transaction, so both commit together.
    if (isTerminal(task.status)) await settleCredits(tx, [task.id]);
    recordTransition(fromStatus, task, fromUpdatedAt);
    return { applied: true, from: fromStatus, task };
  }
  const current = await tx.selectFrom("task").select("status").where("id", "=", request.taskId).executeTakeFirst();
  return { applied: false, current: current?.status ?? null };
};

export type TransitionDeps = { db: Db; taskChanged: TaskChangeNotifier };

// Every state change goes through here: the change (with `alsoInTx`, more writes in the same
// transaction), then, only once it is committed, the live-progress notification. Notified before
// the commit, a listener could re-read the old row and wait for a message that never comes again.
// Callers of transitionTaskInTx inside their own transaction notify after their commit.
export const transitionTask = async (
  deps: TransitionDeps,
  request: TransitionRequest,
  alsoInTx?: (tx: Tx, task: Task) => Promise<void>,
): Promise<TransitionResult> => {
  // An end settles the task's credits in the same transaction (transitionTaskInTx), so no reader
  // (a batch's end event, the usage routes) sees the task ended with its hold still open.
  const result =
    alsoInTx || isTerminal(request.to)
      ? await deps.db.transaction().execute(async (tx) => {
          const moved = await transitionTaskInTx(tx, request);
          if (moved.applied && alsoInTx) await alsoInTx(tx, moved.task);
          return moved;
        })
      : await transitionTaskInTx(deps.db, request);
  if (result.applied) deps.taskChanged(result.task);
  return result;
};
