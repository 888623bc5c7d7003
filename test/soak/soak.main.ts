import { readFileSync } from "node:fs";
import path from "node:path";
import { Redis } from "ioredis";
import pg from "pg";
import { prepareDatabase } from "../../apps/domain/db/prepare-database.ts";
import { ensureBuilt } from "../../ops/build/build-apps.mjs";
import { dropDatabases } from "../support/databases.ts";
import { startFileServer } from "../support/file-server.ts";
import { call } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startFleet, type Fleet } from "../support/process-fleet.ts";
import { startPrivateRedis } from "../support/redis-server.ts";
import { startWebhookConsumer } from "../support/webhook-consumer.ts";

// `npm run soak`: SOAK_MINUTES (default 30) of steady work on 1 API and 2 worker processes with
// light provider faults: intake at SOAK_TASKS_PER_SECOND, status polls at SOAK_POLLS_PER_SECOND,
// a callback per task. Each minute: RSS of each of our processes, Postgres and Redis sizes, status
// p99. Then intake stops and the run drains. The last line:
// rss_slope_mb_per_min_max=<x> status_p99_first_ms=<a> status_p99_last_ms=<b> drained=<yes|no>
// (the slope is a least-squares fit per process over the samples after minute 5, or after the
// first half of a shorter run; the aim is under 0.5 MB/min).

const minutes = Number(process.env.SOAK_MINUTES ?? 30);
const tasksPerSecond = Number(process.env.SOAK_TASKS_PER_SECOND ?? 2);
const pollsPerSecond = Number(process.env.SOAK_POLLS_PER_SECOND ?? 20);
const serverUrl = process.env.TEST_POSTGRES_URL ?? "postgresql://postgres@127.0.0.1:5432";
const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 };

const rssMb = (pid: number): number | undefined => {
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kb ? Number(kb) / 1024 : undefined;
  } catch {
    return undefined;
  }
};

const p99 = (values: number[]) => {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)]!;
};

// Least squares, MB per minute.
const slope = (points: { t: number; mb: number }[]) => {
  if (points.length < 2) return 0;
  const n = points.length;
  const mt = points.reduce((s, p) => s + p.t, 0) / n;
  const mm = points.reduce((s, p) => s + p.mb, 0) / n;
  const num = points.reduce((s, p) => s + (p.t - mt) * (p.mb - mm), 0);
  const den = points.reduce((s, p) => s + (p.t - mt) ** 2, 0);
  return den === 0 ? 0 : num / den;
};

const template = `${serverUrl}/kling_soak_${process.pid}_${Date.now().toString(36)}`;
await prepareDatabase(template);
// The processes it spawns run from the build (ops/build), made here when a source changed.
await ensureBuilt();
const redis = await startPrivateRedis();
const redisClient = new Redis(redis.url);
const consumer = await startWebhookConsumer();
const files = await startFileServer({ "/photo.png": { body: await makeImage(400, 300) } });
let fleet: Fleet | undefined;
const say = (line: string) => console.log(line);
const cleanUp = async () => {
  await fleet?.stop();
  await consumer.close();
  await files.stop();
  redisClient.disconnect();
  await redis.kill();
  await dropDatabases(template, new URL(template).pathname.slice(1));
};
// Interrupted: the processes, the Redis and the databases go too.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    say(`soak: ${signal}, cleaning up`);
    void cleanUp().finally(() => process.exit(130));
  });
}

try {
  fleet = await startFleet({
    templateDatabaseUrl: template,
    apis: 1,
    workers: 2,
    env: { REDIS_URL: redis.url, PROVIDER_CAPACITY: "10", CALLBACK_GRACE_MS: "3000", POLL_MAX_INTERVAL_MS: "2000", },
    workerEnv: { JOB_LOCK_MS: "5000", SUBMIT_RETRY_BASE_MS: "200", SUBMIT_RETRY_MAX_MS: "2000" },
    simulatorEnv: { SIM_CAPACITY: "10", SIM_RUN_MS: "1000-2000", SIM_CALLBACK_LOSS: "0.05", SIM_ERROR_RATE: "0.02", SIM_SEED: "30" },
    logDir: path.join("/tmp", "kling-soak-logs", String(Date.now())),
  });
  const running = fleet;
  const api = running.apis[0]!.url!;
  const database = new URL(running.databaseUrl).pathname.slice(1);
  const ids: string[] = [];
  let refused = 0;
  let latencies: number[] = [];
  const samples: { proc: string; t: number; mb: number }[] = [];
  const p99s: number[] = [];
  const started = Date.now();
  const until = started + minutes * 60_000;

  const intake = setInterval(() => {
    void call(api, "POST", "/v1/tasks", { key: running.key, body: { image: files.url("/photo.png"), ...ratios, callback_url: `${consumer.url}/soak` } }).then(
      (answer) => (answer.status === 202 ? ids.push(answer.body.id) : refused++),
      () => refused++,
    );
  }, 1000 / tasksPerSecond);
  const polls = setInterval(() => {
    const id = ids[Math.floor(Math.random() * ids.length)];
    if (!id) return;
    const at = performance.now();
    void call(api, "GET", `/v1/tasks/${id}`, { key: running.key }).then(
      () => latencies.push(performance.now() - at),
      () => undefined,
    );
  }, 1000 / pollsPerSecond);

  const sizes = async () => {
    const { rows } = await running.db.query<{ bytes: string }>("select pg_database_size($1)::text as bytes", [database]);
    const info = await redisClient.info("memory");
    const used = Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0);
    return { pgMb: Number(rows[0]!.bytes) / 1048576, redisMb: used / 1048576, redisKeys: await redisClient.dbsize() };
  };
  const sample = async (minute: number) => {
    const t = (Date.now() - started) / 60_000;
    const procs = [...running.apis, ...running.workers].map((m) => ({ proc: `${m.kind}${m.index}`, mb: rssMb(m.current().pid) }));
    for (const { proc, mb } of procs) if (mb !== undefined) samples.push({ proc, t, mb });
    const { pgMb, redisMb, redisKeys } = await sizes();
    const statusP99 = p99(latencies);
    p99s.push(statusP99);
    latencies = [];
    const { rows } = await running.db.query<{ ended: number }>("select count(*) filter (where status in ('succeeded','failed','canceled'))::int as ended from task");
    say(
      `minute=${minute} submitted=${ids.length} refused=${refused} ended=${rows[0]!.ended} callbacks=${consumer.received.length} status_p99_ms=${statusP99.toFixed(1)} ` +
        `${procs.map((p) => `rss_${p.proc}_mb=${p.mb?.toFixed(1)}`).join(" ")} pg_mb=${pgMb.toFixed(1)} redis_mb=${redisMb.toFixed(2)} redis_keys=${redisKeys}`,
    );
  };

  for (let minute = 1; Date.now() < until; minute++) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(60_000, until - Date.now())));
    await sample(minute);
  }
  clearInterval(intake);
  clearInterval(polls);

  // Drain: every task ended and every callback sent.
  const drainUntil = Date.now() + 5 * 60_000;
  let drained = false;
  while (Date.now() < drainUntil) {
    const { rows } = await running.db.query<{ open: number; pending: number }>(
      "select (select count(*)::int from task where status not in ('succeeded','failed','canceled')) as open, (select count(*)::int from webhook_delivery where status = 'pending') as pending",
    );
    if (rows[0]!.open === 0 && rows[0]!.pending === 0) {
      drained = true;
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  const { rows: outcome } = await running.db.query<{ status: string; n: number }>("select status::text, count(*)::int as n from task group by 1 order by 1");
  const after = await sizes();
  say(`drain: ${drained ? "done" : "not done"} in ${Math.round((Date.now() - until) / 1000)} s; tasks ${outcome.map((r) => `${r.status}=${r.n}`).join(" ")}; callbacks=${consumer.received.length}; pg_mb=${after.pgMb.toFixed(1)} redis_mb=${after.redisMb.toFixed(2)} redis_keys=${after.redisKeys}`);

  const from = Math.min(5, minutes / 2);
  const slopes = [...new Set(samples.map((s) => s.proc))].map((proc) => ({
    proc,
    slope: slope(samples.filter((s) => s.proc === proc && s.t >= from)),
  }));
  say(`rss slopes after minute ${from} (MB/min): ${slopes.map((s) => `${s.proc}=${s.slope.toFixed(3)}`).join(" ")}`);
  const worst = Math.max(...slopes.map((s) => s.slope));
  say(`rss_slope_mb_per_min_max=${worst.toFixed(3)} status_p99_first_ms=${(p99s[0] ?? 0).toFixed(1)} status_p99_last_ms=${(p99s.at(-1) ?? 0).toFixed(1)} drained=${drained ? "yes" : "no"}`);
} finally {
  await cleanUp();
}
