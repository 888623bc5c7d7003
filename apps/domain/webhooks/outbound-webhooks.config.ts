import { z } from "zod";
import { envBoolean, envPositiveMs } from "../config/parse-env.ts";
import { DEFAULT_RETRY_SCHEDULE, retryScheduleSchema } from "./retry-schedule.ts";

// How an attempt is made, by whichever process makes it: the worker, or the API that received the
// provider callback whose event it sends (give both the same values).
const outboundWebhooksSendEnv = {
  // Delay before each attempt, the first included ("0" = at once); past the last, the delivery fails.
  WEBHOOK_RETRY_SCHEDULE: retryScheduleSchema.default(retryScheduleSchema.parse(DEFAULT_RETRY_SCHEDULE)),
  // One attempt: connect, send, and the answer's headers within this time.
  WEBHOOK_ATTEMPT_TIMEOUT_MS: envPositiveMs.default(10_000),
  // The start of a consumer's answer kept for the delivery log; the rest is not read.
  WEBHOOK_RESPONSE_MAX_BYTES: z.coerce.number().int().min(0).max(65_536).default(2_048),
};

// The worker's side of outbound callbacks.
export const outboundWebhooksWorkerEnv = {
  ...outboundWebhooksSendEnv,
  // How often due deliveries whose job went missing (Redis lost, a worker killed) are found in Postgres.
  WEBHOOK_SWEEP_MS: envPositiveMs.default(5_000),
  WEBHOOK_CONCURRENCY: z.coerce.number().int().min(1).max(500).default(50),
  // Image links in callbacks are signed for this long from each attempt.
  IMAGE_LINK_TTL_SECONDS: z.coerce.number().int().min(60).default(3_600),
};

// The API's side: attempts made by the receiver, and the signing secret's rotation.
export const outboundWebhooksApiEnv = {
  ...outboundWebhooksSendEnv,
  // The receiver of a provider callback sends the outbound callback its move caused itself, right
  // after its commit (the delivery is written leased to it); off, every event goes to the workers.
  WEBHOOK_SEND_FROM_RECEIVER: envBoolean.default(true),
  // Attempts at once from one API process; past it an event goes the workers' way (NOTIFY, claim),
  // so that sends never crowd the receiver out of its Postgres pool (DB_POOL_SIZE, 10) or its core.
  WEBHOOK_RECEIVER_CONCURRENCY: z.coerce.number().int().min(1).max(500).default(8),
  // After a rotation the previous secret keeps signing (both signatures are sent) this long.
  WEBHOOK_SECRET_GRACE_SECONDS: z.coerce.number().int().min(0).max(30 * 86_400).default(86_400),
};
