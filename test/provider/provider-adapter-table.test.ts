import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { readCometApiError } from "../../apps/domain/provider/cometapi/cometapi.family.ts";
import { klingErrorCodes } from "../../apps/domain/provider/kling-protocol/kling-error-codes.ts";
import { klingTaskStatuses } from "../../apps/domain/provider/kling-protocol/kling-wire.schema.ts";
import type { ProviderAdapter, ProviderFamily } from "../../apps/domain/provider/provider-adapter.ts";
import type { ProviderErrorAction, ProviderErrorReason } from "../../apps/domain/provider/provider-error.ts";
import { providerFamilies } from "../../apps/domain/provider/provider-families.ts";
import { backoffWithJitter, nextPollDelayMs } from "../../apps/domain/task/retry-policy.ts";
import { statusRank, taskStatuses, toProviderStatus } from "../../apps/domain/task/task-status.ts";
import { providerErrorCodes } from "../../apps/simulator/sim-settings.schema.ts";

// Pure rules read against the provider contract (shared/provider/KLING.md), not against the code:
// the expected values below are copied from the contract's tables, and checked for every family's
// adapter (none makes a request here: classifying and mapping are the adapter's own tables).

// KLING.md "Errors": every documented code, the HTTP status it comes with, and "what to do" in our
// vocabulary (stop / needs a human -> pause_account; re-sign the JWT -> reauthenticate; fail, do not
// retry -> fail_task; back off / retry later -> retry), with the reason the callers that treat it
// apart read (submit-task.ts: rate limits and the parallel-task limit; reconcile-tasks.ts: a task
// the provider does not know).
const documented: { code: number; http: number; action: ProviderErrorAction; reason?: ProviderErrorReason }[] = [
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
  { code: 1202, http: 404, action: "fail_task", reason: "task_unknown" },
  { code: 1203, http: 404, action: "fail_task", reason: "task_unknown" },
  { code: 1300, http: 400, action: "fail_task" },
  { code: 1301, http: 400, action: "fail_task" },
  { code: 1302, http: 429, action: "retry", reason: "requests_too_fast" },
  { code: 1303, http: 429, action: "retry", reason: "parallel_limit" },
  { code: 1304, http: 429, action: "pause_account" },
  { code: 5000, http: 500, action: "retry" },
  { code: 5001, http: 503, action: "retry" },
  { code: 5002, http: 504, action: "retry" },
];
const classOf = ({ action, reason }: { action: ProviderErrorAction; reason?: ProviderErrorReason }) => (reason ? { action, reason } : { action });

// KLING.md "Create and get: response": submitted -> processing -> succeed | failed. The provider's
// success is `archiving` for us: the images must be in our storage and checked first.
const documentedStatuses = { submitted: "submitted", processing: "processing", succeed: "archiving", failed: "failed" } as const;

const adapterOf = (family: ProviderFamily): ProviderAdapter =>
  family.createAdapter({
    kind: family.kind,
    baseUrl: "http://127.0.0.1:9",
    pathPrefix: family.pathPrefix,
    auth: { type: "bearer", token: "unused" },
    downField: family.defaultDownField,
    timeoutMs: 1_000,
    externalIdLookup: "path",
  });
const families = Object.values(providerFamilies).map((family) => ({ kind: family.kind, adapter: adapterOf(family) }));

describe("the provider families", () => {
  it("when the families are listed, then Kling official, CometAPI and the simulator each have one, built for their kind", () => {
    expect(families.map((f) => f.kind).sort()).toEqual(["cometapi", "kling", "simulator"]);
    for (const { kind, adapter } of families) expect(adapter.kind).toBe(kind);
  });

  it("when the simulator's list of codes and the client's table are compared with the contract's, then they are the same codes", () => {
    // The simulator answers every documented code on demand (create_error_code): a code missing from
    // any side is a code one of them does not know.
    const contract = documented.map((d) => d.code).sort();
    expect([...providerErrorCodes].sort()).toEqual(contract);
    expect([...klingErrorCodes].sort()).toEqual(contract);
  });
});

describe.each(families)("the $kind adapter's error classification (KLING.md Errors)", ({ adapter }) => {
  it.each(documented)("when the provider answers HTTP $http with code $code, then the action is $action ($reason)", (row) => {
    expect(adapter.classifyError({ httpStatus: row.http, code: row.code, message: "as documented" })).toEqual(classOf(row));
  });

  it("when a documented code comes with any other HTTP status, then the classification follows the code, not the status", () => {
    // "Classify on code, never on the HTTP status alone": 429 carries both retryable and human-needed codes.
    fc.assert(
      fc.property(fc.constantFrom(...documented), fc.integer({ min: 200, max: 599 }), (row, http) => {
        expect(adapter.classifyError({ httpStatus: http, code: row.code, message: "x" })).toEqual(classOf(row));
      }),
    );
  });

  it("when a create is refused as a duplicate external_task_id, then the reason says the provider already holds the task", () => {
    expect(adapter.classifyError({ httpStatus: 400, code: 1201, message: "duplicate external_task_id" })).toEqual({ action: "fail_task", reason: "duplicate_external_id" });
    // Any other invalid parameter is only a refusal.
    expect(adapter.classifyError({ httpStatus: 400, code: 1201, message: "external_task_id is too long" })).toEqual({ action: "fail_task" });
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
    { code: null, http: 404, action: "retry", reason: "route_missing" },
    { code: undefined, http: 404, action: "retry", reason: "route_missing" },
    { code: 4242, http: 400, action: "fail_task" },
    { code: 4242, http: 503, action: "retry" },
  ] as const)("when the provider answers HTTP $http with code $code (undocumented), then the action is $action", (row) => {
    expect(adapter.classifyError({ httpStatus: row.http, code: row.code, message: "x" })).toEqual(classOf(row));
  });

  it.each(Object.entries(documentedStatuses))("when the provider reports `%s`, then the task moves to our `%s`", (theirs, ours) => {
    expect(adapter.mapStatus(theirs)).toBe(ours);
    const parsed = adapter.parseCallback({ task_id: "867283741759111202", task_status: theirs, task_info: { external_task_id: "ours" }, updated_at: 1722769557708 });
    expect(parsed).toMatchObject({ ok: true, report: { providerTaskId: "867283741759111202", status: ours, providerStatus: theirs, externalTaskId: "ours", updatedAtMs: 1722769557708 } });
  });

  it("when the provider says a word it does not document (`succeeded`), then it maps to none and a callback saying it is refused", () => {
    expect(adapter.mapStatus("succeeded")).toBeUndefined();
    expect(adapter.mapStatus("toString")).toBeUndefined();
    expect(adapter.parseCallback({ task_id: "1", task_status: "succeeded" })).toMatchObject({ ok: false, reason: expect.stringMatching(/^not a task object/) });
  });

  it("when a finished task is reported, then its charge, message and images are ours to keep; empty texts are none", () => {
    const done = adapter.parseCallback({
      task_id: 42,
      task_status: "succeed",
      task_status_msg: "",
      final_unit_deduction: 2,
      created_at: "1722769557708",
      task_result: { images: [{ index: 0, url: "https://cdn.example/0.png", extra: true }] },
    });
    expect(done).toEqual({
      ok: true,
      report: {
        providerTaskId: "42",
        status: "archiving",
        providerStatus: "succeed",
        message: null,
        externalTaskId: null,
        createdAtMs: 1722769557708,
        charged: "2",
        images: [{ index: 0, url: "https://cdn.example/0.png" }],
      },
    });
    const failed = adapter.parseCallback({ task_id: "7", task_status: "failed", task_status_msg: "content policy", final_unit_deduction: "" });
    expect(failed).toMatchObject({ ok: true, report: { status: "failed", message: "content policy", charged: null, images: [] } });
  });
});

describe("CometAPI's own error envelope (KLING.md: {\"error\": {message, type, param, code}})", () => {
  it("when CometAPI answers in its own envelope, then its message is read and its code is not taken for Kling's", () => {
    expect(readCometApiError({ error: { message: "invalid api key", type: "comet_api_error", param: null, code: "invalid_key" } })).toEqual({ code: undefined, message: "invalid api key" });
  });

  it("when CometAPI passes Kling's body through, then Kling's code is read", () => {
    expect(readCometApiError({ code: 1303, message: "parallel task limit", request_id: "r" })).toEqual({ code: 1303, message: "parallel task limit" });
    expect(readCometApiError({ code: null, message: "404" })).toEqual({ code: null, message: "404" });
  });

  it("when the body is neither (an HTML page), then there is no code and no message", () => {
    expect(readCometApiError(undefined)).toEqual({ code: undefined, message: undefined });
  });
});

describe("our statuses against the provider's", () => {
  it("when the provider's statuses come in its order, then ours never move back", () => {
    for (const { adapter } of families) {
      const ranks = klingTaskStatuses.filter((s) => s !== "failed").map((s) => statusRank[adapter.mapStatus(s)!]);
      expect(ranks).toEqual([...ranks].sort((a, b) => a - b));
      expect(statusRank[adapter.mapStatus("failed")!]).toBeGreaterThan(statusRank[adapter.mapStatus("processing")!]);
    }
  });

  it("when the drop-in API shows each of our statuses, then it uses Kling's words (succeed, not succeeded)", () => {
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
