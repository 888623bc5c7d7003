import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createProviderSlots } from "../../apps/domain/provider-capacity/provider-slots.ts";
import { holdSlotsOfRunningTasks } from "../../apps/domain/task/recover-redis-state.ts";
import { inFlightStatuses } from "../../apps/domain/task/task-status.ts";
import { eventually, settle, simAdmin, startFaultStack, submitTask, testImage } from "../support/fault-kit.ts";
import type { Stack } from "../support/stack.ts";
import { taskRow } from "../support/rows.ts";

// The sweeper re-holds the slots of tasks its read found running (a ledger Redis lost). Its read
// may be stale: a task that ended between the read and the hold must not keep slots, or the ledger
// counts one task more than the provider runs until the next sweep (seen as 7 of 6 slots held).

describe("re-holding the slots of running tasks", () => {
  let stack: Stack;
  let redis: Redis;
  beforeAll(async () => {
    await testImage();
    // The manual clock: the first task ends when the test says, the second runs until the stack stops.
    stack = await startFaultStack({ capacity: 2, simulatorEnv: { SIM_CLOCK: "manual" } });
    redis = new Redis(inject("redisUrl"), { maxRetriesPerRequest: null });
  });
  afterAll(async () => {
    redis?.disconnect();
    await stack?.stop();
  });

  it("when one of the tasks read as running has ended by the time of the hold, then only the still running one holds slots", async () => {
    const { key } = await stack.newAccount();
    const first = await submitTask(stack, key);
    await eventually("the first task at the provider", async () => (inFlightStatuses.includes((await taskRow(stack.db, first.id)).status as never) ? true : undefined));
    const stale = { id: first.id, n: 1 };
    await eventually("the provider holding the first task", async () => ((await simAdmin(stack).tasks()).some((t) => t.external_task_id === first.id) ? true : undefined));
    await simAdmin(stack).finish(first.id);
    const [ended] = await settle(stack, [first]);
    expect(ended.status).toBe("succeeded");

    const second = await submitTask(stack, key);
    await eventually("the second task at the provider", async () => (inFlightStatuses.includes((await taskRow(stack.db, second.id)).status as never) ? true : undefined));

    // A ledger of its own, as if Redis had lost the stack's one.
    const slots = createProviderSlots(redis, `repair-test-${randomUUID().slice(0, 8)}`, { capacity: 2, recoverMs: 60_000 });
    try {
      const held = await holdSlotsOfRunningTasks(stack.db, slots, [stale, { id: second.id, n: 1 }], inFlightStatuses);
      expect(held).toBe(1);
      expect((await slots.snapshot()).holders).toEqual({ [second.id]: 1 });
    } finally {
      await slots.close();
    }
  });
});
