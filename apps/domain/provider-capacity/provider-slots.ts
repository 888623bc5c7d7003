import type { Redis } from "ioredis";

// The provider limits each account to a number of parallel slots (a task holds `n` from submission
// until it ends). Every worker shares one ledger in Redis: a hash of task id -> slots held. The sum
// is computed inside the scripts, so the ledger cannot drift from a separate counter.

// Tasks waiting for slots queue up in a sorted set (score = priority, ties in task id order, which
// is creation order for UUIDv7). The head waiter's slots are kept free for it: others may only
// backfill around it, so a large task is never starved by small ones and priority holds.
// A waiter not seen for staleMs (its worker died, or its job went back to the queue) drops out.
const ACQUIRE = `
local holders, effectiveKey, loweredKey, waiters, seen, wanted = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local taskId, n, configured, now, recoverMs = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local priority, staleMs = tonumber(ARGV[6]), tonumber(ARGV[7])
if redis.call('HEXISTS', holders, taskId) == 1 then return {1, -1, -1} end
local eff = tonumber(redis.call('GET', effectiveKey) or configured)
if eff > configured then eff = configured end
-- Additive recovery after a 1303 lowered the effective capacity: one slot per recoverMs that has
-- passed, idle time included (snapshot() computes the same for /readyz).
if eff < configured then
  local lowered = tonumber(redis.call('GET', loweredKey) or 0)
  local steps = math.floor((now - lowered) / recoverMs)
  if steps > 0 then
    eff = math.min(configured, eff + steps)
    redis.call('SET', effectiveKey, eff)
    redis.call('SET', loweredKey, lowered + steps * recoverMs)
  end
end
redis.call('ZADD', waiters, 'NX', priority, taskId)
redis.call('HSET', seen, taskId, now)
redis.call('HSET', wanted, taskId, n)
local reserved = 0
for _, member in ipairs(redis.call('ZRANGE', waiters, 0, 31)) do
  local at = tonumber(redis.call('HGET', seen, member) or 0)
  if now - at > staleMs then
    redis.call('ZREM', waiters, member)
    redis.call('HDEL', seen, member)
    redis.call('HDEL', wanted, member)
  else
    if member ~= taskId then
      local size = tonumber(redis.call('HGET', wanted, member) or 0)
      -- A head that cannot fit the current capacity would block everyone: do not keep room for it.
      if size <= eff then reserved = size end
    end
    break
  end
end
local used = 0
for _, v in ipairs(redis.call('HVALS', holders)) do used = used + tonumber(v) end
if used + n + reserved <= eff then
  redis.call('HSET', holders, taskId, n)
  redis.call('ZREM', waiters, taskId)
  redis.call('HDEL', seen, taskId)
  redis.call('HDEL', wanted, taskId)
  return {1, used + n, eff}
end
-- Where the task stands in line (0 = head), for the caller to decide whether to wait in place.
return {0, used, eff, redis.call('ZRANK', waiters, taskId) or -1}
`;

const LEAVE = `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
`;

const RELEASE = `
local n = redis.call('HGET', KEYS[1], ARGV[1])
if not n then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], n)
return tonumber(n)
`;

// After a 1303 the provider accepted less than our ledger allowed (the account is shared, or its
// limit is lower than configured). One refusal may be noise; a second one, before any create has
// been accepted at the level refused (what we held plus the refused task), confirms it. Then step
// down by the refused task's size, never below what we hold: a shared account walks the capacity
// down in a few refusals (which cost nothing), and a stray 1303 costs nothing.
const LOWER = `
local used = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do used = used + tonumber(v) end
local configured, now, recoverMs, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local level = used + n
local known = tonumber(redis.call('GET', KEYS[5]))
if not known or level < known then redis.call('SET', KEYS[5], level) end
local run = redis.call('INCR', KEYS[4])
local eff = tonumber(redis.call('GET', KEYS[2]) or configured)
if eff < configured then
  local since = tonumber(redis.call('GET', KEYS[3]) or 0)
  eff = math.min(configured, eff + math.floor((now - since) / recoverMs))
end
if run < 2 then return eff end
local lowered = math.max(1, math.min(eff, math.max(used, eff - n)))
redis.call('SET', KEYS[2], lowered)
redis.call('SET', KEYS[3], now)
return lowered
`;

// A create accepted at (or above) the level a 1303 refused proves that refusal was noise.
const ACCEPTED = `
local level = tonumber(redis.call('GET', KEYS[2]))
if not level then return 0 end
local used = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do used = used + tonumber(v) end
if used >= level then redis.call('DEL', KEYS[2], KEYS[3]) return 1 end
return 0
`;

// A waiting job re-attempts at least once a second (see waitForRelease's timeout in submit-task).
const WAITER_STALE_MS = 3_000;

export type AcquireResult = { ok: true } | { ok: false; used: number; effective: number; place: number };
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
  // Resolves when any slot is released (or after timeoutMs, in case a message was missed).
  waitForRelease(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
};

export const createProviderSlots = (
  redis: Redis,
  prefix: string,
  options: { capacity: number; recoverMs: number },
): ProviderSlots => {
  const key = (name: string) => `${prefix}:provider:${name}`;
  const holders = key("slots");
  const channel = key("slots-freed");
  let subscriber: Redis | undefined;
  const waiters = new Set<() => void>();

  const ensureSubscribed = async () => {
    if (subscriber) return;
    subscriber = redis.duplicate();
    subscriber.on("error", () => undefined); // the main connection already logs Redis errors
    subscriber.on("message", () => {
      for (const wake of [...waiters]) wake();
    });
    await subscriber.subscribe(channel);
  };

  return {
    capacity: options.capacity,
    acquire: async (taskId, n, priority) => {
      const [ok, used, effective, place] = (await redis.eval(
        ACQUIRE,
        6,
        holders,
        key("effective"),
        key("lowered-at"),
        key("waiters"),
        key("waiter-seen"),
        key("waiter-wants"),
        taskId,
        n,
        options.capacity,
        Date.now(),
        options.recoverMs,
        priority,
        WAITER_STALE_MS,
      )) as [number, number, number, number?];
      return ok === 1 ? { ok: true } : { ok: false, used, effective, place: place ?? -1 };
    },
    leaveLine: async (taskId) => {
      await redis.eval(LEAVE, 3, key("waiters"), key("waiter-seen"), key("waiter-wants"), taskId);
    },
    release: async (taskId) => Number(await redis.eval(RELEASE, 2, holders, channel, taskId)),
    hold: async (taskId, n) => {
      await redis.hsetnx(holders, taskId, n);
    },
    lowerCapacity: async (refusedSlots) =>
      Number(
        await redis.eval(
          LOWER,
          5,
          holders,
          key("effective"),
          key("lowered-at"),
          key("refusals"),
          key("refused-level"),
          options.capacity,
          Date.now(),
          options.recoverMs,
          refusedSlots,
        ),
      ),
    noteAccepted: async () => {
      await redis.eval(ACCEPTED, 3, holders, key("refused-level"), key("refusals"));
    },
    snapshot: async () => {
      const [raw, effective, loweredAt] = await Promise.all([
        redis.hgetall(holders),
        redis.get(key("effective")),
        redis.get(key("lowered-at")),
      ]);
      const held = Object.fromEntries(Object.entries(raw).map(([id, n]) => [id, Number(n)]));
      const stored = Math.min(options.capacity, Number(effective ?? options.capacity));
      const recovered = stored < options.capacity ? Math.floor((Date.now() - Number(loweredAt ?? 0)) / options.recoverMs) : 0;
      return {
        capacity: options.capacity,
        // What the next acquire will find: the time-based recovery counts even while nothing acquires.
        effective: Math.min(options.capacity, stored + Math.max(0, recovered)),
        used: Object.values(held).reduce((a, b) => a + b, 0),
        holders: held,
      };
    },
    waitForRelease: async (timeoutMs) => {
      await ensureSubscribed();
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, timeoutMs);
        waiters.add(wake);
      });
    },
    close: async () => {
      for (const wake of [...waiters]) wake();
      subscriber?.disconnect();
    },
  };
};
