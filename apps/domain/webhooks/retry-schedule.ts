import { z } from "zod";

// Standard Webhooks' recommended spread: quick retries for a blip, then hours, about three days in all.
export const DEFAULT_RETRY_SCHEDULE = "0,5s,5m,30m,2h,5h,10h,14h,20h,24h";

const unitMs = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const entry = /^(\d{1,9})(ms|s|m|h|d)?$/;

// "0,5s,5m,...": the delay before each attempt, the first included (a bare number is milliseconds).
export const retryScheduleSchema = z
  .string()
  .transform((text, ctx) => {
    const delays: number[] = [];
    for (const part of text.split(",").map((p) => p.trim())) {
      const match = entry.exec(part);
      if (!match) {
        ctx.addIssue({ code: "custom", message: `'${part.slice(0, 20)}' is not a delay like 0, 500ms, 5s, 5m, 2h or 1d` });
        return z.NEVER;
      }
      delays.push(Number(match[1]) * unitMs[(match[2] ?? "ms") as keyof typeof unitMs]);
    }
    return delays;
  })
  .pipe(z.array(z.number()).min(1, { error: "must list at least one delay" }).max(50, { error: "at most 50 attempts" }));

// After `attemptsMade` attempts: when the next one is due, or undefined when the schedule is spent.
export const nextAttemptDelayMs = (schedule: readonly number[], attemptsMade: number): number | undefined => schedule[attemptsMade];
