import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { waitUntil } from "../support/batches.ts";
import { startFileServer } from "../support/file-server.ts";
import { call } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startPgBouncer, type PgBouncer } from "../support/pgbouncer.ts";
import { startFleet, type Fleet } from "../support/process-fleet.ts";
import { openSse, type SseEvent } from "../support/sse.ts";
import { startWebhookConsumer, type WebhookConsumer } from "../support/webhook-consumer.ts";

// Issue 15's "many machines" run on a single Redis, with Postgres behind PgBouncer in transaction
// mode: 2 API and 3 worker processes, a provider of capacity 6 that loses 30% of its callbacks and
// answers 10% of calls with a transient error, tasks submitted over both APIs (singles on both
// route families, and a batch), two workers and one API SIGKILLed mid-run. FLEET_TASKS sets the
// size: 60 in the suite, 300 with `npm run test:fleet`.

const TASKS = Number(process.env.FLEET_TASKS ?? 60);
const CAPACITY = 6;
const BOUNCER_POOL = 10;
const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 };

let bouncer: PgBouncer;
let fleet: Fleet;
let consumer: WebhookConsumer;
let files: Awaited<ReturnType<typeof startFileServer>>;
let serverConnectionsPeak = 0;

beforeAll(async () => {
  const template = inject("templateDatabaseUrl");
  bouncer = await startPgBouncer({ target: template, poolSize: BOUNCER_POOL });
  consumer = await startWebhookConsumer();
  files = await startFileServer({ "/photo.png": { body: await makeImage(400, 300) } });
  const timing = { CALLBACK_GRACE_MS: "1500", POLL_MAX_INTERVAL_MS: "1000", STALL_RECHECK_MS: "3000", PROVIDER_CAPACITY: String(CAPACITY) };
  fleet = await startFleet({
    templateDatabaseUrl: template,
    apis: 2,
    workers: 3,
    env: { REDIS_URL: inject("redisUrl"), ...timing },
    databaseEnv: (direct) => ({ DATABASE_URL: bouncer.via(direct), DATABASE_DIRECT_URL: direct }),
    workerEnv: {
      JOB_LOCK_MS: "3000",
      RECONCILE_EVERY_MS: "500",
      SUBMIT_RETRY_BASE_MS: "100",
      SUBMIT_RETRY_MAX_MS: "1000",
      SUBMIT_ATTEMPT_LEASE_MS: "3000",
      PROVIDER_TIMEOUT_MS: "5000",
    },
    simulatorEnv: { SIM_CAPACITY: String(CAPACITY), SIM_RUN_MS: "1000-2000", SIM_CALLBACK_LOSS: "0.3", SIM_ERROR_RATE: "0.1", SIM_SEED: "15" },
    logDir: path.join(process.env.FLEET_LOG_DIR ?? path.join("/tmp", "kling-fleet-logs"), `pgbouncer-${Date.now()}`),
  });
}, 120_000);
afterAll(async () => {
  await fleet?.stop();
  await consumer?.close();
  await files?.stop();
  await bouncer?.stop();
}, 60_000);

type Created = { id: string; via: number };

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

// Follows a task on one API until the stream ends; resolves with what it saw.
const follow = async (apiUrl: string, taskId: string): Promise<SseEvent[]> => {
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

const progress = async () => {
  const { rows } = await fleet.db.query<{ total: number; ended: number; succeeded: number }>(
    "select count(*)::int as total, count(*) filter (where status in ('succeeded', 'failed', 'canceled'))::int as ended, count(*) filter (where status = 'succeeded')::int as succeeded from task",
  );
  return rows[0]!;
};

describe(`${TASKS} tasks on 2 APIs and 3 workers, one Redis, Postgres through PgBouncer (transaction mode)`, () => {
  it("when workers and an API are SIGKILLed mid-run, then every task succeeds, each is created once at the provider within its capacity, SSE on one API sees what the other did, and every callback arrives in order", async () => {
    const database = new URL(fleet.databaseUrl).pathname.slice(1);
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const { rows } = await fleet.db.query<{ n: number }>("select count(*)::int as n from pg_stat_activity where datname = $1", [database]);
        serverConnectionsPeak = Math.max(serverConnectionsPeak, rows[0]!.n);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    })();

    const singles = Math.round(TASKS * 0.6);
    const batchItems = TASKS - singles;
    const created: Created[] = [];
    for (let from = 0; from < singles; from += 10) {
      created.push(...(await Promise.all(Array.from({ length: Math.min(10, singles - from) }, (_, k) => submitSingle(from + k)))));
    }
    // Native tasks made through API 0, followed on API 1 (API 0 is the one killed later).
    const followed = created.filter((task, i) => task.via === 0 && i % 3 !== 2).slice(0, 4);
    expect(followed).toHaveLength(4);
    const streams = followed.map((task) => follow(fleet.apis[1]!.url!, task.id));
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

    // The kills, as the run passes each mark; the killed process is started again meanwhile, as a
    // supervisor would, while the run goes on.
    const marks: [number, Fleet["apis"][number]][] = [
      [0.15, fleet.workers[0]!],
      [0.3, fleet.apis[0]!],
      [0.45, fleet.workers[1]!],
    ];
    const kills: { mark: number; ended: number }[] = [];
    const restarts: Promise<void>[] = [];
    await waitUntil(
      async () => {
        const now = await progress();
        while (marks.length > 0 && now.ended >= marks[0]![0] * TASKS) {
          const [mark, member] = marks.shift()!;
          expect(await member.kill()).toEqual({ code: null, signal: "SIGKILL" });
          kills.push({ mark, ended: now.ended });
          restarts.push(member.restart());
        }
        return now;
      },
      (now) => now.ended === TASKS && marks.length === 0,
      TASKS * 1_500 + 120_000,
      "every task ended",
    );
    await Promise.all(restarts);
    sampling = false;
    await sampler;
    // Each kill came mid-run, with tasks still to finish.
    expect(kills).toHaveLength(3);
    for (const kill of kills) expect(kill.ended).toBeLessThan(TASKS);

    // Every task succeeded.
    expect(await progress()).toEqual({ total: TASKS, ended: TASKS, succeeded: TASKS });
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
    expect(stats.peak_slots_in_use).toBeLessThanOrEqual(CAPACITY);
    const createCalls = simTasks.reduce((sum, t) => sum + t.create_count, 0);

    // SSE on API 1 followed tasks made through API 0 to their end.
    for (const events of await Promise.all(streams)) {
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

    // Postgres saw the bouncer's pool and the workers' LISTEN connections, not every app pool.
    console.log(`fleet: ${TASKS} tasks, kills at ${kills.map((k) => `${k.ended}/${TASKS}`).join(", ")}; ${createCalls} create calls (${stats.duplicate_external_task_ids} refused as duplicates); ${deliveries.length} callbacks; peak server connections ${serverConnectionsPeak} (apps' pools: 2 x 10 + 3 x 10)`);
    expect(serverConnectionsPeak).toBeLessThanOrEqual(BOUNCER_POOL + 5 + 3);
  }, TASKS * 2_000 + 240_000);
});
