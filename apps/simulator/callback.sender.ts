import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Webhook } from "standardwebhooks";
import type { Logger } from "../domain/logging/logger.ts";
import type { SimSettings } from "./sim-settings.schema.ts";
import type { SimStats } from "./sim-task.store.ts";
import type { SimTask, WireTask } from "./sim-task.ts";

type Deps = {
  settings: () => SimSettings;
  stats: () => SimStats;
  logger: Logger;
  random?: () => number;
};

// Signed with the public Standard Webhooks library, as a provider would be, not with our own
// signer: every run that verifies the simulator's callbacks checks our verifier against it.
let signer: { secret: string; webhook: Webhook } | undefined;
const signedHeaders = (secret: string, messageId: string, body: string) => {
  if (signer?.secret !== secret) signer = { secret, webhook: new Webhook(secret) };
  const sentAt = new Date(Math.floor(Date.now() / 1000) * 1000);
  return {
    "webhook-id": messageId,
    "webhook-timestamp": String(sentAt.getTime() / 1000),
    "webhook-signature": signer.webhook.sign(messageId, sentAt, body),
  };
};

// Callbacks as Kling sends them: the bare task object, one POST per status change, no retries
// (KLING.md leaves retries undocumented; the orchestrator must poll anyway). Faults are switchable:
// loss, duplicates, the "processing" callback held until after the terminal one, and delay.
export const createCallbackSender = ({ settings, stats, logger, random = Math.random }: Deps) => {
  // One chain per task, so that in normal mode callbacks arrive in status order.
  const chains = new Map<string, Promise<void>>();
  const held = new Map<string, WireTask>();
  let lifetime = new AbortController();

  const post = async (url: string, body: string, messageId: string, signal: AbortSignal) => {
    const s = settings();
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (s.webhook_secret) Object.assign(headers, signedHeaders(s.webhook_secret, messageId, body));
    stats().callbacks_sent += 1;
    try {
      const response = await fetch(url, {
        method: "POST",
        headers,
        body,
        signal: AbortSignal.any([signal, AbortSignal.timeout(s.callback_timeout_ms)]),
      });
      await response.body?.cancel();
      if (!response.ok) {
        stats().callbacks_failed += 1;
        logger.warn({ url, status: response.status }, "callback answered non-2xx; not retried");
      }
    } catch (error) {
      if (signal.aborted) return;
      stats().callbacks_failed += 1;
      logger.warn({ url, err: error }, "callback failed; not retried");
    }
  };

  const deliver = async (url: string, snapshot: WireTask, signal: AbortSignal) => {
    const s = settings();
    if (random() < s.callback_loss) {
      stats().callbacks_lost += 1;
      logger.info({ taskId: snapshot.task_id, status: snapshot.task_status }, "callback dropped (callback_loss)");
      return;
    }
    if (s.callback_delay_ms > 0) await sleep(s.callback_delay_ms, undefined, { signal }).catch(() => undefined);
    if (signal.aborted) return;
    const body = JSON.stringify(snapshot);
    // A duplicate is the same message, so it keeps its webhook-id, as a provider's retry would.
    const messageId = `msg_${randomUUID()}`;
    await post(url, body, messageId, signal);
    if (random() < s.callback_duplicate) {
      stats().callbacks_duplicated += 1;
      await post(url, body, messageId, signal);
    }
  };

  return {
    // Resolves once this status's callback (and any earlier one for the task) has been handled.
    notify(task: SimTask, snapshot: WireTask): Promise<void> {
      const url = task.callbackUrl;
      if (!url) return Promise.resolve();
      const signal = lifetime.signal;
      const toSend: WireTask[] = [];
      if (task.reorderCallbacks && snapshot.task_status === "processing") {
        held.set(task.taskId, snapshot);
      } else {
        toSend.push(snapshot);
        const late = held.get(task.taskId);
        if (late && (snapshot.task_status === "succeed" || snapshot.task_status === "failed")) {
          held.delete(task.taskId);
          stats().callbacks_reordered += 1;
          toSend.push(late);
        }
      }
      let chain = chains.get(task.taskId) ?? Promise.resolve();
      for (const item of toSend) chain = chain.then(() => deliver(url, item, signal));
      chains.set(task.taskId, chain);
      const tail = chain;
      void tail.finally(() => {
        if (chains.get(task.taskId) === tail) chains.delete(task.taskId);
      });
      return tail;
    },

    // Drops pending deliveries (reset, stop); in-flight POSTs are aborted.
    cancelAll(): void {
      lifetime.abort();
      lifetime = new AbortController();
      chains.clear();
      held.clear();
    },
  };
};

export type CallbackSender = ReturnType<typeof createCallbackSender>;
