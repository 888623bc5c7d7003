import { sweepBatchEvents } from "../../domain/batch/batch-events.ts";
import { settleEndedCredits } from "../../domain/credits/credit-ledger.ts";
import type { FairPriority } from "../../domain/queues/fair-priority.ts";
import type { RetentionSettings } from "../../domain/retention/retention.config.ts";
import { runRetention } from "../../domain/retention/retention-sweep.ts";
import type { ObjectStorage } from "../../domain/storage/local-storage.ts";
import { followUpcomingChecks, reconcileTasks, resyncFairPriority, type ReconcileDeps } from "../../domain/task/reconcile-tasks.ts";

const FAIR_PRIORITY_RESYNC_MS = 5_000;
const BATCH_SWEEP_MS = 1_000;
// Sweeps start every RECONCILE_EVERY_MS but reach this step a little earlier or later each time: due
// within a quarter of its period it runs now, so a 1 s sweep runs the batch sweep every time rather
// than about every other time.
const BATCH_SWEEP_EARLY_MS = BATCH_SWEEP_MS / 4;
// Credit holds of tasks that ended without settling (a crash between the end and its settlement).
const CREDIT_SWEEP_MS = 10_000;

// Runs on a BullMQ job scheduler, so one sweep runs per interval however many workers there are.
// `followChecksForMs`: how long after it starts a sweep keeps polling in-flight tasks as their checks
// fall due (followUpcomingChecks); the sweep interval, so that the next sweep takes over.
export const reconcileProcessor = (
  deps: ReconcileDeps & { fairPriority: FairPriority; retention: RetentionSettings; storage: Pick<ObjectStorage, "remove">; batchProgressEveryMs: number; followChecksForMs?: number },
) => {
  let lastResync = 0;
  let lastBatchSweep = 0;
  let lastPrune = 0;
  let lastCreditSweep = 0;
  // The fair-priority resync, batch events, credits, retention: nothing a running task waits for.
  const housekeeping = async () => {
    if (Date.now() - lastResync >= FAIR_PRIORITY_RESYNC_MS) {
      lastResync = Date.now();
      await resyncFairPriority(deps, deps.fairPriority);
    }
    // Batch ends and progress events; a second is fine-grained enough for both.
    if (Date.now() - lastBatchSweep >= BATCH_SWEEP_MS - BATCH_SWEEP_EARLY_MS) {
      lastBatchSweep = Date.now();
      const batches = await sweepBatchEvents(deps.db, { progressEveryMs: deps.batchProgressEveryMs });
      if (batches.brokenOff > 0) deps.logger.warn(batches, "uploads whose API process stopped renewing their lease ended as broken_off");
      if (batches.ended > 0) deps.logger.info(batches, "batches ended");
    }
    if (Date.now() - lastCreditSweep >= CREDIT_SWEEP_MS) {
      lastCreditSweep = Date.now();
      const settled = await settleEndedCredits(deps.db);
      if (settled > 0) deps.logger.info({ settled }, "credit holds of ended tasks settled by the sweep");
    }
    // Retention (finished tasks, files, batches, the callback inbox, the delivery log).
    if (Date.now() - lastPrune >= deps.retention.everyMs) {
      lastPrune = Date.now();
      const pruned = await runRetention(deps, deps.retention);
      if (Object.values(pruned).some((n) => n > 0)) deps.logger.info(pruned, "retention: old rows and files deleted");
    }
  };
  return async () => {
    const started = Date.now();
    // The checks that fall due before the next sweep are followed as soon as the running tasks past
    // their check are polled, beside the rest of the sweep (deadlines, the ledger repair, re-drives)
    // and the housekeeping below (batch events, credits, retention), which may take a while under
    // load and never bear on a running task: a poll at a task's expected end does not wait for them.
    // Settled at once (its errors kept, surfaced below), so a failure while the sweep still runs is
    // not an unhandled rejection.
    let followed: Promise<{ polled: number } | { error: unknown }> = Promise.resolve({ polled: 0 });
    const startFollowing = () => {
      if (!deps.followChecksForMs) return;
      followed = followUpcomingChecks(deps, started + deps.followChecksForMs).then(
        (polled) => ({ polled }),
        (error: unknown) => ({ error }),
      );
    };
    let summary: Awaited<ReturnType<typeof reconcileTasks>>;
    try {
      summary = await reconcileTasks(deps, startFollowing);
    } catch (error) {
      await followed;
      throw error;
    }
    try {
      await housekeeping();
    } finally {
      const result = await followed;
      if ("error" in result) throw result.error;
      summary.polled += result.polled;
    }
    if (summary.polled + summary.redriven + summary.errors > 0) deps.logger.info(summary, "reconcile sweep");
    return summary;
  };
};
