import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { expect } from "vitest";
import { bullQueueName } from "../../apps/domain/queues/job-catalog.ts";
import { eventually, getTask, readiness, simAdmin } from "./fault-kit.ts";
import type { Stack } from "./stack.ts";
import { taskRow } from "./rows.ts";

export type TaskExpectation = {
  id: string;
  key: string;
  status: "succeeded" | "failed";
  failureClass?: string;
  // Provider tasks that must exist for it (external_task_id = our task id): 1 for every task that
  // reached the provider, 0 for one that never should have (or was refused at create).
  providerTasks?: 0 | 1;
  // Create calls that carried its id, accepted or refused (a 1303 refusal costs nothing, so this is
  // only asserted when given): 1 proves that no second create was even tried (the adopt path); 2
  // for a task the provider lost and ours sent again.
  createCalls?: number;
  // Result images, when it succeeded (defaults to n images of any size).
  imageSize?: { width: number; height: number };
};

export type AccountingOptions = {
  // The most slots the simulator may have let this account hold (its capacity less foreign slots).
  capacity: number;
  // The orchestrator's slot ledger holds nothing once all is done (false where the provider still
  // runs a task we gave up on, e.g. after our deadline).
  ledgerEmpty?: boolean;
  // Provider tasks dropped with DELETE /_sim/tasks: the only way one external_task_id may have been
  // accepted twice (the simulator refuses and counts any other second create).
  forgotten?: number;
};

// Every task accounted for: each in its expected end state, exactly the provider tasks and create
// calls it should have caused (so nothing was created or paid twice), every provider task one of
// ours, and the provider's slots never over capacity.
export const expectAllAccountedFor = async (
  stack: Pick<Stack, "db"> & { api: { url: string }; simulator: { url: string }; env: Pick<Stack["env"], "redisUrl" | "queuePrefix"> },
  expected: TaskExpectation[],
  options: AccountingOptions,
) => {
  const sim = simAdmin(stack);
  const [simTasks, createCalls, stats] = await Promise.all([sim.tasks(), sim.createCalls(), sim.stats()]);

  for (const want of expected) {
    const task = await getTask(stack, want);
    const label = `task ${want.id}`;
    expect(task.status, label).toBe(want.status);
    if (want.status === "failed") {
      if (want.failureClass) expect(task.failure?.class, label).toBe(want.failureClass);
    } else {
      expect(task.failure, label).toBeNull();
      expect(task.images, label).toHaveLength(task.request.n);
      if (want.imageSize) for (const image of task.images) expect(image, label).toMatchObject(want.imageSize);
    }

    const providerTasks = want.providerTasks ?? 1;
    const mine = simTasks.filter((t) => t.external_task_id === want.id);
    expect(mine, `${label}: provider tasks`).toHaveLength(providerTasks);
    const row = await taskRow(stack.db, want.id);
    if (providerTasks === 1) {
      expect(mine[0]!.task_id, `${label}: our provider task id`).toBe(row.providerTaskId);
      expect(mine[0]!.n, label).toBe(row.n);
    }
    if (want.createCalls !== undefined) {
      const calls = createCalls.find((c) => c.external_task_id === want.id)?.count ?? 0;
      expect(calls, `${label}: create calls`).toBe(want.createCalls);
    }
  }

  // Nothing at the provider that is not one of our tasks.
  const ours = new Set((await stack.db.selectFrom("task").select("id").execute()).map((t) => t.id));
  for (const t of simTasks) expect(ours.has(t.external_task_id ?? ""), `provider task ${t.task_id} is not one of ours`).toBe(true);

  expect(stats.duplicate_external_task_ids, "creates refused as duplicate external_task_id").toBe(0);
  expect(stats.tasks_forgotten, "provider tasks the simulator was told to forget").toBe(options.forgotten ?? 0);
  expect(stats.peak_slots_in_use).toBeLessThanOrEqual(options.capacity);

  if (options.ledgerEmpty !== false) {
    // A task's slots go back just after its end is committed, by the process that ended it; the
    // ledger is read once a reconcile sweep that began after every end has run (an event), not
    // after a moment on the clock (2 s was not enough for that moment on a loaded machine).
    await aSweepAfterNow(stack.env);
    expect((await readiness(stack)).provider.slots.in_use, "slots still held in our ledger").toBe(0);
  }
  return { stats, simTasks };
};

// Waits until a worker's reconcile sweep that began after this call has finished. By then every
// release that follows an end has been made or, where a process died between the end and its
// release, repaired by the sweep (reconcile-tasks.ts): what the ledger still holds, it holds for
// tasks it counts as running. The sweep runs every RECONCILE_EVERY_MS; the bound is a hang guard.
const aSweepAfterNow = async (env: Pick<Stack["env"], "redisUrl" | "queuePrefix">) => {
  const connection = new Redis(env.redisUrl, { maxRetriesPerRequest: null });
  const sweeps = new Queue(bullQueueName("reconcile"), { connection, prefix: env.queuePrefix });
  try {
    // Redis's clock and the workers' (they stamp processedOn) are this machine's.
    const [seconds, micros] = await connection.time();
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    await eventually("a reconcile sweep begun after every task ended", async () => {
      const recent = await sweeps.getJobs(["completed"], 0, 9);
      return recent.some((job) => (job.processedOn ?? 0) > now) ? true : undefined;
    }, 30_000);
  } finally {
    await sweeps.close();
    connection.disconnect();
  }
};
