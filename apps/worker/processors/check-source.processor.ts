import { DelayedError, type Job } from "bullmq";
import { withLogContext } from "../../domain/logging/logger.ts";
import { jobCatalog } from "../../domain/queues/job-catalog.ts";
import { checkSourceImage, type CheckSourceDeps } from "../../domain/task/check-source-image.ts";
import { untilTaskWritten } from "./submit-task.processor.ts";

// See submit-task.processor.ts: a job ahead of its intake's commit waits a moment, an orphan is dropped.
const UNCOMMITTED_GRACE_MS = 30_000;

export const checkSourceProcessor = (deps: CheckSourceDeps) => async (job: Job, token?: string) => {
  const { taskId } = jobCatalog.source.payload.parse(job.data);
  return withLogContext({ jobId: job.id, taskId }, async () => {
    const outcome = await checkSourceImage(deps, taskId, { priority: job.opts.priority });
    if (outcome.kind === "retry_later" || (outcome.kind === "task_missing" && Date.now() - job.timestamp < UNCOMMITTED_GRACE_MS)) {
      // Waiting does not spend a BullMQ attempt: those are for crashes and infrastructure errors.
      await job.moveToDelayed(Date.now() + (outcome.kind === "retry_later" ? outcome.delayMs : untilTaskWritten(job.timestamp)), token);
      throw new DelayedError();
    }
    return { outcome: outcome.kind };
  });
};

// An account's share of this process's downloads: slow image hosts of one account cannot hold them
// all. Its others wait their turn (their jobs step back briefly), every other account goes on.
export const createDownloadShares = (perAccount: number) => {
  const running = new Map<string, number>();
  return (accountId: string) => {
    const now = running.get(accountId) ?? 0;
    if (now >= perAccount) return undefined;
    running.set(accountId, now + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (running.get(accountId) ?? 1) - 1;
      if (left <= 0) running.delete(accountId);
      else running.set(accountId, left);
    };
  };
};
