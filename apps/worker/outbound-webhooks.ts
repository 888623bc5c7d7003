import { Queue, Worker } from "bullmq";
import type { RedisClient } from "../domain/queues/redis-connection.ts";
import pg from "pg";
import { directDatabaseUrl } from "../domain/config/shared-env.schema.ts";
import type { ServerKey } from "../domain/crypto/server-key.ts";
import type { Db } from "../domain/db/database.ts";
import type { Logger } from "../domain/logging/logger.ts";
import { bullQueueName, jobCatalog, workerLockOptions } from "../domain/queues/job-catalog.ts";
import { signImageLink } from "../domain/storage/signed-link.ts";
import { deliverWebhook, type DeliverWebhookDeps } from "../domain/webhooks/deliver-webhook.ts";
import { WEBHOOK_NOTIFY_CHANNEL } from "../domain/webhooks/outbound-events.ts";
import { deliveryJobId, dueDeliveries } from "../domain/webhooks/webhook-delivery.store.ts";
import type { WorkerConfig } from "./worker.config.ts";

export type OutboundWebhooksDeps = {
  config: WorkerConfig;
  db: Db;
  redis: RedisClient;
  logger: Logger;
  serverKey: ServerKey;
  publicBaseUrl: string;
};

const SWEEP_BATCH = 500;
const LISTEN_RETRY_MS = 1_000;

// Outbound callbacks in the worker: a BullMQ queue of delivery attempts, fed three ways. A
// transition commits its event with a NOTIFY, which every worker's listener turns into a job (the
// same job id from each, so one runs); a retry is a delayed job; and a sweep on a job scheduler
// re-adds whatever is due in Postgres without a job (Redis emptied, a killed worker, a notification
// missed while the listener reconnected).
export const startOutboundWebhooks = async (deps: OutboundWebhooksDeps) => {
  const { config, logger } = deps;
  const entry = jobCatalog.webhook;
  const queue = new Queue(bullQueueName("webhook"), { connection: deps.redis, prefix: config.QUEUE_PREFIX });
  const sweepQueue = new Queue(bullQueueName("webhookSweep"), { connection: deps.redis, prefix: config.QUEUE_PREFIX });
  const enqueue = async (delivery: { id: string; attempts: number }, delayMs: number) => {
    const data = entry.payload.parse({ deliveryId: delivery.id });
    await queue.add(entry.name, data, { ...entry.options, jobId: deliveryJobId(delivery), ...(delayMs > 0 ? { delay: Math.ceil(delayMs) } : {}) });
  };
  const linkKey = deps.serverKey.derive("image-links");
  const deliverDeps: DeliverWebhookDeps = {
    db: deps.db,
    logger,
    serverKey: deps.serverKey,
    signLink: (taskId, index) => signImageLink(deps.publicBaseUrl, linkKey, taskId, index, config.IMAGE_LINK_TTL_SECONDS),
    schedule: config.WEBHOOK_RETRY_SCHEDULE,
    attemptTimeoutMs: config.WEBHOOK_ATTEMPT_TIMEOUT_MS,
    maxResponseBytes: config.WEBHOOK_RESPONSE_MAX_BYTES,
    allowedPrivateHosts: config.ALLOWED_PRIVATE_HOSTS,
    enqueue,
  };

  const workerOptions = { connection: deps.redis, prefix: config.QUEUE_PREFIX, ...workerLockOptions(config) };
  const deliverer = new Worker(
    bullQueueName("webhook"),
    async (job) => deliverWebhook(deliverDeps, entry.payload.parse(job.data).deliveryId),
    { ...workerOptions, concurrency: config.WEBHOOK_CONCURRENCY },
  );
  const sweeper = new Worker(
    bullQueueName("webhookSweep"),
    async () => {
      const due = await dueDeliveries(deps.db, SWEEP_BATCH);
      for (const delivery of due) await enqueue(delivery, 0);
      return { due: due.length };
    },
    { ...workerOptions, concurrency: 1 },
  );
  for (const [name, worker] of [["webhook", deliverer], ["webhook-sweep", sweeper]] as const) {
    worker.on("error", (error) => logger.error({ err: error, queue: name }, "worker error"));
    worker.on("failed", (job, error) => logger.warn({ jobId: job?.id, queue: name, err: error }, "job failed"));
  }
  const ensureSchedule = () =>
    sweepQueue.upsertJobScheduler(
      "webhook-sweep",
      { every: config.WEBHOOK_SWEEP_MS },
      { name: jobCatalog.webhookSweep.name, data: {}, opts: jobCatalog.webhookSweep.options },
    );
  await ensureSchedule();

  // LISTEN needs a connection of its own, outside the pool; it reconnects after any loss.
  let listener: pg.Client | undefined;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;
  const listen = async () => {
    // A session of its own: through a transaction pooler a LISTEN would be lost (DATABASE_DIRECT_URL).
    const client = new pg.Client({
      connectionString: directDatabaseUrl(config),
      application_name: "kling-worker-webhooks",
      connectionTimeoutMillis: config.DB_CONNECT_TIMEOUT_MS,
    });
    const again = () => {
      if (stopped || listener !== client) return;
      listener = undefined;
      client.end().catch(() => undefined);
      retry = setTimeout(() => void listen(), LISTEN_RETRY_MS);
    };
    listener = client;
    client.on("error", (error) => {
      logger.warn({ err: error }, "webhook notification listener lost its connection; reconnecting");
      again();
    });
    client.on("end", again);
    client.on("notification", (message) => {
      const [id, attempts] = (message.payload ?? "").split("_");
      if (!id || attempts === undefined) return;
      enqueue({ id, attempts: Number(attempts) }, 0).catch((error: unknown) =>
        logger.warn({ deliveryId: id, err: error }, "callback job not added; the sweep will add it"),
      );
    });
    try {
      await client.connect();
      await client.query(`listen ${WEBHOOK_NOTIFY_CHANNEL}`);
    } catch (error) {
      logger.warn({ err: error }, "webhook notification listener could not connect; retrying");
      again();
    }
  };
  await listen();

  return {
    ensureSchedule,
    stop: async () => {
      stopped = true;
      clearTimeout(retry);
      await listener?.end().catch(() => undefined);
      await Promise.all([deliverer.close(), sweeper.close()]);
      await Promise.all([queue.close(), sweepQueue.close()]).catch(() => undefined);
    },
  };
};
