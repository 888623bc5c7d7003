// `npm run bench:scale`: issue 15's scale figures. The same run of BENCH_SCALE_TASKS tasks (default
// 1,000; the provider is not the limit: capacity 200, run time 100 ms) through 1 API and 1 or 3
// worker processes, on a single Redis (a private redis-server) and on a 3-master Redis Cluster. For
// each: tasks/s end to end (first submit to last task ended), Redis commands per task (INFO
// commandstats summed over the nodes, delta over the run) and CPU ms per task summed over our
// processes (/proc/<pid>/stat of the API and the workers). Against it, the raw work of one task
// measured bare in the same run: its BullMQ jobs (source, submit, archive) added and processed on
// a bare queue, its SQL transactions (as many per task as Postgres counted in the run) on a raw pg
// pool, and the result image decoded, hashed and written with sharp. Exits non-zero only when the
// run breaks; a ratio off its aim is a figure to read, not a failure.
import { createHash, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import pg from "pg";
import sharp from "sharp";
import { prepareDatabase } from "../../apps/domain/db/prepare-database.ts";
import { ensureBuilt } from "../../ops/build/build-apps.mjs";
import { dropDatabases } from "../support/databases.ts";
import { startFileServer } from "../support/file-server.ts";
import { makeImage } from "../support/images.ts";
import { startFleet, type Fleet } from "../support/process-fleet.ts";
import { startRedisCluster, type RedisClusterHandle } from "../support/redis-cluster.ts";
import { startPrivateRedis, type PrivateRedis } from "../support/redis-server.ts";
import { readCpuTimes } from "./api-stack.ts";
import { envNumber, median, sleep } from "./bench-figures.ts";

const TASKS = Number(process.env.BENCH_SCALE_TASKS ?? 1_000);
// While iterating: BENCH_SCALE_TARGETS=single (or cluster) runs one target only; the ratios that
// need the other then print as n/a.
const TARGETS = (process.env.BENCH_SCALE_TARGETS ?? "single,cluster").split(",").map((t) => t.trim());
const WORKER_COUNTS = (process.env.BENCH_SCALE_WORKERS ?? "1,3").split(",").map(Number);
const FLEET_WARMUP_TASKS = envNumber("BENCH_SCALE_WARMUP_TASKS", 200, 0);
const CAPACITY = 200;
const BATCH_ITEMS = 100;
const JOBS_PER_TASK = ["source", "submit", "archive"];
// BENCH_SCALE_JOB_EVENTS=1: print what BullMQ's event stream of each queue recorded over the run (a
// state change a line), per task, and how many jobs went through a state change more than once: the
// count that tells which job transitions multiply with workers. The streams are capped (BullMQ
// keeps ~10,000 entries a queue), so keep BENCH_SCALE_TASKS to a few hundred with it.
const JOB_EVENTS = process.env.BENCH_SCALE_JOB_EVENTS === "1";
const postgresServer = process.env.TEST_POSTGRES_URL ?? "postgresql://postgres@127.0.0.1:5432";

type Target = { name: "single" | "cluster"; env: Record<string, string>; nodes: () => Redis[] };
type Figures = { jobEvents?: string; target: string; workers: number; seconds: number; tasksPerS: number; redisCmdsPerTask: number; topCommands: string; cpuMsPerTask: number; apiCpuMsPerTask: number; systemCpuMsPerTask: number; xactsPerTask: number; idleCpuMsPerS: number; warmupCpuMsPerTask: number };

// Calls per command (script-internal ones included), summed over the nodes.
const commandCalls = async (nodes: Redis[]) => {
  const calls = new Map<string, number>();
  for (const node of nodes) {
    const info = await node.info("commandstats");
    for (const match of info.matchAll(/cmdstat_([^:]+):calls=(\d+)/g)) calls.set(match[1]!, (calls.get(match[1]!) ?? 0) + Number(match[2]));
  }
  return calls;
};
// The last entry id of each queue's event stream, to read only what the run added.
const eventStreamEnds = async (nodes: Redis[]) => {
  const ends = new Map<string, { node: Redis; id: string }>();
  for (const node of nodes) {
    for (const key of await node.keys("*:events")) {
      const last = (await node.xrevrange(key, "+", "-", "COUNT", 1))[0];
      ends.set(key, { node, id: last?.[0] ?? "0-0" });
    }
  }
  return ends;
};
const jobEventSummary = async (nodes: Redis[], before: Map<string, { node: Redis; id: string }>) => {
  const lines: string[] = [];
  for (const [key, { node }] of await eventStreamEnds(nodes)) {
    const start = before.get(key)?.id ?? "0-0";
    const entries = await node.xrange(key, `(${start}`, "+");
    const byEvent = new Map<string, number>();
    const perJob = new Map<string, Map<string, number>>();
    for (const [, fields] of entries) {
      const f = new Map<string, string>();
      for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i]!, fields[i + 1]!);
      const event = f.get("event") ?? "?";
      byEvent.set(event, (byEvent.get(event) ?? 0) + 1);
      const jobId = f.get("jobId");
      if (jobId) {
        const counts = perJob.get(jobId) ?? new Map<string, number>();
        counts.set(event, (counts.get(event) ?? 0) + 1);
        perJob.set(jobId, counts);
      }
    }
    const repeated = new Map<string, number>();
    for (const counts of perJob.values()) for (const [event, n] of counts) if (n > 1) repeated.set(event, (repeated.get(event) ?? 0) + 1);
    lines.push(
      `  ${key}: ${entries.length} events, ${perJob.size} jobs; per task ${[...byEvent].sort((a, b) => b[1] - a[1]).map(([e, n]) => `${e} ${(n / TASKS).toFixed(2)}`).join(", ")}; jobs with an event more than once: ${[...repeated].map(([e, n]) => `${e} ${n}`).join(", ") || "none"}`,
    );
  }
  return lines.join("\n");
};
const total = (calls: Map<string, number>) => [...calls.values()].reduce((a, b) => a + b, 0);
// Where the commands went: the busiest ones of the run, per task.
const topCommands = (before: Map<string, number>, after: Map<string, number>) =>
  [...after]
    .map(([name, n]) => [name, (n - (before.get(name) ?? 0)) / TASKS] as const)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 6)
    .map(([name, n]) => `${name} ${n.toFixed(1)}`)
    .join(", ");

// API and worker processes apart, to see which side a change moved.
// The system (kernel) part apart too: each Postgres or Redis round trip is a socket write and read.
const cpuSeconds = async (fleet: Fleet) => {
  let api = 0;
  let workers = 0;
  let system = 0;
  for (const [members, add] of [[fleet.apis, (s: number) => (api += s)], [fleet.workers, (s: number) => (workers += s)]] as const) {
    for (const member of members) {
      const times = await readCpuTimes(member.current().pid);
      add(times.user + times.system);
      system += times.system;
    }
  }
  return { api, workers, system };
};

const transactions = async (fleet: Fleet) => {
  const { rows } = await fleet.db.query<{ n: string }>("select xact_commit + xact_rollback as n from pg_stat_database where datname = current_database()");
  return Number(rows[0]!.n);
};

const ended = async (fleet: Fleet) => {
  const { rows } = await fleet.db.query<{ ended: number; succeeded: number }>(
    "select count(*) filter (where status in ('succeeded', 'failed', 'canceled'))::int as ended, count(*) filter (where status = 'succeeded')::int as succeeded from task",
  );
  return rows[0]!;
};

const runOnce = async (template: string, target: Target, workers: number, imageUrl: string): Promise<Figures> => {
  const fleet = await startFleet({
    templateDatabaseUrl: template,
    apis: 1,
    workers,
    env: { ...target.env, PROVIDER_CAPACITY: String(CAPACITY) },
    simulatorEnv: { SIM_CAPACITY: String(CAPACITY), SIM_RUN_MS: "100", SIM_SEED: "15" },
    logDir: path.join(process.env.FLEET_LOG_DIR ?? path.join(tmpdir(), "kling-fleet-logs"), `bench-scale-${target.name}-${workers}w-${Date.now()}`),
  });
  try {
    const submit = async (count: number, label: string) => {
      for (let from = 0; from < count; from += BATCH_ITEMS) {
        const items = Array.from({ length: Math.min(BATCH_ITEMS, count - from) }, (_, i) => ({ image: imageUrl, external_task_id: `${label}-${from + i}` }));
        const response = await fetch(`${fleet.url}/v1/batches`, {
          method: "POST",
          headers: { authorization: `Bearer ${fleet.key}`, "content-type": "application/json" },
          body: JSON.stringify({ name: `${label}-${from}`, defaults: { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 }, items }),
        });
        if (response.status !== 201) throw new Error(`batch intake answered ${response.status}: ${await response.text()}`);
      }
    };
    // Until `total` tasks (the warm-up's included) have ended, all succeeded.
    const allEnded = async (total: number) => {
      const deadline = Date.now() + total * 500 + 120_000;
      for (;;) {
        const now = await ended(fleet);
        if (now.ended >= total) {
          if (now.succeeded !== total) throw new Error(`${total - now.succeeded} tasks did not succeed`);
          return;
        }
        if (Date.now() > deadline) throw new Error(`only ${now.ended}/${total} tasks ended in time`);
        await sleep(100);
      }
    };
    // Warm-up tasks, not counted: a fresh process' CPU per task falls over its first hundreds of
    // tasks (JIT, libraries' first calls), and the raw work it is read against is measured warm.
    let warmupCpuMsPerTask = Number.NaN;
    if (FLEET_WARMUP_TASKS > 0) {
      const cold = await cpuSeconds(fleet);
      await submit(FLEET_WARMUP_TASKS, "warmup");
      await allEnded(FLEET_WARMUP_TASKS);
      const warm = await cpuSeconds(fleet);
      warmupCpuMsPerTask = ((warm.api + warm.workers - cold.api - cold.workers) * 1000) / FLEET_WARMUP_TASKS;
    }
    // Settle the start-up work (schedules, bootstrap) and the warm-up's tail out of the measured
    // window; the CPU of the last two seconds before the run is printed, to show the processes were
    // idle by then.
    await sleep(1_000);
    const idle0 = await cpuSeconds(fleet);
    const idleStarted = Date.now();
    await sleep(2_000);
    const [cmds0, cpu0, xacts0] = [await commandCalls(target.nodes()), await cpuSeconds(fleet), await transactions(fleet)];
    const idleCpuMsPerS = ((cpu0.api + cpu0.workers - idle0.api - idle0.workers) * 1000) / ((Date.now() - idleStarted) / 1000);
    const streams0 = JOB_EVENTS ? await eventStreamEnds(target.nodes()) : undefined;
    const started = Date.now();
    await submit(TASKS, "t");
    await allEnded(FLEET_WARMUP_TASKS + TASKS);
    const seconds = (Date.now() - started) / 1000;
    const [cmds1, cpu1] = [await commandCalls(target.nodes()), await cpuSeconds(fleet)];
    // Postgres' per-database counters reach pg_stat_database when a backend reports (about once a
    // second): give the last reports time to land.
    await sleep(1_500);
    const xacts1 = await transactions(fleet);
    return {
      jobEvents: streams0 && (await jobEventSummary(target.nodes(), streams0)),
      target: target.name,
      workers,
      seconds,
      tasksPerS: TASKS / seconds,
      redisCmdsPerTask: (total(cmds1) - total(cmds0)) / TASKS,
      topCommands: topCommands(cmds0, cmds1),
      cpuMsPerTask: ((cpu1.api + cpu1.workers - cpu0.api - cpu0.workers) * 1000) / TASKS,
      apiCpuMsPerTask: ((cpu1.api - cpu0.api) * 1000) / TASKS,
      systemCpuMsPerTask: ((cpu1.system - cpu0.system) * 1000) / TASKS,
      xactsPerTask: (xacts1 - xacts0) / TASKS,
      idleCpuMsPerS,
      warmupCpuMsPerTask,
    };
  } finally {
    await fleet.stop();
  }
};

// The raw work of one task, done bare in this process: its three BullMQ jobs added and processed on a
// bare queue and the result image decoded, hashed and written (the "jobs" part), and its SQL
// statements on a raw pg pool (per statement, so a round taken before the first run, when the run's
// transactions per task are not known yet, still prices them). It is measured in rounds spread over
// the bench (before the first run, between runs, after the last), each slot after a warm-up that is
// not counted (our processes are warm too), and read as the median of the rounds: measured once,
// cold, at the end it swung 5.7-12.8 ms while our own figure held.
const RAW_TASKS_PER_ROUND = envNumber("BENCH_SCALE_RAW_TASKS", 150, 10);
const RAW_ROUNDS_PER_SLOT = envNumber("BENCH_SCALE_RAW_ROUNDS", 2, 1);
// The first slot's warm-up is longer: in a fresh process the raw work's CPU per task falls for its
// first several hundred tasks (8.2-8.9 -> 4.5-6.1 ms over 1,800 tasks at load 15, JIT and the
// libraries' first calls), and a round is meant to measure the warm work, as each slot does after.
const RAW_WARMUP_TASKS = { first: envNumber("BENCH_SCALE_RAW_WARMUP", 600, 0), later: 50 };
let rawWarmedUp = false;
// Statements per task in the statements part: its cost is read per statement.
const RAW_STATEMENTS = 20;
type RawRound = { slot: string; load: number; jobsMs: number; jobsSystemMs: number; statementMs: number; statementSystemMs: number };
const rawStatements = (xactsPerTask: number) => Math.max(2, Math.round(xactsPerTask));
const rawMsPerTask = (round: RawRound, statements: number) => round.jobsMs + statements * round.statementMs;
const rawSystemMsPerTask = (round: RawRound, statements: number) => round.jobsSystemMs + statements * round.statementSystemMs;

const rawRounds = async (slot: string, redisUrl: string, databaseUrl: string, result: Buffer): Promise<RawRound[]> => {
  const prefix = `raw${randomUUID().slice(0, 8)}`;
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queues = JOBS_PER_TASK.map((name) => new Queue(name, { connection, prefix }));
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 });
  await pool.query("create table if not exists raw_task (id uuid primary key, status text not null, updated_at timestamptz not null default now())");
  await pool.query("create table if not exists raw_event (task_id uuid not null, seq int not null, body jsonb not null)");
  const dir = await mkdtemp(path.join(tmpdir(), "kling-bench-raw-"));
  let processed = 0;
  let added = 0;
  // A Worker leaves a connection it was given open when it closes: these are ended below. The
  // workers live for this slot only: between slots they would poll the single Redis during a run.
  const workerConnections = JOBS_PER_TASK.map(() => new Redis(redisUrl, { maxRetriesPerRequest: null }));
  const workers = JOBS_PER_TASK.map((name, i) => new Worker(name, async () => void processed++, { connection: workerConnections[i]!, prefix, concurrency: 10 }));
  const jobsAndImage = async (i: number) => {
    const id = randomUUID();
    for (const queue of queues) await queue.add("job", { taskId: id }, { removeOnComplete: 1_000 });
    added += JOBS_PER_TASK.length;
    await sharp(result).raw().toBuffer();
    const digest = createHash("sha256").update(result).digest("hex");
    await writeFile(path.join(dir, `${i}-${digest.slice(0, 8)}.png`), result);
  };
  const statements = async () => {
    const id = randomUUID();
    await pool.query("insert into raw_task (id, status) values ($1, 'queued')", [id]);
    for (let s = 1; s < RAW_STATEMENTS; s++) {
      await (s % 2
        ? pool.query("update raw_task set status = $2, updated_at = now() where id = $1", [id, `s${s}`])
        : pool.query("insert into raw_event (task_id, seq, body) values ($1, $2, $3)", [id, s, JSON.stringify({ to: `s${s}` })]));
    }
  };
  let next = 0;
  // CPU ms per task of `count` tasks of one part, 10 at a time, until their jobs are processed.
  const measure = async (count: number, one: (i: number) => Promise<void>) => {
    const cpu0 = process.cpuUsage();
    for (let from = 0; from < count; from += 10) await Promise.all(Array.from({ length: Math.min(10, count - from) }, () => one(next++)));
    while (processed < added) await sleep(10);
    const cpu = process.cpuUsage(cpu0);
    return { ms: (cpu.user + cpu.system) / 1000 / count, systemMs: cpu.system / 1000 / count };
  };
  try {
    const warmup = rawWarmedUp ? RAW_WARMUP_TASKS.later : RAW_WARMUP_TASKS.first;
    rawWarmedUp = true;
    await measure(warmup, jobsAndImage);
    await measure(warmup, statements);
    const rounds: RawRound[] = [];
    for (let r = 0; r < RAW_ROUNDS_PER_SLOT; r++) {
      const jobs = await measure(RAW_TASKS_PER_ROUND, jobsAndImage);
      const sql = await measure(RAW_TASKS_PER_ROUND, statements);
      rounds.push({ slot, load: loadavg()[0]!, jobsMs: jobs.ms, jobsSystemMs: jobs.systemMs, statementMs: sql.ms / RAW_STATEMENTS, statementSystemMs: sql.systemMs / RAW_STATEMENTS });
    }
    return rounds;
  } finally {
    await Promise.all(workers.map((w) => w.close()));
    await Promise.all(queues.map((q) => q.obliterate({ force: true }).catch(() => undefined)));
    await Promise.all(queues.map((q) => q.close()));
    connection.disconnect();
    for (const c of workerConnections) c.disconnect();
    await pool.query("truncate raw_task, raw_event");
    await pool.end();
    await rm(dir, { recursive: true, force: true });
  }
};

const main = async () => {
  const templateName = `kling_benchscale_${process.pid}_${Date.now().toString(36)}`;
  const template = `${postgresServer}/${templateName}`;
  const rawDatabase = `${template}_raw`;
  let single: PrivateRedis | undefined;
  let cluster: RedisClusterHandle | undefined;
  let files: Awaited<ReturnType<typeof startFileServer>> | undefined;
  try {
    await prepareDatabase(template);
    // The processes it spawns run from the build (ops/build), made here when a source changed.
    await ensureBuilt();
    const source = await makeImage(400, 300);
    files = await startFileServer({ "/photo.png": { body: source } });
    single = await startPrivateRedis();
    if (TARGETS.includes("cluster")) cluster = await startRedisCluster();
    const singleNode = new Redis(single.url);
    const clusterNodes = cluster ? [0, 1, 2].map((i) => cluster!.node(i)) : [];
    const targets: Target[] = [
      { name: "single", env: { REDIS_URL: single.url }, nodes: () => [singleNode] },
      ...(cluster ? [{ name: "cluster" as const, env: { REDIS_CLUSTER_NODES: cluster.nodes }, nodes: () => clusterNodes }] : []),
    ];
    // The raw work, on the single Redis and a database of its own; the result image is the size
    // of the run's (400x300 expanded by 10% each side), made the same way.
    await prepareDatabase(rawDatabase);
    const result = await makeImage(480, 360);
    const load0 = loadavg();
    const rounds: RawRound[] = [];
    const rawSlot = async (slot: string) => rounds.push(...(await rawRounds(slot, single!.url, rawDatabase, result)));
    await rawSlot("before the runs");
    const figures: Figures[] = [];
    for (const target of targets.filter((t) => TARGETS.includes(t.name))) {
      for (const workers of WORKER_COUNTS) {
        const run = await runOnce(template, target, workers, files.url("/photo.png"));
        figures.push(run);
        console.log(
          `${run.target} redis, ${run.workers} worker(s): ${TASKS} tasks in ${run.seconds.toFixed(1)} s = ${run.tasksPerS.toFixed(1)} tasks/s; ${run.redisCmdsPerTask.toFixed(1)} Redis commands/task; ${run.cpuMsPerTask.toFixed(1)} CPU ms/task (API ${run.apiCpuMsPerTask.toFixed(1)} + workers ${(run.cpuMsPerTask - run.apiCpuMsPerTask).toFixed(1)}; system ${run.systemCpuMsPerTask.toFixed(1)}); ${run.xactsPerTask.toFixed(1)} Postgres transactions/task; load ${loadavg()[0]!.toFixed(2)}\n  not counted: ${FLEET_WARMUP_TASKS} warm-up tasks first at ${run.warmupCpuMsPerTask.toFixed(1)} CPU ms/task, then idle ${run.idleCpuMsPerS.toFixed(0)} CPU ms/s over our processes just before the run\n  busiest Redis commands per task: ${run.topCommands}`,
        );
        if (run.jobEvents) console.log(run.jobEvents);
        await rawSlot(`after ${run.target} ${run.workers}w`);
      }
    }
    singleNode.disconnect();

    // Priced at the statements of the first run (the one cpu_ratio reads).
    const base = figures[0]!;
    const statements = rawStatements(base.xactsPerTask);
    for (const [i, round] of rounds.entries()) {
      console.log(
        `raw round ${i + 1} (${round.slot}, load ${round.load.toFixed(2)}): jobs and image ${round.jobsMs.toFixed(2)} ms + ${statements} statements x ${round.statementMs.toFixed(3)} ms = ${rawMsPerTask(round, statements).toFixed(2)} CPU ms/task`,
      );
    }
    const perRound = rounds.map((round) => rawMsPerTask(round, statements));
    const raw = { cpuMsPerTask: median(perRound), systemMsPerTask: median(rounds.map((round) => rawSystemMsPerTask(round, statements))) };
    console.log(
      `raw work per task: ${JOBS_PER_TASK.length} BullMQ jobs added and processed, ${statements} SQL statements, one ${result.length}-byte PNG decoded, hashed, written: median ${raw.cpuMsPerTask.toFixed(2)} CPU ms (system ${raw.systemMsPerTask.toFixed(2)}) of ${rounds.length} rounds of ${RAW_TASKS_PER_ROUND} tasks, spread ${Math.min(...perRound).toFixed(2)}-${Math.max(...perRound).toFixed(2)}`,
    );
    const load1 = loadavg();
    console.log(`load average (1/5/15 min): at start ${load0.map((l) => l.toFixed(2)).join(" ")}, at end ${load1.map((l) => l.toFixed(2)).join(" ")}`);

    const at = (name: string, workers: number) => figures.find((f) => f.target === name && f.workers === workers);
    const figure = (value: number | undefined) => (value === undefined || !Number.isFinite(value) ? "n/a" : value.toFixed(2));
    const [s1, s3, c1, c3] = [at("single", 1), at("single", 3), at("cluster", 1), at("cluster", 3)];
    const cpuRatio = s1 && s1.cpuMsPerTask / raw.cpuMsPerTask;
    const speedup = s1 && s3 && s3.tasksPerS / s1.tasksPerS;
    const clusterRatio = s1 && s3 && c1 && c3 && (c1.tasksPerS + c3.tasksPerS) / (s1.tasksPerS + s3.tasksPerS);
    console.log(
      `cpu_ratio=${figure(cpuRatio)} redis_cmds_per_task_1w=${s1?.redisCmdsPerTask.toFixed(1) ?? "n/a"} redis_cmds_per_task_3w=${s3?.redisCmdsPerTask.toFixed(1) ?? "n/a"} speedup_3_workers=${figure(speedup)} cluster_ratio=${figure(clusterRatio)}`,
    );
  } finally {
    await files?.stop().catch(() => undefined);
    await cluster?.stop().catch(() => undefined);
    await single?.kill().catch(() => undefined);
    await dropDatabases(template, templateName).catch((error: Error) => console.error(`cleanup: ${error.message}`));
  }
};


main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
