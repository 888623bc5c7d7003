import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, simAdmin, startFaultStack, submitTask, testImage } from "../support/fault-kit.ts";
import type { Stack } from "../support/stack.ts";

// The poll that notices a lost end callback is scheduled from a task's submission time
// (apply-provider-report.ts). That time is the provider's own start mapped to our clock by what the
// creates' answers taught (provider-run-time.ts), not when a late first report reached us: a task
// whose first report came late is still polled at its end, not that much after it.

// Below the test stack's PROVIDER_TIMEOUT_MS (5 s): the held create is answered, not timed out.
const CALLBACK_DELAY_MS = 3_000;

let stack: Stack;
beforeAll(async () => {
  await testImage();
  // Manual clock: nothing ends on its own, so the test orders what happens.
  stack = await startFaultStack({ capacity: 4, simulatorEnv: { SIM_CLOCK: "manual" } });
});
afterAll(() => stack?.stop());

const submittedAt = (id: string) =>
  eventually(`task ${id} submitted`, async () => {
    const row = await stack.db.selectFrom("task").select("submittedAt").where("id", "=", id).executeTakeFirst();
    return row?.submittedAt ?? undefined;
  });

const createdAtProvider = async (id: string): Promise<number> => {
  const tasks = (await simAdmin(stack).tasks()) as unknown as { external_task_id: string | null; created_at: number }[];
  const task = tasks.find((t) => t.external_task_id === id);
  if (!task) throw new Error(`task ${id} is not at the provider`);
  return task.created_at;
};

describe("the submission time a task's polls count from", () => {
  it("when a task's first report reaches us late, then its submission time is the provider's start as earlier creates mapped it, not the late arrival", async () => {
    const { key } = await stack.newAccount();
    // A create answered as usual teaches how far the provider's created_at is from our clock.
    const first = await submitTask(stack, key);
    await submittedAt(first.id);

    // Now the provider answers the create only after its first callback, which it holds back.
    await simAdmin(stack).patch({ callback_mode: "before_create_response", callback_delay_ms: CALLBACK_DELAY_MS });
    const late = await submitTask(stack, key);
    const lateLag = (await submittedAt(late.id)).getTime() - (await createdAtProvider(late.id));

    // Both reports of the late task (the held callback, then the create's answer) reached us at
    // least CALLBACK_DELAY_MS after the provider made it; the anchor is the first create's mapping.
    expect(lateLag).toBeLessThan(CALLBACK_DELAY_MS);
    expect(lateLag).toBeGreaterThanOrEqual(0);
  });
});
