import { DelayedError, type Job } from "bullmq";
import { withLogContext } from "../../domain/logging/logger.ts";
import { jobCatalog } from "../../domain/queues/job-catalog.ts";
import { submitTask, type SubmitTaskDeps } from "../../domain/task/submit-task.ts";

// A job that finds no task is either ahead of its intake's insert (intake adds the job first: wait a
// moment, briefly at first, since the row is usually a round trip away) or left by an intake whose
// insert failed (drop it once it is old enough to be sure).
const UNCOMMITTED_GRACE_MS = 30_000;
export const untilTaskWritten = (jobTimestamp: number) => (Date.now() - jobTimestamp < 1_000 ? 25 : 200);

// Waiting does not spend an attempt: BullMQ's attempts are kept for crashes and infrastructure errors.
const later = async (job: Job, token: string | undefined, delayMs: number): Promise<never> => {
  await job.moveToDelayed(Date.now() + delayMs, token);
  throw new DelayedError();
};

export const submitTaskProcessor = (deps: SubmitTaskDeps & { enqueueSourceCheck: (taskId: string, priority?: number) => Promise<void> }) => async (job: Job, token?: string) => {
  const { taskId } = jobCatalog.submit.payload.parse(job.data);
  return withLogContext({ jobId: job.id, taskId }, async () => {
    const outcome = await submitTask(deps, taskId, { priority: job.opts.priority ?? 0 });
    switch (outcome.kind) {
      case "retry_later":
        deps.logger.info({ delayMs: outcome.delayMs, reason: outcome.reason }, "submission deferred");
        return later(job, token, outcome.delayMs);
      case "task_missing":
        if (Date.now() - job.timestamp < UNCOMMITTED_GRACE_MS) return later(job, token, untilTaskWritten(job.timestamp));
        deps.logger.warn("submit job without a task dropped");
        return { outcome: "dropped" };
      case "needs_source_check":
        await deps.enqueueSourceCheck(taskId, job.opts.priority);
        return { outcome: outcome.kind };
      default:
        return { outcome: outcome.kind };
    }
  });
};
