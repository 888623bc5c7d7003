import type { Task, TaskEvent } from "../db/database.ts";
import type { TaskWithImages } from "./task.repository.ts";
import { redactNullableUrl } from "../http/redact-url.ts";
import { signImageLink } from "../storage/signed-link.ts";
import { toProviderStatus } from "./task-status.ts";
import type { DropinTask, NativeTask, NativeTaskEvent } from "./task-response.schema.ts";

export type LinkSigner = (taskId: string, index: number) => string;

export const createLinkSigner =
  (baseUrl: string, secret: Buffer, ttlSeconds: number): LinkSigner =>
  (taskId, index) =>
    signImageLink(baseUrl, secret, taskId, index, ttlSeconds);

const storedImages = (task: TaskWithImages) =>
  task.status === "succeeded" ? task.images.filter((i) => i.storageKey).sort((a, b) => a.index - b.index) : [];

// What is happening, in words: while a task waits this says why (a provider slot, a retried
// download and its reason, a paused provider and until when).
export const statusMessage = (task: Task): string => {
  switch (task.status) {
    case "queued":
      return task.waitReason ?? (task.imageUrl && task.sourceWidth === null ? "downloading and checking the source image" : "waiting to be submitted");
    case "submitting":
      return task.waitReason ?? (task.attempts > 1 ? `submitting (attempt ${task.attempts})` : "submitting to the provider");
    case "submitted":
      return "accepted by the provider";
    case "processing":
      return "the provider is expanding the image";
    case "archiving":
      return "copying the result images to storage";
    case "succeeded":
      // Past the image retention (IMAGE_RETENTION_DAYS) the task is still here but its files are not.
      return task.imagesDeletedAt ? `done; its images were deleted on ${task.imagesDeletedAt.toISOString().slice(0, 10)} (image retention)` : "done";
    case "failed":
      return task.failureMessage ?? "failed";
    case "canceled":
      return "canceled";
  }
};

// Credits charged, as the provider answers it: its own final_unit_deduction when it reported one;
// "0" for a task that failed or was canceled without one (nothing was charged: its credit hold was
// released); none while the task runs.
export const finalUnitDeductionOf = (task: Pick<TaskWithImages, "finalUnitDeduction" | "status">): string | undefined =>
  task.finalUnitDeduction ?? (task.status === "failed" || task.status === "canceled" ? "0" : undefined);

// The provider's task object, served by the drop-in GET: same fields, same vocabulary.
export const toProviderTask = (task: TaskWithImages, sign: LinkSigner): DropinTask => {
  const images = storedImages(task);
  return {
    task_id: task.id,
    task_status: toProviderStatus(task.status),
    task_status_msg: task.status === "succeeded" && !task.imagesDeletedAt ? "" : statusMessage(task),
    task_info: { external_task_id: task.externalTaskId ?? undefined },
    created_at: task.acceptedAt.getTime(),
    updated_at: task.updatedAt.getTime(),
    ...(finalUnitDeductionOf(task) !== undefined ? { final_unit_deduction: finalUnitDeductionOf(task) } : {}),
    ...(task.status === "succeeded"
      ? { task_result: { images: images.map((i) => ({ index: i.index, url: sign(task.id, i.index) })) } }
      : {}),
  };
};

export const toNativeTask = (task: TaskWithImages, sign: LinkSigner): NativeTask => ({
  id: task.id,
  external_task_id: task.externalTaskId,
  status: task.status,
  status_message: statusMessage(task),
  request: {
    image: task.imageUrl ? { kind: "url", url: task.imageUrl } : { kind: "base64" },
    up_expansion_ratio: task.upRatio,
    down_expansion_ratio: task.downRatio,
    left_expansion_ratio: task.leftRatio,
    right_expansion_ratio: task.rightRatio,
    prompt: task.prompt,
    n: task.n,
    watermark: task.watermark,
    source: task.sourceWidth ? { width: task.sourceWidth, height: task.sourceHeight } : null,
  },
  // Credentials in it are not shown back (redact-url.ts).
  callback_url: redactNullableUrl(task.callbackUrl),
  provider: {
    name: task.provider,
    // The route (PROVIDER_ROUTES) that ran the task, or is trying it, and its price per slot-task.
    route: task.route,
    unit_price: task.unitPrice === null ? null : Number(task.unitPrice),
    task_id: task.providerTaskId,
    status: task.providerStatus,
    status_message: task.providerStatusMsg,
    final_unit_deduction: finalUnitDeductionOf(task) ?? null,
  },
  attempts: task.attempts,
  failure: task.failureClass
    ? { class: task.failureClass, code: task.failureCode, message: task.failureMessage }
    : null,
  images: storedImages(task).map((i) => ({
    index: i.index,
    url: sign(task.id, i.index),
    width: i.width,
    height: i.height,
    bytes: i.bytes,
    sha256: i.sha256,
  })),
  created_at: task.acceptedAt.toISOString(),
  submitted_at: task.submittedAt?.toISOString() ?? null,
  finished_at: task.finishedAt?.toISOString() ?? null,
  updated_at: task.updatedAt.toISOString(),
});

export const toNativeEvent = (event: TaskEvent): NativeTaskEvent => ({
  id: event.id.toString(),
  from: event.fromStatus,
  to: event.toStatus,
  source: event.source,
  detail: event.detail,
  at: event.createdAt.toISOString(),
});
