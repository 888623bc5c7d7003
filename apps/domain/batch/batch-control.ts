import { sql } from "kysely";
import { asJson, type Db, type TaskStatus } from "../db/database.ts";
import { AppError } from "../errors/app-error.ts";
import { retryableFailureClasses } from "../task/retry-policy.ts";
import type { Batch } from "./batch.repository.ts";

// Tasks moved per statement: a 100,000-item batch is canceled in a hundred short statements, not
// one long lock.
const STEP = 1_000;

// Moves up to STEP of the batch's tasks from one status to another with an event each, in one
// statement: the same guarded update plus event as task-transition.ts, for many rows at once. Rows
// another transaction holds are skipped and picked up by the next step.
const moveBatchTasks = async (
  db: Db,
  batchId: string,
  move: { from: TaskStatus; to: TaskStatus; failureClasses?: readonly string[]; set: Record<string, unknown>; detail: Record<string, unknown> },
) => {
  const now = new Date();
  const moved = await db
    .with("picked", (q) => {
      let pick = q.selectFrom("task").select(["id", "status"]).where("batchId", "=", batchId).where("status", "=", move.from);
      if (move.failureClasses) pick = pick.where("failureClass", "in", [...move.failureClasses]);
      return pick.limit(STEP).forUpdate().skipLocked();
    })
    .with("moved", (q) =>
      q
        .updateTable("task")
        .from("picked")
        .set({ ...move.set, status: move.to, updatedAt: now })
        .whereRef("task.id", "=", "picked.id")
        .where("task.status", "=", move.from)
        .returning(["task.id", sql<TaskStatus>`picked.status`.as("fromStatus")]),
    )
    .with("event", (q) =>
      q
        .insertInto("taskEvent")
        .columns(["taskId", "fromStatus", "toStatus", "source", "detail"])
        .expression((eb) =>
          eb
            .selectFrom("moved")
            .select((s) => ["moved.id", "moved.fromStatus", s.val(move.to).as("toStatus"), s.val("api").as("source"), sql`${asJson(move.detail)}::jsonb`.as("detail")]),
        ),
    )
    .selectFrom("moved")
    .select((eb) => eb.fn.countAll<string>().as("n"))
    .executeTakeFirstOrThrow();
  return Number(moved.n);
};

const moveAll = async (db: Db, batchId: string, move: Parameters<typeof moveBatchTasks>[2]) => {
  let total = 0;
  for (;;) {
    const n = await moveBatchTasks(db, batchId, move);
    total += n;
    if (n === 0) return total;
  }
};

// Queued tasks are canceled at once; their jobs find them canceled and never submit (submit and the
// source check both take only a queued task, and the move to `submitting` is guarded by status).
// Tasks already at the provider run to their end and are reported as they end.
export const cancelBatch = async (db: Db, batch: Batch) => {
  if (batch.endStatus && batch.endStatus !== "canceled") throw new AppError("conflict", `batch ${batch.id} has already ended (${batch.endStatus})`);
  // Chunks still arriving would be written as queued after the cancel: wait for the upload's end.
  if (batch.upload === "receiving") throw new AppError("conflict", `batch ${batch.id} is still being uploaded; cancel it once the upload has ended`);
  await db.updateTable("batch").set({ canceledAt: new Date() }).where("id", "=", batch.id).where("canceledAt", "is", null).execute();
  const canceled = await moveAll(db, batch.id, {
    from: "queued",
    to: "canceled",
    set: { finishedAt: new Date(), nextCheckAt: null, waitReason: null, failureMessage: "the batch was canceled" },
    detail: { batch_canceled: batch.id },
  });
  return { canceled };
};

// Only failed tasks whose failure may pass on a retry (retry-policy.ts) run again; each move is in
// the task's history. Queued ones are due at once: the sweeper re-drives their jobs (the worker
// holds the job-state logic: a finished job of the same id is replaced). An archive that failed
// goes back to archiving, since the provider still holds the results.
export const retryBatch = async (db: Db, batch: Batch) => {
  if (batch.canceledAt) throw new AppError("conflict", `batch ${batch.id} was canceled; its tasks are not retried`);
  const reset = { failureClass: null, failureCode: null, failureMessage: null, finishedAt: null, waitReason: null, nextCheckAt: new Date() };
  const rearchived = await moveAll(db, batch.id, {
    from: "failed",
    to: "archiving",
    failureClasses: ["archive_failed"],
    set: reset,
    detail: { retry: true, batch_id: batch.id, previous_failure: "archive_failed" },
  });
  const resubmitted = await moveAll(db, batch.id, {
    from: "failed",
    to: "queued",
    failureClasses: retryableFailureClasses.filter((c) => c !== "archive_failed"),
    set: { ...reset, transientFailures: 0, submitLeaseUntil: null, providerTaskId: null, providerStatus: null, providerStatusMsg: null },
    detail: { retry: true, batch_id: batch.id },
  });
  const retried = rearchived + resubmitted;
  if (retried > 0) await db.updateTable("batch").set({ endStatus: null, finishedAt: null }).where("id", "=", batch.id).execute();
  return { retried };
};
