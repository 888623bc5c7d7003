import type { FairPriority } from "../../domain/queues/fair-priority.ts";
import { reconcileTasks, resyncFairPriority, type ReconcileDeps } from "../../domain/task/reconcile-tasks.ts";

const FAIR_PRIORITY_RESYNC_MS = 5_000;

// Runs on a BullMQ job scheduler, so one sweep runs per interval however many workers there are.
export const reconcileProcessor = (deps: ReconcileDeps & { fairPriority: FairPriority }) => {
  let lastResync = 0;
  return async () => {
    const summary = await reconcileTasks(deps);
    if (Date.now() - lastResync >= FAIR_PRIORITY_RESYNC_MS) {
      lastResync = Date.now();
      await resyncFairPriority(deps, deps.fairPriority);
    }
    if (summary.polled + summary.redriven + summary.errors > 0) deps.logger.info(summary, "reconcile sweep");
    return summary;
  };
};
