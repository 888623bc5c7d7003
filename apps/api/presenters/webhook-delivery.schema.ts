import { z } from "zod";

// What the account's webhook routes answer (/v1/webhooks/...), as zod: webhook-delivery.presenter.ts
// is typed against these, and the OpenAPI document is generated from them.

const isoTime = z.iso.datetime({ offset: true });

export const deliveryStatuses = ["pending", "succeeded", "failed", "disabled"] as const;

export const webhookDeliverySchema = z
  .object({
    id: z.uuid(),
    webhook_id: z.uuid().meta({ description: "Sent as the webhook-id header on every attempt and redelivery" }),
    event_type: z.string(),
    task_id: z.uuid().nullable(),
    batch_id: z.uuid().nullable(),
    url: z.string(),
    status: z.enum(deliveryStatuses).meta({ description: "disabled: the URL answered 410 Gone; nothing more is sent to it" }),
    attempts: z.int(),
    next_attempt_at: isoTime.nullable(),
    last_attempt: z.object({ status_code: z.int().nullable(), latency_ms: z.int(), error: z.string().nullable() }).nullable(),
    created_at: isoTime,
    finished_at: isoTime.nullable(),
  })
  .meta({ id: "WebhookDelivery" });

export type WebhookDeliveryView = z.infer<typeof webhookDeliverySchema>;

export const webhookAttemptSchema = z
  .object({
    attempt: z.int(),
    started_at: isoTime,
    status_code: z.int().nullable(),
    latency_ms: z.int(),
    error: z.string().nullable(),
    response_body: z.string().nullable().meta({ description: "The start of what the receiver answered" }),
  })
  .meta({ id: "WebhookAttempt" });

export type WebhookAttemptView = z.infer<typeof webhookAttemptSchema>;

export const webhookDeliveryPageSchema = z
  .object({ data: z.array(webhookDeliverySchema), next_cursor: z.string().nullable() })
  .meta({ id: "WebhookDeliveryPage" });

export const webhookDeliveryDetailSchema = webhookDeliverySchema.extend({ attempt_log: z.array(webhookAttemptSchema) }).meta({ id: "WebhookDeliveryDetail" });

export const redeliveredSchema = z.object({ redelivered: z.int(), ids: z.array(z.uuid()) }).meta({ id: "Redelivered" });

export const signingSecretSchema = z
  .object({
    secret: z.string().meta({ description: "whsec_<base64>: verify callbacks with it (Standard Webhooks)" }),
    rotated_at: isoTime,
    previous: z
      .object({ secret: z.string(), valid_until: isoTime.nullable() })
      .nullable()
      .meta({ description: "The secret before the last rotation while it still signs (callbacks carry both signatures)" }),
  })
  .meta({ id: "WebhookSigningSecret" });

export type SigningSecretView = z.infer<typeof signingSecretSchema>;
