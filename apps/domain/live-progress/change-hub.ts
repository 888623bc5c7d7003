import type { RedisClient } from "../queues/redis-connection.ts";
import type { Logger } from "../logging/logger.ts";
import { accountChannel, parseTaskChange, type TaskChange } from "./task-change.ts";

// What a listener follows inside its account: one task, or every task of one batch.
export type ChangeTopic = { taskId: string } | { batchId: string };

// Called with the change, or with undefined when changes may have been missed (the subscriber
// reconnected, or the hub is closing): the listener then re-reads what it follows.
export type ChangeListener = (change: TaskChange | undefined) => void;

export type ChangeHub = {
  // Returns the function that stops listening; calling it twice is harmless.
  watch(accountId: string, topic: ChangeTopic, listener: ChangeListener): () => void;
  // For /readyz-style checks and the leak tests: what this process holds right now.
  stats(): { listeners: number; channels: number };
  readonly closed: boolean;
  close(): Promise<void>;
};

// Keyed by account too: a listener only ever hears of its own account's tasks.
const topicKey = (accountId: string, topic: ChangeTopic) =>
  "taskId" in topic ? `${accountId}/task/${topic.taskId}` : `${accountId}/batch/${topic.batchId}`;

// One Redis subscriber connection per API process, whatever the number of clients: channels are
// subscribed while at least one listener of that account exists, and each message is handed to the
// listeners of its task and of its batch.
export const createChangeHub = (subscriber: RedisClient, prefix: string, logger: Logger): ChangeHub => {
  const listeners = new Map<string, Set<ChangeListener>>();
  const channelUsers = new Map<string, number>();
  let closed = false;

  const deliver = (key: string, change: TaskChange | undefined) => {
    for (const listener of listeners.get(key) ?? []) {
      try {
        listener(change);
      } catch (error) {
        logger.error({ err: error, key }, "live listener failed");
      }
    }
  };
  const pokeEveryone = () => {
    for (const key of [...listeners.keys()]) deliver(key, undefined);
  };

  subscriber.on("message", (_channel: string, message: string) => {
    const change = parseTaskChange(message);
    if (!change) return logger.debug({ channel: _channel }, "malformed live message ignored");
    deliver(topicKey(change.accountId, { taskId: change.taskId }), change);
    if (change.batchId !== null) deliver(topicKey(change.accountId, { batchId: change.batchId }), change);
  });
  // ioredis re-subscribes by itself after a reconnect; what was published meanwhile is lost, so
  // every listener looks at Postgres again.
  let wasConnected = false;
  subscriber.on("ready", () => {
    if (wasConnected) pokeEveryone();
    wasConnected = true;
  });

  const useChannel = (channel: string, delta: 1 | -1) => {
    const users = (channelUsers.get(channel) ?? 0) + delta;
    if (users > 0) channelUsers.set(channel, users);
    else channelUsers.delete(channel);
    if (delta === 1 && users === 1) {
      subscriber.subscribe(channel).catch((error: unknown) => logger.warn({ err: error, channel }, "live subscribe failed; resyncing on a timer"));
    }
    if (delta === -1 && users === 0 && !closed) {
      subscriber.unsubscribe(channel).catch((error: unknown) => logger.debug({ err: error, channel }, "live unsubscribe failed"));
    }
  };

  return {
    watch(accountId, topic, listener) {
      if (closed) {
        queueMicrotask(() => listener(undefined));
        return () => undefined;
      }
      const key = topicKey(accountId, topic);
      const channel = accountChannel(prefix, accountId);
      const set = listeners.get(key) ?? new Set();
      // The same function registered twice would be one entry; wrap it so each watch is its own.
      const entry: ChangeListener = (change) => listener(change);
      set.add(entry);
      listeners.set(key, set);
      useChannel(channel, 1);
      let active = true;
      return () => {
        if (!active) return;
        active = false;
        set.delete(entry);
        if (set.size === 0 && listeners.get(key) === set) listeners.delete(key);
        useChannel(channel, -1);
      };
    },
    stats: () => ({ listeners: [...listeners.values()].reduce((sum, set) => sum + set.size, 0), channels: channelUsers.size }),
    get closed() {
      return closed;
    },
    async close() {
      if (closed) return;
      closed = true;
      // Every open stream and long-poll reads once more and ends, so the server can close.
      pokeEveryone();
      subscriber.disconnect();
    },
  };
};
