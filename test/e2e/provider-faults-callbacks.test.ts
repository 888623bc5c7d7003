import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectAllAccountedFor, type TaskExpectation } from "../support/accounting.ts";
import { eventually, getTask, resultSize, settle, simAdmin, startFaultStack, submitMany, taskEvents, testImage, type Submitted } from "../support/fault-kit.ts";
import type { Stack } from "../support/stack.ts";
import { callbackRows, countCallbacksOf } from "../support/rows.ts";

// Callbacks are at-least-once, unordered hints: duplicated, reordered, delayed, early or lost, every
// task still reaches `succeeded` with the right images; callbacks alone, or polling alone, suffice.

beforeAll(async () => {
  await testImage();
});

const sources = async (stack: Stack, task: Submitted) => new Set((await taskEvents(stack, task)).map((e) => e.source));

const outcomes = async (stack: Stack, task: Submitted) =>
  (await callbackRows(stack.db, task.id)).map((c) => c.outcome);

describe("callbacks only (polling is held back by a very long grace)", () => {
  let stack: Stack;
  const all: TaskExpectation[] = [];
  beforeAll(async () => {
    stack = await startFaultStack({ capacity: 4, simulatorEnv: { SIM_RUN_MS: "300" }, env: { CALLBACK_GRACE_MS: "600000", POLL_AT_EXPECTED_END: "false" } });
  });
  afterAll(() => stack?.stop());

  const normal = {
    callback_duplicate: 0,
    callback_reorder: 0,
    callback_delay_ms: 0,
    callback_mode: "normal",
  };

  it.each([
    { fault: "callbacks arrive as sent", settings: {}, check: async () => undefined },
    {
      fault: "every callback is delivered twice",
      settings: { callback_duplicate: 1 },
      check: async (stack: Stack, task: Submitted) => expect(await outcomes(stack, task)).toContain("duplicate"),
    },
    {
      fault: "every `processing` callback comes after the terminal one",
      settings: { callback_reorder: 1 },
      check: async (stack: Stack, task: Submitted) => {
        expect((await outcomes(stack, task)).at(-1)).toBe("stale");
        expect((await taskEvents(stack, task)).map((e) => e.to)).not.toContain("processing");
      },
    },
    {
      fault: "the `submitted` callback arrives before the create answer",
      settings: { callback_mode: "before_create_response" },
      check: async (stack: Stack, task: Submitted) => {
        const submitted = (await taskEvents(stack, task)).find((e) => e.to === "submitted");
        expect(submitted?.source).toBe("callback");
      },
    },
  ])("when $fault, then every task succeeds from callbacks alone with its images", async ({ settings, check }) => {
    await simAdmin(stack).patch({ ...normal, ...settings });
    const { key } = await stack.newAccount();
    const tasks = await submitMany(stack, key, 3, (i) => ({ n: 1 + (i % 2) }));
    await settle(stack, tasks);
    for (const task of tasks) {
      const seen = await sources(stack, task);
      expect(seen.has("callback"), `task ${task.id} events`).toBe(true);
      expect(seen.has("poll"), `task ${task.id} events`).toBe(false);
      await check(stack, task);
    }
    all.push(...tasks.map((t) => ({ ...t, status: "succeeded" as const, imageSize: resultSize })));
    await expectAllAccountedFor(stack, all, { capacity: 4 });
  });

  it("when every callback is delayed past the task's end, then every task still succeeds with its images and the late callbacks change nothing", async () => {
    await simAdmin(stack).patch({ ...normal, callback_delay_ms: 400 });
    const { key } = await stack.newAccount();
    const tasks = await submitMany(stack, key, 3);
    await settle(stack, tasks);
    // Polling after the provider's usual run time may get there first; the callbacks still come,
    // three per task (submitted, processing, succeed), and are kept without moving anything back.
    for (const task of tasks) {
      const kept = await eventually(`three callbacks kept for ${task.id}`, async () => {
        // A callback is kept first and its outcome written once it has been applied.
        const seen = await outcomes(stack, task);
        return seen.length >= 3 && seen.every((o) => o !== null) ? seen : undefined;
      });
      for (const outcome of kept) expect(["applied", "duplicate", "stale"]).toContain(outcome);
      expect((await getTask(stack, task)).status).toBe("succeeded");
    }
    all.push(...tasks.map((t) => ({ ...t, status: "succeeded" as const, imageSize: resultSize })));
    await expectAllAccountedFor(stack, all, { capacity: 4 });
  });
});

describe("polling only (every callback is lost)", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startFaultStack({
      capacity: 4,
      simulatorEnv: { SIM_RUN_MS: "300", SIM_CALLBACK_LOSS: "1" },
      env: { CALLBACK_GRACE_MS: "300", POLL_MAX_INTERVAL_MS: "500" },
    });
  });
  afterAll(() => stack?.stop());

  it("when the provider never calls back, then polling alone brings every task to `succeeded` with its images", async () => {
    const { key } = await stack.newAccount();
    const tasks = await submitMany(stack, key, 6, (i) => ({ n: 1 + (i % 2) }));
    await settle(stack, tasks);
    for (const task of tasks) {
      const seen = await sources(stack, task);
      expect(seen.has("poll"), `task ${task.id} events`).toBe(true);
      expect(seen.has("callback"), `task ${task.id} events`).toBe(false);
      expect(await countCallbacksOf(stack.db, task.id)).toBe(0);
    }
    const { stats } = await expectAllAccountedFor(
      stack,
      tasks.map((t) => ({ ...t, status: "succeeded" as const, imageSize: resultSize })),
      { capacity: 4 },
    );
    expect(stats.callbacks_sent).toBe(0);
    // The simulator counts a lost callback when its own timer for it fires, which may come after our
    // poll has already found the end (and `settle` returned): wait for its count, not the clock.
    const lost = await eventually("the simulator's lost callbacks counted", async () => {
      const now = (await simAdmin(stack).stats()) as { callbacks_lost: number; callbacks_sent: number };
      return now.callbacks_lost >= tasks.length * 3 ? now : undefined;
    });
    expect(lost.callbacks_sent).toBe(0);
  });
});
