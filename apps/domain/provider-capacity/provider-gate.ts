import type { RedisClient } from "../queues/redis-connection.ts";
import { redisScript } from "../queues/redis-scripts.ts";

// Whether submissions may go to the provider right now, shared by every worker through Redis.
// `open`: the route answered 404 or kept failing (a circuit breaker); `paused`: the provider said the
// account needs a human (credentials, arrears, IP whitelist). Either way queued tasks wait without
// spending attempts, and after `until` one submission is let through as a probe.
export type GateMode = "closed" | "open" | "paused";
export type GateState = { mode: GateMode; reason: string; since: number; until: number };
export type GateCheck = { allowed: true; probe: boolean } | { allowed: false; state: GateState; retryInMs: number };

export type ProviderGate = {
  check(): Promise<GateCheck>;
  state(): Promise<GateState>;
  recordSuccess(): Promise<void>;
  // `immediately`: one is enough (the route itself answered 404); otherwise it takes a run of them.
  recordFailure(reason: string, options?: { immediately?: boolean }): Promise<void>;
  pause(reason: string): Promise<void>;
};

export type GateOptions = { failureThreshold: number; failureWindowMs: number; openMs: number; pauseProbeMs: number };

const gateScript = { name: "provider-gate", numberOfKeys: 3, files: [new URL("./scripts/gate.lua", import.meta.url)] };

// Every read and change of the gate is one run of scripts/gate.lua: atomic across workers, and timed
// by Redis' clock.
export const createProviderGate = (redis: RedisClient, prefix: string, options: GateOptions): ProviderGate => {
  const keys = [`${prefix}:provider:gate`, `${prefix}:provider:gate-failures`, `${prefix}:provider:gate-probe`];
  const run = redisScript(redis, gateScript);
  const call = async (op: "check" | "success" | "failure" | "pause", reason = "", immediately = false) => {
    const [mode, why, since, until, allowed, probe, retryInMs] = (await run(keys, [
      op,
      reason,
      immediately ? 1 : 0,
      options.failureThreshold,
      options.failureWindowMs,
      options.openMs,
      options.pauseProbeMs,
    ])) as [GateMode, string, number, number, number, number, number];
    return { state: { mode, reason: why, since: Number(since), until: Number(until) }, allowed: allowed === 1, probe: probe === 1, retryInMs: Number(retryInMs) };
  };

  return {
    state: async () => {
      const raw = await redis.hgetall(keys[0]!);
      if (!raw.mode || raw.mode === "closed") return { mode: "closed", reason: "", since: 0, until: 0 };
      return { mode: raw.mode as GateMode, reason: raw.reason ?? "", since: Number(raw.since), until: Number(raw.until) };
    },
    check: async () => {
      const result = await call("check");
      return result.allowed ? { allowed: true, probe: result.probe } : { allowed: false, state: result.state, retryInMs: result.retryInMs };
    },
    recordSuccess: async () => {
      await call("success");
    },
    recordFailure: async (reason, { immediately = false } = {}) => {
      await call("failure", reason, immediately);
    },
    pause: async (reason) => {
      await call("pause", reason);
    },
  };
};
