import type { Response } from "express";
import { transientErrors } from "./provider-reply.ts";
import type { SimSettings } from "./sim-settings.schema.ts";
import type { TimerSet } from "./sim-timers.ts";

export type ConnectionFault = "timeout" | "drop";

// A transient provider error for a share (error_rate) of create and get calls.
export const pickTransientError = (s: SimSettings, random: () => number) => {
  if (random() >= s.error_rate) return undefined;
  return transientErrors[Math.floor(random() * transientErrors.length)] ?? transientErrors[0];
};

export const pickConnectionFault = (s: SimSettings, random: () => number): ConnectionFault | undefined => {
  const roll = random();
  if (roll < s.timeout_rate) return "timeout";
  if (roll < s.timeout_rate + s.drop_connection_rate) return "drop";
  return undefined;
};

// Calls held without an answer by a "timeout" fault. Each is dropped after hang_ms, or all at once
// when a test asks (POST /_sim/hanging/drop): a test that needs a call in flight while it acts then
// ends it when it is done, not at a timeout chosen to outlast a loaded machine.
export const createHangingCalls = (timers: TimerSet) => {
  const held = new Set<Response>();
  const drop = (res: Response) => {
    held.delete(res);
    res.socket?.destroy();
  };
  return {
    hold(res: Response, ms: number): void {
      held.add(res);
      res.once("close", () => held.delete(res));
      timers.after(ms, () => drop(res));
    },
    // How many were dropped.
    dropAll(): number {
      const all = [...held];
      for (const res of all) drop(res);
      return all.length;
    },
  };
};

export type HangingCalls = ReturnType<typeof createHangingCalls>;

// "timeout": no answer at all, so the client's own timeout fires; the socket is destroyed after
// hang_ms (or when a test drops the hanging calls, or by stop()). "drop": the socket is destroyed
// now, so the client sees a reset.
export const applyConnectionFault = (res: Response, fault: ConnectionFault, s: SimSettings, hanging: HangingCalls): void => {
  if (fault === "drop" || s.hang_ms === 0) {
    res.socket?.destroy();
    return;
  }
  hanging.hold(res, s.hang_ms);
};
