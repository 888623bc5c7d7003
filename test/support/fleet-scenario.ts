import path from "node:path";
import { expect } from "vitest";
import { waitUntil } from "./batches.ts";
import { startFileServer } from "./file-server.ts";
import { call } from "./http.ts";
import { makeImage } from "./images.ts";
import { startFleet, type Fleet, type FleetOptions } from "./process-fleet.ts";
import { openSse, type SseEvent } from "./sse.ts";
import { startWebhookConsumer, type WebhookConsumer } from "./webhook-consumer.ts";

// Issue 15's "many machines" run, whatever Redis and Postgres are behind it: 2 API and 3 worker
// processes, a provider of capacity 6 that loses 30% of its callbacks and answers 10% of calls
// with a transient error, tasks submitted over both APIs (singles on both route families, and a
// batch), two workers and one API SIGKILLed mid-run, plus whatever else the caller does at its own
// marks (a hash slot moved between cluster nodes). The single-Redis-through-PgBouncer test and the
// cluster scale run both use it.

export const FLEET_CAPACITY = 6;
const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 };

export type FleetRun = {
  fleet: Fleet;
  consumer: WebhookConsumer;
  stop(): Promise<void>;
};

// The fleet with the scenario's timing and faults; `env`/`databaseEnv` say where Redis and
// Postgres are.
export const startScenarioFleet = async (options: Pick<FleetOptions, "templateDatabaseUrl" | "env" | "databaseEnv"> & { logName: string }): Promise<FleetRun & { files: Awaited<ReturnType<typeof startFileServer>> }> => {
  const consumer = await startWebhookConsumer();
  const files = await startFileServer({ "/photo.png": { body: await makeImage(400, 300) } });
  const timing = { CALLBACK_GRACE_MS: "1500", POLL_MAX_INTERVAL_MS: "1000", STALL_RECHECK_MS: "3000", PROVIDER_CAPACITY: String(FLEET_CAPACITY) };
  let fleet: Fleet;
  try {
    fleet = await startFleet({
      templateDatabaseUrl: options.templateDatabaseUrl,
      apis: 2,
      workers: 3,
      env: { ...timing, ...options.env },
      databaseEnv: options.databaseEnv,
      workerEnv: {
        JOB_LOCK_MS: "3000",
        RECONCILE_EVERY_MS: "500",
        SUBMIT_RETRY_BASE_MS: "100",
        SUBMIT_RETRY_MAX_MS: "1000",
        SUBMIT_ATTEMPT_LEASE_MS: "3000",
        PROVIDER_TIMEOUT_MS: "5000",
      },
      simulatorEnv: { SIM_CAPACITY: String(FLEET_CAPACITY), SIM_RUN_MS: "1000-2000", SIM_CALLBACK_LOSS: "0.3", SIM_ERROR_RATE: "0.1", SIM_SEED: "15" },
      logDir: path.join(process.env.FLEET_LOG_DIR ?? path.join("/tmp", "kling-fleet-logs"), `${options.logName}-${Date.now()}`),
    });
  } catch (error) {
    await consumer.close();
    await files.stop();
    throw error;
  }
  return {
    fleet,
    consumer,
    files,
    stop: async () => {
      await fleet.stop();
      await consumer.close();
      await files.stop();
    },
  };
};

// Something done once the run has ended `at` (a fraction) of its tasks; says what it did.
export type Mark = { at: number; act(): Promise<string> };

export type ScenarioFigures = { tasks: number; marks: string[]; createCalls: number; duplicatesRefused: number; callbacks: number; peakSlots: number; seconds: number };

type Created = { id: string; via: number };

// Follows a task on one API until the stream ends; resolves with what it saw.
const follow = async (fleet: Fleet, apiUrl: string, taskId: string): Promise<SseEvent[]> => {
  const stream = await openSse(new URL(`/v1/tasks/${taskId}/stream`, apiUrl).toString(), { authorization: `Bearer ${fleet.key}` });
  const seen: SseEvent[] = [];
  try {
    for (;;) {
      const event = await stream.next(120_000);
      seen.push(event);
      if (event.event === "end") return seen;
    }
  } finally {
    stream.close();
  }
};

const progress = async (fleet: Fleet) => {
  const { rows } = await fleet.db.query<{ total: number; ended: number; succeeded: number }>(
    "select count(*)::int as total, count(*) filter (where status in ('succeeded', 'failed', 'canceled'))::int as ended, count(*) filter (where status = 'succeeded')::int as succeeded from task",
  );
  return rows[0]!;
};

// Submits `tasks` tasks, SIGKILLs worker 0, API 0 and worker 1 as the run passes 15%, 30% and 45%
// (each started again meanwhile, as a supervisor would), does the caller's marks, and asserts the
// issue's list. Resolves with the run's figures.
export const runFleetScenario = async ({ fleet, consumer, files, tasks: TASKS, marks: extra = [] }: FleetRun & { files: Awaited<ReturnType<typeof startFileServer>>; tasks: number; marks?: Mark[] }): Promise<ScenarioFigures> => {
  const started = Date.now();
  const submitSingle = async (i: number): Promise<Created> => {
    const via = i % 2;
    const api = fleet.apis[via]!.url!;
    const callback_url = `${consumer.url}/single/${i}`;
    if (i % 3 === 2) {
      const created = await call(api, "POST", "/kling/v1/images/editing/expand", {
        key: fleet.key,
        body: { image: files.url("/photo.png"), up_expansion_ratio: 0.1, bottom_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1, n: "1", external_task_id: `single-${i}`, callback_url },
      });
      expect(created.status, JSON.stringify(created.body)).toBe(200);
      return { id: created.body.data.task_id, via };
    }
    const created = await call(api, "POST", "/v1/tasks", { key: fleet.key, body: { image: files.url("/photo.png"), ...ratios, external_task_id: `single-${i}`, callback_url } });
    expect(created.status, JSON.stringify(created.body)).toBe(202);
    return { id: created.body.id, via };
  };

  const singles = Math.round(TASKS * 0.6);
  const batchItems = TASKS - singles;
  const created: Created[] = [];
  // The first 4 native tasks made through API 0, followed on API 1 (API 0 is the one killed later)
  // from right after their creation: a stream opened once its task has ended shows one snapshot,
  // not changes made elsewhere.
  const streams: Promise<SseEvent[]>[] = [];
  for (let from = 0; from < singles; from += 10) {
    const chunk = await Promise.all(Array.from({ length: Math.min(10, singles - from) }, (_, k) => submitSingle(from + k)));
    chunk.forEach((task, k) => {
      if (streams.length < 4 && task.via === 0 && (from + k) % 3 !== 2) streams.push(follow(fleet, fleet.apis[1]!.url!, task.id));
    });
    created.push(...chunk);
  }
  expect(streams).toHaveLength(4);
  const batch = await call(fleet.apis[1]!.url!, "POST", "/v1/batches", {
    key: fleet.key,
    body: {
      name: "fleet",
      defaults: ratios,
      items: Array.from({ length: batchItems }, (_, i) => ({ image: files.url("/photo.png"), external_task_id: `item-${i}`, callback_url: `${consumer.url}/item/${i}` })),
    },
  });
  expect(batch.status, JSON.stringify(batch.body)).toBe(201);
  expect(batch.body.intake).toMatchObject({ accepted: batchItems, rejected: 0 });

  const restarts: Promise<void>[] = [];
  const kill = (member: Fleet["apis"][number]): Mark["act"] => async () => {
    expect(await member.kill()).toEqual({ code: null, signal: "SIGKILL" });
    restarts.push(member.restart());
    return `SIGKILL ${member.kind} ${member.index}`;
  };
  const marks: Mark[] = [
    { at: 0.15, act: kill(fleet.workers[0]!) },
    { at: 0.3, act: kill(fleet.apis[0]!) },
    { at: 0.45, act: kill(fleet.workers[1]!) },
    ...extra,
  ].sort((a, b) => a.at - b.at);
  const done: { what: string; ended: number }[] = [];
  await waitUntil(
    async () => {
      const now = await progress(fleet);
      while (marks.length > 0 && now.ended >= marks[0]!.at * TASKS) {
        const mark = marks.shift()!;
        done.push({ what: await mark.act(), ended: now.ended });
      }
      return now;
    },
    (now) => now.ended === TASKS && marks.length === 0,
    TASKS * 1_500 + 120_000,
    "every task ended",
  );
  await Promise.all(restarts);
  // Each mark came mid-run, with tasks still to finish.
  expect(done).toHaveLength(3 + extra.length);
  for (const mark of done) expect(mark.ended, mark.what).toBeLessThan(TASKS);

  // Every task succeeded.
  expect(await progress(fleet)).toEqual({ total: TASKS, ended: TASKS, succeeded: TASKS });
  const { rows: tasks } = await fleet.db.query<{ id: string }>("select id from task");

  // The provider created each task exactly once, and never ran more than its capacity. (Its
  // create_count counts calls, refused ones too: a create answered with a transient error, or one
  // refused as a duplicate after a worker died between the provider's answer and our write, is
  // a call that created nothing.)
  const simTasks = (await call(fleet.simulator.url, "GET", "/_sim/tasks")).body as { external_task_id: string; create_count: number }[];
  for (const { id } of tasks) expect(simTasks.filter((t) => t.external_task_id === id), id).toHaveLength(1);
  const stats = (await call(fleet.simulator.url, "GET", "/_sim/stats")).body;
  expect(stats.tasks_created).toBe(TASKS);
  expect(simTasks).toHaveLength(TASKS);
  expect(stats.peak_slots_in_use).toBeLessThanOrEqual(FLEET_CAPACITY);
  const createCalls = simTasks.reduce((sum, t) => sum + t.create_count, 0);

  // SSE on API 1 followed tasks made through API 0 to their end.
  for (const events of await Promise.all(streams)) {
    // Connected before its task ended (else the check below would prove nothing)...
    expect(JSON.parse(events.find((e) => e.event === "task")!.data).status).not.toBe("succeeded");
    const transitions = events.filter((e) => e.event === "transition").map((e) => JSON.parse(e.data).to);
    expect(transitions.at(-1)).toBe("succeeded");
    expect(events.at(-1)?.event).toBe("end");
  }

  // Every callback event that Postgres recorded arrived, each task's in the order of its events.
  const { rows: deliveries } = await fleet.db.query<{ id: string; task_id: string | null; status: string }>(
    "select id, task_id, status from webhook_delivery order by seq",
  );
  const taskIds = new Set(tasks.map((t) => t.id));
  expect(new Set(deliveries.map((d) => d.task_id))).toEqual(taskIds);
  await waitUntil(
    async () => new Set(consumer.received.map((r) => r.headers["webhook-id"])),
    (arrived) => deliveries.every((d) => arrived.has(d.id)),
    30_000,
    "every callback arrived",
  );
  const firstArrival = new Map<string, number>();
  consumer.received.forEach((r, i) => {
    const id = String(r.headers["webhook-id"]);
    if (!firstArrival.has(id)) firstArrival.set(id, i);
  });
  const byTask = new Map<string, string[]>();
  for (const d of deliveries) byTask.set(d.task_id!, [...(byTask.get(d.task_id!) ?? []), d.id]);
  for (const [taskId, ids] of byTask) {
    const arrivalOrder = [...ids].sort((a, b) => firstArrival.get(a)! - firstArrival.get(b)!);
    expect(arrivalOrder, taskId).toEqual(ids);
  }
  return {
    tasks: TASKS,
    marks: done.map((m) => `${m.what} at ${m.ended}/${TASKS}`),
    createCalls,
    duplicatesRefused: stats.duplicate_external_task_ids,
    callbacks: deliveries.length,
    peakSlots: stats.peak_slots_in_use,
    seconds: Math.round((Date.now() - started) / 1000),
  };
};
