import type { Db, EventSource, Task } from "../db/database.ts";
import type { Logger } from "../logging/logger.ts";
import type { ProviderReport } from "../provider/provider-adapter.ts";
import type { DirectSender } from "../webhooks/direct-delivery.ts";
import { firstCheckDelayMs, MIN_POLL_DELAY_MS, type ProviderRunTime } from "../provider-capacity/provider-run-time.ts";
import type { InboxEntry } from "./callback-inbox.ts";
import type { TaskEndDeps } from "./fail-task.ts";
import { isTerminal, statusRank } from "./task-status.ts";
import { findTask } from "./task.repository.ts";
import { scheduleCheck } from "./task.store.ts";
import { transitionTask } from "./task-transition.ts";

const MAX_PLAUSIBLE_RUN_MS = 24 * 3_600_000;

// An archive job that could not be added (Redis away) is re-added by the sweeper this soon.
const ARCHIVE_REDRIVE_SOON_MS = 1_000;

export type ReportOutcome = "applied" | "duplicate" | "stale" | "unknown_task" | "rejected";

export type ApplyReportDeps = TaskEndDeps & {
  db: Db;
  logger: Logger;
  // The learnt run time of a route (a task's `route`; null: a row from before routes existed).
  runTimeOf: (route: string | null) => ProviderRunTime;
  enqueueArchive: (taskId: string) => Promise<void>;
  callbackGraceMs: number;
  pollAtExpectedEnd: boolean;
  stallRecheckMs: number;
};

// A report is the provider's view of a task: a callback, a poll answer or the create response.
// Callbacks are at-least-once and unordered, so a report only ever moves a task forward; an older or
// repeated one changes nothing (but still counts as a sign of life).
export const applyProviderReport = async (
  deps: ApplyReportDeps,
  taskId: string,
  report: ProviderReport,
  source: EventSource,
  options: {
    // Recorded on the transition's event (e.g. that an earlier attempt's provider task was adopted).
    note?: Record<string, string | number | boolean>;
    // The row as the caller just read it (the callback receiver did, to check its token): saves a
    // read. A stale one only fails the guarded update, and the task is read again.
    known?: Task;
    // A callback's inbox row, written by the move's statement when the report applies
    // (`inboxStored`); otherwise the caller stores it with the outcome it got.
    inbox?: Pick<InboxEntry, "rawBody" | "providerStatus" | "webhookId">;
    // The outbound callback the move causes is written leased to this process and sent from here
    // as soon as the move commits (task-transition.ts leaseOutboundMs).
    sendOutbound?: DirectSender;
    // When the report reached us (a create's answer: as its response arrived), if earlier than
    // now: the submission time of a task it submits, from which the poll at its expected end is
    // scheduled (a later anchor, a later poll of a task whose end callback is lost).
    receivedAtMs?: number;
  } = {},
): Promise<{ outcome: ReportOutcome; task?: Task; inboxStored?: boolean }> => {
  const target = report.status;
  let known = options.known;
  // A move whose outbound callback this process sends announces the change to live views after
  // the send has gone out (setImmediate: after the POST's first write), not before it: the
  // announcement is a Redis write that the consumer's callback need not wait behind.
  let announced: Task | undefined;
  const moveDeps = options.sendOutbound ? { ...deps, taskChanged: (task: Task) => void (announced = task) } : deps;
  for (let attempt = 0; attempt < 3; attempt++) {
    const task = known ?? (await findTask(deps.db, taskId));
    known = undefined;
    if (!task) return { outcome: "unknown_task" };
    if (task.providerTaskId && task.providerTaskId !== report.providerTaskId) {
      deps.logger.warn({ taskId, reported: report.providerTaskId, known: task.providerTaskId }, "report names another provider task");
      return { outcome: "rejected", task };
    }
    const now = Date.now();
    const runTime = deps.runTimeOf(task.route);
    // A create's answer teaches how the provider's created_at maps to our clock (provider-run-time.ts).
    if (attempt === 0 && options.receivedAtMs !== undefined && report.createdAtMs !== undefined) runTime.noteCreateAnswer(report.createdAtMs, options.receivedAtMs);
    // The submission time anchors the poll at the task's expected end: the provider's own start
    // mapped to our clock where known, else when its first report reached us.
    const providerStart =
      task.submittedAt || report.createdAtMs === undefined ? undefined : await runTime.startOnOurClock(report.createdAtMs).catch(() => undefined);
    const submittedAt = task.submittedAt ?? new Date(Math.min(now, options.receivedAtMs ?? now, providerStart ?? now));
    // Redis (where the estimate lives) being down must not stop a report from being applied.
    const estimate = deps.pollAtExpectedEnd ? await runTime.estimateMs().catch(() => undefined) : undefined;
    const silenceMs = deps.pollAtExpectedEnd ? firstCheckDelayMs(submittedAt, estimate, deps.callbackGraceMs, now) : deps.callbackGraceMs;
    if (isTerminal(task.status) || statusRank[target] <= statusRank[task.status]) {
      // A check it would move by less than the shortest poll delay is left as it is: the `submitted`
      // callback that follows the create's answer (which set it) would cost a statement for nothing.
      const checkKept = task.providerTaskId !== null && task.nextCheckAt !== null && Math.abs(task.nextCheckAt.getTime() - (now + silenceMs)) < MIN_POLL_DELAY_MS;
      if (!isTerminal(task.status) && task.status !== "archiving" && !checkKept) {
        await scheduleCheck(deps.db, taskId, task.status, new Date(now + silenceMs), task.providerTaskId ?? report.providerTaskId);
      }
      return { outcome: statusRank[target] === statusRank[task.status] ? "duplicate" : "stale", task };
    }
    const providerTaskEnded = target === "archiving" || target === "failed";
    // One statement, a success's result images included (recorded only if the move applies).
    const result = await transitionTask(
      moveDeps,
      {
        taskId,
        to: target,
        from: [task.status],
        source,
        detail: { provider_status: report.providerStatus, provider_updated_at: report.updatedAtMs ?? null, ...options.note },
        ...(target === "archiving" ? { resultImages: report.images } : {}),
        ...(options.inbox ? { inboxEntry: { ...options.inbox, outcome: "applied", detail: null } } : {}),
        ...(options.sendOutbound?.hasRoom() ? { leaseOutboundMs: options.sendOutbound.leaseMs } : {}),
        data: {
          providerTaskId: report.providerTaskId,
          providerStatus: report.providerStatus,
          providerStatusMsg: report.message,
          ...(report.updatedAtMs === undefined ? {} : { providerUpdatedAt: String(report.updatedAtMs) }),
          ...(report.charged ? { finalUnitDeduction: report.charged } : {}),
          submittedAt,
          waitReason: null,
          nextCheckAt: target === "failed" ? null : new Date(now + (target === "archiving" ? deps.stallRecheckMs : silenceMs)),
          ...(target === "failed"
            ? { failureClass: "provider_failed", failureMessage: report.message ?? "the provider reported failure" }
            : {}),
        },
      },
    );
    if (!result.applied) continue; // raced with another report; look again
    if (result.leased) options.sendOutbound?.send(result.leased);
    if (announced) {
      const task = announced;
      if (result.leased) setImmediate(() => deps.taskChanged(task));
      else deps.taskChanged(task);
    }
    // The provider freed this task's slots when it ended. Released only once the row says so: the
    // sweeper's ledger repair re-holds the slots of every task whose row says it is still running,
    // and a release that came first would be undone by it (a slot counted twice until the next
    // sweep). If Redis is down now, that repair releases them later.
    if (providerTaskEnded) {
      await deps.releaseSlots(taskId).catch((error: unknown) =>
        deps.logger.warn({ taskId, err: error }, "slots not released; the sweeper will repair the ledger"),
      );
    }
    // Its run time teaches when to poll the next ones. The provider's own timestamps give its run
    // time exactly; our clock would add the lag of noticing the end (a poll after a lost callback),
    // and the estimate would drift later.
    if (providerTaskEnded) {
      const ran =
        report.createdAtMs !== undefined && report.updatedAtMs !== undefined
          ? report.updatedAtMs - report.createdAtMs
          : task.submittedAt
            ? now - task.submittedAt.getTime()
            : undefined;
      // A provider's odd timestamps (negative, or days apart) must not skew when every task is polled.
      if (ran !== undefined && ran > 0 && ran < MAX_PLAUSIBLE_RUN_MS) await runTime.record(ran).catch(() => undefined);
    }
    if (target === "archiving") {
      // After the commit: if Redis is down now, the sweeper re-drives the archive job later.
      await deps.enqueueArchive(taskId).catch(async (error: unknown) => {
        deps.logger.warn({ taskId, err: error }, "archive job not enqueued; the sweeper will add it soon");
        await scheduleCheck(deps.db, taskId, "archiving", new Date(Date.now() + ARCHIVE_REDRIVE_SOON_MS));
      });
    }
    return { outcome: "applied", task: result.task, inboxStored: options.inbox !== undefined };
  }
  return { outcome: "stale" };
};
