import { redactUrl } from "../../domain/http/redact-url.ts";
import type { SigningSecrets } from "../../domain/webhooks/signing-secret.store.ts";
import type { WebhookAttempt, WebhookDelivery } from "../../domain/webhooks/webhook-delivery.store.ts";
import type { SigningSecretView, WebhookAttemptView, WebhookDeliveryView } from "./webhook-delivery.schema.ts";

export const toDeliveryView = (d: WebhookDelivery): WebhookDeliveryView => ({
  id: d.id,
  // Sent as the webhook-id header on every attempt and redelivery.
  webhook_id: d.id,
  event_type: d.eventType,
  task_id: d.taskId,
  batch_id: d.batchId,
  url: redactUrl(d.url),
  status: d.status,
  attempts: d.attempts,
  next_attempt_at: d.status === "pending" ? (d.nextAttemptAt?.toISOString() ?? null) : null,
  last_attempt: d.lastLatencyMs === null ? null : { status_code: d.lastStatusCode, latency_ms: d.lastLatencyMs, error: d.lastError },
  created_at: d.createdAt.toISOString(),
  finished_at: d.finishedAt?.toISOString() ?? null,
});

export const toAttemptView = (a: WebhookAttempt): WebhookAttemptView => ({
  attempt: a.attempt,
  started_at: a.startedAt.toISOString(),
  status_code: a.statusCode,
  latency_ms: a.latencyMs,
  error: a.error,
  response_body: a.responseBody,
});

export const toSigningSecretView = (s: SigningSecrets): SigningSecretView => ({
  secret: s.current,
  rotated_at: s.rotatedAt.toISOString(),
  // During the grace period after a rotation, callbacks carry a signature with each.
  previous: s.previous === null ? null : { secret: s.previous, valid_until: s.previousUntil?.toISOString() ?? null },
});
