import type { Queue } from "bullmq";
import type { ServerKey } from "../crypto/server-key.ts";
import type { Db } from "../db/database.ts";
import { createOriginAgents, type OriginAgents } from "../http/origin-agents.ts";
import type { AllowedPrivateHost } from "../http/private-host-allowlist.ts";
import type { Logger } from "../logging/logger.ts";
import { jobCatalog } from "../queues/job-catalog.ts";
import { signImageLink } from "../storage/signed-link.ts";
import type { DeliverWebhookDeps } from "./deliver-webhook.ts";
import { deliveryJobId } from "./webhook-delivery.store.ts";

// Kept connections to consumers: closed after this long idle (most servers keep theirs 5 s).
const CONSUMER_IDLE_MS = 4_000;

// The settings an attempt is made with (outbound-webhooks.config.ts), in the worker as in the API.
export type WebhookSendConfig = {
  WEBHOOK_RETRY_SCHEDULE: readonly number[];
  WEBHOOK_ATTEMPT_TIMEOUT_MS: number;
  WEBHOOK_RESPONSE_MAX_BYTES: number;
  ALLOWED_PRIVATE_HOSTS: readonly AllowedPrivateHost[];
  IMAGE_LINK_TTL_SECONDS: number;
};

// One process's kept connections to consumers, one pool per origin.
export const createConsumerAgents = (): OriginAgents => createOriginAgents({ idleMs: CONSUMER_IDLE_MS, maxOrigins: 1_000, maxIdlePerOrigin: 8 });

// What an attempt needs (deliver-webhook.ts), built the same way by every process that sends:
// the same address rules, signer, links and schedule.
export const webhookSenderDeps = (
  config: WebhookSendConfig,
  parts: { db: Db; logger: Logger; serverKey: ServerKey; publicBaseUrl: string; agents: OriginAgents; enqueue: DeliverWebhookDeps["enqueue"] },
): DeliverWebhookDeps => {
  const linkKey = parts.serverKey.derive("image-links");
  return {
    db: parts.db,
    logger: parts.logger,
    serverKey: parts.serverKey,
    signLink: (taskId, index) => signImageLink(parts.publicBaseUrl, linkKey, taskId, index, config.IMAGE_LINK_TTL_SECONDS),
    schedule: config.WEBHOOK_RETRY_SCHEDULE,
    attemptTimeoutMs: config.WEBHOOK_ATTEMPT_TIMEOUT_MS,
    maxResponseBytes: config.WEBHOOK_RESPONSE_MAX_BYTES,
    allowedPrivateHosts: config.ALLOWED_PRIVATE_HOSTS,
    agents: parts.agents,
    enqueue: parts.enqueue,
  };
};

// A delivery's attempt as a job on the `webhook` queue (its id per attempt, so a notification and
// the sweep adding the same attempt add one job).
export const addDeliveryJob = async (queue: Queue, delivery: { id: string; attempts: number }, delayMs: number) => {
  const entry = jobCatalog.webhook;
  const data = entry.payload.parse({ deliveryId: delivery.id });
  await queue.add(entry.name, data, { ...entry.options, jobId: deliveryJobId(delivery), ...(delayMs > 0 ? { delay: Math.ceil(delayMs) } : {}) });
};
