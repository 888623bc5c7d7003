import { describe, expect, it } from "vitest";
import { nextRestartDelay, restartPolicy } from "../../apps/local-stack/restart-backoff.ts";

// The restart schedule of `npm start`'s supervisor, as a policy on its own.
describe("restart backoff", () => {
  it("when a child keeps crashing quickly, then the delay doubles from 1 s up to 30 s and stays there", () => {
    const delays: number[] = [];
    let delay: number | undefined;
    for (let i = 0; i < 8; i++) delays.push((delay = nextRestartDelay(delay, 500)));
    expect(delays).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
  });

  it("when a child ran for a minute before it exited, then the next delay is back to 1 s", () => {
    expect(nextRestartDelay(30_000, restartPolicy.healthyAfterMs)).toBe(1_000);
    expect(nextRestartDelay(30_000, restartPolicy.healthyAfterMs - 1)).toBe(30_000);
  });
});
