import { describe, expect, it } from "vitest";
import { createDownloadShares, type DownloadShare } from "../../apps/worker/processors/check-source.processor.ts";

// The per-account share of a worker's downloads: jobs past the share wait in place (no trip round
// the queue) up to a bound that leaves other accounts a free job slot, and step back beyond it.
const released = (share: DownloadShare) => {
  if (!("release" in share)) throw new Error(`expected a share, got a step back of ${share.busyForMs} ms`);
  return share.release;
};

describe("download shares", () => {
  it("when an account has its share running, then its next jobs wait in place and each takes over a share as one ends, in order", async () => {
    const start = createDownloadShares(2, 8);
    const [a, b] = [released(await start("a")), released(await start("a"))];
    const order: string[] = [];
    const third = start("a").then((share) => (order.push("third"), share));
    const fourth = start("a").then((share) => (order.push("fourth"), share));
    // Another account is not held up by the first one's waiters.
    released(await start("b"))();
    expect(order).toEqual([]);
    a();
    const thirdRelease = released(await third);
    expect(order).toEqual(["third"]);
    b();
    released(await fourth)();
    thirdRelease();
    // All shares back: the account starts afresh at once.
    released(await start("a"))();
  });

  it("when an account's waiting room is full, then its further jobs step back longer the more wait ahead, and other accounts still get theirs", async () => {
    // 8 job slots, 2 per account: an account holds at most 6 (2 running, 4 waiting).
    const start = createDownloadShares(2, 8);
    released(await start("a"));
    released(await start("a"));
    const waiters = Array.from({ length: 4 }, () => start("a"));
    const stepped = await start("a");
    expect(stepped).toEqual({ busyForMs: expect.any(Number) });
    if (!("busyForMs" in stepped)) throw new Error("unreachable");
    // Three times the base wait with four ahead and a share of two (plus up to one base of jitter).
    expect(stepped.busyForMs).toBeGreaterThanOrEqual(750);
    expect(stepped.busyForMs).toBeLessThanOrEqual(1_000);
    released(await start("b"))();
    expect(waiters).toHaveLength(4);
  });

  it("when the worker is stopping, then the waiting jobs are let go at once to step back, and no new one waits", async () => {
    const stopping = new AbortController();
    const start = createDownloadShares(1, 4, stopping.signal);
    const held = released(await start("a"));
    const waiter = start("a");
    stopping.abort();
    expect(await waiter).toEqual({ busyForMs: expect.any(Number) });
    expect(await start("a")).toEqual({ busyForMs: expect.any(Number) });
    held();
  });
});
