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
import { Redis } from "ioredis";
import pg from "pg";
import { createBenchAccount, fillStatusTasks } from "./api-fill.ts";
import { callbackPhase, compareCallbackRows, inlineIntakeRatio, intakePhase, readPhase, warmUpApi, type BenchParams, type Ctx } from "./api-phases.ts";
import { formatTable, ratioOf, type Row } from "./api-report.ts";
import { startBenchStack } from "./api-stack.ts";
import { seededRandom } from "../../apps/simulator/seeded-random.ts";
import { envNumber } from "./bench-figures.ts";

// ---------------------------------------------------------------------------------------------
// Parameters

const env = process.env;
const num = envNumber;
const phaseNames = ["reads", "intake", "callbacks"] as const;
type PhaseName = (typeof phaseNames)[number];

const params: BenchParams & { tasks: number; seed: number; poolSize: number; phases: string[] } = {
  seconds: num("BENCH_API_SECONDS", 8, 1),
  warmupSeconds: num("BENCH_API_WARMUP_SECONDS", 2),
  // Once, before anything is measured: a fresh API process keeps speeding up for several seconds
  // under load (JIT tiers, Prisma's WebAssembly query compiler among them).
  startWarmupSeconds: num("BENCH_API_START_WARMUP_SECONDS", 6),
  // ... and at least this many reads, however long that takes on a busy machine (see warmUpApi).
  startWarmupRequests: Math.round(num("BENCH_API_START_WARMUP_REQUESTS", 8_000)),
  tasks: Math.round(num("BENCH_API_TASKS", 4_000, 10)),
  seed: num("BENCH_SEED", 20_240_601),
  readConnections: Math.round(num("BENCH_API_READ_CONNECTIONS", 50, 1)),
  writeConnections: Math.round(num("BENCH_API_WRITE_CONNECTIONS", 20, 1)),
  decodeSeconds: num("BENCH_API_DECODE_SECONDS", 3, 0.5),
  // Callback windows come in rounds of two (Kysely, Prisma Client), the order flipped each round.
  callbackRounds: Math.round(num("BENCH_API_CALLBACK_ROUNDS", 2, 1)),
  // The API's Prisma pool (createDb's default); the baselines get a pg.Pool of the same size.
  poolSize: 10,
  phases: (env.BENCH_API_PHASES ?? phaseNames.join(",")).split(",").map((p) => p.trim()).filter(Boolean),
};
for (const phase of params.phases) {
  if (!(phaseNames as readonly string[]).includes(phase)) throw new Error(`BENCH_API_PHASES: unknown phase '${phase}' (${phaseNames.join(", ")})`);
}
const runs = (phase: PhaseName) => params.phases.includes(phase);

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
  let leaving = false;
  const leave = (code: number, why: string) => {
    if (leaving) process.exit(code);
    leaving = true;
    console.error(`${why}: cleaning up`);
    void stack.stop().finally(() => process.exit(code));
  };
  process.on("SIGINT", () => leave(130, "interrupted"));
  process.on("SIGTERM", () => leave(130, "terminated"));
  // Still remove the database, keys and directory when something breaks outside the awaited path.
  process.on("uncaughtException", (error) => leave(1, `benchmark broke: ${error.stack ?? error.message}`));

  const db = new pg.Pool({ connectionString: stack.databaseUrl, max: params.poolSize });
  // An idle client's error (Postgres restarted) must fail the next query, not kill the process.
  db.on("error", (error) => console.error(`pg pool: ${error.message}`));
  const redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: null });
  redis.on("error", (error: Error) => console.error(`redis: ${error.message}`));
  const rows: Row[] = [];
  try {
    const { accountId, key } = await createBenchAccount(db);
    const tasks = await fillStatusTasks(db, accountId, params.tasks, params.seed);
    await db.query("vacuum (analyze)");
    console.log(`API ${stack.apiUrl} (pid ${stack.apiPid}), database ready in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    const ctx: Ctx = { params, stack, db, redis, accountId, key, random: seededRandom(params.seed + 1), rows };

    const ids = tasks.map((t) => t.id);
    const externalIds = tasks.flatMap((t) => (t.externalTaskId ? [t.externalTaskId] : []));
    if (params.startWarmupSeconds > 0) {
      const warm = await warmUpApi(ctx, ids, externalIds);
      console.log(`API warm-up: ${warm.seconds.toFixed(0)} s of mixed status reads, ${warm.ok} ok (last ${params.startWarmupSeconds} s at ${warm.perSecond.toFixed(1)} ok/s)`);
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
        "callback = 1 transaction (task by id, insert provider_callback, guarded update, insert task_event); " +
        "'via Prisma Client' = a second API process whose receiver runs the same SQL through Prisma Client (CALLBACK_DB_CLIENT=prisma). " +
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
  const callbacks = compareCallbackRows(rows);
  const fixed = (x: number | undefined, digits: number) => (x === undefined ? "n/a" : x.toFixed(digits));
  const dropinRatios = [find("GET /kling/v1/.../expand/{task_id}"), find("GET /kling/v1/.../expand/{external_id}")]
    .map(ratioOf)
    .filter((x): x is number => x !== undefined);
  const pacedRow = rows.find((r) => r.path.startsWith("GET /v1/tasks/{id} @"));
  const inlineRatio = inlineIntakeRatio(rows);
  console.log(
    `status_ratio=${fixed(ratioOf(find("GET /v1/tasks/{id}")), 3)} ` +
      // Both drop-in reads must meet the aim, so the worse of the two.
      `dropin_status_ratio=${fixed(dropinRatios.length ? Math.min(...dropinRatios) : undefined, 3)} ` +
      `intake_ratio=${fixed(ratioOf(find("POST /v1/tasks (image URL)")), 3)} ` +
      // Against raw intake plus the same decode, both measured in this run (api-phases.ts).
      `inline_intake_ratio=${fixed(inlineRatio, 3)} ` +
      `callback_ratio=${fixed(callbacks && callbacks.kyselyOk / callbacks.baselineOk, 3)} ` +
      `callback_prisma_ratio=${fixed(callbacks && callbacks.prismaOk / callbacks.baselineOk, 3)} ` +
      // Issue 19's rule: the receiver's writes go through Prisma Client if this is above 0.9.
      `callback_prisma_vs_kysely=${fixed(callbacks?.okRatio, 3)} callback_prisma_vs_kysely_per_core=${fixed(callbacks?.perCoreRatio, 3)} ` +
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
