import { DelayedError, type Job } from "bullmq";
import { createAccountTally } from "../../domain/account/account-tally.ts";
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
// all. Its next jobs wait in place for a share, in line (handed over as one of its downloads ends:
// no Redis traffic while they wait). An account holds at most `jobSlots - perAccount` job slots
// that way (its share running, the rest waiting); a job of it beyond that waits in place a moment
// too (`overRoomWaitMs`), moving into the line as places free, and steps back to the queue only if
// none frees in time: while the account's downloads go on, their ends free BullMQ slots that go to
// the next job by priority (another account's, fair-priority.ts), and while they hang, the moment
// runs out and frees the slot; one job slot is always left to other accounts. Before, every job past the share stepped back at once and came
// straight back, round the queue (~40 Redis commands a trip) several times per task, more with
// more workers: Redis commands per task grew with the workers.
export type DownloadShare = { release: () => void } | { busyForMs: number };
const ACCOUNT_BUSY_RETRY_MS = 250;
const OVER_ROOM_WAIT_MS = 1_000;

type Waiter = { wake: (share: DownloadShare) => void };

export const createDownloadShares = (perAccount: number, jobSlots: number, stopping?: AbortSignal, overRoomWaitMs = OVER_ROOM_WAIT_MS) => {
  const running = createAccountTally();
  const lines = new Map<string, Waiter[]>();
  const waitRoom = Math.max(0, jobSlots - 2 * perAccount);
  const busy = (accountId: string): DownloadShare => ({
    busyForMs: Math.round(ACCOUNT_BUSY_RETRY_MS * (1 + (lines.get(accountId)?.length ?? 0) / perAccount) + Math.random() * ACCOUNT_BUSY_RETRY_MS),
  });
  const leave = (accountId: string, waiter: Waiter) => {
    const line = lines.get(accountId);
    if (!line) return;
    const at = line.indexOf(waiter);
    if (at >= 0) line.splice(at, 1);
    if (line.length === 0) lines.delete(accountId);
  };
  const shareOf = (accountId: string): DownloadShare => {
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        // Handed straight to the account's next waiter: the running count stays as it is.
        const next = lines.get(accountId)?.[0];
        if (next) {
          leave(accountId, next);
          return next.wake(shareOf(accountId));
        }
        running.remove(accountId);
      },
    };
  };
  // A stopping worker keeps no job waiting: they go back to the queue for another worker.
  stopping?.addEventListener("abort", () => {
    for (const [accountId, line] of [...lines]) for (const waiter of [...line]) {
      leave(accountId, waiter);
      waiter.wake(busy(accountId));
    }
  });
  return async (accountId: string): Promise<DownloadShare> => {
    if (running.of(accountId) < perAccount) {
      running.add(accountId);
      return shareOf(accountId);
    }
    if (stopping?.aborted) return busy(accountId);
    const line = lines.get(accountId) ?? [];
    // Beyond the room, a job waits its moment only while the account leaves this process a job slot
    // besides: the moment holds a slot, and with every slot held another account's job could not
    // start until a moment ran out (with 3 slots and a share of 2, a quick account's images waited
    // for one account's hanging downloads to time out).
    if (line.length >= waitRoom && running.of(accountId) + line.length + 1 > jobSlots - 1) return busy(accountId);
    lines.set(accountId, line);
    return new Promise<DownloadShare>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        wake: (share) => {
          clearTimeout(timer);
          resolve(share);
        },
      };
      line.push(waiter);
      // Places in line only move forward: one that is in the room when its moment ends stays.
      if (line.length > waitRoom) {
        timer = setTimeout(() => {
          if (line.indexOf(waiter) < waitRoom) return;
          leave(accountId, waiter);
          resolve(busy(accountId));
        }, overRoomWaitMs);
      }
    });
  };
};
