import type { Db } from "../db/database.ts";
import type { ChangeHub, ChangeTopic } from "./change-hub.ts";
import { createWakeup } from "./wakeup.ts";

export type LiveDeps = {
  db: Db;
  hub: ChangeHub;
  // How often a follower re-reads Postgres even without a notification: the bound on how late the
  // final state can be when a pub/sub message is lost.
  resyncMs: number;
};

// What one read found: the messages to send (none when nothing changed) and whether the followed
// thing has ended (nothing more will come).
export type FeedStep<M> = { messages: M[]; terminal: boolean };

export type Feed<M> = {
  first: FeedStep<M>;
  // The next change; undefined once the signal aborted or the process is shutting down.
  next(signal: AbortSignal): Promise<FeedStep<M> | undefined>;
  // Releases the subscription; safe to call more than once.
  close(): void;
};

// Follows anything a change topic covers (a task, a batch). Notifications are only hints to call
// `read` again, which asks Postgres, the truth; a timer calls it anyway, so a lost message delays an
// update by at most resyncMs. `read` keeps its own cursor and answers only what is new.
export const openFeed = async <M>(
  deps: LiveDeps,
  watch: { accountId: string; topic: ChangeTopic },
  read: () => Promise<FeedStep<M>>,
): Promise<Feed<M>> => {
  const wakeup = createWakeup();
  // Listening starts before the first read: a change committed in between is seen by the read or
  // pokes the wakeup, never neither.
  const unwatch = deps.hub.watch(watch.accountId, watch.topic, () => wakeup.poke());
  let first: FeedStep<M>;
  try {
    first = await read();
  } catch (error) {
    unwatch();
    throw error;
  }
  return {
    first,
    async next(signal) {
      for (;;) {
        await wakeup.wait(deps.resyncMs, signal);
        if (signal.aborted || deps.hub.closed) return undefined;
        const step = await read();
        if (step.messages.length > 0 || step.terminal) return step;
      }
    },
    close: unwatch,
  };
};
