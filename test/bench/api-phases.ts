// The measured paths of the API benchmark (api-throughput.ts): each API path right next to its raw
// baseline, with the bookkeeping that keeps the windows apart.
import { performance } from "node:perf_hooks";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import type pg from "pg";
import sharp from "sharp";
import { inspectSourceImage } from "../../apps/domain/expand-request/source-image.ts";
import { bullQueueName } from "../../apps/domain/queues/job-catalog.ts";
import { makeImage } from "../support/images.ts";
import { rawCallback, rawIntake, rawStatusRead, rawStatusReadByExternalId } from "./api-baselines.ts";
import { benchImageUrl, fillCallbackTasks, processingCallbackBody, type CallbackTask } from "./api-fill.ts";
import { closedLoop, hammer, paced, type Figures } from "./api-load.ts";
import type { Row } from "./api-report.ts";
import { readCpuSeconds, type BenchStack } from "./api-stack.ts";
import { sleep } from "./bench-figures.ts";

// ---------------------------------------------------------------------------------------------
// Shared state of one run

export type BenchParams = {
  seconds: number;
  warmupSeconds: number;
  startWarmupSeconds: number;
  startWarmupRequests: number;
  readConnections: number;
  writeConnections: number;
  decodeSeconds: number;
  callbackRounds: number;
};

export type Ctx = {
  params: BenchParams;
  stack: BenchStack;
  db: pg.Pool;
  redis: Redis;
  accountId: string;
  key: string;
  random: () => number;
  rows: Row[];
};

const pickFrom = <T>(random: () => number, items: T[]) => () => items[Math.floor(random() * items.length)]!;

// CPU seconds so far of the API process a window drives (the stack's own, unless a variant's).
type CpuOf = () => Promise<number>;

// When a window ends autocannon drops its connections, but the API still works through the requests
// it had taken; the next measurement starts once it has gone quiet (or after 15 s regardless).
const settle = async (ctx: Ctx, cpuOf: CpuOf = ctx.stack.apiCpuSeconds) => {
  const deadline = performance.now() + 15_000;
  let before = await cpuOf();
  while (performance.now() < deadline) {
    await sleep(250);
    const now = await cpuOf();
    if (now - before < 0.25 * 0.05) return;
    before = now;
  }
};

// Cores busy in the API process and in this one (the load generator) over `work`.
const measured = async (ctx: Ctx, work: () => Promise<Figures>, cpuOf: CpuOf = ctx.stack.apiCpuSeconds) => {
  const apiCpu0 = await cpuOf();
  const benchCpu0 = process.cpuUsage();
  const t0 = performance.now();
  const figures = await work();
  const wall = (performance.now() - t0) / 1000;
  const benchCpu = process.cpuUsage(benchCpu0);
  const apiCores = ((await cpuOf()) - apiCpu0) / wall;
  await settle(ctx, cpuOf);
  return { figures, apiCores, benchCores: (benchCpu.user + benchCpu.system) / 1e6 / wall };
};

// CPU seconds so far of every Postgres backend on the run's database (the API's pool and the
// baselines' alike: only one side works at a time). A backend that closed in between is not counted;
// one that started in between (pools close idle connections and open new ones) counts whole.
const postgresCpu = async (ctx: Ctx) => {
  const { rows } = await ctx.db.query<{ pid: number }>("select pid from pg_stat_activity where datname = current_database()");
  const seconds = await Promise.all(rows.map((r) => readCpuSeconds(r.pid).catch(() => 0)));
  return new Map(rows.map((r, i) => [r.pid, seconds[i]!]));
};

// Postgres CPU per successful op over `work` (its warm-up included, as the API's cores are), in ms:
// where a path's statements cost the server more than its baseline's.
const postgresMsPerOp = async (ctx: Ctx, work: () => Promise<Figures>) => {
  const before = await postgresCpu(ctx);
  const t0 = performance.now();
  const figures = await work();
  const wall = (performance.now() - t0) / 1000;
  let used = 0;
  for (const [pid, seconds] of await postgresCpu(ctx)) used += seconds - (before.get(pid) ?? 0);
  return { figures, postgresMs: figures.perSecond > 0 ? (1000 * used) / wall / figures.perSecond : NaN };
};

const baseline = (ctx: Ctx, concurrency: number, op: () => Promise<boolean>) =>
  closedLoop({ concurrency, seconds: ctx.params.seconds, warmupSeconds: ctx.params.warmupSeconds, op });

const auth = (ctx: Ctx) => ({ authorization: `Bearer ${ctx.key}` });

// Intake phases each start from the fill's backlog: intake counts the account's queued tasks, so a
// backlog left by the phase before would make the next one slower for a reason of its own. Intake's
// tasks are told from the fill's by their image: another URL, or none (inline).
const rawIntakeImageUrl = `${benchImageUrl}?from=raw-intake`;
const apiIntakeImageUrl = `${benchImageUrl}?from=api-intake`;
const dropIntakeTasks = async (ctx: Ctx) => {
  await ctx.db.query("delete from task where image_url is null or image_url <> $1", [benchImageUrl]);
  await ctx.db.query("vacuum (analyze) task, task_event");
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

const DECODE_PATH = "decode alone: base64 + inspectSourceImage";

// All three read routes in turn, unmeasured; reported only as a sign of life.
export const warmUpApi = async (ctx: Ctx, ids: string[], externalIds: string[]) => {
  const pickId = pickFrom(ctx.random, ids);
  const pickExternal = pickFrom(ctx.random, externalIds);
  const paths = [() => `/v1/tasks/${pickId()}`, () => `/kling/v1/images/editing/expand/${pickId()}`, () => `/kling/v1/images/editing/expand/${pickExternal()}`];
  let turn = 0;
  // Until both the time and the request count are reached (at most 10x the time): on a busy machine
  // 6 s may be a thousand requests, too few for V8 to have optimised the read path, and the first
  // path measured (native reads) came out at half the speed it showed a window later.
  const started = performance.now();
  let ok = 0;
  let figures: Figures;
  do {
    figures = await hammer({
      url: ctx.stack.apiUrl,
      connections: ctx.params.readConnections,
      seconds: ctx.params.startWarmupSeconds,
      warmupSeconds: 0,
      headers: auth(ctx),
      next: (request) => ({ ...request, path: paths[turn++ % paths.length]!() }),
    });
    ok += figures.ok;
  } while (ok < ctx.params.startWarmupRequests && performance.now() - started < ctx.params.startWarmupSeconds * 10_000);
  await settle(ctx);
  return { ...figures, ok, seconds: (performance.now() - started) / 1000 };
};

export const readPhase = async (ctx: Ctx, ids: string[], externalIds: string[]) => {
  const pickId = pickFrom(ctx.random, ids);
  const pickExternal = pickFrom(ctx.random, externalIds);
  const conc = String(ctx.params.readConnections);
  const read = (prefix: string, pick: () => string) =>
    hammer({
      url: ctx.stack.apiUrl,
      connections: ctx.params.readConnections,
      seconds: ctx.params.seconds,
      warmupSeconds: ctx.params.warmupSeconds,
      headers: auth(ctx),
      next: (request) => ({ ...request, path: `${prefix}/${encodeURIComponent(pick())}` }),
    });

  const byIdBaseline = { name: "key + task by id + images", figures: await baseline(ctx, ctx.params.readConnections, rawStatusRead(ctx.db, ctx.key, pickId)) };
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
        seconds: ctx.params.seconds,
        maxInFlight: ctx.params.readConnections,
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

  const byExternal = { name: "key + task by external id + images", figures: await baseline(ctx, ctx.params.readConnections, rawStatusReadByExternalId(ctx.db, ctx.key, pickExternal)) };
  ctx.rows.push({
    path: "GET /kling/v1/.../expand/{external_id}",
    concurrency: conc,
    ...(await measured(ctx, () => read("/kling/v1/images/editing/expand", pickExternal))),
    baseline: byExternal,
  });
};

export const intakePhase = async (ctx: Ctx) => {
  const conc = ctx.params.writeConnections;
  const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.2, right_expansion_ratio: 0.2 };
  const png = await makeImage(400, 400);
  const base64 = png.toString("base64");

  // The decode cost alone, in this process while the API idles: what intake does to an inline image
  // (Base64 to bytes, then sharp's header read), and a full pixel decode for scale.
  const decode = (op: () => Promise<unknown>) =>
    closedLoop({ concurrency: conc, seconds: ctx.params.decodeSeconds, warmupSeconds: 0.5, op: async () => (await op(), true) });
  const check = await decode(async () => {
    const result = await inspectSourceImage(Buffer.from(base64, "base64"));
    if (!result.ok) throw new Error(`the bench image was refused: ${result.reason}`);
  });
  const pixels = await decode(() => sharp(Buffer.from(base64, "base64")).raw().toBuffer());

  const post = (body: string, seconds = ctx.params.seconds, warmupSeconds = ctx.params.warmupSeconds) =>
    hammer({
      url: `${ctx.stack.apiUrl}/v1/tasks`,
      connections: conc,
      seconds,
      warmupSeconds,
      method: "POST",
      headers: { ...auth(ctx), "content-type": "application/json" },
      body,
    });
  const urlBody = JSON.stringify({ image: apiIntakeImageUrl, ...ratios });
  const inlineBody = JSON.stringify({ image: base64, ...ratios });
  // The create path warmed up as the reads are before theirs (warmUpApi): the start warm-up reads
  // only, so the first intake window paid for compiling the create path (V8's optimising compiler
  // took 11.8% of the API's CPU samples in it, `perf`, 2026-12-08). Unmeasured URL and inline
  // creates for the start warm-up's time each, then their tasks go.
  if (ctx.params.startWarmupSeconds > 0) {
    const warm = [await post(urlBody, ctx.params.startWarmupSeconds, 0), await post(inlineBody, ctx.params.startWarmupSeconds, 0)];
    await settle(ctx);
    await dropIntakeTasks(ctx);
    console.log(`intake warm-up: ${warm[0]!.ok} URL and ${warm[1]!.ok} inline creates, unmeasured`);
  }

  const queue = new Queue(bullQueueName("submit"), { connection: ctx.redis, prefix: ctx.stack.baselinePrefix });
  try {
    const intake = rawIntake(ctx.db, queue, { accountId: ctx.accountId, imageUrl: rawIntakeImageUrl });
    const rawRun = await postgresMsPerOp(ctx, () => baseline(ctx, conc, intake));
    const intakeBaseline = { name: "tx: insert task + event + Queue.add", figures: rawRun.figures };
    const postgresNote = (ms: number) => `Postgres CPU per create ${ms.toFixed(2)} ms (raw intake: ${rawRun.postgresMs.toFixed(2)} ms)`;
    await dropIntakeTasks(ctx);

    // What intake left behind: a task row per 202 and one first job per task (the source check for a
    // URL image, the submission for an inline one), nothing more.
    const firstQueues = (["source", "submit"] as const).map((kind) => new Queue(bullQueueName(kind), { connection: ctx.redis, prefix: ctx.stack.queuePrefix }));
    const waitingJobs = async () => {
      let total = 0;
      for (const q of firstQueues) {
        const counts = (await q.getJobCounts("prioritized", "waiting")) as Record<string, number>;
        total += (counts.prioritized ?? 0) + (counts.waiting ?? 0);
      }
      return total;
    };
    const jobsBefore = await waitingJobs();
    const jobCount = async () => (await waitingJobs()) - jobsBefore;

    let postgresMs = NaN;
    const url: Row = {
      path: "POST /v1/tasks (image URL)",
      concurrency: String(conc),
      ...(await measured(ctx, async () => {
        const run = await postgresMsPerOp(ctx, () => post(urlBody));
        postgresMs = run.postgresMs;
        return run.figures;
      })),
      baseline: intakeBaseline,
    };
    const urlTasks = await countTasks(ctx, apiIntakeImageUrl);
    const urlJobs = await jobCount();
    url.note = `intake wrote ${urlTasks} tasks and ${urlJobs} first jobs (warm-up included); ${postgresNote(postgresMs)}`;
    ctx.rows.push(url);
    await dropIntakeTasks(ctx);

    const inline: Row = {
      path: `POST /v1/tasks (inline PNG ${(png.length / 1024).toFixed(1)} KB)`,
      concurrency: String(conc),
      ...(await measured(ctx, async () => {
        const run = await postgresMsPerOp(ctx, () => post(inlineBody));
        postgresMs = run.postgresMs;
        return run.figures;
      })),
      baseline: intakeBaseline,
    };
    const { rows: sources } = await ctx.db.query<{ count: string }>("select count(*) from task where source_key is not null");
    const rawPlusDecode = 1 / (1 / intakeBaseline.figures.perSecond + 1 / check.perSecond);
    inline.note =
      `intake wrote ${await countTasks(ctx, null)} tasks with ${sources[0]!.count} stored source images (warm-up included); ` +
      `raw intake + the same decode, one after the other: ${rawPlusDecode.toFixed(1)}/s (inline_intake_ratio); ${postgresNote(postgresMs)}`;
    ctx.rows.push(inline);
    await dropIntakeTasks(ctx);
    await Promise.all(firstQueues.map((q) => q.close()));

    ctx.rows.push({ path: DECODE_PATH, concurrency: String(conc), figures: check, note: "in this process, no HTTP: what intake spends on an inline image" });
    ctx.rows.push({ path: "decode alone: sharp full pixel decode", concurrency: String(conc), figures: pixels });
  } finally {
    await queue.close();
  }
};

// Inline intake against what its own work costs raw: the raw intake and the decode alone (Base64 to
// bytes, sharp's header read) one after the other, i.e. 1 / (1/raw + 1/decode), both from this run.
export const inlineIntakeRatio = (rows: readonly Row[]) => {
  const inline = rows.find((r) => r.path.startsWith("POST /v1/tasks (inline PNG"));
  const decode = rows.find((r) => r.path === DECODE_PATH);
  const raw = inline?.baseline?.figures.perSecond;
  if (!inline || !decode || !raw || !decode.figures.perSecond) return undefined;
  return inline.figures.perSecond * (1 / raw + 1 / decode.figures.perSecond);
};

// Provider callbacks at one API process, each for a fresh `submitted` task of `supply`; once the
// supply is used up the last task is resent (a duplicate) until autocannon stops.
const sendCallbacks = (ctx: Ctx, url: string, supply: CallbackTask[], timing: { seconds: number; warmupSeconds: number }) => {
  let next = 0;
  let last: CallbackTask = supply[0]!;
  const state = { ranOut: false };
  const figures = hammer({
    url,
    connections: ctx.params.writeConnections,
    ...timing,
    method: "POST",
    headers: { "content-type": "application/json" },
    next: (request, stopEarly) => {
      const task = supply[next++];
      if (task) last = task;
      else {
        state.ranOut = true;
        stopEarly();
      }
      return { ...request, path: `/webhooks/kling/${last.id}/${last.token}`, body: processingCallbackBody(last, Date.now()) };
    },
  });
  return { figures, state };
};

// What the receiver did with one supply's callbacks (each task's inbox rows).
const outcomesOf = async (ctx: Ctx, supply: CallbackTask[]) => {
  const { rows } = await ctx.db.query<{ outcome: string; count: string }>(
    "select outcome::text, count(*) from provider_callback where task_id = any($1::uuid[]) and outcome is not null group by outcome order by outcome",
    [supply.map((t) => t.id)],
  );
  return rows.map((r) => `${r.outcome}=${r.count}`).join(" ") || "none";
};

export const KYSELY_CALLBACK_PATH = "POST /webhooks/kling/{task}/{token}";
export const PRISMA_CALLBACK_PATH = `${KYSELY_CALLBACK_PATH} via Prisma Client`;

// The callback windows of each executor taken together (their mean ok/s, and ok/s per API core),
// Prisma's over Kysely's: the figure issue 19's rule reads (Prisma if it costs under 10%).
export const compareCallbackRows = (rows: readonly Row[]) => {
  const of = (prisma: boolean) => rows.filter((r) => r.path.startsWith(KYSELY_CALLBACK_PATH) && r.path.includes("via Prisma Client") === prisma);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const ok = (rs: Row[]) => mean(rs.map((r) => r.figures.perSecond));
  const perCore = (rs: Row[]) => mean(rs.map((r) => (r.apiCores ? r.figures.perSecond / r.apiCores : NaN)));
  const [kysely, prisma] = [of(false), of(true)];
  if (!kysely.length || !prisma.length) return undefined;
  return {
    kyselyOk: ok(kysely),
    prismaOk: ok(prisma),
    baselineOk: mean(kysely.map((r) => r.baseline?.figures.perSecond ?? NaN)),
    okRatio: ok(prisma) / ok(kysely),
    perCoreRatio: perCore(prisma) / perCore(kysely),
  };
};

// The receiver as the API runs it (Kysely on pg), then the same receiver with its statements run
// through Prisma Client (a second API process, CALLBACK_DB_CLIENT=prisma, the same SQL:
// apps/domain/db/prisma-kysely.ts), each beside the same raw-pg baseline of this run. Each API gets
// an unmeasured callback warm-up of the same length first (the second process starts cold).
export const callbackPhase = async (ctx: Ctx) => {
  const conc = ctx.params.writeConnections;
  const window = ctx.params.seconds + ctx.params.warmupSeconds;
  // Every callback must find a fresh `submitted` task; the baseline's supply is sized well above what
  // raw pg reaches here, the APIs' from the baseline just measured.
  const basePool = await fillCallbackTasks(ctx.db, ctx.accountId, Math.ceil(4_000 * window));
  await ctx.db.query("analyze task");
  const callbackBaseline = { name: "tx: task + inbox + guarded update + event", figures: await baseline(ctx, conc, rawCallback(ctx.db, basePool)) };

  const prismaApi = await ctx.stack.startVariant({ CALLBACK_DB_CLIENT: "prisma" });
  try {
    const apis = [
      { name: "kysely", path: KYSELY_CALLBACK_PATH, url: ctx.stack.apiUrl, cpuOf: ctx.stack.apiCpuSeconds },
      { name: "prisma", path: PRISMA_CALLBACK_PATH, url: prismaApi.url, cpuOf: prismaApi.cpuSeconds },
    ];
    const rate = Math.max(200, callbackBaseline.figures.perSecond);
    const supplyFor = async (seconds: number) => {
      const supply = await fillCallbackTasks(ctx.db, ctx.accountId, Math.ceil(rate * seconds * 1.25) + 4 * conc);
      await ctx.db.query("analyze task");
      return supply;
    };
    for (const api of apis) {
      const supply = await supplyFor(ctx.params.startWarmupSeconds);
      await sendCallbacks(ctx, api.url, supply, { seconds: ctx.params.startWarmupSeconds, warmupSeconds: 0 }).figures;
      await settle(ctx, api.cpuOf);
    }
    // ABBA: Kysely, Prisma, then Prisma, Kysely, so that a neighbour's load rising or falling
    // during the phase weighs on both alike (BENCH_API_CALLBACK_ROUNDS rounds of two windows).
    const rows: Row[] = [];
    for (let round = 0; round < ctx.params.callbackRounds; round++) {
      for (const api of round % 2 === 0 ? apis : [...apis].reverse()) {
        const supply = await supplyFor(window);
        let state = { ranOut: false };
        const row: Row = {
          path: ctx.params.callbackRounds > 1 ? `${api.path} [${round + 1}]` : api.path,
          concurrency: String(conc),
          ...(await measured(
            ctx,
            () => {
              const sent = sendCallbacks(ctx, api.url, supply, { seconds: ctx.params.seconds, warmupSeconds: ctx.params.warmupSeconds });
              state = sent.state;
              return sent.figures;
            },
            api.cpuOf,
          )),
          baseline: callbackBaseline,
        };
        row.note =
          `receiver outcomes: ${await outcomesOf(ctx, supply)} (warm-up included; every callback should be 'applied')` +
          (state.ranOut ? "  <<< the supply of fresh tasks ran out: the window was cut short" : "");
        rows.push(row);
      }
    }
    const last = rows[rows.length - 1]!;
    const compared = compareCallbackRows(rows);
    if (compared) {
      last.note += `\n    prisma/kysely over ${ctx.params.callbackRounds} round(s): ${compared.okRatio.toFixed(3)} of ok/s, ${compared.perCoreRatio.toFixed(3)} of ok/api-core`;
    }
    const variantLog = prismaApi.logLines().filter((line) => !/QUEUE_PREFIX_SHARED/.test(line));
    if (variantLog.length) last.note += `\n    the Prisma API logged ${variantLog.length} warn/error lines; the first: ${variantLog.slice(0, 2).map((l) => l.slice(0, 300)).join(" | ")}`;
    ctx.rows.push(...rows);
  } finally {
    await prismaApi.stop();
  }
};
