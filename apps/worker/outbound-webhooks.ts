import pg from "pg";
import { directDatabaseUrl } from "../domain/config/shared-env.schema.ts";
import type { ServerKey } from "../domain/crypto/server-key.ts";
import type { Db } from "../domain/db/database.ts";
import type { Logger } from "../domain/logging/logger.ts";
import { jobCatalog } from "../domain/queues/job-catalog.ts";
import { startQueueWorker, type QueueWorkerOptions } from "../domain/queues/queue-worker.ts";
import type { TaskQueues } from "../domain/queues/task-queues.ts";
import { attemptClaimed, deliverWebhook, deliveryLeaseMs, type DeliverWebhookDeps } from "../domain/webhooks/deliver-webhook.ts";
import { WEBHOOK_NOTIFY_CHANNEL } from "../domain/webhooks/outbound-events.ts";
import { claimDeliveries, dueDeliveries } from "../domain/webhooks/webhook-delivery.store.ts";
import { addDeliveryJob, createConsumerAgents, webhookSenderDeps } from "../domain/webhooks/webhook-sender.ts";
import type { WorkerConfig } from "./worker.config.ts";

export type OutboundWebhooksDeps = {
  config: WorkerConfig;
  db: Db;
  // The process's queues (task-queues.ts) and its workers' options (queue-worker.ts).
  queues: Pick<TaskQueues, "queue">;
  workerOptions: QueueWorkerOptions;
  logger: Logger;
  serverKey: ServerKey;
  publicBaseUrl: string;
};

const SWEEP_BATCH = 500;
const LISTEN_RETRY_MS = 1_000;

type DeliveryRef = { id: string; attempts: number };

// Outbound callbacks in the worker. A transition commits its event with a NOTIFY; every worker's
// listener hears it and claims it in Postgres at once (a burst of notifications in one statement),
// and the worker whose claim takes it sends it there and then: no queue between the event and its
// POST. The next event of a task whose earlier one was just decided goes the same way. A BullMQ
// queue of delivery attempts carries the rest: a retry is a delayed job, a notification heard while
// WEBHOOK_CONCURRENCY attempts are already running here becomes a job (the same job id from every
// worker, so one runs), and a sweep on a job scheduler re-adds whatever is due in Postgres and held
// by nobody (Redis emptied, a killed worker whose lease lapsed, a notification missed while the
// listener reconnected). Postgres's lease on the row, not the path, is what keeps one attempt at a
// time: whichever way a delivery comes, only a claim sends it.
export const startOutboundWebhooks = async (deps: OutboundWebhooksDeps) => {
  const { config, logger } = deps;
  const entry = jobCatalog.webhook;
  const queue = deps.queues.queue("webhook");
  const sweepQueue = deps.queues.queue("webhookSweep");
  const addJob = (delivery: DeliveryRef, delayMs: number) => addDeliveryJob(queue, delivery, delayMs);
  const agents = createConsumerAgents();
  const deliverDeps: DeliverWebhookDeps = webhookSenderDeps(config, {
    db: deps.db,
    logger,
    serverKey: deps.serverKey,
    publicBaseUrl: deps.publicBaseUrl,
    agents,
    enqueue: (delivery, delayMs) => (delayMs > 0 ? addJob(delivery, delayMs) : deliverSoon(delivery)),
  });

  // Deliveries to claim and send from this process. `reserved` counts those waiting for their claim
  // and those being attempted, so that no more than WEBHOOK_CONCURRENCY run here at once.
  let reserved = 0;
  let waiting: DeliveryRef[] = [];
  let flushScheduled = false;
  let closed = false;
  const running = new Set<Promise<void>>();
  const track = (work: Promise<void>) => {
    running.add(work);
    const done = () => running.delete(work);
    void work.then(done, done);
  };
  const claimWaiting = async () => {
    flushScheduled = false;
    const batch = waiting;
    waiting = [];
    let claimed: Awaited<ReturnType<typeof claimDeliveries>>;
    try {
      claimed = await claimDeliveries(deps.db, batch.map((d) => d.id), deliveryLeaseMs(deliverDeps));
    } catch (error) {
      reserved -= batch.length;
      logger.warn({ err: error, deliveries: batch.length }, "callbacks not claimed; handed to the queue");
      for (const delivery of batch) {
        await addJob(delivery, 0).catch((err: unknown) => logger.warn({ deliveryId: delivery.id, err }, "callback job not added; the sweep will add it"));
      }
      return;
    }
    // The others are not this process's to send now: held by another worker, behind an earlier
    // event, not due, or decided already.
    reserved -= batch.length - claimed.length;
    for (const delivery of claimed) {
      track(
        attemptClaimed(deliverDeps, delivery)
          .catch((error: unknown) =>
            logger.error({ deliveryId: delivery.id, err: error }, "callback attempt broke; it is sent again when its lease lapses"),
          )
          .finally(() => {
            reserved--;
          }),
      );
    }
  };
  // Claimed on the next turn of the event loop, together with whatever else arrived meanwhile.
  async function deliverSoon(delivery: DeliveryRef): Promise<void> {
    if (closed || reserved >= config.WEBHOOK_CONCURRENCY) return addJob(delivery, 0);
    reserved++;
    waiting.push(delivery);
    if (!flushScheduled) {
      flushScheduled = true;
      // Tracked from now, so that a stop that comes before the next turn waits for it too.
      track(new Promise<void>((resolve) => setImmediate(resolve)).then(claimWaiting));
    }
  }

  const deliverer = startQueueWorker(
    "webhook",
    async (job) => deliverWebhook(deliverDeps, entry.payload.parse(job.data).deliveryId),
    config.WEBHOOK_CONCURRENCY,
    deps.workerOptions,
  );
  const sweeper = startQueueWorker(
    "webhookSweep",
    async () => {
      const due = await dueDeliveries(deps.db, SWEEP_BATCH);
      for (const delivery of due) await addJob(delivery, 0);
      return { due: due.length };
    },
    1,
    deps.workerOptions,
  );
  const ensureSchedule = () =>
    sweepQueue.upsertJobScheduler(
      "webhook-sweep",
      { every: config.WEBHOOK_SWEEP_MS },
      { name: jobCatalog.webhookSweep.name, data: {}, opts: jobCatalog.webhookSweep.options },
    );
  await ensureSchedule();

  const listener = await listenForDeliveries(config, logger, (delivery) =>
    deliverSoon(delivery).catch((error: unknown) => logger.warn({ deliveryId: delivery.id, err: error }, "callback job not added; the sweep will add it")),
  );

  return {
    ensureSchedule,
    stop: async () => {
      await listener.stop();
      // Attempts under way here finish (each within its timeout); what arrives meanwhile is queued.
      closed = true;
      while (running.size > 0) await Promise.all([...running]);
      // The queues are the process's, closed with the others (worker.server.ts).
      await Promise.all([deliverer.close(), sweeper.close()]);
      agents.close();
    },
  };
};

// Every event's NOTIFY (outbound-events.ts), heard on a connection of its own: a delivery to claim.
const listenForDeliveries = async (config: WorkerConfig, logger: Logger, onDelivery: (delivery: DeliveryRef) => void) => {
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
      onDelivery({ id, attempts: Number(attempts) });
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
    stop: async () => {
      stopped = true;
      clearTimeout(retry);
      await listener?.end().catch(() => undefined);
    },
  };
};
