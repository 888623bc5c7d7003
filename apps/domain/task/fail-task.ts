import type { EventSource } from "../db/database.ts";
import { transitionTask, type TransitionDeps } from "./task-transition.ts";

export type FailureClass =
  | "invalid_image" // the source image breaks a provider rule (found by our check)
  | "over_capacity" // the task needs more slots than the provider account has
  | "provider_rejected" // the provider refused the request (1200-1203, 1300-1301)
  | "provider_failed" // the provider accepted the task, then reported failed
  | "provider_lost" // the provider no longer knows a task it accepted
  | "retries_exhausted" // transient errors until the attempt budget ran out
  | "timeout" // no end within the overall deadline
  | "archive_failed" // the result images could not be stored or did not check out
  | "worker_crashed"; // working on the task took a worker process down, repeatedly

// What every path that ends a task's provider side needs: the task's slots go back to the pool.
// Every path that changes a task's state also tells live views (SSE, long-polls) about it.
export type TaskEndDeps = TransitionDeps & { releaseSlots: (taskId: string) => Promise<unknown> };

export const failTask = async (
  deps: TaskEndDeps,
  taskId: string,
  source: EventSource,
  failure: { class: FailureClass; message: string; code?: string | number | null },
) => {
  const result = await transitionTask(deps, {
    taskId,
    to: "failed",
    from: ["queued", "submitting", "submitted", "processing", "archiving"],
    source,
    detail: { failure_class: failure.class, message: failure.message, code: failure.code ?? null },
    data: {
      failureClass: failure.class,
      failureCode: failure.code === undefined || failure.code === null ? null : String(failure.code),
      failureMessage: failure.message,
      waitReason: null,
    },
  });
  await deps.releaseSlots(taskId);
  return result;
};
