// Benchmark (not a test): how much of what Postgres and Redis give does the API pass on?
//
// Starts the API as its own process on a throw-away database, fills it, and drives it over real HTTP
// (autocannon, from this process) at a fixed concurrency: status reads (native, drop-in by task id
// and by external id), intake (image URL; inline image beside it) and provider callbacks. Right next
// to each path it runs that path's statements on a raw pg.Pool of the API's size at the same
// concurrency, and prints the ratio. Then native status reads at a fixed rate of half the peak, for
// the p99 there. It asserts nothing: it exits non-zero only when the run itself broke.
// Run: `npm run bench:api` (see README, "Benchmark").
import { availableParallelism, loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import pg from "pg";
import sharp from "sharp";
import { inspectSourceImage } from "../../apps/domain/expand-request/source-image.ts";
import { jobCatalog } from "../../apps/domain/queues/job-catalog.ts";
import { makeImage } from "../support/images.ts";
import { rawCallback, rawIntake, rawStatusRead, rawStatusReadByExternalId } from "./api-baselines.ts";
import { benchImageUrl, createBenchAccount, fillCallbackTasks, fillStatusTasks, processingCallbackBody, type CallbackTask } from "./api-fill.ts";
import { closedLoop, hammer, paced, type Figures } from "./api-load.ts";
import { formatTable, ratioOf, type Row } from "./api-report.ts";
import { startBenchStack, type BenchStack } from "./api-stack.ts";
import { seeded, sleep } from "./bench-figures.ts";

// ---------------------------------------------------------------------------------------------
// Parameters

const env = process.env;
const num = (name: string, fallback: number, min = 0) => {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min) throw new Error(`${name}: expected a number >= ${min}, got '${raw}'`);
  return value;
};
const phaseNames = ["reads", "intake", "callbacks"] as const;
type PhaseName = (typeof phaseNames)[number];

const params = {
  seconds: num("BENCH_API_SECONDS", 8, 1),
  warmupSeconds: num("BENCH_API_WARMUP_SECONDS", 2),
  // Once, before anything is measured: a fresh API process keeps speeding up for several seconds
  // under load (JIT tiers, Prisma's WebAssembly query compiler among them).
  startWarmupSeconds: num("BENCH_API_START_WARMUP_SECONDS", 6),
  tasks: Math.round(num("BENCH_API_TASKS", 4_000, 10)),
  seed: num("BENCH_SEED", 20_240_601),
  readConnections: Math.round(num("BENCH_API_READ_CONNECTIONS", 50, 1)),
  writeConnections: Math.round(num("BENCH_API_WRITE_CONNECTIONS", 20, 1)),
  decodeSeconds: num("BENCH_API_DECODE_SECONDS", 3, 0.5),
  // The API's Prisma pool (createDb's default); the baselines get a pg.Pool of the same size.
  poolSize: 10,
  phases: (env.BENCH_API_PHASES ?? phaseNames.join(",")).split(",").map((p) => p.trim()).filter(Boolean),
};
for (const phase of params.phases) {
  if (!(phaseNames as readonly string[]).includes(phase)) throw new Error(`BENCH_API_PHASES: unknown phase '${phase}' (${phaseNames.join(", ")})`);
}
const runs = (phase: PhaseName) => params.phases.includes(phase);

// ---------------------------------------------------------------------------------------------
// Shared state of one run

type Ctx = {
  stack: BenchStack;
  db: pg.Pool;
  redis: Redis;
  accountId: string;
  key: string;
  random: () => number;
  rows: Row[];
};

const pickFrom = <T>(random: () => number, items: T[]) => () => items[Math.floor(random() * items.length)]!;

// When a window ends autocannon drops its connections, but the API still works through the requests
// it had taken; the next measurement starts once it has gone quiet (or after 15 s regardless).
const settle = async (ctx: Ctx) => {
  const deadline = performance.now() + 15_000;
  let before = await ctx.stack.apiCpuSeconds();
  while (performance.now() < deadline) {
    await sleep(250);
    const now = await ctx.stack.apiCpuSeconds();
    if (now - before < 0.25 * 0.05) return;
    before = now;
  }
};

// Cores busy in the API process and in this one (the load generator) over `work`.
const measured = async (ctx: Ctx, work: () => Promise<Figures>) => {
  const apiCpu0 = await ctx.stack.apiCpuSeconds();
  const benchCpu0 = process.cpuUsage();
  const t0 = performance.now();
  const figures = await work();
  const wall = (performance.now() - t0) / 1000;
  const benchCpu = process.cpuUsage(benchCpu0);
  const apiCores = ((await ctx.stack.apiCpuSeconds()) - apiCpu0) / wall;
  await settle(ctx);
  return { figures, apiCores, benchCores: (benchCpu.user + benchCpu.system) / 1e6 / wall };
};

const baseline = (concurrency: number, op: () => Promise<boolean>) =>
  closedLoop({ concurrency, seconds: params.seconds, warmupSeconds: params.warmupSeconds, op });

const auth = (ctx: Ctx) => ({ authorization: `Bearer ${ctx.key}` });

// Intake phases each start from the fill's backlog: intake counts the account's queued tasks, so a
// backlog left by the phase before would make the next one slower for a reason of its own. Intake's
// tasks are told from the fill's by their image: another URL, or none (inline).
const rawIntakeImageUrl = `${benchImageUrl}?from=raw-intake`;
const apiIntakeImageUrl = `${benchImageUrl}?from=api-intake`;
const dropIntakeTasks = async (ctx: Ctx) => {
  await ctx.db.query("delete from task where image_url is null or image_url <> $1", [benchImageUrl]);
  await ctx.db.query("vacuum (analyze) task, task_event, task_source_image");
};
const countTasks = async (ctx: Ctx, imageUrl: string | null) => {
  const { rows } = await ctx.db.query<{ count: string }>(
    imageUrl === null ? "select count(*) from task where image_url is null" : "select count(*) from task where image_url = $1",
    imageUrl === null ? [] : [imageUrl],
  );
  return Number(rows[0]!.count);
};

// ---------------------------------------------------------------------------------------------
// Phases

// All three read routes in turn, unmeasured; reported only as a sign of life.
const warmUpApi = async (ctx: Ctx, ids: string[], externalIds: string[]) => {
  const pickId = pickFrom(ctx.random, ids);
  const pickExternal = pickFrom(ctx.random, externalIds);
  const paths = [() => `/v1/tasks/${pickId()}`, () => `/kling/v1/images/editing/expand/${pickId()}`, () => `/kling/v1/images/editing/expand/${pickExternal()}`];
  let turn = 0;
  const figures = await hammer({
    url: ctx.stack.apiUrl,
    connections: params.readConnections,
    seconds: params.startWarmupSeconds,
    warmupSeconds: 0,
    headers: auth(ctx),
    next: (request) => ({ ...request, path: paths[turn++ % paths.length]!() }),
  });
  await settle(ctx);
  return figures;
};

const readPhase = async (ctx: Ctx, ids: string[], externalIds: string[]) => {
  const pickId = pickFrom(ctx.random, ids);
  const pickExternal = pickFrom(ctx.random, externalIds);
  const conc = String(params.readConnections);
  const read = (prefix: string, pick: () => string) =>
    hammer({
      url: ctx.stack.apiUrl,
      connections: params.readConnections,
      seconds: params.seconds,
      warmupSeconds: params.warmupSeconds,
      headers: auth(ctx),
      next: (request) => ({ ...request, path: `${prefix}/${encodeURIComponent(pick())}` }),
    });

  const byIdBaseline = { name: "key + task by id + images", figures: await baseline(params.readConnections, rawStatusRead(ctx.db, ctx.key, pickId)) };
  const native: Row = { path: "GET /v1/tasks/{id}", concurrency: conc, ...(await measured(ctx, () => read("/v1/tasks", pickId))), baseline: byIdBaseline };
  ctx.rows.push(native);

  // Latency below the peak: an open-loop schedule at half the rate just measured.
  const rate = Math.max(1, native.figures.perSecond / 2);
  ctx.rows.push({
    path: `GET /v1/tasks/{id} @ ${rate.toFixed(0)}/s`,
    concurrency: `<=${conc}`,
    ...(await measured(ctx, () =>
      paced({
        url: ctx.stack.apiUrl,
        ratePerSecond: rate,
        seconds: params.seconds,
        maxInFlight: params.readConnections,
        headers: auth(ctx),
        nextPath: () => `/v1/tasks/${pickId()}`,
      }),
    )),
    note: "fixed rate = half the peak above, open loop; p99 from each request's scheduled start (status_p99_ms)",
  });

  ctx.rows.push({
    path: "GET /kling/v1/.../expand/{task_id}",
    concurrency: conc,
    ...(await measured(ctx, () => read("/kling/v1/images/editing/expand", pickId))),
    baseline: { ...byIdBaseline, name: `${byIdBaseline.name} (same)` },
  });

  const byExternal = { name: "key + task by external id + images", figures: await baseline(params.readConnections, rawStatusReadByExternalId(ctx.db, ctx.key, pickExternal)) };
  ctx.rows.push({
    path: "GET /kling/v1/.../expand/{external_id}",
    concurrency: conc,
    ...(await measured(ctx, () => read("/kling/v1/images/editing/expand", pickExternal))),
    baseline: byExternal,
  });
};

const intakePhase = async (ctx: Ctx) => {
  const conc = params.writeConnections;
  const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.2, right_expansion_ratio: 0.2 };
  const png = await makeImage(400, 400);
  const base64 = png.toString("base64");

  // The decode cost alone, in this process while the API idles: what intake does to an inline image
  // (Base64 to bytes, then sharp's header read), and a full pixel decode for scale.
  const decode = (op: () => Promise<unknown>) =>
    closedLoop({ concurrency: conc, seconds: params.decodeSeconds, warmupSeconds: 0.5, op: async () => (await op(), true) });
  const check = await decode(async () => {
    const result = await inspectSourceImage(Buffer.from(base64, "base64"));
    if (!result.ok) throw new Error(`the bench image was refused: ${result.reason}`);
  });
  const pixels = await decode(() => sharp(Buffer.from(base64, "base64")).raw().toBuffer());

  const queue = new Queue(jobCatalog.submit.queue, { connection: ctx.redis, prefix: ctx.stack.baselinePrefix });
  try {
    const intake = (fairness: boolean) => rawIntake(ctx.db, queue, { accountId: ctx.accountId, imageUrl: rawIntakeImageUrl, fairness });
    const intakeBaseline = { name: "tx: insert task + event + Queue.add", figures: await baseline(conc, intake(false)) };
    await dropIntakeTasks(ctx);
    const fairBaseline = { name: "same + advisory lock + backlog count", figures: await baseline(conc, intake(true)) };
    await dropIntakeTasks(ctx);

    const post = (body: string) =>
      hammer({
        url: `${ctx.stack.apiUrl}/v1/tasks`,
        connections: conc,
        seconds: params.seconds,
        warmupSeconds: params.warmupSeconds,
        method: "POST",
        headers: { ...auth(ctx), "content-type": "application/json" },
        body,
      });
    // What intake left behind: a task row per 202 and a submit job per task, nothing more.
    const submitQueue = new Queue(jobCatalog.submit.queue, { connection: ctx.redis, prefix: ctx.stack.queuePrefix });
    const jobsBefore = (await submitQueue.getJobCounts("prioritized", "waiting")) as Record<string, number>;
    const jobCount = async () => {
      const counts = (await submitQueue.getJobCounts("prioritized", "waiting")) as Record<string, number>;
      return (counts.prioritized ?? 0) + (counts.waiting ?? 0) - (jobsBefore.prioritized ?? 0) - (jobsBefore.waiting ?? 0);
    };

    const url: Row = {
      path: "POST /v1/tasks (image URL)",
      concurrency: String(conc),
      ...(await measured(ctx, () => post(JSON.stringify({ image: apiIntakeImageUrl, ...ratios })))),
      baseline: intakeBaseline,
    };
    const urlTasks = await countTasks(ctx, apiIntakeImageUrl);
    const urlJobs = await jobCount();
    url.note = `intake wrote ${urlTasks} tasks and ${urlJobs} submit jobs (warm-up included); with intake's fairness statements the raw baseline gives ${fairBaseline.figures.perSecond.toFixed(1)}/s (ratio ${(url.figures.perSecond / fairBaseline.figures.perSecond).toFixed(3)})`;
    ctx.rows.push(url);
    await dropIntakeTasks(ctx);

    const inline: Row = {
      path: `POST /v1/tasks (inline PNG ${(png.length / 1024).toFixed(1)} KB)`,
      concurrency: String(conc),
      ...(await measured(ctx, () => post(JSON.stringify({ image: base64, ...ratios })))),
      baseline: intakeBaseline,
    };
    const { rows: sources } = await ctx.db.query<{ count: string }>("select count(*) from task_source_image");
    inline.note = `intake wrote ${await countTasks(ctx, null)} tasks and ${sources[0]!.count} source image rows (warm-up included); not in the last line`;
    ctx.rows.push(inline);
    await dropIntakeTasks(ctx);
    await submitQueue.close();

    ctx.rows.push({ path: "decode alone: base64 + inspectSourceImage", concurrency: String(conc), figures: check, note: "in this process, no HTTP: what intake spends on an inline image" });
    ctx.rows.push({ path: "decode alone: sharp full pixel decode", concurrency: String(conc), figures: pixels });
  } finally {
    await queue.close();
  }
};

const callbackPhase = async (ctx: Ctx) => {
  const conc = params.writeConnections;
  const window = params.seconds + params.warmupSeconds;
  // Every callback must find a fresh `submitted` task; the baseline's supply is sized well above what
  // raw pg reaches here, the API's from the baseline just measured.
  const basePool = await fillCallbackTasks(ctx.db, ctx.accountId, Math.ceil(4_000 * window));
  await ctx.db.query("analyze task");
  const callbackBaseline = { name: "tx: task + inbox + guarded update + event", figures: await baseline(conc, rawCallback(ctx.db, basePool)) };

  const apiPool = await fillCallbackTasks(ctx.db, ctx.accountId, Math.ceil(Math.max(200, callbackBaseline.figures.perSecond) * window * 1.25) + 4 * conc);
  await ctx.db.query("analyze task");
  let next = 0;
  let ranOut = false;
  let last: CallbackTask = apiPool[0]!;
  const row: Row = {
    path: "POST /webhooks/kling/{task}/{token}",
    concurrency: String(conc),
    ...(await measured(ctx, () =>
      hammer({
        url: ctx.stack.apiUrl,
        connections: conc,
        seconds: params.seconds,
        warmupSeconds: params.warmupSeconds,
        method: "POST",
        headers: { "content-type": "application/json" },
        next: (request, stopEarly) => {
          const task = apiPool[next++];
          if (task) last = task;
          else {
            ranOut = true;
            stopEarly();
          }
          // Out of fresh tasks: resend the last one (a duplicate) until autocannon stops.
          return { ...request, path: `/webhooks/kling/${last.id}/${last.token}`, body: processingCallbackBody(last, Date.now()) };
        },
      }),
    )),
    baseline: callbackBaseline,
  };
  const { rows } = await ctx.db.query<{ outcome: string; count: string }>(
    "select outcome::text, count(*) from provider_callback where outcome is not null group by outcome order by outcome",
  );
  row.note =
    `receiver outcomes: ${rows.map((r) => `${r.outcome}=${r.count}`).join(" ") || "none"} (warm-up included; every callback should be 'applied')` +
    (ranOut ? "  <<< the supply of fresh tasks ran out: the window was cut short" : "");
  ctx.rows.push(row);
};

// ---------------------------------------------------------------------------------------------
// Main

const main = async () => {
  console.log(
    `API throughput benchmark: ${params.seconds} s per window after ${params.warmupSeconds} s of warm-up; reads at ${params.readConnections} ` +
      `connections, intake and callbacks at ${params.writeConnections}; ${params.tasks} tasks to read; pg pool ${params.poolSize}; phases ${params.phases.join(",")}`,
  );
  const started = performance.now();
  // The machine is shared: a busy neighbour shows here and in the baselines, not only in the API.
  const loadAtStart = loadavg().map((x) => x.toFixed(1)).join(" ");
  const stack = await startBenchStack();
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.error("interrupted: cleaning up");
    void stack.stop().finally(() => process.exit(130));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const db = new pg.Pool({ connectionString: stack.databaseUrl, max: params.poolSize });
  const redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: null });
  const rows: Row[] = [];
  try {
    const { accountId, key } = await createBenchAccount(db);
    const tasks = await fillStatusTasks(db, accountId, params.tasks, params.seed);
    await db.query("vacuum (analyze)");
    console.log(`API ${stack.apiUrl} (pid ${stack.apiPid}), database ready in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    const ctx: Ctx = { stack, db, redis, accountId, key, random: seeded(params.seed + 1), rows };

    const ids = tasks.map((t) => t.id);
    const externalIds = tasks.flatMap((t) => (t.externalTaskId ? [t.externalTaskId] : []));
    if (params.startWarmupSeconds > 0) {
      const warm = await warmUpApi(ctx, ids, externalIds);
      console.log(`API warm-up: ${params.startWarmupSeconds} s of mixed status reads, ${warm.perSecond.toFixed(1)} ok/s at the end`);
    }
    if (runs("reads")) await readPhase(ctx, ids, externalIds);
    if (runs("intake")) await intakePhase(ctx);
    if (runs("callbacks")) await callbackPhase(ctx);
  } finally {
    await db.end().catch(() => undefined);
    redis.disconnect();
    // Before the stop: what the API logs while shutting down under the last window's tail is not news.
    const logLines = [...stack.apiLogLines()];
    await stack.stop();
    console.log("");
    console.log(formatTable(rows));
    console.log("");
    console.log(
      "One raw op: status = 3 statements on the pool (api_key by hash, task by id and account, its task_image rows); " +
        "intake = 1 transaction (insert task, insert task_event, BullMQ add of the submit job); " +
        "callback = 1 transaction (task by id, insert provider_callback, guarded update, insert task_event). " +
        "ok/s counts 2xx answers only; latencies in ms; cpu = cores busy on average, API process / this process (load generator, baselines).",
    );
    if (logLines.length) {
      console.log(`the API logged ${logLines.length} warn/error lines; the first: ${logLines.slice(0, 3).map((l) => l.slice(0, 300)).join(" | ")}`);
    }
    console.log(
      `run took ${((performance.now() - started) / 1000).toFixed(0)} s; load average ${loadavg().map((x) => x.toFixed(1)).join(" ")} ` +
        `on ${availableParallelism()} cores (at the start: ${loadAtStart})`,
    );
  }

  const find = (prefix: string) => rows.find((r) => r.path.startsWith(prefix) && r.baseline);
  const fixed = (x: number | undefined, digits: number) => (x === undefined ? "n/a" : x.toFixed(digits));
  const dropinRatios = [find("GET /kling/v1/.../expand/{task_id}"), find("GET /kling/v1/.../expand/{external_id}")]
    .map(ratioOf)
    .filter((x): x is number => x !== undefined);
  const pacedRow = rows.find((r) => r.path.startsWith("GET /v1/tasks/{id} @"));
  console.log(
    `status_ratio=${fixed(ratioOf(find("GET /v1/tasks/{id}")), 3)} ` +
      // Both drop-in reads must meet the aim, so the worse of the two.
      `dropin_status_ratio=${fixed(dropinRatios.length ? Math.min(...dropinRatios) : undefined, 3)} ` +
      `intake_ratio=${fixed(ratioOf(find("POST /v1/tasks (image URL)")), 3)} ` +
      `callback_ratio=${fixed(ratioOf(find("POST /webhooks/kling")), 3)} ` +
      `status_p99_ms=${fixed(pacedRow?.figures.p99Ms, 1)}`,
  );
};

main().then(
  () => process.exit(0),
  (error: Error) => {
    console.error(`benchmark broke: ${error.stack ?? error.message}`);
    process.exit(1);
  },
);
