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

// "timeout": no answer at all, so the client's own timeout fires; the socket is destroyed after
// hang_ms (or by stop()). "drop": the socket is destroyed now, so the client sees a reset.
export const applyConnectionFault = (res: Response, fault: ConnectionFault, s: SimSettings, timers: TimerSet): void => {
  if (fault === "drop" || s.hang_ms === 0) {
    res.socket?.destroy();
    return;
  }
  timers.after(s.hang_ms, () => res.socket?.destroy());
};
