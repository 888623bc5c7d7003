import { describe, expect, it, vi } from "vitest";
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

  it("when an account's waiting room is full, then its next job waits a moment in place and steps back only if no place frees, longer the more wait ahead; other accounts still get theirs", async () => {
    vi.useFakeTimers();
    try {
      // 8 job slots, 2 per account: an account holds at most 6 (2 running, 4 waiting).
      const start = createDownloadShares(2, 8, undefined, 1_000);
      released(await start("a"));
      released(await start("a"));
      const waiters = Array.from({ length: 4 }, () => start("a"));
      let outcome: DownloadShare | undefined;
      void start("a").then((share) => (outcome = share));
      await vi.advanceTimersByTimeAsync(999);
      expect(outcome).toBeUndefined();
      await vi.advanceTimersByTimeAsync(1);
      expect(outcome).toEqual({ busyForMs: expect.any(Number) });
      if (!outcome || !("busyForMs" in outcome)) throw new Error("unreachable");
      // Three times the base wait with four ahead and a share of two (plus up to one base of jitter).
      expect(outcome.busyForMs).toBeGreaterThanOrEqual(750);
      expect(outcome.busyForMs).toBeLessThanOrEqual(1_000);
      released(await start("b"))();
      expect(waiters).toHaveLength(4);
    } finally {
      vi.useRealTimers();
    }
  });

  it("when an account's jobs would hold every job slot of the process, then its job beyond the room steps back at once, leaving the last slot to other accounts", async () => {
    // 3 job slots, 2 per account: no waiting room; a third job of A would hold the last slot.
    vi.useFakeTimers();
    try {
      const start = createDownloadShares(2, 3, undefined, 1_000);
      const first = released(await start("a"));
      released(await start("a"));
      let third: DownloadShare | undefined;
      void start("a").then((share) => (third = share));
      // At once: no moment of the clock passes.
      await vi.advanceTimersByTimeAsync(0);
      expect(third).toEqual({ busyForMs: expect.any(Number) });
      released(await start("b"))();
      // With a fourth slot, A's third job may wait its moment (and gets the share a download frees).
      const roomier = createDownloadShares(2, 4, undefined, 1_000);
      const held = released(await roomier("a"));
      released(await roomier("a"));
      let waited: DownloadShare | undefined;
      void roomier("a").then((share) => (waited = share));
      await vi.advanceTimersByTimeAsync(500);
      expect(waited).toBeUndefined();
      held();
      await vi.advanceTimersByTimeAsync(0);
      expect(waited).toEqual({ release: expect.any(Function) });
      first();
    } finally {
      vi.useRealTimers();
    }
  });

  it("when a place in line frees during a job's moment beyond the room, then it stays in line and gets its share in turn", async () => {
    vi.useFakeTimers();
    try {
      // 6 job slots, 2 per account: 2 running, 2 waiting; a fifth job is beyond the room.
      const start = createDownloadShares(2, 6, undefined, 1_000);
      const first = released(await start("a"));
      const second = released(await start("a"));
      const inRoom = [start("a"), start("a")];
      let fifth: DownloadShare | undefined;
      void start("a").then((share) => (fifth = share));
      // A download ends: the first waiter takes its share, and the fifth moves into the room.
      first();
      const third = released(await inRoom[0]!);
      await vi.advanceTimersByTimeAsync(5_000);
      expect(fifth).toBeUndefined();
      // Two more downloads end: the second waiter, then the fifth, get theirs.
      second();
      released(await inRoom[1]!);
      third();
      await vi.advanceTimersByTimeAsync(0);
      expect(fifth).toEqual({ release: expect.any(Function) });
    } finally {
      vi.useRealTimers();
    }
  });

  it("when an account's backlog steps back one job after another, then each comes back later than the one before, paced by its downloads' time, not all together", async () => {
    vi.useFakeTimers();
    try {
      // 3 job slots, 2 per account: no waiting room, every further job of A steps back at once.
      const start = createDownloadShares(2, 3, undefined, 1_000);
      const stepBack = async () => {
        const share = await start("a");
        if (!("busyForMs" in share)) throw new Error("expected a step back");
        return share.busyForMs;
      };
      const first = released(await start("a"));
      released(await start("a"));
      const delays: number[] = [];
      for (let i = 0; i < 12; i += 1) delays.push(await stepBack());
      // The k-th (from 0) counts the k before it as ahead: a round (250 ms base) per share of two,
      // plus up to a round of jitter.
      for (const [k, ms] of delays.entries()) {
        expect(ms).toBeGreaterThanOrEqual(250 * (1 + k / 2));
        expect(ms).toBeLessThanOrEqual(250 * (2 + k / 2));
      }
      // Once they are due back they no longer count.
      await vi.advanceTimersByTimeAsync(Math.max(...delays) + 1);
      expect(await stepBack()).toBeLessThanOrEqual(500);
      first();
    } finally {
      vi.useRealTimers();
    }
  });

  it("when an account's line moves slowly here, then its step backs last as long as the line takes to move", async () => {
    vi.useFakeTimers();
    try {
      // 6 job slots, 1 per account: 1 running, 4 waiting in the room.
      const start = createDownloadShares(1, 6, undefined, 1_000);
      const first = released(await start("a"));
      const line = Array.from({ length: 4 }, () => start("a"));
      // A download ends every second, each handing its share to the next in line.
      await vi.advanceTimersByTimeAsync(1_000);
      first();
      const second = released(await line[0]!);
      await vi.advanceTimersByTimeAsync(1_000);
      second();
      released(await line[1]!);
      // Two more join the line (4 waiting again), and the next steps back: 4 ahead of it, a round a
      // second: back in 5-6 s, not in the base's 1.25-1.5 s.
      line.push(start("a"), start("a"));
      const share = await start("a");
      if (!("busyForMs" in share)) throw new Error("expected a step back");
      expect(share.busyForMs).toBeGreaterThanOrEqual(5_000);
      expect(share.busyForMs).toBeLessThanOrEqual(6_000);
    } finally {
      vi.useRealTimers();
    }
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
