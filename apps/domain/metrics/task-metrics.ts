import type { Task, TaskStatus } from "../db/database.ts";
import { isTerminal } from "../task/task-status.ts";
import { metrics } from "./metrics.ts";

const seconds = (fromMs: number, toMs: number) => Math.max(0, (toMs - fromMs) / 1000);

// Called once per applied transition (task-transition.ts), in whichever process applied it.
// `enteredFromAt` is when the task entered the status it leaves (its updated_at before the move).
export const recordTransition = (from: TaskStatus, task: Task, enteredFromAt: Date) => {
  const now = task.updatedAt.getTime();
  if (task.status === "submitted" || (task.status === "processing" && (from === "queued" || from === "submitting"))) {
    metrics.stageDuration.observe({ stage: "queued" }, seconds(task.acceptedAt.getTime(), (task.submittedAt ?? task.updatedAt).getTime()));
  }
  if (task.status === "archiving" && task.submittedAt) metrics.stageDuration.observe({ stage: "provider" }, seconds(task.submittedAt.getTime(), now));
  if (from === "archiving" && task.status === "succeeded") metrics.stageDuration.observe({ stage: "archiving" }, seconds(enteredFromAt.getTime(), now));
  if (!isTerminal(task.status)) return;
  metrics.tasksFinished.inc({ status: task.status });
  metrics.taskDuration.observe({ status: task.status }, seconds(task.acceptedAt.getTime(), now));
  const credits = task.finalUnitDeduction === null ? Number.NaN : Number(task.finalUnitDeduction);
  if (Number.isFinite(credits) && credits > 0) metrics.creditsSpent.inc(credits);
};
