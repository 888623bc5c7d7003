import { z } from "zod";
import type { ZodOpenApiPathItemObject } from "zod-openapi";
import { dropinTaskSchema } from "../../../domain/task/task-response.schema.ts";

// What we send to a task's callback_url, in the Standard Webhooks envelope and headers. Batch
// events (batch.*) go here too, one entry per event type.
const standardWebhookHeaders = z.object({
  "webhook-id": z.string().meta({ description: "Unique per event; the same across retries of one delivery (deduplicate on it)" }),
  "webhook-timestamp": z.string().meta({ description: "Unix seconds" }),
  "webhook-signature": z.string().meta({ description: "v1,<base64 HMAC-SHA256 of '{id}.{timestamp}.{body}'> (space-separated list while the secret rotates)" }),
});

const taskEvent = (type: string, description: string): ZodOpenApiPathItemObject => ({
  post: {
    operationId: `webhook_${type.replace(".", "_")}`,
    tags: ["outbound callbacks"],
    summary: `${type}: ${description}`,
    requestParams: { header: standardWebhookHeaders },
    requestBody: {
      required: true,
      content: {
        "application/json": {
          schema: z
            .object({
              type: z.literal(type),
              timestamp: z.iso.datetime({ offset: true }),
              data: dropinTaskSchema,
            })
            .meta({ id: `WebhookEvent_${type.replace(".", "_")}` }),
        },
      },
    },
    responses: { "2XX": { description: "Received; anything else (or no answer) is retried on a schedule" } },
  },
});

export const outboundWebhookDocs: Record<string, ZodOpenApiPathItemObject> = {
  "task.succeeded": taskEvent("task.succeeded", "the images are in our storage; data.task_result.images has signed links"),
  "task.failed": taskEvent("task.failed", "the task failed for good; data.task_status_msg says why"),
  "task.canceled": taskEvent("task.canceled", "the task was canceled"),
};
