import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectAllAccountedFor, type TaskExpectation } from "../support/accounting.ts";
import { call, waitForTask } from "../support/http.ts";
import { resultSize, settle, simAdmin, startFaultStack, submitMany, submitTask, taskEvents, testImage } from "../support/fault-kit.ts";
import type { Stack } from "../support/stack.ts";
import { taskRow } from "../support/rows.ts";

// What the provider does with a task after accepting it: fails it, never finishes it, or forgets it.

beforeAll(async () => {
  await testImage();
});

describe("the provider fails tasks", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startFaultStack({
      capacity: 2,
      simulatorEnv: { SIM_RUN_MS: "200", SIM_FAIL_RATE: "1", SIM_CONTENT_POLICY_SHARE: "1" },
    });
  });
  afterAll(() => stack?.stop());

  it("when every task fails at the provider, then each ends `provider_failed` with the provider's message, and its slots go back for later tasks", async () => {
    const { key } = await stack.newAccount();
    const failing = await submitMany(stack, key, 4);
    const done = await settle(stack, failing);
    for (const task of done) {
      expect(task).toMatchObject({ status: "failed", failure: { class: "provider_failed" } });
      expect(task.failure.message).toMatch(/content policy/);
      expect(task.status_message).toMatch(/content policy/);
      expect(task.images).toEqual([]);
    }

    await simAdmin(stack).patch({ fail_rate: 0 });
    const later = await submitMany(stack, key, 2);
    await settle(stack, later);
    const { stats } = await expectAllAccountedFor(
      stack,
      [
        ...failing.map((t) => ({ ...t, status: "failed" as const, failureClass: "provider_failed" })),
        ...later.map((t) => ({ ...t, status: "succeeded" as const, imageSize: resultSize })),
      ],
      { capacity: 2 },
    );
    expect(stats).toMatchObject({ tasks_failed: 4, tasks_succeeded: 2, rejected_over_capacity: 0 });
  });
});

describe("the provider never finishes a task", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startFaultStack({
      capacity: 2,
      simulatorEnv: { SIM_RUN_MS: "60000", SIM_CALLBACK_LOSS: "1" },
      env: { CALLBACK_GRACE_MS: "300", POLL_MAX_INTERVAL_MS: "500" },
      workerEnv: { TASK_DEADLINE_MS: "1500" },
    });
  });
  afterAll(() => stack?.stop());

  it("when a task runs past the overall deadline, then it fails with a timeout reason", async () => {
    const { key } = await stack.newAccount();
    const task = await submitTask(stack, key);
    const [done] = await settle(stack, [task]);
    expect(done).toMatchObject({ status: "failed", failure: { class: "timeout" } });
    expect(done.failure.message).toMatch(/did not finish the task within 2 s of submission/);
    const events = await taskEvents(stack, task);
    expect(events.at(-1)).toMatchObject({ to: "failed", source: "sweeper" });
    expect(events.map((e) => e.to)).toEqual(["queued", "submitting", "submitted", "failed"]);
    await expectAllAccountedFor(stack, [{ ...task, status: "failed", failureClass: "timeout" }], { capacity: 2 });
  });
});

describe("the provider forgets a task", () => {
  let stack: Stack;
  const all: TaskExpectation[] = [];
  let forgotten = 0;
  beforeAll(async () => {
    stack = await startFaultStack({
      capacity: 2,
      simulatorEnv: { SIM_RUN_MS: "60000" },
      env: { CALLBACK_GRACE_MS: "300", POLL_MAX_INTERVAL_MS: "500" },
    });
  });
  afterAll(() => stack?.stop());

  it("when a task still `submitted` is no longer known to the provider, then it is sent once more and succeeds", async () => {
    const sim = simAdmin(stack);
    await sim.patch({ run_ms: 60_000 });
    const { key } = await stack.newAccount();
    const task = await submitTask(stack, key);
    await waitForTask(stack.api.url, key, task.id, ["submitted"]);
    const first = await taskRow(stack.db, task.id);
    // The second submission runs quickly.
    await sim.patch({ run_ms: 200 });
    expect((await sim.forget(first.providerTaskId!)).status).toBe(200);
    forgotten++;

    const [done] = await settle(stack, [task]);
    expect(done).toMatchObject({ status: "succeeded", failure: null });
    const events = await taskEvents(stack, task);
    const resubmit = events.filter((e) => e.detail?.resubmit === true);
    expect(resubmit).toHaveLength(1);
    expect(resubmit[0]).toMatchObject({ from: "submitted", to: "queued", source: "poll" });
    expect(String(resubmit[0]!.detail?.reason)).toMatch(/does not know the task/);
    const row = await taskRow(stack.db, task.id);
    expect(row.resubmissions).toBe(1);
    expect(row.providerTaskId).not.toBe(first.providerTaskId);

    // Two creates for this id, and the provider holds exactly one task for it: the new one.
    all.push({ ...task, status: "succeeded", createCalls: 2, imageSize: resultSize });
    await expectAllAccountedFor(stack, all, { capacity: 2, forgotten });
  });

  it("when a task already `processing` is no longer known to the provider, then it fails as provider_lost", async () => {
    const sim = simAdmin(stack);
    // `processing` after 30% of the run: from 0.9 s to 3 s, time enough to make the provider forget it.
    await sim.patch({ run_ms: 3_000 });
    const { key } = await stack.newAccount();
    const task = await submitTask(stack, key);
    await waitForTask(stack.api.url, key, task.id, ["processing"]);
    const row = await taskRow(stack.db, task.id);
    expect((await sim.forget(row.providerTaskId!)).status).toBe(200);
    forgotten++;

    const [done] = await settle(stack, [task]);
    expect(done).toMatchObject({ status: "failed", failure: { class: "provider_lost" } });
    expect(done.failure.message).toMatch(/no longer knows this task/);
    const events = await taskEvents(stack, task);
    expect(events.some((e) => e.detail?.resubmit === true)).toBe(false);
    // No second create: the forgotten task was the only one.
    all.push({ ...task, status: "failed", failureClass: "provider_lost", providerTasks: 0, createCalls: 1 });
    await expectAllAccountedFor(stack, all, { capacity: 2, forgotten });
  });
});

describe("the provider already holds a task it is asked to create", () => {
  let stack: Stack;
  beforeAll(async () => {
    // Our ledger has one slot; the provider account two, so the direct create below is admitted.
    stack = await startFaultStack({ capacity: 1, simulatorEnv: { SIM_RUN_MS: "1500", SIM_CAPACITY: "2" } });
  });
  afterAll(() => stack?.stop());

  // An earlier create whose answer was lost, and which the lookup does not show yet, makes the next
  // create answer 1201 "external_task_id is duplicate". The provider holds (and bills) that task, so
  // failing ours would leave it uncollected: it must be adopted.
  it("when a create is refused as a duplicate external_task_id, then the task adopts the provider's task and succeeds, created once", async () => {
    const { key } = await stack.newAccount();
    const blocker = await submitTask(stack, key);
    await waitForTask(stack.api.url, key, blocker.id, ["submitted", "processing"]);
    const task = await submitTask(stack, key);
    // While the task waits for the only slot, the provider gets a task under its external_task_id.
    const direct = await call(stack.simulator.url, "POST", "/v1/images/editing/expand", {
      headers: { authorization: "Bearer sim-local-key" },
      body: { image: await testImage(), up_expansion_ratio: 0.2, down_expansion_ratio: 0.2, left_expansion_ratio: 0.2, right_expansion_ratio: 0.2, external_task_id: task.id },
    });
    expect(direct.status).toBe(200);
    const heldId = direct.body.data.task_id as string;

    const [, done] = await settle(stack, [blocker, task], 30_000);
    expect(done).toMatchObject({ status: "succeeded", failure: null });
    const row = await taskRow(stack.db, task.id);
    expect(row.providerTaskId).toBe(heldId);
    const events = await taskEvents(stack, task);
    expect(events.some((e) => e.detail?.adopted === true)).toBe(true);
    const tasksAtProvider = (await simAdmin(stack).tasks()).filter((t) => t.external_task_id === task.id);
    expect(tasksAtProvider).toHaveLength(1);
  });
});
