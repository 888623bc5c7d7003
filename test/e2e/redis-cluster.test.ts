import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, settle, simAdmin, startFaultStack, submitMany, testImage, type Submitted } from "../support/fault-kit.ts";
import { startRedisCluster, type RedisClusterHandle } from "../support/redis-cluster.ts";
import type { Stack } from "../support/stack.ts";

// The whole stack (API, worker, simulator) on a real 3-master Redis Cluster: queues spread over the
// nodes by their hash tags, a busy queue's slot moved mid-run (MOVED/ASK followed without a
// restart), and a node restarted empty mid-run (noticed per hash tag and rebuilt from Postgres).
// Each provider task is created once whatever Redis went through.

const CAPACITY = 4;

describe("on a Redis Cluster", () => {
  let cluster: RedisClusterHandle;
  let stack: Stack;
  beforeAll(async () => {
    await testImage();
    cluster = await startRedisCluster();
    stack = await startFaultStack({
      capacity: CAPACITY,
      simulatorEnv: { SIM_RUN_MS: "300-600" },
      env: { REDIS_CLUSTER_NODES: cluster.nodes },
      workerEnv: { REDIS_WATCHDOG_MS: "500" },
    });
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
    await cluster?.stop();
  });

  const expectEachCreatedOnce = async (tasks: Submitted[]) => {
    const calls = await simAdmin(stack).createCalls();
    for (const task of tasks) expect(calls.filter((c) => c.external_task_id === task.id).map((c) => c.count)).toEqual([1]);
  };

  it("when the hash slot of the busy submit queue moves to another node mid-run, then every task succeeds and none is created twice", async () => {
    const { key } = await stack.newAccount();
    const tasks = await submitMany(stack, key, 16);
    // Mid-run: some tasks at the provider, the rest waiting for slots in the submit queue.
    await eventually("tasks running at the provider", async () => ((await simAdmin(stack).tasks()).length >= CAPACITY ? true : undefined), 20_000);
    const slot = await cluster.slotOf(`${stack.env.queuePrefix}:{submit}:wait`);
    const from = await cluster.ownerOf(slot);
    await cluster.moveSlot(slot, (from + 1) % 3);
    expect(await cluster.ownerOf(slot)).toBe((from + 1) % 3);
    const done = await settle(stack, tasks, 45_000);
    expect(done.map((t) => t.status)).toEqual(tasks.map(() => "succeeded"));
    await expectEachCreatedOnce(tasks);
  }, 60_000);

  it("when the node holding the slot ledger restarts empty mid-run, then every task finishes and none is created twice", async () => {
    const { key } = await stack.newAccount();
    const tasks = await submitMany(stack, key, 12);
    await eventually("tasks running at the provider", async () => ((await simAdmin(stack).tasks()).filter((t) => tasks.some((s) => s.id === t.external_task_id)).length >= 2 ? true : undefined), 20_000);
    const ledgerNode = await cluster.ownerOf(await cluster.slotOf(`${stack.env.queuePrefix}:{provider}:provider:slots`));
    await cluster.restartEmpty(ledgerNode);
    const done = await settle(stack, tasks, 50_000);
    expect(done.map((t) => t.status)).toEqual(tasks.map(() => "succeeded"));
    await expectEachCreatedOnce(tasks);
  }, 75_000);
});
