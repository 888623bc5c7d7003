import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createProviderRunTime } from "../../apps/domain/provider-capacity/provider-run-time.ts";
import { createProviderSlots } from "../../apps/domain/provider-capacity/provider-slots.ts";
import { seededRandom } from "../../apps/simulator/seeded-random.ts";

let redis: Redis;
beforeAll(() => {
  redis = new Redis(inject("redisUrl"), { maxRetriesPerRequest: null });
});
afterAll(() => redis.disconnect());

// Each test gets its own ledger under a fresh prefix on the real Redis.
const ledger = (capacity: number, recoverMs = 60_000) =>
  createProviderSlots(redis, `slots-test-${randomUUID().slice(0, 8)}`, { capacity, recoverMs });

// A ledger whose route has learnt a run time (backfilling needs one), with the prefix to reach its
// keys: the tests set holders' since (when their slots were taken) as a manual clock would.
const ledgerWithRunTime = async (capacity: number, runMs: number) => {
  const prefix = `slots-test-${randomUUID().slice(0, 8)}`;
  await createProviderRunTime(redis, prefix).record(runMs);
  const slots = createProviderSlots(redis, prefix, { capacity, recoverMs: 60_000 });
  const setSince = async (taskId: string, ms: number) => {
    await redis.hset(`${prefix}:provider:slots-since`, taskId, ms);
  };
  return { slots, setSince };
};
const redisNowMs = async () => {
  const [seconds, micros] = await redis.time();
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
};
// A run time so long that every holder of a test may end in any order (their windows overlap).
const HOUR = 3_600_000;

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

  // A wait whose end is only its own timeout (no release concerns it): a clock inside the ledger to
  // order other wakes against. close() ends it.
  const openWait = (slots: { waitForRelease(taskId: string, timeoutMs: number): Promise<void> }, taskId: string, timeoutMs: number) => {
    let over = false;
    void slots.waitForRelease(taskId, timeoutMs).then(() => (over = true));
    return { over: () => over };
  };

  it("when slots are released, then a waiting worker is woken at once", async () => {
    const slots = ledger(1);
    await slots.acquire("holder", 1, 1);
    expect((await slots.acquire("waiter", 1, 1)).ok).toBe(false);
    // The release channel is subscribed on the first wait, which returns only once it is: a
    // release cannot then precede the subscription (a fixed pause could be too short when loaded).
    await slots.waitForRelease("warm-up", 1);
    // "At once" as an order, not a wall-clock bound: a wait with the same timeout begun before it,
    // for a task the release does not concern, is still running when the waiter wakes.
    const reference = openWait(slots, "bystander", 5_000);
    const woken = slots.waitForRelease("waiter", 5_000);
    await slots.release("holder");
    await woken;
    expect(reference.over()).toBe(false);
    await slots.close();
  });

  it("when the head cannot use the free room and will not need it when it starts, then a smaller task behind it backfills now", async () => {
    const { slots } = await ledgerWithRunTime(4, HOUR);
    expect((await slots.acquire("running", 3, 5)).ok).toBe(true);
    // "big" needs 3, 1 is free: it waits at the head until "running" ends, when 4 will be free.
    expect((await slots.acquire("big", 3, 1)).ok).toBe(false);
    // The free slot: "big" cannot use it now, and at its start 4 - 1 still leaves it 3.
    expect((await slots.acquire("small", 1, 2)).ok).toBe(true);
    await slots.release("running");
    expect((await slots.acquire("big", 3, 1)).ok).toBe(true);
    expect((await slots.snapshot()).holders).toEqual({ big: 3, small: 1 });
    await slots.close();
  });

  it("when a release leaves room the head cannot use but a task behind it may backfill, then that task is woken", async () => {
    const { slots } = await ledgerWithRunTime(4, HOUR);
    expect((await slots.acquire("three", 3, 5)).ok).toBe(true);
    expect((await slots.acquire("one", 1, 5)).ok).toBe(true);
    expect((await slots.acquire("big", 3, 1)).ok).toBe(false);
    expect((await slots.acquire("small", 1, 2)).ok).toBe(false);
    await slots.waitForRelease("warm-up", 1);
    // The wait's own timeout (20 s) would end it too: woken by the release, it ends while a wait
    // with that timeout begun before it, for a task the release does not concern, still runs.
    const reference = openWait(slots, "bystander", 20_000);
    const woken = slots.waitForRelease("small", 20_000);
    // 1 free: "big" needs 3 and starts when "three" ends, with 4 - 1 still enough.
    await slots.release("one");
    await woken;
    expect(reference.over()).toBe(false);
    expect((await slots.acquire("small", 1, 2)).ok).toBe(true);
    await slots.close();
  });

  it("when a holder that may end first would let the head start, then a task behind it does not take the room the head would need", async () => {
    const { slots } = await ledgerWithRunTime(4, HOUR);
    expect((await slots.acquire("one", 1, 5)).ok).toBe(true);
    expect((await slots.acquire("two", 2, 5)).ok).toBe(true);
    expect((await slots.acquire("big", 3, 1)).ok).toBe(false);
    // Should "two" end first, "big" starts with 1 + 2 free: a backfilled task would delay it.
    expect((await slots.acquire("small", 1, 2)).ok).toBe(false);
    await slots.release("two");
    expect((await slots.acquire("big", 3, 1)).ok).toBe(true);
    await slots.close();
  });

  it("when the learnt run time says which holder ends first, then only the holders that may end first decide", async () => {
    const { slots, setSince } = await ledgerWithRunTime(4, 60_000);
    expect((await slots.acquire("early", 2, 5)).ok).toBe(true);
    expect((await slots.acquire("late", 1, 5)).ok).toBe(true);
    expect((await slots.acquire("head", 2, 1)).ok).toBe(false);
    // Both just taken: "late" may end first, and with its slot "head" (2) could start: no backfill.
    expect((await slots.acquire("small", 1, 2)).ok).toBe(false);
    // "early" was taken 50 s ago (ends within ~10-13 s), "late" now (ends in 60 s at the earliest):
    // "early" ends first and frees 2 + 1 for a head of 2; the free slot is not needed.
    await setSince("early", (await redisNowMs()) - 50_000);
    expect((await slots.acquire("small", 1, 2)).ok).toBe(true);
    await slots.close();
  });

  it("when a holder's start is unknown (re-held after Redis lost the ledger) or no run time is learnt, then nothing backfills", async () => {
    const { slots } = await ledgerWithRunTime(4, HOUR);
    await slots.hold("re-held", 3);
    expect((await slots.acquire("big", 3, 1)).ok).toBe(false);
    expect((await slots.acquire("small", 1, 2)).ok).toBe(false);
    const unlearnt = ledger(4);
    expect((await unlearnt.acquire("running", 3, 5)).ok).toBe(true);
    expect((await unlearnt.acquire("big", 3, 1)).ok).toBe(false);
    expect((await unlearnt.acquire("small", 1, 2)).ok).toBe(false);
    await Promise.all([slots.close(), unlearnt.close()]);
  });

  it("when tasks backfill behind a waiting head, then whatever order the holders end in, the head starts as soon as it would have without them", async () => {
    const random = seededRandom(18);
    const pick = (min: number, max: number) => min + Math.floor(random() * (max - min + 1));
    let backfilled = 0;
    let refused = 0;
    for (let scenario = 0; scenario < 40; scenario++) {
      const capacity = pick(3, 8);
      const { slots } = await ledgerWithRunTime(capacity, HOUR);
      const holders: { id: string; n: number }[] = [];
      let used = 0;
      while (used < capacity - 1) {
        const n = pick(1, Math.min(3, capacity - 1 - used));
        const id = `holder-${holders.length}`;
        expect((await slots.acquire(id, n, 9)).ok).toBe(true);
        holders.push({ id, n });
        used += n;
      }
      const headN = pick(capacity - used + 1, capacity);
      expect((await slots.acquire("head", headN, 1)).ok).toBe(false);
      // Tasks behind the head try, in line order; those let in hold their slots past the head's start.
      let backfilledSlots = 0;
      for (let i = 0; i < 4; i++) {
        // The head asks again (still refused), as its waiting job does: a waiter silent for 3 s
        // drops out of the line, which a very slow machine could otherwise make happen here.
        expect((await slots.acquire("head", headN, 1)).ok).toBe(false);
        const n = pick(1, 2);
        if ((await slots.acquire(`behind-${i}`, n, 2 + i)).ok) {
          backfilledSlots += n;
          backfilled++;
        } else refused++;
      }
      // The holders end in a random order; the head must start at the first end at which it would
      // have started with no backfilling.
      const order = [...holders].sort(() => random() - 0.5);
      for (const [i, holder] of order.entries()) {
        await slots.release(holder.id);
        const freeWithoutBackfill = capacity - order.slice(i + 1).reduce((total, h) => total + h.n, 0);
        const started = (await slots.acquire("head", headN, 1)).ok;
        if (freeWithoutBackfill >= headN) {
          expect(started, `scenario ${scenario}: capacity ${capacity}, head ${headN}, backfilled ${backfilledSlots}, ended ${i + 1} of ${order.length}`).toBe(true);
          break;
        }
      }
      await slots.close();
    }
    // The scenarios did exercise both answers.
    expect(backfilled).toBeGreaterThan(5);
    expect(refused).toBeGreaterThan(5);
  });
});
