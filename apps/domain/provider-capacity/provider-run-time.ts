import type { RedisClient } from "../queues/redis-connection.ts";
import { redisScript } from "../queues/redis-scripts.ts";

// How long the provider takes to finish a task, as a moving average over recent tasks, shared by
// every process. Polling is scheduled around it: a lost "succeed" callback is noticed soon after the
// task would have ended, instead of a fixed grace after the last callback, so its slots come back
// quickly (measured by `npm run bench:provider`).
export type ProviderRunTime = {
  estimateMs(): Promise<number | undefined>;
  record(durationMs: number): Promise<void>;
  // A create's answer: the provider's created_at (its clock) and when the answer reached us (ours).
  noteCreateAnswer(createdAtMs: number, answeredAtMs: number): void;
  // When a task the provider stamped createdAtMs started, on our clock, once creates' answers
  // (any process's) taught it (see ANSWER_LAG_WINDOW).
  startOnOurClock(createdAtMs: number): Promise<number | undefined>;
};

const recordScript = { name: "provider-run-time-record", numberOfKeys: 1, files: [new URL("./scripts/run-time-record.lua", import.meta.url)] };

export const createProviderRunTime = (redis: RedisClient, prefix: string): ProviderRunTime => {
  const key = `${prefix}:provider:run-ms`;
  const record = redisScript(redis, recordScript);
  const lagKey = `${prefix}:provider:answer-lags`;
  // Read when a report is applied, like the estimate; this process's own answers join at once.
  let lags: { values: number[]; at: number } | undefined;
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
    noteCreateAnswer: (createdAtMs, answeredAtMs) => {
      const lag = answeredAtMs - createdAtMs;
      if (!Number.isFinite(lag) || Math.abs(lag) > MAX_CLOCK_GAP_MS) return;
      lags?.values.unshift(lag);
      // Shared for the other processes (the callback receiver sets the anchor when the provider's
      // first callback beats the create's answer); a lost write only leaves them an older bound.
      redis
        .multi()
        .lpush(lagKey, String(lag))
        .ltrim(lagKey, 0, ANSWER_LAG_WINDOW - 1)
        .exec()
        .catch(() => undefined);
    },
    startOnOurClock: async (createdAtMs) => {
      if (!lags || Date.now() - lags.at >= 1_000) {
        const raw = await redis.lrange(lagKey, 0, ANSWER_LAG_WINDOW - 1);
        lags = { values: raw.map(Number).filter(Number.isFinite), at: Date.now() };
      }
      const recent = lags.values.slice(0, ANSWER_LAG_WINDOW);
      return recent.length === 0 ? undefined : createdAtMs + Math.min(...recent);
    },
  };
};

// A task's expected end is counted from when the provider started it. Our own clock only sees the
// create's answer, which comes after the start by the answer's way back (and, under load, a wait for
// our event loop): every poll of a lost end callback came that much late, its slots held meanwhile.
// The provider's created_at is on its clock, off ours by an unknown offset; each create's answer
// bounds it (answered >= started on our clock, so answered - created_at >= -offset), and the
// smallest of the recent (answered - created_at) is the tightest bound: created_at plus it is never
// before the true start (no early poll) and, for a create's own answer, never after that answer.
// Only the last few creates count (shared through Redis by every process of the route), so a
// provider clock that jumps is followed within that many creates.
const ANSWER_LAG_WINDOW = 16;
// A gap beyond this between the clocks is not a skew to correct but a provider's odd timestamp.
const MAX_CLOCK_GAP_MS = 10 * 60_000;

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
