import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { providerErrorAction, type ProviderErrorAction } from "../../apps/domain/provider/provider-error-codes.ts";
import { providerTaskStatuses } from "../../apps/domain/provider/provider-wire.schema.ts";
import { backoffWithJitter, nextPollDelayMs } from "../../apps/domain/task/retry-policy.ts";
import { fromProviderStatus, statusRank, taskStatuses, toProviderStatus } from "../../apps/domain/task/task-status.ts";
import { providerErrorCodes } from "../../apps/simulator/sim-settings.schema.ts";

// Pure rules read against the provider contract (shared/provider/KLING.md), not against the code:
// the expected values below are copied from the contract's tables.

// KLING.md "Errors": every documented code, the HTTP status it comes with, and "what to do" in our
// vocabulary (stop / needs a human -> pause_account; re-sign the JWT -> reauthenticate; fail, do not
// retry -> fail_task; back off / retry later -> retry).
const documented: { code: number; http: number; action: ProviderErrorAction }[] = [
  { code: 1000, http: 401, action: "pause_account" },
  { code: 1001, http: 401, action: "pause_account" },
  { code: 1002, http: 401, action: "pause_account" },
  { code: 1003, http: 401, action: "reauthenticate" },
  { code: 1004, http: 401, action: "reauthenticate" },
  { code: 1100, http: 429, action: "pause_account" },
  { code: 1101, http: 429, action: "pause_account" },
  { code: 1102, http: 429, action: "pause_account" },
  { code: 1103, http: 403, action: "pause_account" },
  { code: 1200, http: 400, action: "fail_task" },
  { code: 1201, http: 400, action: "fail_task" },
  { code: 1202, http: 404, action: "fail_task" },
  { code: 1203, http: 404, action: "fail_task" },
  { code: 1300, http: 400, action: "fail_task" },
  { code: 1301, http: 400, action: "fail_task" },
  { code: 1302, http: 429, action: "retry" },
  { code: 1303, http: 429, action: "retry" },
  { code: 1304, http: 429, action: "pause_account" },
  { code: 5000, http: 500, action: "retry" },
  { code: 5001, http: 503, action: "retry" },
  { code: 5002, http: 504, action: "retry" },
];

describe("provider error classification (KLING.md Errors)", () => {
  it.each(documented)("when the provider answers HTTP $http with code $code, then the action is $action", ({ code, http, action }) => {
    expect(providerErrorAction(code, http)).toBe(action);
  });

  it("when the simulator's list of codes is compared with the contract's table, then they are the same codes", () => {
    // The simulator answers every documented code on demand (create_error_code): a code missing from
    // either side is a code one of them does not know.
    expect([...providerErrorCodes].sort()).toEqual(documented.map((d) => d.code).sort());
  });

  it("when a documented code comes with any other HTTP status, then the action follows the code, not the status", () => {
    // "Classify on code, never on the HTTP status alone": 429 carries both retryable and human-needed codes.
    fc.assert(
      fc.property(fc.constantFrom(...documented), fc.integer({ min: 200, max: 599 }), ({ code, action }, http) => {
        expect(providerErrorAction(code, http)).toBe(action);
      }),
    );
  });

  // No code we know (CometAPI's own errors, a proxy's HTML page): CometAPI advises retrying 429 and
  // 500/503/504/524 and not 400/401/403; its route answered 404 {"code": null} while it was down.
  it.each([
    { code: null, http: 429, action: "retry" },
    { code: null, http: 500, action: "retry" },
    { code: null, http: 503, action: "retry" },
    { code: null, http: 504, action: "retry" },
    { code: null, http: 524, action: "retry" },
    { code: undefined, http: 502, action: "retry" },
    { code: null, http: 400, action: "fail_task" },
    { code: null, http: 401, action: "pause_account" },
    { code: null, http: 403, action: "pause_account" },
    { code: null, http: 404, action: "retry" },
    { code: 4242, http: 400, action: "fail_task" },
    { code: 4242, http: 503, action: "retry" },
  ] as const)("when the provider answers HTTP $http with code $code (undocumented), then the action is $action", ({ code, http, action }) => {
    expect(providerErrorAction(code, http)).toBe(action);
  });
});

describe("provider status mapping (KLING.md: submitted -> processing -> succeed | failed)", () => {
  it("when the provider reports each of its statuses, then the task moves to ours; its succeed is archiving, not success yet", () => {
    expect([...providerTaskStatuses].sort()).toEqual(["failed", "processing", "submitted", "succeed"]);
    expect(fromProviderStatus).toEqual({ submitted: "submitted", processing: "processing", succeed: "archiving", failed: "failed" });
  });

  it("when the provider's statuses come in its order, then ours never move back", () => {
    const order = ["submitted", "processing", "succeed"] as const;
    const ranks = order.map((s) => statusRank[fromProviderStatus[s]]);
    expect(ranks).toEqual([...ranks].sort((a, b) => a - b));
    expect(statusRank[fromProviderStatus.failed]).toBeGreaterThan(statusRank[fromProviderStatus.processing]);
  });

  it("when the drop-in API shows each of our statuses, then it uses the provider's words (succeed, not succeeded)", () => {
    const shown = Object.fromEntries(taskStatuses.map((s) => [s, toProviderStatus(s)]));
    expect(shown).toEqual({
      queued: "submitted",
      submitting: "submitted",
      submitted: "submitted",
      processing: "processing",
      archiving: "processing",
      succeeded: "succeed",
      failed: "failed",
      canceled: "failed",
    });
  });
});

describe("backoff and poll schedule", () => {
  it("when the jitter is at its ends, then the delay is half the ceiling and the ceiling, doubling per attempt up to the cap", () => {
    expect([1, 2, 3, 4, 5].map((a) => backoffWithJitter(a, 1_000, 10_000, () => 0))).toEqual([500, 1_000, 2_000, 4_000, 5_000]);
    // Math.random never returns 1; just under it rounds to the ceiling.
    const top = () => 0.999_999_9;
    expect([1, 2, 3, 4, 5].map((a) => backoffWithJitter(a, 1_000, 10_000, top))).toEqual([1_000, 2_000, 4_000, 8_000, 10_000]);
    // Attempt 0 (or below) is treated as the first.
    expect(backoffWithJitter(0, 1_000, 10_000, () => 0)).toBe(500);
  });

  it("when any attempt, base, cap and jitter are drawn, then the delay lies in [ceiling/2, ceiling] and never above the cap", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 60 }),
        fc.integer({ min: 1, max: 60_000 }),
        fc.integer({ min: 1, max: 3_600_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, base, cap, jitter) => {
          const ceiling = Math.min(cap, base * 2 ** (attempt - 1));
          const delay = backoffWithJitter(attempt, base, cap, () => jitter);
          expect(delay).toBeGreaterThanOrEqual(Math.floor(ceiling / 2));
          expect(delay).toBeLessThanOrEqual(Math.ceil(ceiling));
        },
      ),
    );
  });

  it("when a task runs late, then it is polled after a quarter of its lateness, within [grace, max]", () => {
    expect(nextPollDelayMs(0, 2_000, 300_000)).toBe(2_000);
    expect(nextPollDelayMs(8_000, 2_000, 300_000)).toBe(2_000);
    expect(nextPollDelayMs(8_004, 2_000, 300_000)).toBe(2_001);
    expect(nextPollDelayMs(400_000, 2_000, 300_000)).toBe(100_000);
    expect(nextPollDelayMs(1_200_000, 2_000, 300_000)).toBe(300_000);
    expect(nextPollDelayMs(10 * 3_600_000, 2_000, 300_000)).toBe(300_000);
  });
});
