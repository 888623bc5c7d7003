import { envBoolean, envPositiveMs } from "./parse-env.ts";

// Timing of a task's life, read by both the API (which applies callbacks) and the worker.
export const lifecycleEnv = {
  // How long an in-flight task may stay silent (no callback) before reconciliation polls the provider.
  CALLBACK_GRACE_MS: envPositiveMs.default(60_000),
  // Poll a silent task shortly after the provider's usual run time (true), or only once it has been
  // silent for CALLBACK_GRACE_MS (false: trust callbacks, poll as a last resort).
  POLL_AT_EXPECTED_END: envBoolean.default(true),
  // Upper bound of the poll backoff for a task that stays in flight.
  POLL_MAX_INTERVAL_MS: envPositiveMs.default(300_000),
  // How long a queued, submitting or archiving task may go without progress before the sweeper
  // re-drives its job (a job lost with Redis, a worker killed mid-job).
  STALL_RECHECK_MS: envPositiveMs.default(60_000),
};

export type LifecycleTiming = {
  callbackGraceMs: number;
  pollAtExpectedEnd: boolean;
  pollMaxIntervalMs: number;
  stallRecheckMs: number;
};

export const lifecycleTimingFrom = (env: {
  CALLBACK_GRACE_MS: number;
  POLL_AT_EXPECTED_END: boolean;
  POLL_MAX_INTERVAL_MS: number;
  STALL_RECHECK_MS: number;
}): LifecycleTiming => ({
  callbackGraceMs: env.CALLBACK_GRACE_MS,
  pollAtExpectedEnd: env.POLL_AT_EXPECTED_END,
  pollMaxIntervalMs: env.POLL_MAX_INTERVAL_MS,
  stallRecheckMs: env.STALL_RECHECK_MS,
});
