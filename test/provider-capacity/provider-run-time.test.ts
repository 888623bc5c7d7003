import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createProviderRunTime, firstCheckDelayMs } from "../../apps/domain/provider-capacity/provider-run-time.ts";

let redis: Redis;
beforeAll(() => {
  redis = new Redis(inject("redisUrl"), { maxRetriesPerRequest: null });
});
afterAll(() => redis.disconnect());

describe("provider run time", () => {
  it("when tasks end, then the estimate is a moving average shared through Redis", async () => {
    const prefix = `runtime-test-${randomUUID().slice(0, 8)}`;
    const one = createProviderRunTime(redis, prefix);
    expect(await one.estimateMs()).toBeUndefined();
    await one.record(1_000);
    await one.record(2_000);
    // Another process reads the same value.
    expect(await createProviderRunTime(redis, prefix).estimateMs()).toBeCloseTo(1_200);
  });

  it("when creates' answers are noted, then a task's start on our clock is its created_at plus the smallest of the last 16 answer lags, in every process", async () => {
    const prefix = `runtime-test-${randomUUID().slice(0, 8)}`;
    const worker = createProviderRunTime(redis, prefix);
    expect(await worker.startOnOurClock(1_000)).toBeUndefined();
    // The provider's clock runs 5 s ahead of ours; answers took 40, 12 and 300 ms.
    worker.noteCreateAnswer(105_000, 100_040);
    worker.noteCreateAnswer(205_000, 200_012);
    worker.noteCreateAnswer(305_000, 300_300);
    expect(await worker.startOnOurClock(405_000)).toBe(400_012);
    // The callback receiver (another process) reads the same mapping from Redis.
    const receiver = createProviderRunTime(redis, prefix);
    expect(await receiver.startOnOurClock(405_000)).toBe(400_012);
    // A provider clock that jumps back 2 s: after 16 creates the old bound is gone.
    for (let i = 0; i < 16; i++) worker.noteCreateAnswer(500_000 + i, 502_050 + i);
    expect(await createProviderRunTime(redis, prefix).startOnOurClock(600_000)).toBe(602_050);
  });

  it("when the first check is scheduled, then it falls shortly after the usual run time, within the grace", () => {
    const submittedAt = new Date(10_000);
    // Before any task has ended there is no estimate: look after a second (the sweeper backs off).
    expect(firstCheckDelayMs(submittedAt, undefined, 60_000, 10_000)).toBe(1_000);
    expect(firstCheckDelayMs(submittedAt, 2_000, 60_000, 10_000)).toBe(2_110);
    // A processing callback a second later moves nothing: the expected end is the same moment.
    expect(firstCheckDelayMs(submittedAt, 2_000, 60_000, 11_000)).toBe(1_110);
    expect(firstCheckDelayMs(submittedAt, 2_000, 60_000, 30_000)).toBe(250);
    expect(firstCheckDelayMs(submittedAt, 600_000, 60_000, 10_000)).toBe(60_000);
  });
});
