import type { Db, EventSource, Task } from "../db/prisma-client.ts";
import type { Logger } from "../logging/logger.ts";
import type { ProviderTask } from "../provider/provider-wire.schema.ts";
import { firstCheckDelayMs, type ProviderRunTime } from "../provider-capacity/provider-run-time.ts";
import type { TaskEndDeps } from "./fail-task.ts";
import { fromProviderStatus, isTerminal, statusRank } from "./task-status.ts";
import { transitionTaskInTx } from "./task-transition.ts";

export type ReportOutcome = "applied" | "duplicate" | "stale" | "unknown_task" | "rejected";

export type ApplyReportDeps = TaskEndDeps & {
  db: Db;
  logger: Logger;
  runTime: ProviderRunTime;
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
  report: ProviderTask,
  source: EventSource,
  // Recorded on the transition's event (e.g. that an earlier attempt's provider task was adopted).
  note?: Record<string, string | number | boolean>,
): Promise<{ outcome: ReportOutcome; task?: Task }> => {
  const target = fromProviderStatus[report.task_status];
  for (let attempt = 0; attempt < 3; attempt++) {
    const task = await deps.db.task.findUnique({ where: { id: taskId } });
    if (!task) return { outcome: "unknown_task" };
    if (task.providerTaskId && task.providerTaskId !== report.task_id) {
      deps.logger.warn({ taskId, reported: report.task_id, known: task.providerTaskId }, "report names another provider task");
      return { outcome: "rejected", task };
    }
    const now = Date.now();
    const submittedAt = task.submittedAt ?? new Date(now);
    const silenceMs = deps.pollAtExpectedEnd
      ? firstCheckDelayMs(submittedAt, await deps.runTime.estimateMs(), deps.callbackGraceMs, now)
      : deps.callbackGraceMs;
    if (isTerminal(task.status) || statusRank[target] <= statusRank[task.status]) {
      if (!isTerminal(task.status) && task.status !== "archiving") {
        await deps.db.task.updateMany({
          where: { id: taskId, status: task.status },
          data: { nextCheckAt: new Date(now + silenceMs), providerTaskId: task.providerTaskId ?? report.task_id },
        });
      }
      return { outcome: statusRank[target] === statusRank[task.status] ? "duplicate" : "stale", task };
    }
    const providerTaskEnded = target === "archiving" || target === "failed";
    // The provider freed this task's slots when it ended: give them to the next task before the
    // bookkeeping below, not after it. If Redis is down now, the sweeper's ledger repair does it.
    if (providerTaskEnded) {
      await deps.releaseSlots(taskId).catch((error: Error) =>
        deps.logger.warn({ taskId, err: error.message }, "slots not released; the sweeper will repair the ledger"),
      );
    }
    const images = report.task_result?.images ?? [];
    const applied = await deps.db.$transaction(async (tx) => {
      const result = await transitionTaskInTx(tx, {
        taskId,
        to: target,
        from: [task.status],
        source,
        detail: { provider_status: report.task_status, provider_updated_at: report.updated_at ?? null, ...note },
        data: {
          providerTaskId: report.task_id,
          providerStatus: report.task_status,
          providerStatusMsg: report.task_status_msg || null,
          providerUpdatedAt: report.updated_at === undefined ? undefined : BigInt(report.updated_at),
          finalUnitDeduction: report.final_unit_deduction ?? undefined,
          submittedAt,
          nextCheckAt:
            target === "failed"
              ? null
              : new Date(now + (target === "archiving" ? deps.stallRecheckMs : silenceMs)),
          ...(target === "failed"
            ? { failureClass: "provider_failed", failureMessage: report.task_status_msg || "the provider reported failure" }
            : {}),
        },
      });
      if (result.applied && target === "archiving" && images.length > 0) {
        await tx.taskImage.createMany({
          data: images.map((image) => ({ taskId, index: image.index, providerUrl: image.url })),
          skipDuplicates: true,
        });
      }
      return result.applied;
    });
    if (!applied) continue; // raced with another report; look again
    // Its run time teaches when to poll the next ones.
    // The provider's own timestamps give its run time exactly; our clock would add the lag of
    // noticing the end (a poll after a lost callback), and the estimate would drift later.
    if (providerTaskEnded) {
      const ran =
        report.created_at !== undefined && report.updated_at !== undefined
          ? report.updated_at - report.created_at
          : task.submittedAt
            ? now - task.submittedAt.getTime()
            : undefined;
      if (ran !== undefined) await deps.runTime.record(ran).catch(() => undefined);
    }
    if (target === "archiving") {
      // After the commit: if Redis is down now, the sweeper re-drives the archive job later.
      await deps.enqueueArchive(taskId).catch((error: Error) =>
        deps.logger.warn({ taskId, err: error.message }, "archive job not enqueued; the sweeper will retry"),
      );
    }
    return { outcome: "applied", task: (await deps.db.task.findUnique({ where: { id: taskId } })) ?? undefined };
  }
  return { outcome: "stale" };
};
