import type { Redis } from "ioredis";

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

const closed: GateState = { mode: "closed", reason: "", since: 0, until: 0 };

export const createProviderGate = (redis: Redis, prefix: string, options: GateOptions): ProviderGate => {
  const stateKey = `${prefix}:provider:gate`;
  const failuresKey = `${prefix}:provider:gate-failures`;
  const probeKey = `${prefix}:provider:gate-probe`;

  const state = async (): Promise<GateState> => {
    const raw = await redis.hgetall(stateKey);
    if (!raw.mode || raw.mode === "closed") return closed;
    return { mode: raw.mode as GateMode, reason: raw.reason ?? "", since: Number(raw.since), until: Number(raw.until) };
  };

  const open = async (mode: Exclude<GateMode, "closed">, reason: string, forMs: number) => {
    const current = await state();
    const now = Date.now();
    await redis.hset(stateKey, {
      mode,
      reason,
      since: current.mode === mode ? current.since : now,
      until: now + forMs,
    });
    await redis.del(probeKey);
  };

  return {
    state,
    check: async () => {
      const current = await state();
      if (current.mode === "closed") return { allowed: true, probe: false };
      const now = Date.now();
      if (now >= current.until) {
        // One probe at a time; it has until its own deadline to report back.
        const took = await redis.set(probeKey, "1", "PX", Math.max(options.openMs, 5_000), "NX");
        if (took === "OK") return { allowed: true, probe: true };
      }
      return { allowed: false, state: current, retryInMs: Math.max(250, current.until - now) };
    },
    recordSuccess: async () => {
      await redis.del(failuresKey);
      const mode = await redis.hget(stateKey, "mode");
      if (mode && mode !== "closed") await redis.del(stateKey, probeKey);
    },
    recordFailure: async (reason, { immediately = false } = {}) => {
      const failures = await redis.incr(failuresKey);
      if (failures === 1) await redis.pexpire(failuresKey, options.failureWindowMs);
      const current = await state();
      // A failed probe re-opens at once; otherwise only a run of failures (any success resets the
      // count) opens the circuit, so a sprinkle of 5xx among successes never does.
      if (immediately || current.mode === "open" || failures >= options.failureThreshold) {
        await open("open", reason, options.openMs);
      }
    },
    pause: (reason) => open("paused", reason, options.pauseProbeMs),
  };
};
