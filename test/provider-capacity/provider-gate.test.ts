import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createProviderGate } from "../../apps/domain/provider-capacity/provider-gate.ts";

let redis: Redis;
beforeAll(() => {
  redis = new Redis(inject("redisUrl"), { maxRetriesPerRequest: null });
});
afterAll(() => redis.disconnect());

const gate = (openMs = 150) =>
  createProviderGate(redis, `gate-test-${randomUUID().slice(0, 8)}`, {
    failureThreshold: 3,
    failureWindowMs: 60_000,
    openMs,
    pauseProbeMs: openMs,
  });

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("provider gate", () => {
  it("when failures come in a run, then the circuit opens; a success in between resets the run", async () => {
    const g = gate();
    await g.recordFailure("5000");
    await g.recordFailure("5000");
    await g.recordSuccess();
    await g.recordFailure("5000");
    await g.recordFailure("5000");
    expect((await g.check()).allowed).toBe(true);
    await g.recordFailure("5001 maintenance");
    const check = await g.check();
    expect(check).toMatchObject({ allowed: false, state: { mode: "open", reason: "5001 maintenance" } });
  });

  it("when the route itself is missing, then one failure opens the circuit", async () => {
    const g = gate();
    await g.recordFailure("404 on the route", { immediately: true });
    expect((await g.state()).mode).toBe("open");
  });

  it("when the open period ends, then exactly one probe goes through; its success closes the circuit", async () => {
    const g = gate(100);
    await g.recordFailure("x", { immediately: true });
    await pause(120);
    expect(await g.check()).toEqual({ allowed: true, probe: true });
    expect((await g.check()).allowed).toBe(false);
    await g.recordSuccess();
    expect(await g.check()).toEqual({ allowed: true, probe: false });
  });

  it("when a probe fails, then the circuit opens again for another period", async () => {
    const g = gate(100);
    await g.recordFailure("x", { immediately: true });
    await pause(120);
    expect((await g.check()).allowed).toBe(true);
    await g.recordFailure("still down");
    expect(await g.check()).toMatchObject({ allowed: false, state: { mode: "open", reason: "still down" } });
  });

  it("when the account needs a human, then it is paused with the reason until a probe succeeds", async () => {
    const g = gate(100);
    await g.pause("code 1101: account in arrears");
    expect(await g.check()).toMatchObject({ allowed: false, state: { mode: "paused", reason: "code 1101: account in arrears" } });
    await pause(120);
    expect(await g.check()).toEqual({ allowed: true, probe: true });
    await g.recordSuccess();
    expect((await g.state()).mode).toBe("closed");
  });
});
