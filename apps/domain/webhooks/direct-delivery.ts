import type { Logger } from "../logging/logger.ts";
import { attemptClaimed, deliveryLeaseMs, type DeliverWebhookDeps } from "./deliver-webhook.ts";
import type { ClaimedDelivery } from "./webhook-delivery.store.ts";

// Sends, from the process that committed them, the outbound callbacks a move wrote leased to it
// (task-transition.ts leaseOutboundMs): the receiver of a provider callback. The path from the
// provider's callback to the consumer's is then one commit and one POST, the same attempt the
// worker makes (deliver-webhook.ts attemptClaimed: address checks, signing, the log, the verdict).
// Whatever goes wrong is the workers' to finish, as for any delivery: a failed attempt's retry is a
// job on their queue, and a process that dies (or breaks) before recording its attempt leaves the
// lease to lapse, after which the sweep hands the delivery to a worker, same webhook-id.
// `hasRoom`: asked before the move; when it says no, the move writes the event for the workers.
export type DirectSender = { leaseMs: number; hasRoom: () => boolean; send: (deliveries: readonly ClaimedDelivery[]) => void };

export const createDirectSender = (deps: DeliverWebhookDeps & { logger: Logger }, concurrency: number) => {
  const running = new Set<Promise<void>>();
  let closed = false;
  const sendNow = async (deliveries: readonly ClaimedDelivery[]) => {
    await Promise.all(deliveries.map((delivery) => attemptClaimed(deps, delivery)));
  };
  const sender: DirectSender = {
    leaseMs: deliveryLeaseMs(deps),
    // Counted when sent, not when asked: a few moves in flight together may take it a little past.
    hasRoom: () => !closed && running.size < concurrency,
    send: (deliveries) => {
      // A stopping process leaves them to lapse to the workers.
      if (closed) return;
      const work = sendNow(deliveries).catch((error: unknown) =>
        deps.logger.warn({ deliveryIds: deliveries.map((d) => d.id), err: error }, "callback not sent from the receiver; the workers send it when its lease lapses"),
      );
      running.add(work);
      void work.finally(() => running.delete(work));
    },
  };
  return {
    sender,
    // Attempts under way finish (each within its timeout).
    close: async () => {
      closed = true;
      while (running.size > 0) await Promise.all([...running]);
      deps.agents?.close();
    },
  };
};
