import type { Job } from "bullmq";
import { withLogContext } from "../../domain/logging/logger.ts";
import { jobCatalog } from "../../domain/queues/job-catalog.ts";
import { archiveTask, type ArchiveTaskDeps } from "../../domain/task/archive-task.ts";
import { SafeFetchError } from "../../domain/http/safe-fetch.ts";
import { failTask } from "../../domain/task/fail-task.ts";

export const archiveTaskProcessor = (deps: ArchiveTaskDeps) => async (job: Job) => {
  const { taskId } = jobCatalog.archive.payload.parse(job.data);
  return withLogContext({ jobId: job.id, taskId }, async () => {
    try {
      return { outcome: await archiveTask(deps, taskId) };
    } catch (error) {
      const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      if (lastAttempt) {
        await failTask(deps, taskId, "worker", {
          class: "archive_failed",
          // Callers read this: a fetch error gives its public reason, never hosts or addresses.
          message: `result images could not be stored: ${error instanceof SafeFetchError ? error.publicReason : "internal error"}`,
        });
      }
      throw error;
    }
  });
};
