import type { RedisClient } from "../queues/redis-connection.ts";
import { redisScript } from "../queues/redis-scripts.ts";

// How long the provider takes to finish a task, as a moving average over recent tasks, shared by
// every process. Polling is scheduled around it: a lost "succeed" callback is noticed soon after the
// task would have ended, instead of a fixed grace after the last callback, so its slots come back
// quickly (measured by `npm run bench:provider`).
export type ProviderRunTime = {
  estimateMs(): Promise<number | undefined>;
  record(durationMs: number): Promise<void>;
};

const recordScript = { name: "provider-run-time-record", numberOfKeys: 1, files: [new URL("./scripts/run-time-record.lua", import.meta.url)] };

export const createProviderRunTime = (redis: RedisClient, prefix: string): ProviderRunTime => {
  const key = `${prefix}:provider:run-ms`;
  const record = redisScript(redis, recordScript);
  // Read on every report; a second-old value is as good as a fresh one.
  let cached: { value: number | undefined; at: number } | undefined;
  return {
    estimateMs: async () => {
      if (cached && Date.now() - cached.at < 1_000) return cached.value;
      const raw = await redis.get(key);
      cached = { value: raw === null ? undefined : Number(raw), at: Date.now() };
      return cached.value;
    },
    record: async (durationMs) => {
      if (!(durationMs > 0)) return;
      const next = Number(await record([key], [durationMs]));
      cached = { value: next, at: Date.now() };
    },
  };
};

// When to look at an in-flight task next if nothing is heard: shortly after the provider's usual
// run time since submission, but never later than the callback grace allows.
export const firstCheckDelayMs = (submittedAt: Date, estimateMs: number | undefined, graceMs: number, now = Date.now()) => {
  // No task has ended yet (a fresh deployment): look soon, then back off with age (see reconcile),
  // rather than leave the first wave's lost callbacks unnoticed for the whole grace.
  if (estimateMs === undefined) return Math.min(graceMs, UNKNOWN_RUN_TIME_FIRST_CHECK_MS);
  return Math.min(graceMs, Math.max(MIN_POLL_DELAY_MS, expectedEndMs(submittedAt, estimateMs) - now));
};

// When a task submitted then should have ended, with a small margin for the end callback to come
// first (it normally arrives within tens of ms; a poll that comes first only costs a GET, and finds
// the end just as well). The margin is kept small because a lost callback's slots stay held until
// this poll (`npm run bench:provider`, end detection by poll).
export const expectedEndMs = (submittedAt: Date, estimateMs: number) => submittedAt.getTime() + estimateMs * 1.03 + 50;

export const MIN_POLL_DELAY_MS = 250;
const UNKNOWN_RUN_TIME_FIRST_CHECK_MS = 1_000;
