import type { Db, EventSource } from "../db/prisma-client.ts";
import { transitionTask } from "./task-transition.ts";

export type FailureClass =
  | "invalid_image" // the source image breaks a provider rule (found by our check)
  | "provider_rejected" // the provider refused the request (1200-1203, 1300-1301)
  | "provider_failed" // the provider accepted the task, then reported failed
  | "provider_lost" // the provider no longer knows a task it accepted
  | "retries_exhausted" // transient errors until the attempt budget ran out
  | "archive_failed"; // the result images could not be stored or did not check out

export const failTask = (
  db: Db,
  taskId: string,
  source: EventSource,
  failure: { class: FailureClass; message: string; code?: string | number | null },
) =>
  transitionTask(db, {
    taskId,
    to: "failed",
    from: ["queued", "submitting", "submitted", "processing", "archiving"],
    source,
    detail: { failure_class: failure.class, message: failure.message, code: failure.code ?? null },
    data: {
      failureClass: failure.class,
      failureCode: failure.code === undefined || failure.code === null ? null : String(failure.code),
      failureMessage: failure.message,
    },
  });
