// `npm run bench:callbacks`: how long from a provider callback arriving at our receiver to our
// outbound callback reaching the caller's endpoint, at a steady rate, against a bare BullMQ hop
// (add -> a worker picks it up) measured in the same run. The API and the worker run as their own
// processes (the API through startBenchStack, the worker spawned here) on a throw-away database and
// queue prefix; the consumer endpoint and the load run in this process. Each rate of
// BENCH_CALLBACKS_RATES (20 and 50 per second) is measured in turn on the same stack, each against
// its own baseline; one last line per rate:
// `rate=<r> p50_ms=<a> p99_ms=<b> baseline_p50_ms=<c> baseline_p99_ms=<d> p99_ratio=<e> bare_p99_ms=<f>
// bare_p99_ratio=<g>`. Beside the hop, the bare path (bare-callback-path.ts, its own process: HTTP
// in, one durable INSERT, HTTP out) at the same rate: the least a callback must cost with a commit.
// With tracing (on unless BENCH_CALLBACKS_TRACE=0; callback-trace.preload.ts in the API, the worker
// and the bare path) it prints each callback's stages p50/p99 and their share of the slowest 5%,
// and per process the event-loop delay, GC pauses and CPU. BENCH_CALLBACKS_ROUNDS (1) repeats hop,
// bare, ours per rate. Exits non-zero only if the run breaks (a callback never arrived).
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import pg from "pg";
import { builtEntry, ensureBuilt } from "../../ops/build/build-apps.mjs";
import { createBenchAccount, fillCallbackTasks, processingCallbackBody, type CallbackTask } from "./api-fill.ts";
import { startBenchStack } from "./api-stack.ts";
import { envNumber, quantile, sleep } from "./bench-figures.ts";
import { callbackStages, gcInSlowest, processLine, stageTable, type BenchSide } from "./callback-stages.ts";
import type { TraceDump } from "./callback-trace.preload.ts";
import { freePort } from "../support/free-port.ts";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const num = envNumber;
// BENCH_CALLBACKS_RATE (one rate) is still read, for the runs recorded with it.
const RATES = (process.env.BENCH_CALLBACKS_RATES ?? process.env.BENCH_CALLBACKS_RATE ?? "20,50").split(",").map(Number);
if (RATES.some((r) => !Number.isFinite(r) || r <= 0)) throw new Error(`BENCH_CALLBACKS_RATES: positive numbers, comma-separated`);
const SECONDS = num("BENCH_CALLBACKS_SECONDS", 10);
const WARMUP_SECONDS = num("BENCH_CALLBACKS_WARMUP_SECONDS", 2);
const ROUNDS = num("BENCH_CALLBACKS_ROUNDS", 1, 1);
const TRACE = process.env.BENCH_CALLBACKS_TRACE !== "0";
const IDLE_MS = num("BENCH_CALLBACKS_IDLE_MS", 2_000);
// The trace files (and, with CALLBACK_TRACE_PROFILE=1, each window's CPU profiles) left for reading.
const KEEP_TRACE = process.env.BENCH_CALLBACKS_KEEP_TRACE === "1";
const preload = fileURLToPath(new URL("./callback-trace.preload.ts", import.meta.url));

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

const epoch = (perfMs: number) => performance.timeOrigin + perfMs;

// A child process of the bench (the worker, the bare path), ready once its output matches `ready`.
const spawnChild = async (args: string[], env: NodeJS.ProcessEnv, ready: RegExp, name: string) => {
  const child = spawn(process.execPath, args, { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let output = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the ${name} did not start:\n${output}`)), 60_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8");
      if (ready.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => reject(new Error(`the ${name} exited (${code}):\n${output}`)));
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
  };
  return { child, stop, output: () => output };
};

// Asks each traced process for what it recorded since the last ask (callback-trace.preload.ts).
const traceDumps = (dir: string) => {
  const asked = new Map<number, number>();
  return async (processes: { pid: number; role: string }[]): Promise<TraceDump[]> => {
    if (!TRACE) return [];
    return Promise.all(
      processes.map(async ({ pid, role }) => {
        const n = asked.get(pid) ?? 0;
        asked.set(pid, n + 1);
        process.kill(pid, "SIGUSR2");
        const file = path.join(dir, `${role}-${pid}-${n}.json`);
        const deadline = Date.now() + 60_000;
        while (!existsSync(file)) {
          if (Date.now() > deadline) throw new Error(`no trace from the ${role} (${file})`);
          await sleep(20);
        }
        return JSON.parse(await readFile(file, "utf8")) as TraceDump;
      }),
    );
  };
};

// CPU (ms) each Postgres backend of the bench's database has used so far, by the application_name
// of its client (kling-api, kling-worker; the bare path's is empty), from /proc: what a callback
// costs Postgres, which the wall of a statement under load does not tell apart from waiting.
const CLOCK_TICK_MS = 10;
const backendCpu = async (db: pg.Pool): Promise<Map<number, { app: string; ms: number }>> => {
  const { rows } = await db.query<{ pid: number; app: string }>(
    `select pid, coalesce(application_name, '') as app from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`,
  );
  const cpu = new Map<number, { app: string; ms: number }>();
  for (const { pid, app } of rows) {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
    if (!stat) continue; // gone, or Postgres on another host
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    cpu.set(pid, { app, ms: (Number(fields[11]) + Number(fields[12])) * CLOCK_TICK_MS });
  }
  return cpu;
};
// Per application_name, the CPU its backends used between two readings, per callback.
const backendCpuLine = (before: Map<number, { app: string; ms: number }>, after: Map<number, { app: string; ms: number }>, callbacks: number) => {
  const byApp = new Map<string, number>();
  for (const [pid, { app, ms }] of after) byApp.set(app || "(none)", (byApp.get(app || "(none)") ?? 0) + ms - (before.get(pid)?.ms ?? 0));
  return [...byApp]
    .filter(([app]) => app !== "bench")
    .map(([app, ms]) => `${app} ${(ms / Math.max(1, callbacks)).toFixed(2)}`)
    .join(", ");
};

const main = async () => {
  // Neither the API (which applies the callbacks and schedules the next poll) nor the worker polls
  // the fake provider: these tasks hear only from the bench's callbacks.
  const quiet = { POLL_AT_EXPECTED_END: "false", CALLBACK_GRACE_MS: "3600000" };
  const traceDir = await mkdtemp(path.join(os.tmpdir(), "kling-bench-callbacks-"));
  const traced = (role: string) => (TRACE ? { CALLBACK_TRACE_DIR: traceDir, CALLBACK_TRACE_ROLE: role } : {});
  // The apps run from the build; the trace preload is TypeScript, so tsx comes with it.
  const nodeArgs = TRACE ? ["--import", "tsx", "--import", preload] : [];
  // The API sends the callbacks it causes (WEBHOOK_SEND_FROM_RECEIVER), to the consumer on loopback.
  const stack = await startBenchStack({ ...process.env, ...quiet, ...traced("api"), ALLOWED_PRIVATE_HOSTS: "127.0.0.1" }, { nodeArgs });
  const db = new pg.Pool({ connectionString: stack.databaseUrl, max: 4, application_name: "bench" });
  // Dropping the database at the end ends its connections: not an error here.
  db.on("error", () => undefined);
  const cleanups: (() => Promise<unknown>)[] = [async () => db.end(), async () => stack.stop()];
  if (!KEEP_TRACE) cleanups.push(() => rm(traceDir, { recursive: true, force: true }));
  const benchLoop = monitorEventLoopDelay({ resolution: 10 });
  benchLoop.enable();
  try {
    // The consumer: the arrival time of each task's first callback (and of each bare path's POST).
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
    const worker = await spawnChild(
      [...nodeArgs, "--enable-source-maps", builtEntry("apps/worker/main.ts")],
      {
        ...process.env,
        NODE_ENV: "production",
        DATABASE_URL: stack.databaseUrl,
        REDIS_URL: stack.redisUrl,
        QUEUE_PREFIX: stack.queuePrefix,
        SERVER_KEY: stack.serverKey,
        LOG_LEVEL: "info",
        LOG_FORMAT: "json",
        PROVIDER: "simulator",
        PROVIDER_BASE_URL: "http://127.0.0.1:9",
        PUBLIC_BASE_URL: stack.apiUrl,
        ALLOWED_PRIVATE_HOSTS: "127.0.0.1",
        ...quiet,
        ...traced("worker"),
      },
      /worker started/,
      "worker",
    );
    cleanups.unshift(worker.stop);
    const barePort = await freePort();
    const bare = await spawnChild(
      ["--import", "tsx", ...(TRACE ? ["--import", preload] : []), "test/bench/bare-callback-path.ts"],
      { ...process.env, DATABASE_URL: stack.databaseUrl, BARE_CONSUMER_URL: consumerUrl, BARE_PORT: String(barePort), ...traced("bare") },
      /bare path listening/,
      "bare path",
    );
    cleanups.unshift(bare.stop);
    const bareUrl = `http://127.0.0.1:${barePort}`;
    const dumps = traceDumps(traceDir);
    const ourProcesses = [
      { pid: stack.apiPid, role: "api" },
      { pid: worker.child.pid!, role: "worker" },
    ];
    const bareProcesses = [{ pid: bare.child.pid!, role: "bare" }];

    // Drop-in tasks the provider accepted, each with a callback_url: one `processing` callback each
    // makes one outbound `kling.processing` callback. Each rate and round gets tasks of its own.
    const account = await createBenchAccount(db);
    const plan = RATES.map((rate) => ({ rate, warmupCount: Math.ceil(rate * WARMUP_SECONDS), count: Math.ceil(rate * SECONDS) }));
    const allTasks = await fillCallbackTasks(db, account.accountId, plan.reduce((n, p) => n + p.warmupCount + p.count * ROUNDS, 0));
    await db.query(`update task set origin = 'dropin', callback_url = $1 || '/t/' || id::text where account_id = $2`, [consumerUrl, account.accountId]);

    const post = (url: string, body: string, label: string) =>
      fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body })
        .then((r) => (r.ok ? r.arrayBuffer() : Promise.reject(new Error(`answered ${r.status}`))))
        .catch((error: Error) => console.error(`${label}: ${error.message}`));
    const waitForArrivals = async (ids: string[]) => {
      const deadline = performance.now() + 30_000;
      while (ids.some((id) => !arrivals.has(id)) && performance.now() < deadline) await sleep(50);
    };
    // Each callback's due time, send time and arrival, as epoch ms (the trace's clock).
    const sides = (ids: string[], due: Map<string, number>, sent: Map<string, number>): BenchSide[] =>
      ids.map((id) => ({ task: id, scheduled: epoch(due.get(id)!), sent: epoch(sent.get(id)!), arrived: arrivals.has(id) ? epoch(arrivals.get(id)!) : undefined }));

    const measureCallbacks = async (slice: CallbackTask[], rate: number) => {
      const due = new Map<string, number>();
      const sent = new Map<string, number>();
      await atSteadyRate(slice.length, rate, (i, at) => {
        const task = slice[i]!;
        due.set(task.id, at);
        sent.set(task.id, performance.now());
        void post(`${stack.apiUrl}/webhooks/kling/${task.id}/${task.token}`, processingCallbackBody(task, Date.now()), `callback ${task.id}`);
      });
      await waitForArrivals(slice.map((t) => t.id));
      return sides(
        slice.map((t) => t.id),
        due,
        sent,
      );
    };
    const measureBare = async (n: number, rate: number) => {
      const ids = Array.from({ length: n }, () => randomUUID());
      const due = new Map<string, number>();
      const sent = new Map<string, number>();
      const body = processingCallbackBody({ id: ids[0]!, token: "", providerTaskId: "sim-bare" }, Date.now());
      await atSteadyRate(n, rate, (i, at) => {
        const id = ids[i]!;
        due.set(id, at);
        sent.set(id, performance.now());
        void post(`${bareUrl}/in/${id}/x`, body, `bare ${id}`);
      });
      await waitForArrivals(ids);
      return sides(ids, due, sent);
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

    const latenciesOf = (bench: BenchSide[]) => bench.filter((b) => b.arrived !== undefined).map((b) => b.arrived! - b.scheduled);
    const deliveriesOf = async (tasks: string[]) => {
      const { rows } = await db.query<{ id: string; taskId: string }>(`select id, task_id as "taskId" from webhook_delivery where task_id = any($1::uuid[])`, [tasks]);
      return new Map(rows.map((r) => [r.taskId, r.id]));
    };
    // The bare path's stages, from its own trace.
    const bareTable = (bench: BenchSide[], dump: TraceDump[]) => {
      const events = dump.flatMap((d) => d.events);
      const byId = new Map<string, { in?: number; insert?: { t: number; end: number }; out?: number }>();
      for (const e of events) {
        const id = e.task ?? e.ids?.[0];
        if (!id) continue;
        const entry = byId.get(id) ?? {};
        if (e.ev === "in") entry.in = e.t;
        if (e.ev === "q" && e.sql?.startsWith("insert into bare_callback") && e.end !== undefined) entry.insert = { t: e.t, end: e.end };
        if (e.ev === "out") entry.out = e.t;
        byId.set(id, entry);
      }
      const rows = bench
        .filter((b) => b.arrived !== undefined)
        .map((b) => {
          const seen = byId.get(b.task) ?? {};
          const stages: Record<string, number> = {};
          const put = (name: string, from?: number, to?: number) => {
            if (from !== undefined && to !== undefined) stages[name] = to - from;
          };
          put("bench: due -> sent", b.scheduled, b.sent);
          put("sent -> request start", b.sent, seen.in);
          put("request -> INSERT start", seen.in, seen.insert?.t);
          put("durable INSERT (autocommit)", seen.insert?.t, seen.insert?.end);
          put("INSERT end -> POST start", seen.insert?.end, seen.out);
          put("POST start -> consumer received", seen.out, b.arrived);
          return { task: b.task, total: b.arrived! - b.scheduled, stages };
        });
      return stageTable(rows, ["bench: due -> sent", "sent -> request start", "request -> INSERT start", "durable INSERT (autocommit)", "INSERT end -> POST start", "POST start -> consumer received"]);
    };

    const summaries: string[] = [];
    let offset = 0;
    const take = (n: number) => allTasks.slice(offset, (offset += n));
    for (const { rate, warmupCount, count } of plan) {
      const warmup = take(warmupCount);
      console.log(`load average ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}; rate ${rate}/s for ${SECONDS} s after ${WARMUP_SECONDS} s of warm-up, ${ROUNDS} round(s)`);
      await measureBaseline(warmupCount, rate);
      await measureBare(warmupCount, rate);
      await measureCallbacks(warmup, rate);
      const all = { hop: [] as number[], bare: [] as number[], ours: [] as number[], missing: 0 };
      for (let round = 0; round < ROUNDS; round++) {
        const tasks = take(count);
        const load = os.loadavg()[0]!.toFixed(2);
        const hop = await measureBaseline(count, rate);
        await dumps(bareProcesses);
        const bareStart = performance.now();
        const barePgBefore = await backendCpu(db);
        const bareSides = await measureBare(count, rate);
        const barePgAfter = await backendCpu(db);
        const bareDump = await dumps(bareProcesses);
        const bareMs = performance.now() - bareStart;
        // An idle window first: what the API and the worker burn with no callback (pollers, timers).
        await dumps([...ourProcesses, ...bareProcesses]);
        const idleStart = performance.now();
        await sleep(IDLE_MS);
        const idleDumps = await dumps([...ourProcesses, ...bareProcesses]);
        const idleMs = performance.now() - idleStart;
        const idleCpu = new Map(idleDumps.map((d) => [d.role, (d.cpuMs * 1000) / idleMs]));
        benchLoop.reset();
        const windowStart = performance.now();
        const ourPgBefore = await backendCpu(db);
        const ourSides = await measureCallbacks(tasks, rate);
        // The API records each attempt after its POST: wait for those too, so that the CPU read
        // here is the whole of each callback's.
        await sleep(200);
        const ourPgAfter = await backendCpu(db);
        const ourDumps = await dumps(ourProcesses);
        const windowMs = performance.now() - windowStart;
        const benchDelay = { p99: benchLoop.percentile(99) / 1e6, max: benchLoop.max / 1e6 };
        const ours = latenciesOf(ourSides);
        const bareLatencies = latenciesOf(bareSides);
        all.hop.push(...hop);
        all.bare.push(...bareLatencies);
        all.ours.push(...ours);
        const missing = ourSides.length - ours.length + (bareSides.length - bareLatencies.length);
        all.missing += missing;
        const h = figures(hop);
        const b = figures(bareLatencies);
        const o = figures(ours);
        console.log(`round ${round + 1}, load average ${load}:`);
        console.log(`bare BullMQ hop:      n=${h.n} p50=${ms(h.p50)} ms p99=${ms(h.p99)} ms max=${ms(h.max)} ms`);
        console.log(`bare path (HTTP in, durable INSERT, HTTP out): n=${b.n} p50=${ms(b.p50)} ms p99=${ms(b.p99)} ms max=${ms(b.max)} ms`);
        console.log(`provider callback -> outbound callback: n=${o.n} p50=${ms(o.p50)} ms p99=${ms(o.p99)} ms max=${ms(o.max)} ms missing=${missing}`);
        if (missing > 0) {
          // Which side lost them: a callback the API never recorded (503, a failed connection) or an
          // event recorded and not delivered within the wait.
          const { rows } = await db.query<{ status: string; attempts: number; n: number }>(
            `select d.status, d.attempts, count(*)::int as n from webhook_delivery d where d.task_id = any($1::uuid[]) and not d.task_id = any($2::uuid[]) group by 1, 2`,
            [tasks.map((t) => t.id), ourSides.filter((b) => b.arrived !== undefined).map((b) => b.task)],
          );
          const recorded = rows.reduce((n, r) => n + r.n, 0);
          console.log(
            `  missing: ${ourSides.length - ours.length - recorded} never recorded by the API, ${recorded} recorded and not arrived (${rows.map((r) => `${r.status}/${r.attempts} attempts: ${r.n}`).join(", ")})`,
          );
        }
        console.log(`p99 ratio at ${rate}/s: to the hop ${(o.p99 / h.p99).toFixed(2)} (aim <= 2), to the bare path ${(o.p99 / b.p99).toFixed(2)}`);
        if (TRACE) {
          const deliveryOfTask = await deliveriesOf(tasks.map((t) => t.id));
          const api = ourDumps.filter((d) => d.role === "api");
          const workerDumps = ourDumps.filter((d) => d.role === "worker");
          const rows = callbackStages(ourSides, api, workerDumps, deliveryOfTask);
          console.log(`  ours, per stage (ms):`);
          for (const line of stageTable(rows)) console.log(line);
          console.log(`  bare path, per stage (ms):`);
          for (const line of bareTable(bareSides, bareDump)) console.log(line);
          for (const dump of ourDumps) console.log(processLine(dump, count, windowMs, idleCpu.get(dump.role)));
          for (const dump of bareDump) console.log(processLine(dump, count, bareMs, idleCpu.get(dump.role)));
          // Load-independent: statements each process sent per callback, Postgres CPU per callback.
          for (const dump of [...ourDumps, ...bareDump]) {
            const statements = dump.events.filter((e) => e.ev === "q").length;
            console.log(`  ${dump.role.padEnd(8)} statements per callback ${(statements / count).toFixed(2)}`);
          }
          console.log(`  postgres backend CPU ms per callback, ours: ${backendCpuLine(ourPgBefore, ourPgAfter, count)}; bare path: ${backendCpuLine(barePgBefore, barePgAfter, count)}`);
          const pools = ourDumps.flatMap((d) => d.events.filter((e) => e.ev === "pool" && e.end !== undefined).map((e) => ({ role: d.role, ms: e.end! - e.t })));
          for (const role of ["api", "worker"]) {
            const waits = pools.filter((p) => p.role === role).map((p) => p.ms);
            console.log(`  ${role} pool checkouts: n=${waits.length} p50=${ms(quantile(waits, 0.5))} p99=${ms(quantile(waits, 0.99))} ms`);
          }
          console.log(`  bench    loop delay p99=${ms(benchDelay.p99)} max=${ms(benchDelay.max)} ms`);
          console.log(`  GC pauses overlapping each of the slowest 5% of callbacks, mean: api ${ms(gcInSlowest(rows, ourSides, api))} ms, worker ${ms(gcInSlowest(rows, ourSides, workerDumps))} ms`);
        }
      }
      const hop = figures(all.hop);
      const bareAll = figures(all.bare);
      const ours = figures(all.ours);
      console.log(`load average after ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}`);
      summaries.push(
        `rate=${rate} p50_ms=${ms(ours.p50)} p99_ms=${ms(ours.p99)} baseline_p50_ms=${ms(hop.p50)} baseline_p99_ms=${ms(hop.p99)} p99_ratio=${(ours.p99 / hop.p99).toFixed(2)} bare_p99_ms=${ms(bareAll.p99)} bare_p99_ratio=${(ours.p99 / bareAll.p99).toFixed(2)}`,
      );
      if (all.missing > 0) process.exitCode = 1;
    }
    const failed = worker
      .output()
      .split("\n")
      .filter((line) => /"level":(40|50)/.test(line));
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
    if (KEEP_TRACE) console.log(`trace files kept in ${traceDir}`);
    for (const cleanup of cleanups) await cleanup().catch((error: Error) => console.error(`cleanup: ${error.message}`));
  }
};

await main();
