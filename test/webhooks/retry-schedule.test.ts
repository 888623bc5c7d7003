import { describe, expect, it } from "vitest";
import { ConfigError } from "../../apps/domain/config/parse-env.ts";
import { DEFAULT_RETRY_SCHEDULE, nextAttemptDelayMs, retryScheduleSchema } from "../../apps/domain/webhooks/retry-schedule.ts";
import { parseWorkerConfig } from "../../apps/worker/worker.config.ts";

describe("the outbound callback retry schedule", () => {
  it("when the default is read, then it is at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h, about three days", () => {
    const schedule = retryScheduleSchema.parse(DEFAULT_RETRY_SCHEDULE);
    const [s, m, h] = [1_000, 60_000, 3_600_000];
    expect(schedule).toEqual([0, 5 * s, 5 * m, 30 * m, 2 * h, 5 * h, 10 * h, 14 * h, 20 * h, 24 * h]);
    expect(schedule.reduce((a, b) => a + b, 0) / (24 * h)).toBeCloseTo(3.15, 1);
    expect(parseWorkerConfig({}).WEBHOOK_RETRY_SCHEDULE).toEqual(schedule);
  });

  it("when attempts are made, then each next delay comes from the schedule and none is left after the last", () => {
    const schedule = retryScheduleSchema.parse("0,100ms,2s,1d");
    expect([0, 1, 2, 3, 4].map((made) => nextAttemptDelayMs(schedule, made))).toEqual([0, 100, 2_000, 86_400_000, undefined]);
  });

  it("when WEBHOOK_RETRY_SCHEDULE is malformed, then the worker refuses to start and names it", () => {
    for (const bad of ["5x", "1,,2", "-1", "1.5s", ",".repeat(60)]) {
      let error: unknown;
      try {
        parseWorkerConfig({ WEBHOOK_RETRY_SCHEDULE: bad });
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).problems[0]).toMatch(/^WEBHOOK_RETRY_SCHEDULE: /);
    }
  });
});
