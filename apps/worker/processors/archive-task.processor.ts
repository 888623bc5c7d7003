import type { Job } from "bullmq";
import { withLogContext } from "../../domain/logging/logger.ts";
import { jobCatalog } from "../../domain/queues/job-catalog.ts";
import { archiveTask, type ArchiveTaskDeps } from "../../domain/task/archive-task.ts";
import { createOriginAgents } from "../../domain/http/origin-agents.ts";
import { SafeFetchError } from "../../domain/http/safe-fetch.ts";
import { failTask } from "../../domain/task/fail-task.ts";

// Results come from the provider's few storage hosts, a download or more per task: connections kept.
const RESULT_HOST_AGENTS = { idleMs: 15_000, maxOrigins: 16, maxIdlePerOrigin: 8 };

export const archiveTaskProcessor = (givenDeps: ArchiveTaskDeps) => {
  const deps = givenDeps.fetch.agents ? givenDeps : { ...givenDeps, fetch: { ...givenDeps.fetch, agents: createOriginAgents(RESULT_HOST_AGENTS) } };
  return (job: Job) => archiveJob(deps, job);
};

const archiveJob = async (deps: ArchiveTaskDeps, job: Job) => {
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
