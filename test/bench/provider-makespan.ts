import { randomBytes } from "node:crypto";
// Benchmark (not a test): how close does the orchestrator keep the provider's slots busy?
//
// Pushes BENCH_TASKS tasks of mixed `n` through the simulator (capacity C, fixed run time T) via the
// public API, once with clean provider behaviour and once with lost callbacks and transient errors,
// and prints the makespan against the ideal bound Σ(n·T)/C as a ratio, plus where the slot-time went.
// It asserts nothing: it exits non-zero only when the run itself broke (tasks not terminal within the
// timeout, infrastructure errors). Run: `npm run bench:provider` (see README, "Benchmark").
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { Redis } from "ioredis";
import pg from "pg";
import sharp from "sharp";
import { parseApiConfig } from "../../apps/api/api.config.ts";
import { startApi, type RunningApi } from "../../apps/api/api.server.ts";
import { createAccountWithKey } from "../../apps/domain/account/api-key.ts";
import { prepareDatabase } from "../../apps/domain/db/prepare-database.ts";
import { createDb, type Db } from "../../apps/domain/db/database.ts";
import { parseSimulatorConfig } from "../../apps/simulator/simulator.config.ts";
import { startSimulator, type RunningSimulator } from "../../apps/simulator/simulator.server.ts";
import { parseWorkerConfig } from "../../apps/worker/worker.config.ts";
import { startWorker, type RunningWorker } from "../../apps/worker/worker.server.ts";
import { seededRandom } from "../../apps/simulator/seeded-random.ts";
import { dist, mean, pct, quantile, s, sleep, sum } from "./bench-figures.ts";

// ---------------------------------------------------------------------------------------------
// Parameters

const env = process.env;
const int = (name: string, fallback: number) => {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name}: expected a non-negative number, got '${raw}'`);
  return value;
};

const params = {
  tasks: int("BENCH_TASKS", 300),
  capacity: int("BENCH_CAPACITY", 20),
  runMs: int("BENCH_RUN_MS", 2_000),
  workers: Math.max(1, int("BENCH_WORKERS", 1)),
  seed: int("BENCH_SEED", 20_240_601),
  // Relative weights of n = 1, 2, 3, ... (default: mostly small tasks, mean n = 2.0).
  nWeights: (env.BENCH_N_WEIGHTS ?? "4,3,2,1").split(",").map(Number),
  intakeConcurrency: Math.max(1, int("BENCH_INTAKE_CONCURRENCY", 16)),
  sampleMs: Math.max(20, int("BENCH_SAMPLE_MS", 100)),
  callbackLoss: int("BENCH_CALLBACK_LOSS", 0.2),
  errorRate: int("BENCH_ERROR_RATE", 0.1),
  phases: (env.BENCH_PHASES ?? "clean,faulty,routes").split(",").map((p) => p.trim()).filter(Boolean),
  // The two-route phase: route "a" answers 404 on its route for this long, from this share of the
  // ideal makespan on; its circuit then opens and its waiting tasks fail over to route "b".
  outageMs: int("BENCH_OUTAGE_MS", 5_000),
  outageAt: int("BENCH_OUTAGE_AT", 0.3),
  // A route's circuit stays open this long before a probe (production default 30 s): the outage
  // above is short, and the phase measures failover and return, not the probe interval.
  routesCircuitOpenMs: int("BENCH_ROUTES_CIRCUIT_OPEN_MS", 2_000),
};
if (params.nWeights.some((w) => !Number.isFinite(w) || w < 0) || params.nWeights.every((w) => w === 0)) {
  throw new Error(`BENCH_N_WEIGHTS: expected comma-separated non-negative weights, got '${env.BENCH_N_WEIGHTS}'`);
}
for (const phase of params.phases) {
  if (phase !== "clean" && phase !== "faulty" && phase !== "routes") throw new Error(`BENCH_PHASES: unknown phase '${phase}' (clean, faulty, routes)`);
}

// The orchestrator runs with its production defaults (apps/*/*.config.ts), so the figures describe
// what a deployment gets; any worker or API variable set in the environment overrides its default.
const knobNames = [
  "CALLBACK_GRACE_MS",
  "STALL_RECHECK_MS",
  "POLL_MAX_INTERVAL_MS",
  "RECONCILE_EVERY_MS",
  "SUBMIT_RETRY_BASE_MS",
  "SUBMIT_RETRY_MAX_MS",
  "PROVIDER_TIMEOUT_MS",
  "SLOT_WAIT_MS",
  "SUBMIT_CONCURRENCY",
  "ARCHIVE_CONCURRENCY",
  "PROVIDER_CAPACITY_RECOVER_MS",
  "CIRCUIT_FAILURE_THRESHOLD",
  "CIRCUIT_OPEN_MS",
];
const knobs = Object.fromEntries(knobNames.flatMap((k) => (env[k] ? [[k, env[k]]] : [])));

const postgresServer = (() => {
  if (!env.DATABASE_URL) return env.TEST_POSTGRES_URL ?? "postgresql://postgres@127.0.0.1:5432";
  const url = new URL(env.DATABASE_URL);
  url.pathname = "";
  return url.toString().replace(/\/$/, "");
})();
const redisUrl = env.REDIS_URL ?? env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const runId = `${process.pid}_${Date.now().toString(36)}`;
const templateName = `kling_bench_${runId}`;

// ---------------------------------------------------------------------------------------------
// Small helpers

const drawNs = (count: number): number[] => {
  const random = seededRandom(params.seed);
  const total = params.nWeights.reduce((a, b) => a + b, 0);
  return Array.from({ length: count }, () => {
    let roll = random() * total;
    for (const [i, w] of params.nWeights.entries()) {
      if (roll < w) return i + 1;
      roll -= w;
    }
    return params.nWeights.length;
  });
};

// The makespan of the tasks in line order with no latency at all: each starts as soon as it fits
// beside those running and none behind it may go first (the ledger keeps room for the head of the
// line). What separates this from Σ(n·T)/C is fragmentation, the line order's own price; what
// separates the measured makespan from this is latency.
const lineOrderMakespanMs = (ns: number[], capacity: number, runMs: number) => {
  let now = 0;
  let used = 0;
  const running: { end: number; n: number }[] = [];
  for (const n of ns) {
    if (n > capacity) continue; // fails at once (over_capacity)
    while (used + n > capacity) {
      running.sort((a, b) => a.end - b.end);
      const first = running.shift()!;
      now = Math.max(now, first.end);
      used -= first.n;
    }
    running.push({ end: now + runMs, n });
    used += n;
  }
  return Math.max(0, ...running.map((r) => r.end));
};

// The same with the ledger's backfilling (slot-ledger.lib.lua, backfill_fits; its margins copied
// here: a holder ends within [since + T, since + T·1.05 + 250 ms]): a task behind the blocked head
// starts at once when no set of holders that may end first would let the head start without its
// room. Still no latency: holders end at since + T, but the rule only knows their windows.
const BACKFILL_LATE_SHARE = 1.05;
const BACKFILL_LATE_MS = 250;
const backfillFits = (running: { since: number; n: number }[], now: number, runMs: number, k: number, n: number) => {
  const windows = running.map((r) => {
    const lo = Math.max(now, r.since + runMs);
    const hi = r.since + runMs * BACKFILL_LATE_SHARE + BACKFILL_LATE_MS;
    return { lo, hi: hi < now ? Infinity : Math.max(hi, lo), n: r.n };
  });
  const limit = k + n;
  for (const { lo: t } of windows) {
    let forced = 0;
    const can = Array.from({ length: limit }, (_, i) => i === 0);
    for (const w of windows) {
      if (w.hi <= t) forced += w.n;
      else if (w.lo <= t) for (let x = limit - 1; x >= w.n; x--) if (can[x - w.n]) can[x] = true;
    }
    for (let x = 0; x < limit - forced; x++) if (can[x] && forced + x >= k) return false;
  }
  return true;
};
const backfillMakespanMs = (ns: number[], capacity: number, runMs: number) => {
  const waiting = ns.filter((n) => n <= capacity);
  const running: { since: number; end: number; n: number }[] = [];
  let now = 0;
  let last = 0;
  for (;;) {
    for (let started = true; started; ) {
      started = false;
      const used = sum(running.map((r) => r.n));
      if (waiting.length > 0 && used + waiting[0]! <= capacity) {
        running.push({ since: now, end: now + runMs, n: waiting.shift()! });
        started = true;
        continue;
      }
      const k = (waiting[0] ?? 0) - (capacity - used);
      // Those waiting in place (the first `capacity` in line) may backfill, in line order.
      for (let i = 1; i < Math.min(waiting.length, capacity + 1); i++) {
        const n = waiting[i]!;
        if (used + n <= capacity && backfillFits(running, now, runMs, k, n)) {
          waiting.splice(i, 1);
          running.push({ since: now, end: now + runMs, n });
          started = true;
          break;
        }
      }
    }
    running.sort((a, b) => a.end - b.end);
    const first = running.shift();
    if (!first) return last;
    now = last = first.end;
  }
};

const msDist = (xs: number[]) =>
  xs.length ? `mean ${mean(xs).toFixed(0)} ms, p50 ${quantile(xs, 0.5).toFixed(0)} ms, p95 ${quantile(xs, 0.95).toFixed(0)} ms, max ${Math.max(...xs)} ms (${xs.length})` : "none";

const adminUrl = () => `${postgresServer}/postgres`;
const withAdmin = async <T>(fn: (client: pg.Client) => Promise<T>): Promise<T> => {
  const client = new pg.Client({ connectionString: adminUrl() });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
};
const cloneDatabase = (name: string) =>
  withAdmin(async (client) => {
    for (let attempt = 0; ; attempt++) {
      try {
        await client.query(`create database "${name}" template "${templateName}"`);
        return `${postgresServer}/${name}`;
      } catch (error) {
        if (attempt >= 50 || !/being accessed by other users/.test((error as Error).message)) throw error;
        await sleep(100);
      }
    }
  });
const dropBenchDatabases = () =>
  withAdmin(async (client) => {
    const { rows } = await client.query<{ datname: string }>("select datname from pg_database where datname like $1", [`${templateName}%`]);
    for (const { datname } of rows) await client.query(`drop database if exists "${datname}" with (force)`);
  });

const deleteKeys = async (redis: Redis, prefix: string) => {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 500);
    cursor = next;
    if (keys.length) await redis.del(...keys);
  } while (cursor !== "0");
};

const getJson = async <T>(url: string): Promise<T> => {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return (await response.json()) as T;
};

// ---------------------------------------------------------------------------------------------
// One phase

type SimStats = {
  tasks_created: number;
  tasks_succeeded: number;
  tasks_failed: number;
  duplicate_external_task_ids: number;
  rejected_over_capacity: number;
  create_calls: number;
  get_calls: number;
  list_calls: number;
  errors_injected: number;
  callbacks_sent: number;
  callbacks_lost: number;
  callbacks_failed: number;
  slots_in_use: number;
  peak_slots_in_use: number;
  capacity: number;
};
type SimTaskRow = {
  task_id: string;
  external_task_id: string | null;
  status: string;
  n: number;
  create_count: number;
  run_ms: number;
  created_at: number;
  updated_at: number;
};
type Sample = { t: number; sim: number; ledger: number; effective: number };

type PhaseResult = {
  name: string;
  routes: number;
  ratio: number;
  providerRatio: number;
  duplicates: number;
  peak: number;
  capacity: number;
  failed: number;
};

type Cleanup = () => Promise<void>;

type PhaseName = "clean" | "faulty" | "routes";

const runPhase = async (name: PhaseName, ns: number[], image: string, cleanups: Cleanup[]): Promise<PhaseResult> => {
  const C = params.capacity;
  const T = params.runMs;
  const faulty = name === "faulty";
  // The routes phase splits the same capacity over two routes (two simulators): the same bound
  // Σ(n·T)/C, with one route failing over mid-run.
  const twoRoutes = name === "routes";
  const routeCapacities = twoRoutes ? [Math.ceil(C / 2), Math.floor(C / 2)] : [C];
  const queuePrefix = `bench${runId.replace(/_/g, "")}${name}`;
  const databaseUrl = await cloneDatabase(`${templateName}_${name}`);
  const storageDir = await mkdtemp(path.join(tmpdir(), `kling-bench-${name}-`));
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 2 });
  cleanups.push(async () => {
    await deleteKeys(redis, queuePrefix).catch(() => undefined);
    redis.disconnect();
    await rm(storageDir, { recursive: true, force: true });
  });

  const simulators: RunningSimulator[] = [];
  for (const capacity of routeCapacities) {
    const simulator = await startSimulator(
      parseSimulatorConfig({
        SIMULATOR_PORT: "0",
        LOG_LEVEL: "silent",
        SIM_CAPACITY: String(capacity),
        SIM_RUN_MS: String(T),
        SIM_CALLBACK_LOSS: faulty ? String(params.callbackLoss) : "0",
        SIM_ERROR_RATE: faulty ? String(params.errorRate) : "0",
      }),
    );
    simulators.push(simulator);
    cleanups.push(() => simulator.stop());
  }
  const simulator = simulators[0]!;
  const routeNames = twoRoutes ? ["a", "b"] : [];
  const providerEnv = twoRoutes
    ? {
        PROVIDER_ROUTES: JSON.stringify(
          simulators.map((sim, i) => ({ name: routeNames[i], kind: "simulator", baseUrl: sim.url, apiKey: "sim-local-key", capacity: routeCapacities[i] })),
        ),
        CIRCUIT_OPEN_MS: env.CIRCUIT_OPEN_MS ?? String(params.routesCircuitOpenMs),
      }
    : { PROVIDER_CAPACITY: String(C) };
  const common = {
    ...knobs,
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    QUEUE_PREFIX: queuePrefix,
    STORAGE_DIR: storageDir,
    // BENCH_LOG_LEVEL: the API's and worker's logs (JSON lines on stdout), e.g. to follow one task.
    LOG_LEVEL: env.BENCH_LOG_LEVEL ?? "silent",
    ...providerEnv,
    SERVER_KEY: randomBytes(32).toString("base64url"),
  };
  const api: RunningApi = await startApi(parseApiConfig({ ...common, PORT: "0" }));
  cleanups.push(() => api.stop());
  const workers: RunningWorker[] = [];
  cleanups.push(async () => {
    await Promise.all(workers.map((w) => w.stop()));
  });
  for (let i = 0; i < params.workers; i++) {
    workers.push(
      await startWorker(
        parseWorkerConfig({
          ...common,
          PUBLIC_BASE_URL: api.url,
          ...(twoRoutes ? {} : { PROVIDER: "simulator", PROVIDER_BASE_URL: simulator.url }),
          ALLOWED_PRIVATE_HOSTS: "127.0.0.1",
        }),
      ),
    );
  }
  const db: Db = createDb(databaseUrl, { poolSize: 4 });
  cleanups.push(() => db.destroy());
  const { key } = await createAccountWithKey(db, `bench-${name}`);

  // Timeline of slot use: the provider's own count, our Redis ledger and our effective capacity.
  const samples: Sample[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const t = Date.now();
      try {
        const keyPrefixes = twoRoutes ? routeNames.map((r) => `${queuePrefix}:{route:${r}}`) : [`${queuePrefix}:{provider}`];
        const [stats, held, effective] = await Promise.all([
          Promise.all(simulators.map((sim) => getJson<SimStats>(`${sim.url}/_sim/stats`))),
          Promise.all(keyPrefixes.map((k) => redis.hvals(`${k}:provider:slots`))),
          Promise.all(keyPrefixes.map((k) => redis.get(`${k}:provider:effective`))),
        ]);
        samples.push({
          t,
          sim: sum(stats.map((x) => x.slots_in_use)),
          ledger: sum(held.flat().map(Number)),
          effective: sum(effective.map((e, i) => Math.min(routeCapacities[i]!, Number(e ?? routeCapacities[i])))),
        });
      } catch {
        // a missed sample only coarsens the timeline
      }
      await sleep(Math.max(0, params.sampleMs - (Date.now() - t)));
    }
  })();

  // Everything runs on this one event loop (2 cores): its delay and the CPU used say how much of the
  // latency below is contention rather than the orchestrator's own waiting.
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  const cpuBefore = process.cpuUsage();

  // Intake: every task through the public API, a bounded number at once.
  const intakeStarted = Date.now();
  // The two-route phase: route a's provider answers 404 on its route for a while, mid-run.
  const outage: { from?: number; to?: number } = {};
  const outageDone = twoRoutes
    ? (async () => {
        const idealSoFar = (sum(ns) * T) / C;
        await sleep(params.outageAt * idealSoFar);
        const patch = (body: unknown) =>
          fetch(`${simulator.url}/_sim/config`, { method: "PATCH", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
        outage.from = Date.now();
        await patch({ route_unavailable: true });
        await sleep(params.outageMs);
        await patch({ route_unavailable: false });
        outage.to = Date.now();
      })()
    : Promise.resolve();
  let next = 0;
  let intakeErrors = 0;
  const lane = async () => {
    while (next < ns.length) {
      const i = next++;
      const body = {
        image,
        up_expansion_ratio: 0.1,
        down_expansion_ratio: 0.1,
        left_expansion_ratio: 0.1,
        right_expansion_ratio: 0.1,
        n: ns[i],
        external_task_id: `bench-${i}`,
      };
      for (let attempt = 1; ; attempt++) {
        // A connection the API closed as a request went out on it (keep-alive race, more frequent on
        // a loaded machine) is retried like a refused POST: the same external_task_id answers 409
        // if the first one was accepted after all.
        const answer = await fetch(`${api.url}/v1/tasks`, {
          method: "POST",
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
          body: JSON.stringify(body),
        }).then(
          async (response) => ({ status: response.status, text: await response.text() }),
          (error: Error) => ({ status: 0, text: `${error.message} ${String((error.cause as Error | undefined)?.message ?? "")}` }),
        );
        if (answer.status === 202) break;
        intakeErrors++;
        if (answer.status === 409) break; // an earlier attempt was accepted after all
        if (attempt >= 3) throw new Error(`intake of task ${i} failed: HTTP ${answer.status} ${answer.text.slice(0, 300)}`);
        await sleep(200 * attempt);
      }
    }
  };
  await Promise.all(Array.from({ length: params.intakeConcurrency }, lane));
  const intakeMs = Date.now() - intakeStarted;

  // Wait until every task is terminal.
  const idealMs = (sum(ns) * T) / C;
  const timeoutMs = Number(env.BENCH_TIMEOUT_MS ?? Math.max(300_000, 8 * idealMs));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const byStatus = await db
      .selectFrom("task")
      .select(["status", (eb) => eb.fn.countAll<string>().as("count")])
      .where("status", "not in", ["succeeded", "failed", "canceled"])
      .groupBy("status")
      .execute();
    const open = byStatus.reduce((total, g) => total + Number(g.count), 0);
    if (open === 0) break;
    if (Date.now() > deadline) {
      throw new Error(`${name}: ${open} tasks not terminal after ${s(timeoutMs)}: ${byStatus.map((g) => `${g.status}=${g.count}`).join(" ")}`);
    }
    await sleep(500);
  }
  sampling = false;
  await sampler;
  await outageDone;
  loopDelay.disable();
  const cpu = process.cpuUsage(cpuBefore);
  const phaseWallMs = Date.now() - intakeStarted;

  // Collect.
  const tasks = await db
    .selectFrom("task")
    .select(["id", "n", "status", "acceptedAt", "submittedAt", "finishedAt", "attempts", "transientFailures", "resubmissions", "failureClass", "failureMessage"])
    .execute();
  const events = await db.selectFrom("taskEvent").select(["taskId", "toStatus", "source", "createdAt"]).orderBy("id", "asc").execute();
  const statsByRoute = await Promise.all(simulators.map((sim) => getJson<SimStats>(`${sim.url}/_sim/stats`)));
  const simTasks = (await Promise.all(simulators.map((sim) => getJson<SimTaskRow[]>(`${sim.url}/_sim/tasks`)))).flat();
  // Summed over the routes; a peak is each route's own peak, summed (an upper bound on the peak at once).
  const stats = Object.fromEntries(
    (Object.keys(statsByRoute[0]!) as (keyof SimStats)[]).map((k) => [k, sum(statsByRoute.map((x) => Number(x[k]) || 0))]),
  ) as SimStats;
  const byRoute = twoRoutes
    ? await db.selectFrom("task").select(["route", (eb) => eb.fn.countAll<string>().as("count")]).groupBy("route").execute()
    : [];

  // Per task timeline.
  type Timeline = {
    n: number;
    accepted: number;
    firstSubmitting?: number;
    lastSubmitting?: number;
    submitted?: number;
    archiving?: number;
    archivingSource?: string;
    succeeded?: number;
  };
  const timelines = new Map<string, Timeline>();
  for (const t of tasks) timelines.set(t.id, { n: t.n, accepted: t.acceptedAt.getTime() });
  for (const e of events) {
    const tl = timelines.get(e.taskId);
    if (!tl) continue;
    const at = e.createdAt.getTime();
    if (e.toStatus === "submitting") {
      tl.firstSubmitting ??= at;
      tl.lastSubmitting = at;
    } else if (e.toStatus === "submitted" || (e.toStatus === "processing" && tl.submitted === undefined)) tl.submitted ??= at;
    else if (e.toStatus === "archiving") {
      tl.archiving = at;
      tl.archivingSource = e.source;
    } else if (e.toStatus === "succeeded") tl.succeeded = at;
  }
  const simByTask = new Map<string, SimTaskRow[]>();
  for (const st of simTasks) {
    if (!st.external_task_id) continue;
    const list = simByTask.get(st.external_task_id) ?? [];
    list.push(st);
    simByTask.set(st.external_task_id, list);
  }

  const succeeded = tasks.filter((t) => t.status === "succeeded");
  const failed = tasks.filter((t) => t.status !== "succeeded");
  const all = [...timelines.values()];
  const firstAccepted = Math.min(...all.map((t) => t.accepted));
  const lastDone = Math.max(...tasks.map((t) => t.finishedAt?.getTime() ?? 0));
  const makespanMs = lastDone - firstAccepted;
  const firstSubmitting = Math.min(...all.map((t) => t.firstSubmitting ?? Infinity));
  const lastArchiving = Math.max(...all.map((t) => t.archiving ?? 0));
  const providerMakespanMs = lastArchiving - firstSubmitting;
  const simStart = Math.min(...simTasks.map((t) => t.created_at));
  const simEnd = Math.max(...simTasks.map((t) => t.updated_at));
  const simMakespanMs = simEnd - simStart;
  const ratio = makespanMs / idealMs;
  const providerRatio = providerMakespanMs / idealMs;

  const duplicatedTasks = [...simByTask.values()].filter((list) => list.length > 1).length;
  const duplicates = duplicatedTasks + stats.duplicate_external_task_ids;
  const retriedCreates = simTasks.filter((t) => t.create_count > 1).length;
  const providerSlotMs = sum(simTasks.map((t) => t.n * (t.updated_at - t.created_at)));

  // Where the time goes, per task.
  const headMs = firstSubmitting - firstAccepted;
  const createLatency: number[] = [];
  const detectCallback: number[] = [];
  const detectPoll: number[] = [];
  const archiveMs: number[] = [];
  let preCreateSlotMs = 0;
  let detectSlotMs = 0;
  for (const [id, tl] of timelines) {
    const sim = simByTask.get(id)?.at(-1);
    if (tl.lastSubmitting !== undefined && tl.submitted !== undefined) createLatency.push(tl.submitted - tl.lastSubmitting);
    if (sim && tl.lastSubmitting !== undefined) preCreateSlotMs += tl.n * Math.max(0, sim.created_at - tl.lastSubmitting);
    if (sim && tl.archiving !== undefined && (sim.status === "succeed" || sim.status === "failed")) {
      const lag = Math.max(0, tl.archiving - sim.updated_at);
      (tl.archivingSource === "callback" ? detectCallback : detectPoll).push(lag);
      detectSlotMs += tl.n * lag;
    }
    if (tl.archiving !== undefined && tl.succeeded !== undefined) archiveMs.push(tl.succeeded - tl.archiving);
  }
  const tailMs = lastDone - lastArchiving;
  // BENCH_SHOW_SLOW_POLLS=<ms>: each end found by poll later than this, with what the provider and
  // our events say about it (why a poll came late).
  const slowPollMs = int("BENCH_SHOW_SLOW_POLLS", 0);
  const slowPolls: string[] = [];
  if (slowPollMs > 0) {
    const byTask = new Map<string, { to: string; source: string; at: number }[]>();
    for (const e of events) {
      const list = byTask.get(e.taskId) ?? [];
      list.push({ to: e.toStatus, source: e.source, at: e.createdAt.getTime() });
      byTask.set(e.taskId, list);
    }
    for (const t of tasks) {
      const tl = timelines.get(t.id);
      const sim = simByTask.get(t.id)?.at(-1);
      if (!tl || !sim || tl.archivingSource !== "poll" || tl.archiving === undefined || tl.archiving - sim.updated_at <= slowPollMs) continue;
      slowPolls.push(`  slow poll: task ${t.id}, created_at ${sim.created_at}`);
      const at = (x: number) => `${((x - sim.created_at) / 1000).toFixed(3)}`;
      slowPolls.push(
        `  slow poll: n ${t.n}, provider ran ${sim.updated_at - sim.created_at} ms (run_ms ${sim.run_ms}), submittedAt ${t.submittedAt ? at(t.submittedAt.getTime()) : "-"}, ` +
          `ended ${at(sim.updated_at)}; events (s after created_at): ${(byTask.get(t.id) ?? []).map((e) => `${e.to}/${e.source}@${at(e.at)}`).join(" ")}`,
      );
    }
  }
  // The poll at a task's expected end is counted from its submission time: how far after the
  // provider's own start (its created_at; one clock here) that anchor lies is how late every poll
  // of a lost end callback comes, beyond the margin.
  const anchorLag: number[] = [];
  for (const t of tasks) {
    const sim = simByTask.get(t.id)?.at(-1);
    if (sim && t.submittedAt) anchorLag.push(t.submittedAt.getTime() - sim.created_at);
  }

  // Slot-time accounting over the provider window, from the samples.
  const submitTimes = all.map((t) => t.firstSubmitting ?? Infinity).sort((a, b) => a - b);
  const notYetSubmitted = (t: number) => {
    let lo = 0;
    let hi = submitTimes.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (submitTimes[mid]! <= t) lo = mid + 1;
      else hi = mid;
    }
    return submitTimes.length - lo;
  };
  const window = samples.filter((x) => x.t >= firstSubmitting && x.t <= lastArchiving);
  const acc = { running: 0, heldIdle: 0, lowered: 0, freeBacklog: 0, freeNoBacklog: 0, total: 0, effMin: C };
  for (const x of window) {
    const backlog = notYetSubmitted(x.t) > 0;
    acc.running += Math.min(x.sim, C);
    acc.heldIdle += Math.max(0, x.ledger - x.sim);
    const free = Math.max(0, C - Math.max(x.ledger, x.sim));
    const lowered = Math.min(free, C - x.effective);
    if (backlog) {
      acc.lowered += lowered;
      acc.freeBacklog += free - lowered;
    } else acc.freeNoBacklog += free;
    acc.total += C;
    acc.effMin = Math.min(acc.effMin, x.effective);
  }
  const share = (v: number) => (acc.total ? v / acc.total : 0);
  // Shares of C x window, expressed as seconds of makespan.
  const asMs = (v: number) => share(v) * providerMakespanMs;

  const lines = [
    ``,
    `== phase ${name}: ${tasks.length} tasks, capacity ${C}${twoRoutes ? ` over two routes (${routeCapacities.join(" + ")})` : ""}, run ${T} ms` +
      (faulty ? `, callback loss ${params.callbackLoss}, error rate ${params.errorRate}` : twoRoutes ? "" : ", no faults"),
    ...(twoRoutes
      ? [
          `route a answered 404 from ${s((outage.from ?? intakeStarted) - intakeStarted)} to ${s((outage.to ?? intakeStarted) - intakeStarted)} after intake began ` +
            `(CIRCUIT_OPEN_MS ${common.CIRCUIT_OPEN_MS}); tasks by route: ${byRoute.map((r) => `${r.route}=${r.count}`).join(" ")}; ` +
            `peak slots per route ${statsByRoute.map((x) => `${x.peak_slots_in_use}/${x.capacity}`).join(", ")}`,
        ]
      : []),
    `tasks: ${succeeded.length} succeeded, ${failed.length} failed` +
      (failed.length ? `  <<< FAILURES: ${failed.slice(0, 5).map((t) => `${t.failureClass}: ${t.failureMessage}`).join(" | ")}` : ""),
    `Σn = ${sum(ns)}, ideal = Σ(n·T)/C = ${s(idealMs)}; intake took ${s(intakeMs)} (${intakeErrors} retried POSTs)`,
    ...(twoRoutes
      ? []
      : [
          `in line order with no latency (fragmentation only) the same tasks would take ${s(lineOrderMakespanMs(ns, C, T))}, ` +
            `ratio ${(lineOrderMakespanMs(ns, C, T) / idealMs).toFixed(3)}; with the ledger's backfilling ${s(backfillMakespanMs(ns, C, T))}, ` +
            `ratio ${(backfillMakespanMs(ns, C, T) / idealMs).toFixed(3)}`,
        ]),
    `makespan end-to-end  (first accepted -> last succeeded) ${s(makespanMs)}  ratio ${ratio.toFixed(3)}`,
    `makespan provider    (first submitting -> last archiving) ${s(providerMakespanMs)}  ratio ${providerRatio.toFixed(3)}`,
    `makespan simulator   (first create -> last provider end)   ${s(simMakespanMs)}  ratio ${(simMakespanMs / idealMs).toFixed(3)}`,
    `slot utilisation: Σ provider slot-time / (C·provider makespan) = ${pct(providerSlotMs / (C * providerMakespanMs))}; ` +
      `sampled mean in use ${pct(share(acc.running))} (${window.length} samples)`,
    `duplicate_provider_tasks ${duplicates} (our tasks with >1 provider task: ${duplicatedTasks}, sim duplicate_external_task_ids: ${stats.duplicate_external_task_ids}); ` +
      `provider tasks ${stats.tasks_created}, tasks whose external_task_id reached the create handler more than once ${retriedCreates}`,
    `peak_slots_in_use ${stats.peak_slots_in_use} / capacity ${stats.capacity}; rejected over capacity ${stats.rejected_over_capacity}; ` +
      `min effective capacity in our ledger ${acc.effMin}`,
    `provider calls: create ${stats.create_calls}, get ${stats.get_calls}, list ${stats.list_calls}, errors injected ${stats.errors_injected}; ` +
      `callbacks sent ${stats.callbacks_sent}, lost ${stats.callbacks_lost}, failed ${stats.callbacks_failed}; ` +
      `attempts ${sum(tasks.map((t) => t.attempts))}, transient failures ${sum(tasks.map((t) => t.transientFailures))}, resubmissions ${sum(tasks.map((t) => t.resubmissions))}`,
    `-- where the time goes`,
    `this process: CPU ${((cpu.user + cpu.system) / 1000 / phaseWallMs).toFixed(2)} cores busy on average; event-loop delay ` +
      `mean ${(loopDelay.mean / 1e6).toFixed(0)} ms, p99 ${(loopDelay.percentile(99) / 1e6).toFixed(0)} ms, max ${(loopDelay.max / 1e6).toFixed(0)} ms`,
    `head: first accepted -> first submitting ${s(headMs)}; tail: last archiving -> last succeeded ${s(tailMs)}`,
    `create latency (last submitting -> submitted): ${dist(createLatency)}`,
    `end detection after the provider finished, by callback: ${dist(detectCallback)}`,
    `end detection after the provider finished, by poll:     ${dist(detectPoll)}`,
    `submission time (poll anchor) after the provider's created_at: ${msDist(anchorLag)}`,
    ...slowPolls,
    `archive (archiving -> succeeded): ${dist(archiveMs)}`,
    `slot-time held in our ledger while the provider ran nothing for it: before create ${s(preCreateSlotMs / C)}, after end ${s(detectSlotMs / C)} (÷C, as makespan)`,
    `C x provider window (${s(providerMakespanMs)}) split from samples, as makespan seconds:`,
    `  provider running ${s(asMs(acc.running))} (${pct(share(acc.running))}) | held in ledger, idle at provider ${s(asMs(acc.heldIdle))} (${pct(share(acc.heldIdle))})`,
    `  free while tasks wait: lowered capacity ${s(asMs(acc.lowered))} (${pct(share(acc.lowered))}), hand-off/fragmentation ${s(asMs(acc.freeBacklog))} (${pct(share(acc.freeBacklog))})`,
    `  free with nothing left to submit (drain) ${s(asMs(acc.freeNoBacklog))} (${pct(share(acc.freeNoBacklog))})`,
  ];
  console.log(lines.join("\n"));
  return { name, routes: simulators.length, ratio, providerRatio, duplicates, peak: stats.peak_slots_in_use, capacity: stats.capacity, failed: failed.length };
};

// ---------------------------------------------------------------------------------------------
// Main

const main = async () => {
  const cleanups: Cleanup[] = [];
  const cleanUp = async () => {
    while (cleanups.length) await cleanups.pop()!().catch((error: Error) => console.error(`cleanup: ${error.message}`));
  };
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.error("interrupted: cleaning up");
    void cleanUp()
      .then(() => dropBenchDatabases())
      .finally(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const ns = drawNs(params.tasks);
  const tooBig = ns.filter((n) => n > params.capacity).length;
  console.log(
    `provider makespan benchmark: ${params.tasks} tasks, n weights ${params.nWeights.join(",")} (seed ${params.seed}, ` +
      `n=1..${params.nWeights.length}: ${params.nWeights.map((_, i) => ns.filter((n) => n === i + 1).length).join("/")}), ` +
      `capacity ${params.capacity}, run ${params.runMs} ms, ${params.workers} worker(s)` +
      (tooBig ? ` — WARNING: ${tooBig} tasks have n > capacity and will fail` : ""),
  );
  console.log(
    `orchestrator knobs: production defaults${Object.keys(knobs).length ? `, overridden: ${Object.entries(knobs).map(([k, v]) => `${k}=${v}`).join(" ")}` : ""}`,
  );

  const png = await sharp({ create: { width: 320, height: 320, channels: 3, background: { r: 40, g: 120, b: 200 } } })
    .composite([{ input: Buffer.from('<svg width="320" height="320"><circle cx="160" cy="160" r="80" fill="#fff"/></svg>') }])
    .png()
    .toBuffer();
  const image = png.toString("base64");

  const results: PhaseResult[] = [];
  try {
    await prepareDatabase(`${postgresServer}/${templateName}`);
    for (const phase of params.phases as PhaseName[]) {
      const phaseCleanups: Cleanup[] = [];
      cleanups.push(async () => {
        while (phaseCleanups.length) await phaseCleanups.pop()!().catch((error: Error) => console.error(`cleanup: ${error.message}`));
      });
      results.push(await runPhase(phase, ns, image, phaseCleanups));
      await cleanups.pop()!();
    }
  } finally {
    await cleanUp();
    await dropBenchDatabases().catch((error: Error) => console.error(`dropping the bench databases: ${error.message}`));
  }

  console.log("");
  for (const r of results) {
    console.log(
      `${r.name}: makespan_ratio=${r.ratio.toFixed(3)} provider_ratio=${r.providerRatio.toFixed(3)} duplicate_provider_tasks=${r.duplicates} ` +
        `peak_slots=${r.peak} capacity=${r.capacity} failed_tasks=${r.failed} routes=${r.routes}`,
    );
  }
  // The two-route run when there is one (its aim: ratio <= 1.15), else the faulty one.
  const headline = results.find((r) => r.name === "routes") ?? results.find((r) => r.name === "faulty") ?? results.at(-1);
  if (headline) {
    console.log(
      `makespan_ratio=${headline.ratio.toFixed(3)} duplicate_provider_tasks=${headline.duplicates} peak_slots=${headline.peak} capacity=${headline.capacity} routes=${headline.routes}`,
    );
  }
};

main().then(
  () => process.exit(0),
  (error: Error) => {
    console.error(`benchmark broke: ${error.stack ?? error.message}`);
    process.exit(1);
  },
);
