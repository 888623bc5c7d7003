import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createProviderSlots } from "../../apps/domain/provider-capacity/provider-slots.ts";

let redis: Redis;
beforeAll(() => {
  redis = new Redis(inject("redisUrl"), { maxRetriesPerRequest: null });
});
afterAll(() => redis.disconnect());

// Each test gets its own ledger under a fresh prefix on the real Redis.
const ledger = (capacity: number, recoverMs = 60_000) =>
  createProviderSlots(redis, `slots-test-${randomUUID().slice(0, 8)}`, { capacity, recoverMs });

describe("provider slot ledger", () => {
  it("when several wait, then each refusal says its place in line, by priority, so that only the first few wait in place", async () => {
    const slots = ledger(1);
    expect((await slots.acquire("holder", 1, 1)).ok).toBe(true);
    expect(await slots.acquire("late-bulk", 1, 9)).toMatchObject({ ok: false, place: 0 });
    expect(await slots.acquire("bulk", 1, 5)).toMatchObject({ ok: false, place: 0 });
    expect(await slots.acquire("late-bulk", 1, 9)).toMatchObject({ ok: false, place: 1 });
    // A task of higher priority (lower number) goes to the head of the line.
    expect(await slots.acquire("interactive", 1, 1)).toMatchObject({ ok: false, place: 0 });
    expect(await slots.acquire("bulk", 1, 5)).toMatchObject({ ok: false, place: 1 });
  });

  it("when tasks take slots, then the sum never exceeds capacity and a release frees exactly what was held", async () => {
    const slots = ledger(5);
    expect((await slots.acquire("a", 3, 1)).ok).toBe(true);
    expect((await slots.acquire("c", 2, 1)).ok).toBe(true);
    // Refused, and first in line (place 0) for the next release.
    expect(await slots.acquire("b", 3, 1)).toEqual({ ok: false, used: 5, effective: 5, place: 0, stepBackMs: 0 });
    expect((await slots.snapshot()).used).toBe(5);
    // Idempotent: a task that already holds slots gets them again without counting twice.
    expect((await slots.acquire("a", 3, 1)).ok).toBe(true);
    expect((await slots.snapshot()).used).toBe(5);
    expect(await slots.release("a")).toBe(3);
    expect(await slots.release("a")).toBe(0);
    expect((await slots.acquire("b", 3, 1)).ok).toBe(true);
    expect((await slots.snapshot()).holders).toEqual({ b: 3, c: 2 });
    await slots.close();
  });

  it("when a large task waits at the head of the line, then smaller ones only backfill around it", async () => {
    const slots = ledger(4);
    expect((await slots.acquire("running", 2, 5)).ok).toBe(true);
    // "big" needs 4 of 4: it waits, first in line (priority 1).
    expect((await slots.acquire("big", 4, 1)).ok).toBe(false);
    // 2 slots are free, but they are kept for "big": a later small task may not take them.
    expect((await slots.acquire("small", 1, 2)).ok).toBe(false);
    await slots.release("running");
    expect((await slots.acquire("small", 1, 2)).ok).toBe(false);
    expect((await slots.acquire("big", 4, 1)).ok).toBe(true);
    await slots.release("big");
    expect((await slots.acquire("small", 1, 2)).ok).toBe(true);
    await slots.close();
  });

  it("when a waiter leaves the line, then it no longer holds room for itself", async () => {
    const slots = ledger(3);
    expect((await slots.acquire("one", 1, 9)).ok).toBe(true);
    expect((await slots.acquire("head", 3, 1)).ok).toBe(false);
    expect((await slots.acquire("other", 1, 2)).ok).toBe(false);
    await slots.leaveLine("head");
    expect((await slots.acquire("other", 1, 2)).ok).toBe(true);
    await slots.close();
  });

  it("when a 1303 is confirmed, then effective capacity steps down by the refused size, never below what we hold, and comes back one slot per interval", async () => {
    const slots = ledger(6, 200);
    await slots.acquire("a", 2, 1);
    // Refused at level 5 (2 held + 3); a create accepted at level 5 proves it was noise.
    expect(await slots.lowerCapacity(3)).toBe(6);
    await slots.acquire("c", 3, 1);
    await slots.noteAccepted();
    await slots.release("c");
    expect(await slots.lowerCapacity(3)).toBe(6);
    // A create accepted below the refused level proves nothing: the second refusal confirms.
    await slots.noteAccepted();
    expect(await slots.lowerCapacity(3)).toBe(3);
    expect(await slots.lowerCapacity(3)).toBe(2);
    expect(await slots.lowerCapacity(1)).toBe(2);
    expect(await slots.acquire("b", 1, 1)).toEqual({ ok: false, used: 2, effective: 2, place: 0, stepBackMs: 0 });
    await new Promise((resolve) => setTimeout(resolve, 250));
    // One slot back after the interval.
    expect((await slots.acquire("b", 1, 1)).ok).toBe(true);
    expect((await slots.snapshot()).effective).toBe(3);
    await slots.close();
  });

  it("when slots are released, then a waiting worker is woken at once", async () => {
    const slots = ledger(1);
    await slots.acquire("holder", 1, 1);
    expect((await slots.acquire("waiter", 1, 1)).ok).toBe(false);
    // The release channel is subscribed on the first wait, which returns only once it is: a
    // release cannot then precede the subscription (a fixed pause could be too short when loaded).
    await slots.waitForRelease("warm-up", 1);
    const woken = slots.waitForRelease("waiter", 5_000).then(() => Date.now());
    const releasedAt = Date.now();
    await slots.release("holder");
    expect((await woken) - releasedAt).toBeLessThan(2_000);
    await slots.close();
  });
});
