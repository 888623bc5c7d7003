import type { RedisClient } from "../queues/redis-connection.ts";
import { redisScript, type ScriptSpec } from "../queues/redis-scripts.ts";

// The provider limits each account to a number of parallel slots (a task holds `n` from submission
// until it ends). Every worker shares one ledger in Redis: a hash of task id -> slots held. The sum
// is computed inside the scripts (scripts/slot-*.lua), so the ledger cannot drift from a separate
// counter. Every key of one ledger shares the caller's hash tag (one cluster slot per route).
//
// Tasks waiting for slots queue up in a sorted set (score = priority, ties in task id order, which
// is creation order for UUIDv7). Room is kept for the waiters ahead: a task behind the head of the
// line (the first waiter that does not fit) only backfills room the head cannot use now and, by
// the learnt run time, will not need when it starts (EASY backfilling, slot-ledger.lib.lua), so a
// large task is never starved by small ones and its start is not delayed by them. A release
// names the waiters at the head that fit the freed room on the route's channel, and only their jobs
// wake, in whichever worker they wait: Redis commands per task do not grow with the workers.

const script = (name: string, numberOfKeys: number): ScriptSpec => ({
  name,
  numberOfKeys,
  files: [new URL("./scripts/slot-ledger.lib.lua", import.meta.url), new URL(`./scripts/${name}.lua`, import.meta.url)],
});
const scripts = {
  acquire: script("slot-acquire", 7),
  release: script("slot-release", 7),
  leave: script("slot-leave", 7),
  snapshot: script("slot-snapshot", 7),
  lower: script("slot-lower", 9),
  accepted: script("slot-accepted", 9),
};

// A waiting job re-attempts at least once a second (see waitForRelease's timeout in pick-route);
// one absent longer drops out of the line (its worker died, or its job went back to the queue).
const WAITER_STALE_MS = 3_000;
// A job far back in line steps back to the queue this long per `capacity` places ahead of it, while
// the provider's run time is not known yet (slot-acquire.lua).
export const STEP_BACK_MS = 250;
const STEP_BACK_MAX_MS = 15_000;

export type AcquireResult = { ok: true } | { ok: false; used: number; effective: number; place: number; stepBackMs: number };
export type SlotSnapshot = { capacity: number; effective: number; used: number; holders: Record<string, number> };

export type ProviderSlots = {
  readonly capacity: number;
  // `priority`: lower goes first (BullMQ's convention); a failed attempt leaves the task waiting in line.
  acquire(taskId: string, n: number, priority: number): Promise<AcquireResult>;
  // Leaves the line without slots (the job goes back to the queue or gives up).
  leaveLine(taskId: string): Promise<void>;
  // Idempotent: releasing a task that holds nothing is a no-op.
  release(taskId: string): Promise<number>;
  // Makes sure a task the provider counts is counted here too (after Redis lost the ledger).
  hold(taskId: string, n: number): Promise<void>;
  // `refusedSlots`: the size of the task the provider refused with 1303.
  lowerCapacity(refusedSlots: number): Promise<number>;
  // A create the provider accepted while we hold at least the refused level clears the refusals.
  noteAccepted(): Promise<void>;
  snapshot(): Promise<SlotSnapshot>;
  // Resolves when a release names this task (its turn may have come), or after timeoutMs (the
  // safety net: a message missed, or room freed by capacity recovering).
  waitForRelease(taskId: string, timeoutMs: number): Promise<void>;
  close(): Promise<void>;
};

export const createProviderSlots = (redis: RedisClient, prefix: string, options: { capacity: number; recoverMs: number }): ProviderSlots => {
  const key = (name: string) => `${prefix}:provider:${name}`;
  // The run time is the one provider-run-time.ts learns for this route (backfilling reads it).
  const ledgerKeys = [key("slots"), key("effective"), key("lowered-at"), key("waiters"), key("waiter-info"), key("slots-since"), key("run-ms")] as const;
  const refusalKeys = [...ledgerKeys, key("refusals"), key("refused-level")] as const;
  const channel = key("slots-freed");
  const run = Object.fromEntries(Object.entries(scripts).map(([name, spec]) => [name, redisScript(redis, spec)])) as Record<
    keyof typeof scripts,
    ReturnType<typeof redisScript>
  >;
  let subscriber: RedisClient | undefined;
  let subscribed: Promise<unknown> | undefined;
  const waiters = new Map<string, Set<() => void>>();

  const ensureSubscribed = () =>
    (subscribed ??= (async () => {
      subscriber = redis.duplicate();
      subscriber.on("error", () => undefined); // the main connection already logs Redis errors
      subscriber.on("message", (_channel: string, message: string) => {
        for (const taskId of message.split(",")) for (const wake of [...(waiters.get(taskId) ?? [])]) wake();
      });
      await subscriber.subscribe(channel);
    })().catch((error: unknown) => {
      // Not subscribed: waiters fall back on their timeout, and the next wait tries again.
      subscribed = undefined;
      subscriber?.disconnect();
      throw error;
    }));

  return {
    capacity: options.capacity,
    acquire: async (taskId, n, priority) => {
      const [ok, used, effective, place, stepBackMs] = (await run.acquire(ledgerKeys, [
        taskId,
        n,
        options.capacity,
        options.recoverMs,
        priority,
        WAITER_STALE_MS,
        STEP_BACK_MS,
        STEP_BACK_MAX_MS,
      ])) as [number, number, number, number, number];
      return ok === 1 ? { ok: true } : { ok: false, used, effective, place, stepBackMs };
    },
    leaveLine: async (taskId) => {
      await run.leave(ledgerKeys, [taskId, options.capacity, options.recoverMs, channel]);
    },
    release: async (taskId) => Number(await run.release(ledgerKeys, [taskId, options.capacity, options.recoverMs, channel])),
    hold: async (taskId, n) => {
      await redis.hsetnx(ledgerKeys[0], taskId, n);
    },
    lowerCapacity: async (refusedSlots) => Number(await run.lower(refusalKeys, [options.capacity, options.recoverMs, refusedSlots])),
    noteAccepted: async () => {
      await run.accepted(refusalKeys, []);
    },
    snapshot: async () => {
      const [effective, flat] = (await run.snapshot(ledgerKeys, [options.capacity, options.recoverMs])) as [number, string[]];
      const holders: Record<string, number> = {};
      for (let i = 0; i + 1 < flat.length; i += 2) holders[flat[i]!] = Number(flat[i + 1]);
      return { capacity: options.capacity, effective, used: Object.values(holders).reduce((a, b) => a + b, 0), holders };
    },
    waitForRelease: async (taskId, timeoutMs) => {
      await ensureSubscribed().catch(() => undefined);
      await new Promise<void>((resolve) => {
        const set = waiters.get(taskId) ?? new Set();
        waiters.set(taskId, set);
        const wake = () => {
          clearTimeout(timer);
          set.delete(wake);
          if (set.size === 0 && waiters.get(taskId) === set) waiters.delete(taskId);
          resolve();
        };
        const timer = setTimeout(wake, timeoutMs);
        set.add(wake);
      });
    },
    close: async () => {
      for (const set of [...waiters.values()]) for (const wake of [...set]) wake();
      subscriber?.disconnect();
    },
  };
};
