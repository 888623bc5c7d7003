import { z } from "zod";
import type { ZodOpenApiPathItemObject } from "zod-openapi";
import { batchViewSchema } from "../../../domain/batch/batch-response.schema.ts";
import { dropinTaskSchema, nativeTaskSchema } from "../../../domain/task/task-response.schema.ts";

// What we send to a callback_url (apps/domain/webhooks/webhook-payload.ts renderWebhookBody), with
// the Standard Webhooks headers, signed with the account's secret (GET /v1/webhooks/secret):
// - native tasks and batches: the envelope {type, timestamp, data};
// - drop-in tasks: the provider's bare task object, as the provider itself calls back (the event
//   type is not in the body; GET /v1/webhooks/deliveries shows it).
const standardWebhookHeaders = z.object({
  "webhook-id": z.string().meta({ description: "Unique per event; the same across retries of one delivery (deduplicate on it)" }),
  "webhook-timestamp": z.string().meta({ description: "Unix seconds" }),
  "webhook-signature": z.string().meta({ description: "v1,<base64 HMAC-SHA256 of '{id}.{timestamp}.{body}'> (space-separated list while the secret rotates)" }),
});

const idOf = (type: string) => type.replace(".", "_");

const event = (type: string, description: string, schema: z.ZodType): ZodOpenApiPathItemObject => ({
  post: {
    operationId: `webhook_${idOf(type)}`,
    tags: ["outbound callbacks"],
    summary: `${type}: ${description}`,
    requestParams: { header: standardWebhookHeaders },
    requestBody: { required: true, content: { "application/json": { schema } } },
    responses: { "2XX": { description: "Received; anything else (or no answer) is retried on a schedule; 410 Gone disables the URL" } },
  },
});

const envelope = (type: string, data: z.ZodType) =>
  z.object({ type: z.literal(type), timestamp: z.iso.datetime({ offset: true }), data }).meta({ id: `WebhookEvent_${idOf(type)}` });

const nativeTaskEvent = (type: string, description: string) => event(type, description, envelope(type, nativeTaskSchema));
const batchEvent = (type: string, description: string) => event(type, description, envelope(type, batchViewSchema));
const dropinTaskEvent = (type: string, description: string) =>
  event(type, `${description} (drop-in tasks: the body is the provider's task object, no envelope)`, dropinTaskSchema);

export const outboundWebhookDocs: Record<string, ZodOpenApiPathItemObject> = {
  "task.succeeded": nativeTaskEvent("task.succeeded", "the images are in our storage; data.images has signed links"),
  "task.failed": nativeTaskEvent("task.failed", "the task failed for good; data.status_message and data.failure say why"),
  "task.canceled": nativeTaskEvent("task.canceled", "the task was canceled"),
  "kling.submitted": dropinTaskEvent("kling.submitted", "the provider accepted the task"),
  "kling.processing": dropinTaskEvent("kling.processing", "the provider is working on it"),
  "kling.succeed": dropinTaskEvent("kling.succeed", "the images are in our storage; task_result.images has signed links"),
  "kling.failed": dropinTaskEvent("kling.failed", "the task failed or was canceled; task_status_msg says why"),
  "batch.progress": batchEvent("batch.progress", "the batch's counts moved (at most one per BATCH_PROGRESS_EVERY_MS)"),
  "batch.completed": batchEvent("batch.completed", "the batch's last task has ended (status completed, completed_with_errors or canceled)"),
};
