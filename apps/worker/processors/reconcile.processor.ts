import { reconcileTasks, type ReconcileDeps } from "../../domain/task/reconcile-tasks.ts";

// Runs on a BullMQ job scheduler, so one sweep runs per interval however many workers there are.
export const reconcileProcessor = (deps: ReconcileDeps) => async () => {
  const summary = await reconcileTasks(deps);
  if (summary.polled + summary.redriven + summary.errors > 0) deps.logger.info(summary, "reconcile sweep");
  return summary;
};
