import type { Redis } from "ioredis";

// The provider limits each account to a number of parallel slots (a task holds `n` from submission
// until it ends). Every worker shares one ledger in Redis: a hash of task id -> slots held. The sum
// is computed inside the scripts, so the ledger cannot drift from a separate counter.

const ACQUIRE = `
local holders, effectiveKey, reserveKey, loweredKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local taskId, n, configured, now, recoverMs = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('HEXISTS', holders, taskId) == 1 then return {1, -1, -1} end
local eff = tonumber(redis.call('GET', effectiveKey) or configured)
if eff > configured then eff = configured end
-- Additive recovery after a 1303 lowered the effective capacity.
if eff < configured then
  local lowered = tonumber(redis.call('GET', loweredKey) or 0)
  if now - lowered >= recoverMs then
    eff = eff + 1
    redis.call('SET', effectiveKey, eff)
    redis.call('SET', loweredKey, now)
  end
end
local used = 0
for _, v in ipairs(redis.call('HVALS', holders)) do used = used + tonumber(v) end
local reserved = 0
local reservation = redis.call('GET', reserveKey)
if reservation then
  local sep = string.find(reservation, ':', 1, true)
  local owner, size = string.sub(reservation, 1, sep - 1), tonumber(string.sub(reservation, sep + 1))
  -- A reservation that cannot fit the current capacity would block everyone: ignore it.
  if owner ~= taskId and size <= eff then reserved = size end
end
if used + n + reserved <= eff then
  redis.call('HSET', holders, taskId, n)
  if reservation and reserved == 0 then
    local sep = string.find(reservation, ':', 1, true)
    if string.sub(reservation, 1, sep - 1) == taskId then redis.call('DEL', reserveKey) end
  end
  return {1, used + n, eff}
end
return {0, used, eff}
`;

const RELEASE = `
local n = redis.call('HGET', KEYS[1], ARGV[1])
if not n then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], n)
return tonumber(n)
`;

// After a 1303 the provider accepts no more than what we hold now (the account may be shared).
const LOWER = `
local used = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do used = used + tonumber(v) end
local configured = tonumber(ARGV[1])
local eff = tonumber(redis.call('GET', KEYS[2]) or configured)
local lowered = math.max(1, math.min(eff, used))
redis.call('SET', KEYS[2], lowered)
redis.call('SET', KEYS[3], ARGV[2])
return lowered
`;

export type AcquireResult = { ok: true } | { ok: false; used: number; effective: number };
export type SlotSnapshot = { capacity: number; effective: number; used: number; holders: Record<string, number> };

export type ProviderSlots = {
  readonly capacity: number;
  acquire(taskId: string, n: number): Promise<AcquireResult>;
  // Idempotent: releasing a task that holds nothing is a no-op.
  release(taskId: string): Promise<number>;
  // Makes sure a task the provider counts is counted here too (after Redis lost the ledger).
  hold(taskId: string, n: number): Promise<void>;
  reserve(taskId: string, n: number, ttlMs: number): Promise<void>;
  lowerCapacity(): Promise<number>;
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
    acquire: async (taskId, n) => {
      const [ok, used, effective] = (await redis.eval(
        ACQUIRE,
        4,
        holders,
        key("effective"),
        key("reserve"),
        key("lowered-at"),
        taskId,
        n,
        options.capacity,
        Date.now(),
        options.recoverMs,
      )) as [number, number, number];
      return ok === 1 ? { ok: true } : { ok: false, used, effective };
    },
    release: async (taskId) => Number(await redis.eval(RELEASE, 2, holders, channel, taskId)),
    hold: async (taskId, n) => {
      await redis.hsetnx(holders, taskId, n);
    },
    reserve: async (taskId, n, ttlMs) => {
      const value = `${taskId}:${n}`;
      const current = await redis.get(key("reserve"));
      if (current === value) await redis.pexpire(key("reserve"), ttlMs);
      else if (!current) await redis.set(key("reserve"), value, "PX", ttlMs, "NX");
    },
    lowerCapacity: async () =>
      Number(await redis.eval(LOWER, 3, holders, key("effective"), key("lowered-at"), options.capacity, Date.now())),
    snapshot: async () => {
      const [raw, effective] = await Promise.all([redis.hgetall(holders), redis.get(key("effective"))]);
      const held = Object.fromEntries(Object.entries(raw).map(([id, n]) => [id, Number(n)]));
      return {
        capacity: options.capacity,
        effective: Math.min(options.capacity, Number(effective ?? options.capacity)),
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
