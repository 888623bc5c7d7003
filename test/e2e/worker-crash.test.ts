import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectAllAccountedFor } from "../support/accounting.ts";
import { spawnService, type ChildService } from "../support/child-processes.ts";
import { eventually, resultSize, settle, simAdmin, startFaultStack, submitTask, taskEvents, testImage } from "../support/fault-kit.ts";
import type { Stack } from "../support/stack.ts";
import { taskRow } from "../support/rows.ts";

// Exactly one paid provider task per task, even when the worker dies between the provider's answer
// and our commit: the next attempt asks the provider for our external_task_id and adopts the task.

describe("a worker killed while its create is in flight", () => {
  let stack: Stack;
  const children: ChildService[] = [];
  // Short job locks, so the job of a killed worker is picked up again within seconds.
  const locks = { JOB_LOCK_MS: "2000", SUBMIT_ATTEMPT_LEASE_MS: "3000" };

  beforeAll(async () => {
    await testImage();
    stack = await startFaultStack({
      capacity: 2,
      withWorker: false,
      // The provider creates the task and then never answers; no callbacks either, so nothing but
      // the provider itself knows the task exists.
      simulatorEnv: {
        SIM_RUN_MS: "300",
        SIM_TIMEOUT_RATE: "1",
        SIM_CONNECTION_FAULT_POINT: "after_create",
        SIM_HANG_MS: "60000",
        SIM_CALLBACK_LOSS: "1",
      },
      env: { CALLBACK_GRACE_MS: "300", POLL_MAX_INTERVAL_MS: "500" },
    });
  });
  afterAll(async () => {
    await Promise.all(children.map((child) => child.kill("SIGKILL")));
    await stack?.stop();
  });

  it("when the worker is SIGKILLed after the provider created the task, then the next worker adopts that task and the task succeeds with one provider task", async () => {
    const child = spawnService("worker", { ...stack.workerEnv({ ...locks, PROVIDER_TIMEOUT_MS: "60000" }), LOG_LEVEL: "info" });
    children.push(child);
    await child.ready;

    const { key } = await stack.newAccount();
    const task = await submitTask(stack, key);
    const sim = simAdmin(stack);
    await eventually("the provider task created", async () => ((await sim.tasks()).some((t) => t.external_task_id === task.id) ? true : undefined));
    const before = await taskRow(stack.db, task.id);
    expect(before).toMatchObject({ status: "submitting", attempts: 1, providerTaskId: null });

    expect(await child.kill("SIGKILL")).toEqual({ code: null, signal: "SIGKILL" });
    await sim.patch({ timeout_rate: 0 });
    await stack.startWorker(locks);

    const [done] = await settle(stack, [task], 20_000);
    expect(done).toMatchObject({ status: "succeeded", attempts: 2, failure: null });
    // One create call in all: the second attempt found the task by our id instead of creating it.
    await expectAllAccountedFor(stack, [{ ...task, status: "succeeded", createCalls: 1, imageSize: resultSize }], { capacity: 2 });

    const events = await taskEvents(stack, task);
    const attempts = events.filter((e) => e.to === "submitting").map((e) => e.detail?.attempt);
    expect(attempts).toEqual([1, 2]);
    // The step out of `submitting` came from the second attempt's lookup (the worker), not from a
    // callback or a poll; by then the provider's task may well have finished already.
    const secondAttempt = events.findIndex((e) => e.to === "submitting" && e.detail?.attempt === 2);
    expect(events[secondAttempt + 1]).toMatchObject({ from: "submitting", source: "worker", detail: { adopted: true } });
    expect(events.at(-1)).toMatchObject({ to: "succeeded" });
  });
});
