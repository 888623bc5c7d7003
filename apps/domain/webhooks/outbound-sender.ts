import type { Queue } from "bullmq";
import type { ServerKey } from "../crypto/server-key.ts";
import type { Db } from "../db/database.ts";
import { createOriginAgents, type OriginAgents } from "../http/origin-agents.ts";
import type { AllowedPrivateHost } from "../http/private-host-allowlist.ts";
import type { Logger } from "../logging/logger.ts";
import type { LinkSigner } from "../task/task.presenter.ts";
import { attemptClaimed, deliveryLeaseMs, type DeliverWebhookDeps } from "./deliver-webhook.ts";
import { jobCatalog } from "../queues/job-catalog.ts";
import { claimDeliveries, deliveryJobId } from "./webhook-delivery.store.ts";

export type DeliveryRef = { id: string; attempts: number };

// Kept connections to consumers: closed after this long idle (most servers keep theirs 5 s).
const CONSUMER_IDLE_MS = 4_000;

export const createConsumerAgents = (): OriginAgents => createOriginAgents({ idleMs: CONSUMER_IDLE_MS, maxOrigins: 1_000, maxIdlePerOrigin: 8 });

export type OutboundSendConfig = {
  WEBHOOK_RETRY_SCHEDULE: readonly number[];
  WEBHOOK_ATTEMPT_TIMEOUT_MS: number;
  WEBHOOK_RESPONSE_MAX_BYTES: number;
  ALLOWED_PRIVATE_HOSTS: readonly AllowedPrivateHost[];
};

// What an attempt needs, from a process's settings (outbound-webhooks.config.ts): the same in the
// worker and in the API.
export const outboundDeliverDeps = (
  config: OutboundSendConfig,
  parts: { db: Db; logger: Logger; serverKey: ServerKey; signLink: LinkSigner; agents: OriginAgents },
): Omit<DeliverWebhookDeps, "enqueue"> => ({
  ...parts,
  schedule: config.WEBHOOK_RETRY_SCHEDULE,
  attemptTimeoutMs: config.WEBHOOK_ATTEMPT_TIMEOUT_MS,
  maxResponseBytes: config.WEBHOOK_RESPONSE_MAX_BYTES,
  allowedPrivateHosts: config.ALLOWED_PRIVATE_HOSTS,
});

// An attempt as a job of the `webhook` queue (the same job id from every process, so one runs).
export const deliveryJobAdder = (queue: Queue) => async (delivery: DeliveryRef, delayMs: number) => {
  const entry = jobCatalog.webhook;
  const data = entry.payload.parse({ deliveryId: delivery.id });
  await queue.add(entry.name, data, { ...entry.options, jobId: deliveryJobId(delivery), ...(delayMs > 0 ? { delay: Math.ceil(delayMs) } : {}) });
};

export type OutboundSenderDeps = {
  // Everything an attempt needs but `enqueue`, which the sender gives it (retries to the queue,
  // the next event of a task claimed and sent here).
  deliver: Omit<DeliverWebhookDeps, "enqueue">;
  logger: Logger;
  // Attempts under way in this process at most (WEBHOOK_CONCURRENCY); past it, deliveries go to the queue.
  concurrency: number;
  // Has the BullMQ `webhook` queue make a delivery's attempt (its job id from deliveryJobId) after delayMs.
  addJob: (delivery: DeliveryRef, delayMs: number) => Promise<void>;
};

// Sends outbound callbacks from this process, with no queue between an event and its POST: a
// delivery handed here is claimed in Postgres (a burst in one statement, on the next turn of the
// event loop) and sent at once by whoever's claim took it. Used by the worker, for the events it
// hears of by NOTIFY, and by the process that committed an event (the API's callback receiver),
// which claims it itself right after the commit instead of waking another process. Postgres's
// lease on the row, not the path, keeps one attempt at a time: whichever way a delivery comes,
// only a claim sends it, and what is not sent here (busy, stopping, a failed claim) goes to the
// queue, with the outbox sweep behind it.
export const createOutboundSender = (deps: OutboundSenderDeps) => {
  const { logger } = deps;
  const deliverDeps: DeliverWebhookDeps = {
    ...deps.deliver,
    enqueue: (delivery, delayMs) => (delayMs > 0 ? deps.addJob(delivery, delayMs) : deliverSoon(delivery)),
  };
  // Deliveries to claim and send from this process. `reserved` counts those waiting for their claim,
  // those being attempted and those promised (reserve) but not yet handed over, so that no more
  // than `concurrency` run here at once.
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
      claimed = await claimDeliveries(deliverDeps.db, batch.map((d) => d.id), deliveryLeaseMs(deliverDeps));
    } catch (error) {
      reserved -= batch.length;
      logger.warn({ err: error, deliveries: batch.length }, "callbacks not claimed; handed to the queue");
      for (const delivery of batch) {
        await deps.addJob(delivery, 0).catch((err: unknown) => logger.warn({ deliveryId: delivery.id, err }, "callback job not added; the sweep will add it"));
      }
      return;
    }
    // The others are not this process's to send now: held by another worker, behind an earlier
    // event (sent by whoever decides that one), not due, or decided already.
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
  const enqueueReserved = (delivery: DeliveryRef) => {
    waiting.push(delivery);
    if (!flushScheduled) {
      flushScheduled = true;
      // Tracked from now, so that a stop that comes before the next turn waits for it too.
      track(new Promise<void>((resolve) => setImmediate(resolve)).then(claimWaiting));
    }
  };
  // Claimed on the next turn of the event loop, together with whatever else arrived meanwhile.
  async function deliverSoon(delivery: DeliveryRef): Promise<void> {
    if (closed || reserved >= deps.concurrency) return deps.addJob(delivery, 0);
    reserved++;
    enqueueReserved(delivery);
  }
  return {
    deliverDeps,
    deliverSoon,
    // For a process about to commit an event it will send itself (transitionTask): a place among
    // the attempts, taken before the commit, so that the event is recorded without its NOTIFY only
    // when this process has room to send it. Each true answer is followed by one handOff.
    reserve: (): boolean => {
      if (closed || reserved >= deps.concurrency) return false;
      reserved++;
      return true;
    },
    // The reserved place's delivery, committed (claimed and sent here), or none (the place is given back).
    handOff: (delivery: DeliveryRef | undefined) => {
      if (!delivery) {
        reserved--;
        return;
      }
      if (closed) {
        reserved--;
        void deps.addJob(delivery, 0).catch((err: unknown) => logger.warn({ deliveryId: delivery.id, err }, "callback job not added; the sweep will add it"));
        return;
      }
      enqueueReserved(delivery);
    },
    // Attempts under way here finish (each within its timeout); what comes meanwhile is queued.
    stop: async () => {
      closed = true;
      while (running.size > 0) await Promise.all([...running]);
    },
  };
};

export type OutboundSender = ReturnType<typeof createOutboundSender>;
