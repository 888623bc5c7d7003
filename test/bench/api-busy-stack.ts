// Benchmark (not a test): status reads while the whole stack works. `npm start`'s entry
// (apps/local-stack/main.ts: the API, a worker and the simulator as separate processes) runs on a
// throw-away database, queue prefix, storage directory and ports; creates with an inline image go in
// at a fixed rate the whole time (each is submitted to the simulator, called back, archived), and
// meanwhile native status reads are driven with autocannon, alternating with the same reads' raw
// statements on a pg.Pool of the API's size, both at the same concurrency. It prints each window and
// the ratio of the summed reads; it asserts nothing and exits non-zero only when the run broke.
// Run: `npm run bench:api:busy` (docs/benchmarks.md).
import { availableParallelism, loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import pg from "pg";
import { makeImage } from "../support/images.ts";
import { rawStatusRead } from "./api-baselines.ts";
import { createBenchAccount, endedStatusMix, fillStatusTasks } from "./api-fill.ts";
import { closedLoop, hammer, type Figures } from "./api-load.ts";
import { startBenchStack } from "./api-stack.ts";
import { envNumber, sleep } from "./bench-figures.ts";
import { seededRandom } from "../../apps/simulator/seeded-random.ts";

const env = process.env;
const num = envNumber;
const params = {
  seconds: num("BENCH_API_SECONDS", 8, 1),
  warmupSeconds: num("BENCH_API_WARMUP_SECONDS", 2),
  rounds: Math.round(num("BENCH_API_BUSY_ROUNDS", 2, 1)),
  // Creates per second the whole time; the simulator runs each for BENCH_API_BUSY_RUN_MS.
  createRate: num("BENCH_API_BUSY_RATE", 10, 0.1),
  runMs: Math.round(num("BENCH_API_BUSY_RUN_MS", 1_000, 0)),
  capacity: Math.round(num("BENCH_API_BUSY_CAPACITY", 20, 1)),
  connections: Math.round(num("BENCH_API_READ_CONNECTIONS", 50, 1)),
  tasks: Math.round(num("BENCH_API_TASKS", 4_000, 10)),
  seed: num("BENCH_SEED", 20_240_601),
  poolSize: 10,
};

const main = async () => {
  console.log(
    `API under a busy stack: native status reads at ${params.connections} connections vs raw pg, ${params.rounds} rounds of ${params.seconds} s windows; ` +
      `creates at ${params.createRate}/s to a simulator of capacity ${params.capacity}, ${params.runMs} ms per task`,
  );
  const loadAtStart = loadavg().map((x) => x.toFixed(1)).join(" ");
  const started = performance.now();
  const stack = await startBenchStack(process.env, {
    whole: true,
    stackEnv: {
      SIM_CAPACITY: String(params.capacity),
      PROVIDER_CAPACITY: String(params.capacity),
      SIM_RUN_MS: String(params.runMs),
    },
  });
  const leave = (code: number, why: string) => {
    console.error(`${why}: cleaning up`);
    void stack.stop().finally(() => process.exit(code));
  };
  process.once("SIGINT", () => leave(130, "interrupted"));
  process.once("SIGTERM", () => leave(130, "terminated"));

  const db = new pg.Pool({ connectionString: stack.databaseUrl, max: params.poolSize });
  db.on("error", (error) => console.error(`pg pool: ${error.message}`));
  let feeding = true;
  const created = { ok: 0, refused: 0, firstRefusal: "" };
  try {
    const { accountId, key } = await createBenchAccount(db);
    const tasks = await fillStatusTasks(db, accountId, params.tasks, params.seed, endedStatusMix);
    await db.query("vacuum (analyze)");
    const random = seededRandom(params.seed + 1);
    const pickId = () => tasks[Math.floor(random() * tasks.length)]!.id;
    const headers = { authorization: `Bearer ${key}` };

    // The background work: one create every 1/rate s, each answered before the next may overlap it
    // by at most a few (a slow API must not turn into an unbounded pile of open requests).
    const body = JSON.stringify({
      image: (await makeImage(320, 320)).toString("base64"),
      up_expansion_ratio: 0.1,
      down_expansion_ratio: 0.1,
      left_expansion_ratio: 0.1,
      right_expansion_ratio: 0.1,
    });
    let open = 0;
    const feeder = (async () => {
      const interval = 1000 / params.createRate;
      let next = performance.now();
      while (feeding) {
        if (open < 8) {
          open++;
          void fetch(`${stack.apiUrl}/v1/tasks`, { method: "POST", headers: { ...headers, "content-type": "application/json" }, body })
            .then(
              async (r) => {
                if (r.status === 202) created.ok++;
                else if (created.refused++ === 0) created.firstRefusal = `${r.status} ${(await r.text()).slice(0, 300)}`;
              },
              (error: Error) => {
                if (created.refused++ === 0) created.firstRefusal = error.message;
              },
            )
            .finally(() => open--);
        }
        next += interval;
        await sleep(Math.max(0, next - performance.now()));
      }
    })();
    // Let the worker and the simulator get going before anything is measured.
    await sleep(5_000);
    const progress = async () => {
      const { rows } = await db.query<{ status: string; count: string }>("select status::text, count(*) from task where image_url is null group by 1 order by 1");
      return rows.map((r) => `${r.status}=${r.count}`).join(" ");
    };
    console.log(`API ${stack.apiUrl}; stack up in ${((performance.now() - started) / 1000).toFixed(1)} s; the stack's tasks so far: ${await progress()}`);

    const sums = { api: { ok: 0, seconds: 0 }, raw: { ok: 0, seconds: 0 } };
    const show = (name: string, f: Figures) =>
      console.log(`${name.padEnd(28)} ${f.perSecond.toFixed(1).padStart(8)}/s  p50 ${f.p50Ms.toFixed(1)} ms  p99 ${f.p99Ms.toFixed(1)} ms  non-2xx ${f.non2xx}  load ${loadavg()[0]!.toFixed(1)}`);
    for (let round = 0; round < params.rounds; round++) {
      const api = await hammer({
        url: stack.apiUrl,
        connections: params.connections,
        seconds: params.seconds,
        warmupSeconds: params.warmupSeconds,
        headers,
        next: (request) => ({ ...request, path: `/v1/tasks/${pickId()}` }),
      });
      show("GET /v1/tasks/{id}", api);
      const raw = await closedLoop({ concurrency: params.connections, seconds: params.seconds, warmupSeconds: params.warmupSeconds, op: rawStatusRead(db, key, pickId) });
      show("raw: key + task + images", raw);
      sums.api.ok += api.ok;
      sums.api.seconds += api.seconds;
      sums.raw.ok += raw.ok;
      sums.raw.seconds += raw.seconds;
    }
    feeding = false;
    await feeder;
    const ratio = sums.api.ok / sums.api.seconds / (sums.raw.ok / sums.raw.seconds);
    console.log(`the stack's tasks at the end: ${await progress()}; creates answered 202: ${created.ok}, otherwise: ${created.refused}${created.firstRefusal ? ` (the first: ${created.firstRefusal})` : ""}`);
    // The apps' JSON log lines only (the supervisor's banner is not news).
    const logLines = stack.apiLogLines().filter((l) => /^\[\w+\] \{"level":[45]\d/.test(l));
    if (env.BENCH_API_BUSY_LOG) console.log(stack.apiLogLines().join("\n"));
    if (logLines.length) console.log(`the stack logged ${logLines.length} warn/error lines; the first: ${logLines.slice(0, 3).map((l) => l.slice(0, 300)).join(" | ")}`);
    console.log(
      `run took ${((performance.now() - started) / 1000).toFixed(0)} s; load average ${loadavg().map((x) => x.toFixed(1)).join(" ")} on ${availableParallelism()} cores (at the start: ${loadAtStart})`,
    );
    console.log(`busy_status_ratio=${ratio.toFixed(3)}`);
  } finally {
    feeding = false;
    await db.end().catch(() => undefined);
    await stack.stop();
  }
};

main().then(
  () => process.exit(0),
  (error: Error) => {
    console.error(`benchmark broke: ${error.stack ?? error.message}`);
    process.exit(1);
  },
);
