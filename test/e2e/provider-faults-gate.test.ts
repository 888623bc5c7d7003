import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectAllAccountedFor } from "../support/accounting.ts";
import { eventually, getTask, readiness, resultSize, settle, simAdmin, startFaultStack, submitMany, testImage } from "../support/fault-kit.ts";
import type { Stack } from "../support/stack.ts";
import { taskRows } from "../support/rows.ts";

// When the provider cannot take work at all, queued tasks wait without spending their retry budget,
// /readyz and each task say why, and work resumes by itself once a probe gets through.

beforeAll(async () => {
  await testImage();
});

const attemptsSoFar = async (stack: Stack, ids: string[]) =>
  (await taskRows(stack.db, ids)).reduce((sum, t) => sum + t.attempts, 0);

describe("the provider's route answers 404 {code: null}", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startFaultStack({
      capacity: 4,
      simulatorEnv: { SIM_RUN_MS: "200", SIM_ROUTE_UNAVAILABLE: "true" },
      // A budget of 3 and a probe every 300 ms: an outage of many probe periods must not use it up.
      env: { CIRCUIT_OPEN_MS: "300", CIRCUIT_FAILURE_THRESHOLD: "2" },
      workerEnv: { SUBMIT_MAX_ATTEMPTS: "3" },
    });
  });
  afterAll(() => stack?.stop());

  it("when the route is gone, then the circuit opens, tasks wait queued saying so without failing, and once the route is back a probe closes it and all succeed", async () => {
    const { key } = await stack.newAccount();
    const tasks = await submitMany(stack, key, 4);
    const ids = tasks.map((t) => t.id);

    const ready = await eventually("an open circuit on /readyz", async () => {
      const body = await readiness(stack);
      return body.provider.state === "open" ? body : undefined;
    });
    expect(ready.status).toBe("ready");
    expect(ready.provider).toMatchObject({ state: "open", reason: expect.stringMatching(/404/), next_probe_at: expect.any(String) });
    await eventually("every task saying it waits for the open circuit", async () => {
      const views = await Promise.all(tasks.map((t) => getTask(stack, t)));
      return views.every((v) => /circuit open/.test(v.status_message)) ? views : undefined;
    });

    // Let 8 probes fail, more than the budget of any task (each attempt counts in `attempts`).
    await eventually("8 failed probes", async () => ((await attemptsSoFar(stack, ids)) >= tasks.length + 8 ? true : undefined), 15_000);
    const during = await Promise.all(tasks.map((t) => getTask(stack, t)));
    for (const view of during) {
      expect(view.status, `task ${view.id}: ${view.status_message}`).toMatch(/^(queued|submitting)$/);
      expect(view.failure).toBeNull();
    }
    const rows = await taskRows(stack.db, ids);
    for (const row of rows) expect(row.transientFailures, `task ${row.id}`).toBeLessThan(3);

    await simAdmin(stack).patch({ route_unavailable: false });
    await settle(stack, tasks);
    await expectAllAccountedFor(
      stack,
      tasks.map((t) => ({ ...t, status: "succeeded" as const, imageSize: resultSize })),
      { capacity: 4 },
    );
    expect((await readiness(stack)).provider.state).toBe("closed");
  });
});

describe("the provider account needs a human", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startFaultStack({ capacity: 3, simulatorEnv: { SIM_RUN_MS: "200" }, env: { PAUSE_PROBE_MS: "300" } });
  });
  afterAll(() => stack?.stop());

  it.each([
    { why: "the account is in arrears (1101)", on: { create_error_code: 1101 }, off: { create_error_code: null }, reason: /1101.*arrears/ },
    { why: "the API key is refused (1002)", on: { api_keys: ["someone-elses-key"] }, off: { api_keys: null }, reason: /1002/ },
  ])("when $why, then the account is paused with the reason on /readyz and every task, nothing is spent, and a probe resumes work once it is fixed", async ({ on, off, reason }) => {
    const sim = simAdmin(stack);
    await sim.patch(on);
    const { key } = await stack.newAccount();
    const tasks = await submitMany(stack, key, 3);
    const ids = tasks.map((t) => t.id);

    const ready = await eventually("a paused account on /readyz", async () => {
      const body = await readiness(stack);
      return body.provider.state === "paused" ? body : undefined;
    });
    expect(ready.provider.reason).toMatch(reason);
    expect(ready.provider.next_probe_at).toEqual(expect.any(String));
    await eventually("every task saying the account is paused", async () => {
      const views = await Promise.all(tasks.map((t) => getTask(stack, t)));
      return views.every((v) => /account paused/.test(v.status_message) && reason.test(v.status_message)) ? views : undefined;
    });
    // Several probes are refused the same way meanwhile.
    const before = await attemptsSoFar(stack, ids);
    await eventually("three more refused probes", async () => ((await attemptsSoFar(stack, ids)) >= before + 3 ? true : undefined), 10_000);
    expect((await readiness(stack)).provider.state).toBe("paused");

    await sim.patch(off);
    await settle(stack, tasks);
    await expectAllAccountedFor(stack, tasks.map((t) => ({ ...t, status: "succeeded" as const })), { capacity: 3 });
    const rows = await taskRows(stack.db, ids);
    for (const row of rows) expect(row.transientFailures, `task ${row.id}`).toBe(0);
    expect((await readiness(stack)).provider.state).toBe("closed");
  });
});
