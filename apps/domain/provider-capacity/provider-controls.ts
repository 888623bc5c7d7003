import type { RedisClient } from "../queues/redis-connection.ts";
import { z } from "zod";
import { envPositiveMs } from "../config/parse-env.ts";
import { createProviderGate, type ProviderGate } from "./provider-gate.ts";
import { createProviderRunTime, type ProviderRunTime } from "./provider-run-time.ts";
import { createProviderSlots, type ProviderSlots } from "./provider-slots.ts";

// One provider account (a route, see provider-route-set.ts): its slots and its gate live under `prefix`.
export const providerControlEnv = {
  PROVIDER_CAPACITY: z.coerce.number().int().min(1).max(10_000).default(5),
  // After a 1303 lowered the effective capacity, one slot comes back per this interval.
  PROVIDER_CAPACITY_RECOVER_MS: envPositiveMs.default(10_000),
  CIRCUIT_FAILURE_THRESHOLD: z.coerce.number().int().min(1).default(5),
  CIRCUIT_FAILURE_WINDOW_MS: envPositiveMs.default(60_000),
  CIRCUIT_OPEN_MS: envPositiveMs.default(30_000),
  PAUSE_PROBE_MS: envPositiveMs.default(300_000),
};

export type ControlEnv = { [K in keyof typeof providerControlEnv]: z.output<(typeof providerControlEnv)[K]> };

export type ProviderControls = { slots: ProviderSlots; gate: ProviderGate; runTime: ProviderRunTime };

export const createProviderControls = (redis: RedisClient, prefix: string, env: ControlEnv): ProviderControls => ({
  slots: createProviderSlots(redis, prefix, { capacity: env.PROVIDER_CAPACITY, recoverMs: env.PROVIDER_CAPACITY_RECOVER_MS }),
  gate: createProviderGate(redis, prefix, {
    failureThreshold: env.CIRCUIT_FAILURE_THRESHOLD,
    failureWindowMs: env.CIRCUIT_FAILURE_WINDOW_MS,
    openMs: env.CIRCUIT_OPEN_MS,
    pauseProbeMs: env.PAUSE_PROBE_MS,
  }),
  runTime: createProviderRunTime(redis, prefix),
});
