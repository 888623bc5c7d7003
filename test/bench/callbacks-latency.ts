// `npm run bench:callbacks`: how long from a provider callback arriving at our receiver to our
// outbound callback reaching the caller's endpoint, at a steady rate, against a bare BullMQ hop
// (add -> a worker picks it up) measured in the same run. The API and the worker run as their own
// processes (the API through startBenchStack, the worker spawned here) on a throw-away database and
// queue prefix; the consumer endpoint and the load run in this process. Each rate of
// BENCH_CALLBACKS_RATES (20 and 50 per second) is measured in turn on the same stack, each against
// its own baseline; one last line per rate:
// `rate=<r> p50_ms=<a> p99_ms=<b> baseline_p50_ms=<c> baseline_p99_ms=<d> p99_ratio=<e>`. Exits
// non-zero only if the run breaks (a callback never arrived).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import pg from "pg";
import { builtEntry, ensureBuilt } from "../../ops/build/build-apps.mjs";
import { createBenchAccount, fillCallbackTasks, processingCallbackBody, type CallbackTask } from "./api-fill.ts";
import { startBenchStack } from "./api-stack.ts";
import { envNumber, quantile, sleep } from "./bench-figures.ts";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const num = envNumber;
// BENCH_CALLBACKS_RATE (one rate) is still read, for the runs recorded with it.
const RATES = (process.env.BENCH_CALLBACKS_RATES ?? process.env.BENCH_CALLBACKS_RATE ?? "20,50").split(",").map(Number);
if (RATES.some((r) => !Number.isFinite(r) || r <= 0)) throw new Error(`BENCH_CALLBACKS_RATES: positive numbers, comma-separated`);
const SECONDS = num("BENCH_CALLBACKS_SECONDS", 10);
const WARMUP_SECONDS = num("BENCH_CALLBACKS_WARMUP_SECONDS", 2);

const figures = (xs: number[]) => ({ n: xs.length, p50: quantile(xs, 0.5), p99: quantile(xs, 0.99), max: Math.max(...xs) });
const ms = (x: number) => x.toFixed(1);

// Open loop: each send starts at its scheduled time whatever the earlier ones are doing, and its
// latency counts from that time, so a slow system cannot hide its queueing.
const atSteadyRate = async (count: number, rate: number, send: (i: number, scheduledAt: number) => void) => {
  const start = performance.now() + 50;
  for (let i = 0; i < count; i++) {
    const at = start + (i * 1000) / rate;
    const wait = at - performance.now();
    if (wait > 1) await sleep(wait);
    send(i, at);
  }
};

const main = async () => {
  // Neither the API (which applies the callbacks and schedules the next poll) nor the worker polls
  // the fake provider: these tasks hear only from the bench's callbacks.
  const quiet = { POLL_AT_EXPECTED_END: "false", CALLBACK_GRACE_MS: "3600000" };
  const stack = await startBenchStack({ ...process.env, ...quiet });
  const db = new pg.Pool({ connectionString: stack.databaseUrl, max: 4 });
  // Dropping the database at the end ends its connections: not an error here.
  db.on("error", () => undefined);
  const cleanups: (() => Promise<unknown>)[] = [async () => db.end(), async () => stack.stop()];
  try {
    // The consumer: the arrival time of each task's first callback.
    const arrivals = new Map<string, number>();
    const consumer = createServer((req, res) => {
      const at = performance.now();
      req.resume();
      req.on("end", () => {
        const id = (req.url ?? "").split("/").at(-1) ?? "";
        if (!arrivals.has(id)) arrivals.set(id, at);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => consumer.listen(0, "127.0.0.1", resolve));
    cleanups.unshift(() => new Promise((resolve) => consumer.close(resolve)));
    const consumerUrl = `http://127.0.0.1:${(consumer.address() as AddressInfo).port}`;

    await ensureBuilt();
    const worker = spawn(process.execPath, ["--enable-source-maps", builtEntry("apps/worker/main.ts")], {
      cwd: repoRoot,
      env: {
        ...process.env,
        NODE_ENV: "production",
        DATABASE_URL: stack.databaseUrl,
        REDIS_URL: stack.redisUrl,
        QUEUE_PREFIX: stack.queuePrefix,
        SERVER_KEY: randomBytes(32).toString("base64url"),
        LOG_LEVEL: "info",
        LOG_FORMAT: "json",
        PROVIDER: "simulator",
        PROVIDER_BASE_URL: "http://127.0.0.1:9",
        PUBLIC_BASE_URL: stack.apiUrl,
        ALLOWED_PRIVATE_HOSTS: "127.0.0.1",
        ...quiet,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
    cleanups.unshift(async () => {
      if (worker.exitCode === null && worker.signalCode === null) worker.kill("SIGTERM");
      await exited;
    });
    let workerOutput = "";
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the worker did not start:\n${workerOutput}`)), 60_000);
      const onData = (chunk: Buffer) => {
        workerOutput += chunk.toString("utf8");
        if (/worker started/.test(workerOutput)) {
          clearTimeout(timer);
          resolve();
        }
      };
      worker.stdout.on("data", onData);
      worker.stderr.on("data", onData);
      worker.once("exit", (code) => reject(new Error(`the worker exited (${code}):\n${workerOutput}`)));
    });

    // Drop-in tasks the provider accepted, each with a callback_url: one `processing` callback each
    // makes one outbound `kling.processing` callback. Each rate gets tasks of its own.
    const account = await createBenchAccount(db);
    const plan = RATES.map((rate) => ({ rate, warmupCount: Math.ceil(rate * WARMUP_SECONDS), count: Math.ceil(rate * SECONDS) }));
    const allTasks = await fillCallbackTasks(db, account.accountId, plan.reduce((n, p) => n + p.warmupCount + p.count, 0));
    await db.query(`update task set origin = 'dropin', callback_url = $1 || '/t/' || id::text where account_id = $2`, [consumerUrl, account.accountId]);

    // Wall-clock send times too, to compare with Postgres's timestamps (same machine, same clock).
    const sentWall = new Map<string, number>();
    const sendCallback = (task: CallbackTask, sentAt: Map<string, number>, scheduledAt: number) => {
      sentAt.set(task.id, scheduledAt);
      sentWall.set(task.id, Date.now());
      fetch(`${stack.apiUrl}/webhooks/kling/${task.id}/${task.token}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: processingCallbackBody(task, Date.now()),
      })
        .then((r) => (r.ok ? r.arrayBuffer() : Promise.reject(new Error(`callback answered ${r.status}`))))
        .catch((error: Error) => console.error(`callback ${task.id}: ${error.message}`));
    };
    const measureCallbacks = async (slice: CallbackTask[], rate: number) => {
      const sentAt = new Map<string, number>();
      await atSteadyRate(slice.length, rate, (i, at) => sendCallback(slice[i]!, sentAt, at));
      const deadline = performance.now() + 30_000;
      while (slice.some((t) => !arrivals.has(t.id)) && performance.now() < deadline) await sleep(50);
      const missing = slice.filter((t) => !arrivals.has(t.id)).length;
      return { latencies: slice.filter((t) => arrivals.has(t.id)).map((t) => arrivals.get(t.id)! - sentAt.get(t.id)!), missing };
    };

    // The baseline: a bare BullMQ hop at the same rate, its worker in this process.
    let hopRun = 0;
    const measureBaseline = async (n: number, rate: number) => {
      const connection = new Redis(stack.redisUrl, { maxRetriesPerRequest: null });
      const workerConnection = new Redis(stack.redisUrl, { maxRetriesPerRequest: null });
      const queue = new Queue("hop", { connection, prefix: stack.baselinePrefix });
      const run = hopRun++;
      const addedAt = new Map<string, number>();
      const latencies: number[] = [];
      let done = 0;
      const hop = new Worker(
        "hop",
        async (job) => {
          latencies.push(performance.now() - addedAt.get(job.id!)!);
          done++;
        },
        { connection: workerConnection, prefix: stack.baselinePrefix, concurrency: 50 },
      );
      await hop.waitUntilReady();
      await atSteadyRate(n, rate, (i, at) => {
        addedAt.set(`r${run}j${i}`, at);
        void queue.add("hop", { i }, { jobId: `r${run}j${i}`, removeOnComplete: true });
      });
      const deadline = performance.now() + 30_000;
      while (done < n && performance.now() < deadline) await sleep(20);
      await hop.close();
      await queue.close();
      connection.disconnect();
      workerConnection.disconnect();
      return latencies;
    };

    // Where the time went, from Postgres's clock: the event's commit to the attempt's start (the
    // hand-off to a deliverer), and the attempt itself (render, sign, POST, answer).
    const breakdown = async (slice: CallbackTask[]) => {
      const { rows: split } = await db.query<{ taskId: string; recordedMs: number; queued: number; attempt: number }>(
        `select d.task_id as "taskId", extract(epoch from d.created_at) * 1000 as "recordedMs",
                extract(epoch from (a.started_at - d.created_at)) * 1000 as queued, a.latency_ms as attempt
         from webhook_delivery d join webhook_attempt a on a.delivery_id = d.id where d.task_id = any($1::uuid[])`,
        [slice.map((t) => t.id)],
      );
      const inApi = figures(split.map((r) => Number(r.recordedMs) - sentWall.get(r.taskId)!));
      const queued = figures(split.map((r) => Number(r.queued)));
      const attempt = figures(split.map((r) => Number(r.attempt)));
      console.log(`  callback sent -> event recorded (the receiver): p50=${ms(inApi.p50)} ms p99=${ms(inApi.p99)} ms`);
      console.log(`  event recorded -> attempt started: p50=${ms(queued.p50)} ms p99=${ms(queued.p99)} ms; attempt: p50=${ms(attempt.p50)} ms p99=${ms(attempt.p99)} ms`);
    };

    const summaries: string[] = [];
    let offset = 0;
    for (const { rate, warmupCount, count } of plan) {
      const warmup = allTasks.slice(offset, offset + warmupCount);
      const tasks = allTasks.slice(offset + warmupCount, offset + warmupCount + count);
      offset += warmupCount + count;
      console.log(`load average ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}; rate ${rate}/s for ${SECONDS} s after ${WARMUP_SECONDS} s of warm-up`);
      await measureBaseline(warmupCount, rate);
      await measureCallbacks(warmup, rate);
      const baseline = figures(await measureBaseline(count, rate));
      const measured = await measureCallbacks(tasks, rate);
      const ours = figures(measured.latencies);
      const ratio = ours.p99 / baseline.p99;
      console.log(`bare BullMQ hop:      n=${baseline.n} p50=${ms(baseline.p50)} ms p99=${ms(baseline.p99)} ms max=${ms(baseline.max)} ms`);
      console.log(
        `provider callback -> outbound callback: n=${ours.n} p50=${ms(ours.p50)} ms p99=${ms(ours.p99)} ms max=${ms(ours.max)} ms missing=${measured.missing}`,
      );
      console.log(`p99 ratio to the baseline at ${rate}/s: ${ratio.toFixed(2)} (aim <= 2)`);
      await breakdown(tasks);
      console.log(`load average after ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}`);
      summaries.push(
        `rate=${rate} p50_ms=${ms(ours.p50)} p99_ms=${ms(ours.p99)} baseline_p50_ms=${ms(baseline.p50)} baseline_p99_ms=${ms(baseline.p99)} p99_ratio=${ratio.toFixed(2)}`,
      );
      if (measured.missing > 0) process.exitCode = 1;
    }
    const failed = workerOutput.split("\n").filter((line) => /"level":(40|50)/.test(line));
    if (failed.length) {
      const byMessage = new Map<string, number>();
      for (const line of failed) {
        const key = /"msg":"([^"]*)"/.exec(line)?.[1] ?? line.slice(0, 80);
        byMessage.set(key, (byMessage.get(key) ?? 0) + 1);
      }
      console.log(`worker warnings: ${[...byMessage].map(([m, n]) => `${n}x ${m}`).join("; ")}`);
      const first = failed.find((l) => !/rebuilt it from Postgres/.test(l));
      if (first) console.log(`first: ${first.slice(0, 600)}`);
    }
    for (const line of summaries) console.log(line);
  } finally {
    for (const cleanup of cleanups) await cleanup().catch((error: Error) => console.error(`cleanup: ${error.message}`));
  }
};

await main();
