import { sql } from "kysely";
import type { Tx } from "../db/database.ts";
import { AppError } from "../errors/app-error.ts";
import { reserveCredits } from "../credits/credit-ledger.ts";
import type { CreditTerms } from "../credits/credit-terms.ts";
import { retryableFailureClasses } from "../task/retry-policy.ts";
import { transitionBatchTasks, transitionTask, type TransitionDeps } from "../task/task-transition.ts";
import type { TaskStatus } from "../db/database.ts";
import type { Batch } from "./batch-progress.ts";

// Cancel and retry move a batch's tasks through the bulk form of the one transition function
// (task-transition.ts), so each moved task gets its event, its outbound callback (task.canceled,
// kling.failed), its live update and its metrics, as a single task would.

// Works on a batch in any state but an end other than canceled. Queued tasks are canceled at once;
// their jobs find them canceled and never submit (submit and the source check both take only a
// queued task, and the move to `submitting` is guarded by status). Tasks already at the provider
// run to their end and are reported as they end. A batch still receiving its upload is marked
// broken off in the same update that cancels it: the upload's next chunk finds it so and stops
// (accept-batch.ts writes a chunk only into a batch still receiving), so nothing it sends later is
// written as queued after the cancel.
export const cancelBatch = async (deps: TransitionDeps, batch: Batch) => {
  const marked = await deps.db
    .updateTable("batch")
    .set({
      canceledAt: sql<Date>`coalesce(canceled_at, now())`,
      upload: sql`case when upload = 'receiving' then 'broken_off'::batch_upload else upload end`,
      receivedAt: sql<Date>`coalesce(received_at, now())`,
      uploadLeaseUntil: null,
    })
    .where("id", "=", batch.id)
    .where((eb) => eb.or([eb("endStatus", "is", null), eb("endStatus", "=", "canceled")]))
    .returning("id")
    .executeTakeFirst();
  if (!marked) throw new AppError("conflict", `batch ${batch.id} has already ended (${batch.endStatus ?? "just now"}); there is nothing left to cancel`);
  const canceled = await transitionBatchTasks(deps, {
    batchId: batch.id,
    from: ["queued"],
    to: "canceled",
    source: "api",
    data: { waitReason: null, failureMessage: "the batch was canceled" },
    detail: { batch_canceled: batch.id },
  });
  return { canceled };
};

// A task that comes back to the queue after its batch was canceled (a create the provider refused,
// a resubmission) is canceled then: the cancel's bulk move took only the tasks queued at that
// moment, and this one was at the provider's door. Called once the move back has committed: either
// the cancel's move saw the task queued, or this read sees the batch canceled. Also called before a
// create of a task whose earlier attempt created nothing.
export const cancelIfBatchCanceled = async (deps: TransitionDeps, taskId: string, from: readonly TaskStatus[]): Promise<boolean> => {
  const row = await deps.db
    .selectFrom("task")
    .innerJoin("batch", "batch.id", "task.batchId")
    .select(["batch.id as batchId", "batch.canceledAt"])
    .where("task.id", "=", taskId)
    .executeTakeFirst();
  if (!row?.canceledAt) return false;
  const moved = await transitionTask(deps, {
    taskId,
    to: "canceled",
    from,
    source: "worker",
    data: { waitReason: null, failureMessage: "the batch was canceled" },
    detail: { batch_canceled: row.batchId },
  });
  return moved.applied;
};

// Only failed tasks whose failure may pass on a retry (retry-policy.ts) run again; each move is in
// the task's history. Queued ones are due at once: the sweeper re-drives their jobs (the worker
// holds the job-state logic: a finished job of the same id is replaced). An archive that failed
// goes back to archiving, since the provider still holds the results.
// A task sent to the provider again holds its credits again, against the cap, in the transaction
// that moves it back to queued: a chunk that would pass the cap is not moved (402), and the chunks
// before it stay retried.
export const retryBatch = async (deps: TransitionDeps & { credits: CreditTerms }, batch: Batch) => {
  if (batch.canceledAt) throw new AppError("conflict", `batch ${batch.id} was canceled; its tasks are not retried`);
  const reset = { failureClass: null, failureCode: null, failureMessage: null, finishedAt: null, waitReason: null, nextCheckAt: new Date() };
  const rearchived = await transitionBatchTasks(deps, {
    batchId: batch.id,
    from: ["failed"],
    failureClasses: ["archive_failed"],
    to: "archiving",
    source: "api",
    data: reset,
    detail: { retry: true, batch_id: batch.id, previous_failure: "archive_failed" },
  }, { alsoInTx: (tx) => reopen(tx, batch.id) });
  const resubmitted = await transitionBatchTasks(deps, {
    batchId: batch.id,
    from: ["failed"],
    failureClasses: retryableFailureClasses.filter((c) => c !== "archive_failed"),
    to: "queued",
    source: "api",
    data: { ...reset, transientFailures: 0, submitLeaseUntil: null, providerTaskId: null, providerStatus: null, providerStatusMsg: null },
    detail: { retry: true, batch_id: batch.id },
  }, {
    alsoInTx: async (tx, moved) => {
      // The batch row before the balance, as a chunk of an upload takes them (its lease, then its
      // hold): a retry of a batch still uploading and that upload then wait for each other in turn,
      // never both at once (the ledger's lock order, credit-ledger.ts).
      await reopen(tx, batch.id);
      const sizes = await tx.selectFrom("task").select(["id", "n"]).where("id", "in", moved.map((m) => m.id)).execute();
      const held = await reserveCredits(tx, batch.accountId, deps.credits.defaultCap, sizes.map((t) => ({ taskId: t.id, credits: t.n * deps.credits.perImage })));
      if (!held) throw new AppError("spend_cap_exceeded", `retrying these tasks would pass the account's spend cap (spent or reserved credits plus ${sizes.length} tasks' holds); nothing more was retried`);
    },
  });
  return { retried: rearchived + resubmitted };
};

// A batch with tasks running again has not ended: reopened with each chunk that moves some.
const reopen = async (tx: Tx, batchId: string) => {
  await tx.updateTable("batch").set({ endStatus: null, finishedAt: null }).where("id", "=", batchId).execute();
};
