import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { Task } from "../../apps/domain/db/database.ts";
import { createChangeHub, type ChangeHub } from "../../apps/domain/live-progress/change-hub.ts";
import { accountChannel, createTaskChangeNotifier, type TaskChange } from "../../apps/domain/live-progress/task-change.ts";
import { createLogger } from "../../apps/domain/logging/logger.ts";

// The change hub on the real Redis: one subscriber connection, channels per account held while
// someone listens, each message routed to its task's and its batch's listeners.

const logger = createLogger("test", "silent", "json");
let publisher: Redis;
const hubs: ChangeHub[] = [];
beforeAll(() => {
  publisher = new Redis(inject("redisUrl"));
});
afterAll(async () => {
  await Promise.all(hubs.map((h) => h.close()));
  publisher.disconnect();
});

const newHub = () => {
  const prefix = `hub-test-${randomUUID().slice(0, 8)}`;
  const subscriber = new Redis(inject("redisUrl"), { maxRetriesPerRequest: null });
  const hub = createChangeHub(subscriber, prefix, logger);
  hubs.push(hub);
  return { hub, prefix, subscriber, notify: createTaskChangeNotifier(publisher, prefix, logger) };
};

// Collects what a listener receives and lets a test wait for the n-th delivery.
const recorder = () => {
  const got: Array<TaskChange | undefined> = [];
  let waiters: Array<() => void> = [];
  return {
    got,
    listener: (change: TaskChange | undefined) => {
      got.push(change);
      waiters.forEach((w) => w());
      waiters = [];
    },
    until: async (count: number, timeoutMs = 5_000) => {
      const deadline = Date.now() + timeoutMs;
      while (got.length < count) {
        if (Date.now() > deadline) throw new Error(`only ${got.length} of ${count} deliveries`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 100);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    },
  };
};

const task = (accountId: string, fields: { id?: string; status?: string; batchId?: string | null } = {}) =>
  ({ id: fields.id ?? randomUUID(), accountId, status: fields.status ?? "processing", batchId: fields.batchId ?? null }) as unknown as Task;

const subscribed = async (prefix: string, accountId: string) => {
  const channel = accountChannel(prefix, accountId);
  const [, count] = (await publisher.pubsub("NUMSUB", channel)) as [string, number];
  return count;
};

describe("change hub", () => {
  it("when tasks change, then each change reaches the listeners of its task and of its batch, and no one else", async () => {
    const { hub, prefix, notify } = newHub();
    const account = randomUUID();
    const batchId = randomUUID();
    const followed = task(account, { batchId });
    const taskListener = recorder();
    const batchListener = recorder();
    const otherListener = recorder();
    hub.watch(account, { taskId: followed.id }, taskListener.listener);
    hub.watch(account, { batchId }, batchListener.listener);
    hub.watch(randomUUID(), { taskId: followed.id }, otherListener.listener); // same task id, another account's channel
    await expect.poll(() => subscribed(prefix, account)).toBe(1);

    notify(task(account)); // another task, no batch: nobody here follows it
    notify(task(account, { batchId })); // another task of the batch
    notify(followed);
    await taskListener.until(1);
    await batchListener.until(2);
    expect(taskListener.got).toEqual([{ taskId: followed.id, accountId: account, status: "processing", batchId }]);
    expect(batchListener.got.map((c) => c?.batchId)).toEqual([batchId, batchId]);
    expect(batchListener.got.at(-1)?.taskId).toBe(followed.id);
    expect(otherListener.got).toEqual([]);
  });

  it("when listeners stop, then the account's channel is left once its last listener stops, and stopping twice is harmless", async () => {
    const { hub, prefix } = newHub();
    const account = randomUUID();
    const stopA = hub.watch(account, { taskId: randomUUID() }, () => undefined);
    const stopB = hub.watch(account, { batchId: randomUUID() }, () => undefined);
    expect(hub.stats()).toEqual({ listeners: 2, channels: 1 });
    await expect.poll(() => subscribed(prefix, account)).toBe(1);
    stopA();
    stopA();
    expect(hub.stats()).toEqual({ listeners: 1, channels: 1 });
    await expect.poll(() => subscribed(prefix, account)).toBe(1);
    stopB();
    expect(hub.stats()).toEqual({ listeners: 0, channels: 0 });
    await expect.poll(() => subscribed(prefix, account)).toBe(0);
  });

  it("when a message is malformed, then it is ignored and the next one is delivered", async () => {
    const { hub, prefix, notify } = newHub();
    const account = randomUUID();
    const followed = task(account);
    const listener = recorder();
    hub.watch(account, { taskId: followed.id }, listener.listener);
    await expect.poll(() => subscribed(prefix, account)).toBe(1);
    const channel = accountChannel(prefix, account);
    for (const bad of ["not json", "null", "[]", JSON.stringify({ taskId: followed.id }), JSON.stringify({ taskId: followed.id, accountId: account, status: "nope", batchId: null })]) {
      await publisher.publish(channel, bad);
    }
    notify(followed);
    await listener.until(1);
    expect(listener.got).toEqual([{ taskId: followed.id, accountId: account, status: "processing", batchId: null }]);
  });

  it("when the subscriber connection is lost and comes back, then every listener is told to re-read, and messages flow again", async () => {
    const { hub, prefix, subscriber, notify } = newHub();
    const account = randomUUID();
    const followed = task(account);
    const listener = recorder();
    hub.watch(account, { taskId: followed.id }, listener.listener);
    await expect.poll(() => subscribed(prefix, account)).toBe(1);
    subscriber.disconnect(true);
    await listener.until(1);
    expect(listener.got).toEqual([undefined]);
    await expect.poll(() => subscribed(prefix, account)).toBe(1);
    notify(followed);
    await listener.until(2);
    expect(listener.got[1]?.taskId).toBe(followed.id);
  });

  it("when the hub closes, then every listener is told once, and a later watch is told at once", async () => {
    const { hub } = newHub();
    const account = randomUUID();
    const listener = recorder();
    hub.watch(account, { taskId: randomUUID() }, listener.listener);
    await hub.close();
    expect(hub.closed).toBe(true);
    expect(listener.got).toEqual([undefined]);
    const late = recorder();
    hub.watch(account, { taskId: randomUUID() }, late.listener);
    await late.until(1);
    expect(late.got).toEqual([undefined]);
  });
});
