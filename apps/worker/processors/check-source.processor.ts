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
// all. Its next few jobs wait in place for a share (handed over as one of its downloads ends: no
// Redis traffic while they wait); so that another account always finds a free job slot here, an
// account holds at most `jobSlots - perAccount` of them (its share running, the rest waiting), and
// its jobs beyond that step back to the queue for about as long as the ones ahead of them need.
// Before, every job past the share stepped back at once and came straight back: a source job went
// round the queue about once per task with one worker and twice with three (40 Redis commands a
// trip), so Redis commands per task grew with the workers.
export type DownloadShare = { release: () => void } | { busyForMs: number };
const ACCOUNT_BUSY_RETRY_MS = 250;

export const createDownloadShares = (perAccount: number, jobSlots: number, stopping?: AbortSignal) => {
  const running = new Map<string, number>();
  const waiting = new Map<string, ((share: DownloadShare) => void)[]>();
  const waitRoom = Math.max(0, jobSlots - 2 * perAccount);
  const busy = (accountId: string): DownloadShare => ({
    busyForMs: Math.round(ACCOUNT_BUSY_RETRY_MS * (1 + (waiting.get(accountId)?.length ?? 0) / perAccount) + Math.random() * ACCOUNT_BUSY_RETRY_MS),
  });
  const shareOf = (accountId: string): DownloadShare => {
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        // Handed straight to the account's next waiter: the running count stays as it is.
        const next = waiting.get(accountId)?.shift();
        if (waiting.get(accountId)?.length === 0) waiting.delete(accountId);
        if (next) return next(shareOf(accountId));
        const left = (running.get(accountId) ?? 1) - 1;
        if (left <= 0) running.delete(accountId);
        else running.set(accountId, left);
      },
    };
  };
  // A stopping worker keeps no job waiting: they go back to the queue for another worker.
  stopping?.addEventListener("abort", () => {
    for (const [accountId, line] of [...waiting]) for (const wake of line.splice(0)) wake(busy(accountId));
    waiting.clear();
  });
  return async (accountId: string): Promise<DownloadShare> => {
    const now = running.get(accountId) ?? 0;
    if (now < perAccount) {
      running.set(accountId, now + 1);
      return shareOf(accountId);
    }
    const line = waiting.get(accountId) ?? [];
    if (line.length >= waitRoom || stopping?.aborted) return busy(accountId);
    waiting.set(accountId, line);
    return new Promise<DownloadShare>((resolve) => line.push(resolve));
  };
};
