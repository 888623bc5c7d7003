// Rows and bytes per task, measured from a real run, and what they come to at 10 million tasks a
// month with retention on (docs/retention.md). Runs the simulator, one API and one worker in this
// process on a throw-away database, queue prefix and storage directory; submits RETENTION_FIGURES_TASKS
// tasks (native and drop-in, inline and URL images, each with a callback_url answered by a local
// consumer), waits for every task and every callback delivery to end, then reads
// pg_total_relation_size per table and the stored files.
//
//   npx tsx test/bench/retention-figures.ts
import { randomUUID } from "node:crypto";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { sql } from "kysely";
import { parseApiConfig } from "../../apps/api/api.config.ts";
import { startApi } from "../../apps/api/api.server.ts";
import { createAccountWithKey } from "../../apps/domain/account/api-key.ts";
import { createDb } from "../../apps/domain/db/database.ts";
import { prepareDatabase } from "../../apps/domain/db/prepare-database.ts";
import { parseSimulatorConfig } from "../../apps/simulator/simulator.config.ts";
import { startSimulator } from "../../apps/simulator/simulator.server.ts";
import { parseWorkerConfig } from "../../apps/worker/worker.config.ts";
import { startWorker } from "../../apps/worker/worker.server.ts";
import { dropDatabases } from "../support/databases.ts";
import { makeImage } from "../support/images.ts";
import { deletePrefixKeys } from "./api-stack.ts";

const TASKS = Number(process.env.RETENTION_FIGURES_TASKS ?? 600);
const MONTHLY = 10_000_000;
const DAYS_PER_MONTH = 30.44;
const server = process.env.TEST_POSTGRES_URL ?? "postgresql://postgres@127.0.0.1:5432";
const redisUrl = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const tables = ["task", "task_event", "task_image", "provider_callback", "webhook_delivery", "webhook_attempt"] as const;
// How long each table's rows are kept with the defaults (days): the inbox and the delivery log have
// their own, shorter retention; everything else lives as long as its task.
const keptDays: Record<(typeof tables)[number], number> = {
  task: 90,
  task_event: 90,
  task_image: 90,
  provider_callback: 30,
  webhook_delivery: 30,
  webhook_attempt: 30,
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const gb = (bytes: number) => (bytes / 1e9).toFixed(1);

const main = async () => {
  const name = `kling_retention_figures_${process.pid}`;
  const databaseUrl = `${server}/${name}`;
  await prepareDatabase(databaseUrl);
  const storageDir = await mkdtemp(path.join(tmpdir(), "kling-retention-figures-"));
  const queuePrefix = `rf${randomUUID().slice(0, 6)}`;
  const consumer = createServer((req, res) => {
    req.resume();
    req.on("end", () => res.writeHead(204).end());
  });
  await new Promise<void>((resolve) => consumer.listen(0, "127.0.0.1", resolve));
  const consumerUrl = `http://127.0.0.1:${(consumer.address() as AddressInfo).port}/hook`;
  const source = await makeImage(640, 480, "jpeg");
  const files = createServer((_req, res) => res.writeHead(200, { "content-type": "image/jpeg" }).end(source));
  await new Promise<void>((resolve) => files.listen(0, "127.0.0.1", resolve));
  const imageUrl = `http://127.0.0.1:${(files.address() as AddressInfo).port}/photo.jpg`;

  const common = { DATABASE_URL: databaseUrl, REDIS_URL: redisUrl, QUEUE_PREFIX: queuePrefix, STORAGE_DIR: storageDir, LOG_LEVEL: "error", SERVER_KEY: `figures-${randomUUID()}-${randomUUID()}`, ALLOWED_PRIVATE_HOSTS: "127.0.0.1" };
  const simulator = await startSimulator(parseSimulatorConfig({ SIMULATOR_PORT: "0", SIM_RUN_MS: "100", SIM_CAPACITY: "10", LOG_LEVEL: "warn" }));
  const api = await startApi(parseApiConfig({ ...common, PORT: "0" }));
  const worker = await startWorker(
    parseWorkerConfig({ ...common, PUBLIC_BASE_URL: api.url, PROVIDER: "simulator", PROVIDER_BASE_URL: simulator.url, PROVIDER_CAPACITY: "10", RECONCILE_EVERY_MS: "500" }),
  );
  // VACUUM FULL and the 300,000-row insert below outlast the apps' 10 s statement deadline.
  const db = createDb(databaseUrl, { poolSize: 4, queryTimeoutMs: 600_000 });
  const redis = new Redis(redisUrl);
  try {
    const { key } = await createAccountWithKey(db, "figures");
    const inline = source.toString("base64");
    const ratios = { up_expansion_ratio: 0.25, left_expansion_ratio: 0.25, right_expansion_ratio: 0.25 };
    const submit = async (i: number) => {
      // A third each: native with a URL image, native inline, drop-in inline.
      const kind = i % 3;
      const [route, body] =
        kind === 2
          ? ["/kling/v1/images/editing/expand", { image: inline, ...ratios, bottom_expansion_ratio: 0.25, callback_url: consumerUrl }]
          : ["/v1/tasks", { image: kind === 0 ? imageUrl : inline, ...ratios, down_expansion_ratio: 0.25, callback_url: consumerUrl }];
      // A busy shared machine may answer 503 (nothing stored): sent again, as a client would.
      for (let attempt = 0; ; attempt++) {
        const answer = await fetch(`${api.url}${route}`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify(body) });
        if (answer.status < 300) return;
        if (answer.status !== 503 || attempt >= 10) throw new Error(`${route} answered ${answer.status}: ${await answer.text()}`);
        await sleep(1_000);
      }
    };
    for (let i = 0; i < TASKS; i += 10) await Promise.all(Array.from({ length: Math.min(10, TASKS - i) }, (_, j) => submit(i + j)));
    const deadline = Date.now() + 15 * 60_000;
    for (;;) {
      const open = await sql<{ tasks: string; deliveries: string }>`
        select (select count(*) from task where finished_at is null) as tasks,
               (select count(*) from webhook_delivery where status = 'pending') as deliveries`.execute(db);
      const row = open.rows[0]!;
      if (Number(row.tasks) === 0 && Number(row.deliveries) === 0) break;
      if (Date.now() > deadline) throw new Error(`not settled: ${JSON.stringify(row)}`);
      await sleep(500);
    }
    const statuses = await sql<{ status: string; n: string }>`select status, count(*) as n from task group by status`.execute(db);
    console.log(`tasks: ${statuses.rows.map((r) => `${r.status}=${r.n}`).join(" ")}`);

    const measure = async () => {
      const out: Record<string, { rows: number; bytes: number }> = {};
      for (const table of tables) {
        const r = await sql<{ rows: string; bytes: string }>`select (select count(*) from ${sql.table(table)}) as rows, pg_total_relation_size(${table}::regclass) as bytes`.execute(db);
        out[table] = { rows: Number(r.rows[0]!.rows), bytes: Number(r.rows[0]!.bytes) };
      }
      return out;
    };
    await sql`vacuum analyze`.execute(db);
    const asWritten = await measure();
    for (const table of tables) await sql`vacuum full ${sql.table(table)}`.execute(db);
    const compact = await measure();

    const stored = await readdir(storageDir, { recursive: true });
    let fileBytes = 0;
    let fileCount = 0;
    for (const f of stored) {
      const s = await stat(path.join(storageDir, f));
      if (s.isFile()) {
        fileBytes += s.size;
        fileCount++;
      }
    }
    const resultBytes = Number((await sql<{ b: string }>`select coalesce(sum(bytes), 0) as b from task_image`.execute(db)).rows[0]!.b);

    console.log(`\nper task (${TASKS} tasks; source ${source.length} B JPEG 640x480, expanded 1.5x each way):`);
    console.log("table               rows/task  bytes/task (as written, after VACUUM)  bytes/task (after VACUUM FULL)");
    let steadyRows = 0;
    let steadyBytes = 0;
    let monthBytes = 0;
    for (const table of tables) {
      const rowsPerTask = asWritten[table]!.rows / TASKS;
      const bytesPerTask = asWritten[table]!.bytes / TASKS;
      console.log(`${table.padEnd(20)}${rowsPerTask.toFixed(2).padStart(9)}  ${bytesPerTask.toFixed(0).padStart(12)}  ${(compact[table]!.bytes / TASKS).toFixed(0).padStart(12)}`);
      const kept = (MONTHLY * keptDays[table]) / DAYS_PER_MONTH;
      steadyRows += rowsPerTask * kept;
      steadyBytes += bytesPerTask * kept;
      monthBytes += bytesPerTask * MONTHLY;
    }
    const rowsPerTask = tables.reduce((a, t) => a + asWritten[t]!.rows, 0) / TASKS;
    const bytesPerTask = tables.reduce((a, t) => a + asWritten[t]!.bytes, 0) / TASKS;
    const filesPerTask = fileBytes / TASKS;
    console.log(`all rows            ${rowsPerTask.toFixed(2).padStart(9)}  ${bytesPerTask.toFixed(0).padStart(12)}  ${(tables.reduce((a, t) => a + compact[t]!.bytes, 0) / TASKS).toFixed(0).padStart(12)}`);
    console.log(`stored files: ${fileCount} files, ${(filesPerTask / 1024).toFixed(1)} KiB per task (results ${(resultBytes / TASKS / 1024).toFixed(1)} KiB, inline sources the rest)`);
    const keptTasks = (MONTHLY * 90) / DAYS_PER_MONTH;
    console.log(`\n10 million tasks a month:`);
    console.log(`  without retention: +${gb(monthBytes)} GB of rows and +${gb(filesPerTask * MONTHLY)} GB of files every month, for ever`);
    console.log(`  with the defaults (tasks and images 90 days, inbox and delivery log 30): ${(keptTasks / 1e6).toFixed(1)} M tasks kept, ${(steadyRows / 1e6).toFixed(0)} M rows, ${gb(steadyBytes)} GB of rows, ${gb(filesPerTask * keptTasks)} GB of files, flat`);
    console.log(`  deletes per minute at that rate: ${(MONTHLY / DAYS_PER_MONTH / 1440).toFixed(0)} tasks (RETENTION_BATCH_SIZE 1000 per pass)`);

    // The retention scans on a table of the shape retention keeps: 300,000 finished tasks spread
    // over the last 100 days (files deleted for those past 30), so about a tenth are past 90 days.
    // EXPLAIN ANALYZE of each pass's scan, as the planner picks it.
    const { accountId } = (await db.selectFrom("account").select("id as accountId").executeTakeFirstOrThrow());
    await sql`
      insert into task (id, account_id, callback_token, up_ratio, down_ratio, left_ratio, right_ratio, status, accepted_at, finished_at, images_deleted_at)
      select gen_random_uuid(), ${accountId}::uuid, 't', 0.1, 0.1, 0.1, 0.1, 'succeeded', f, f,
        case when f < now() - interval '30 days' then f + interval '30 days' end
      from (select now() - (random() * interval '100 days') as f from generate_series(1, 300000)) s`.execute(db);
    await sql`analyze task`.execute(db);
    for (const [what, query] of [
      ["tasks past 90 days (pruneFinishedTasks)", sql`explain (analyze, costs off) select id from task where finished_at < now() - interval '90 days' and status in ('succeeded', 'failed', 'canceled') and images_deleted_at is not null order by finished_at limit 1000`],
      ["files past 30 days still kept (pruneExpiredImages)", sql`explain (analyze, costs off) select id, source_key from task where images_deleted_at is null and finished_at < now() - interval '30 days' order by images_deleted_at, finished_at limit 1000`],
    ] as const) {
      const plan = await query.execute(db);
      console.log(`\n${what}:\n${(plan.rows as { "QUERY PLAN": string }[]).map((r) => `  ${r["QUERY PLAN"]}`).join("\n")}`);
    }
  } finally {
    await worker.stop();
    await api.stop();
    await simulator.stop();
    await db.destroy();
    await deletePrefixKeys(redis, queuePrefix);
    redis.disconnect();
    consumer.close();
    files.close();
    await dropDatabases(databaseUrl, name);
    await rm(storageDir, { recursive: true, force: true });
  }
};

await main();
