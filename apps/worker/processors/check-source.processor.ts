import { DelayedError, type Job } from "bullmq";
import { createAccountTally } from "../../domain/account/account-tally.ts";
import { createOriginAgents } from "../../domain/http/origin-agents.ts";
import { withLogContext } from "../../domain/logging/logger.ts";
import { jobCatalog } from "../../domain/queues/job-catalog.ts";
import { checkSourceImage, type CheckSourceDeps } from "../../domain/task/check-source-image.ts";
import { untilTaskWritten } from "./submit-task.processor.ts";

// See submit-task.processor.ts: a job ahead of its intake's commit waits a moment, an orphan is dropped.
const UNCOMMITTED_GRACE_MS = 30_000;

// Image hosts are callers': a few connections kept for a short while each, so an account sending
// images from one host (the usual case) pays a connect per burst, not per image.
const SOURCE_HOST_AGENTS = { idleMs: 5_000, maxOrigins: 64, maxIdlePerOrigin: 4 };

export const checkSourceProcessor = (givenDeps: CheckSourceDeps) => {
  const deps = givenDeps.imageFetch.agents ? givenDeps : { ...givenDeps, imageFetch: { ...givenDeps.imageFetch, agents: createOriginAgents(SOURCE_HOST_AGENTS) } };
  return (job: Job, token?: string) => checkSourceJob(deps, job, token);
};

const checkSourceJob = async (deps: CheckSourceDeps, job: Job, token?: string) => {
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
// STEP_BACK_SPREAD: a job that steps back comes back when its turn may have come, not on a fixed
// period. An account's backlog beyond what a process holds is taken one job after another by the
// slot left to other accounts, each stepping back at once; with one period for all (~1 s) the whole
// backlog came round again together, and again, each trip ~40 Redis commands, a SQL read and 3
// stream entries, so trips a task grew with how long the backlog waited: with the load (slower
// downloads) and with how the backlog fell between workers (measured 2026-12-07: 0.02-1.6 trips a
// task, the whole spread of Redis commands per task between 1 and 3 workers). Now each stepped-back
// job counts as ahead of the next one (until it is due back), and a round of the line (a share's
// worth of downloads ending) lasts what it takes here (a moving average of the gaps between the
// line's hand-overs, times the share; at least the base): the k-th job beyond the line
// comes back about when the line and the k-1 before it have had their downloads. Bounded, so a job
// still looks again now and then (its turn may come sooner on another worker).
const MAX_DOWNLOAD_ROUND_MS = 5_000;
const MAX_STEP_BACK_MS = 15_000;

type Waiter = { wake: (share: DownloadShare) => void };

export const createDownloadShares = (perAccount: number, jobSlots: number, stopping?: AbortSignal, overRoomWaitMs = OVER_ROOM_WAIT_MS) => {
  const running = createAccountTally();
  const lines = new Map<string, Waiter[]>();
  const waitRoom = Math.max(0, jobSlots - 2 * perAccount);
  // Pacing of the step backs (see STEP_BACK_SPREAD): when each of an account's stepped-back jobs is
  // due back, and how long its downloads take here.
  const away = new Map<string, number[]>();
  const downloadMs = new Map<string, number>();
  const lastHandOver = new Map<string, number>();
  const forget = (accountId: string) => {
    downloadMs.delete(accountId);
    lastHandOver.delete(accountId);
  };
  // An account's stepped-back jobs not due back yet (its entry goes with the last of them). Times are
  // pushed about in order (each later than the one before, but for jitter), so the list is trimmed
  // from its front only: cheap with a long backlog, and a job counted a little past its time is harmless.
  const stillAway = (accountId: string, now: number) => {
    const due = away.get(accountId) ?? [];
    let gone = 0;
    while (gone < due.length && due[gone]! <= now) gone += 1;
    if (gone > 0) due.splice(0, gone);
    if (due.length > 0) away.set(accountId, due);
    else away.delete(accountId);
    return due;
  };
  // Accounts whose jobs never came back (tasks canceled meanwhile) are dropped now and then.
  let prunedAt = 0;
  const pruneAway = (now: number) => {
    if (now - prunedAt < 10_000) return;
    prunedAt = now;
    for (const accountId of [...away.keys()]) if (stillAway(accountId, now).length === 0 && running.of(accountId) === 0) forget(accountId);
  };
  const busy = (accountId: string, spread = true): DownloadShare => {
    const now = Date.now();
    const due = stillAway(accountId, now);
    const round = Math.min(MAX_DOWNLOAD_ROUND_MS, Math.max(ACCOUNT_BUSY_RETRY_MS, downloadMs.get(accountId) ?? 0));
    const ahead = (lines.get(accountId)?.length ?? 0) + (spread ? due.length : 0);
    const busyForMs = Math.round(Math.min(MAX_STEP_BACK_MS, round * (1 + ahead / perAccount)) + Math.random() * round);
    // Past the count that reaches the bound, more would not lengthen a step back: not kept.
    if (spread && due.length < (perAccount * MAX_STEP_BACK_MS) / ACCOUNT_BUSY_RETRY_MS) {
      due.push(now + busyForMs);
      away.set(accountId, due);
    }
    return { busyForMs };
  };
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
          // With a line, the gap between two hand-overs is how fast the line moves here (downloads
          // and the rest of the process' work alike, which is what a loaded machine slows).
          const now = Date.now();
          const last = lastHandOver.get(accountId);
          lastHandOver.set(accountId, now);
          const round = last === undefined ? undefined : (now - last) * perAccount;
          if (round !== undefined && round <= MAX_DOWNLOAD_ROUND_MS) {
            const before = downloadMs.get(accountId);
            downloadMs.set(accountId, before === undefined ? round : before + (round - before) / 8);
          }
          leave(accountId, next);
          return next.wake(shareOf(accountId));
        }
        running.remove(accountId);
        // Forgotten with the account's last download, so the map holds only accounts at work here.
        if (running.of(accountId) === 0 && stillAway(accountId, Date.now()).length === 0) forget(accountId);
      },
    };
  };
  // A stopping worker keeps no job waiting: they go back to the queue for another worker.
  stopping?.addEventListener("abort", () => {
    for (const [accountId, line] of [...lines]) for (const waiter of [...line]) {
      leave(accountId, waiter);
      waiter.wake(busy(accountId, false));
    }
  });
  return async (accountId: string): Promise<DownloadShare> => {
    pruneAway(Date.now());
    if (running.of(accountId) < perAccount) {
      running.add(accountId);
      return shareOf(accountId);
    }
    if (stopping?.aborted) return busy(accountId, false);
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
