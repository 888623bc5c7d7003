import type { Db, Task } from "../db/prisma-client.ts";
import type { Logger } from "../logging/logger.ts";
import type { ProviderClient } from "../provider/provider-client.ts";
import { ProviderError } from "../provider/provider-error.ts";
import { applyProviderReport, type ApplyReportDeps } from "./apply-provider-report.ts";
import { failTask } from "./fail-task.ts";
import { nextPollDelayMs } from "./retry-policy.ts";
import { isTerminal } from "./task-status.ts";

export type ReconcileDeps = ApplyReportDeps & {
  provider: ProviderClient;
  pollMaxIntervalMs: number;
  // Re-drives a task's job: adds it when missing, retries it when it ended failed.
  redriveJob: (kind: "submit" | "archive", taskId: string) => Promise<void>;
  batchSize: number;
};

export type ReconcileSummary = { polled: number; redriven: number; errors: number };

// Callbacks are hints; the provider's GET is the truth. Every non-terminal task carries the time of
// its next expected sign of life (`next_check_at`); a task past it is looked at here.
export const reconcileTasks = async (deps: ReconcileDeps): Promise<ReconcileSummary> => {
  const overdue = await deps.db.task.findMany({
    where: { status: { in: ["queued", "submitting", "submitted", "processing", "archiving"] }, nextCheckAt: { lte: new Date() } },
    orderBy: { nextCheckAt: "asc" },
    take: deps.batchSize,
  });
  const summary: ReconcileSummary = { polled: 0, redriven: 0, errors: 0 };
  for (const task of overdue) {
    try {
      if (task.status === "submitted" || task.status === "processing") {
        await pollTask(deps, task);
        summary.polled++;
      } else {
        await deps.redriveJob(task.status === "archiving" ? "archive" : "submit", task.id);
        await deps.db.task.updateMany({
          where: { id: task.id, status: task.status },
          data: { nextCheckAt: new Date(Date.now() + deps.stallRecheckMs) },
        });
        summary.redriven++;
      }
    } catch (error) {
      summary.errors++;
      deps.logger.warn({ taskId: task.id, err: (error as Error).message }, "reconcile step failed");
    }
  }
  return summary;
};

const pollTask = async (deps: ReconcileDeps, task: Task) => {
  const lookup = task.providerTaskId ?? task.id;
  const reschedule = () =>
    deps.db.task.updateMany({
      where: { id: task.id, status: task.status },
      data: {
        nextCheckAt: new Date(
          Date.now() + nextPollDelayMs(Date.now() - (task.submittedAt ?? task.acceptedAt).getTime(), deps.callbackGraceMs, deps.pollMaxIntervalMs),
        ),
      },
    });
  try {
    const report = task.providerTaskId ? await deps.provider.getTask(lookup) : await deps.provider.findTaskByExternalId(lookup);
    if (!report) {
      await failTask(deps.db, task.id, "poll", {
        class: "provider_lost",
        message: "the provider no longer knows this task after accepting it",
      });
      return;
    }
    const { task: after } = await applyProviderReport(deps, task.id, report, "poll");
    if (after && !isTerminal(after.status) && after.status !== "archiving") await reschedule();
  } catch (error) {
    if (error instanceof ProviderError && (error.details.code === 1203 || error.details.code === 1202)) {
      await failTask(deps.db, task.id, "poll", {
        class: "provider_lost",
        message: `the provider no longer knows this task: ${error.message}`,
        code: error.details.code,
      });
      return;
    }
    await reschedule();
    throw error;
  }
};
