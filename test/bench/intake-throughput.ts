// npm run bench:intake: items accepted per second through POST /v1/batches (NDJSON, streamed)
// against a raw baseline measured in the same run (the same rows by plain multi-row inserts on a
// pg pool, plus BullMQ addBulk of the same jobs), and the API process's peak RSS over its idle RSS
// while it streams 100,000 items. A benchmark, not a test: it exits non-zero only if the run breaks.
//
// Knobs: BENCH_INTAKE_ITEMS (throughput run, default 20000), BENCH_INTAKE_RSS_ITEMS (memory run,
// default 100000), BENCH_INTAKE_CHUNK (rows per insert and per addBulk, default 1000).
import { randomBytes } from "node:crypto";
import { request } from "node:http";
import { readFile } from "node:fs/promises";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import pg from "pg";
import { v7 as uuidv7 } from "uuid";
import { createBenchAccount } from "./api-fill.ts";
import { startBenchStack } from "./api-stack.ts";

const items = Number(process.env.BENCH_INTAKE_ITEMS ?? 20_000);
const rssItems = Number(process.env.BENCH_INTAKE_RSS_ITEMS ?? 100_000);
const chunk = Number(process.env.BENCH_INTAKE_CHUNK ?? 1_000);
const imageUrl = "https://images.example.com/photos/product-0001.jpg";
const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.2, right_expansion_ratio: 0.2 };

const log = (line: string) => process.stderr.write(`${line}\n`);

const rssMb = async (pid: number) => {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024;
};

// Streams `count` NDJSON items, generated as the socket drains (the client holds ~64 KB at most).
const streamBatch = (apiUrl: string, key: string, count: number): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    const req = request(new URL("/v1/batches?name=bench", apiUrl), {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/x-ndjson" },
    });
    req.on("error", reject);
    req.on("response", (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString("utf8")));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    let i = 0;
    const pump = () => {
      while (i < count) {
        let text = "";
        for (let k = 0; k < 200 && i < count; k++, i++) text += `${JSON.stringify({ image: imageUrl, ...ratios, prompt: `item ${i}` })}\n`;
        if (!req.write(text)) return void req.once("drain", pump);
      }
      req.end();
    };
    pump();
  });

// What the API's intake writes for one item, straight to Postgres and BullMQ: the floor it stands on.
const rawBaseline = async (pool: pg.Pool, redisUrl: string, prefix: string, accountId: string, count: number) => {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue("source", { connection: redis, prefix });
  const batchId = uuidv7();
  await pool.query("insert into batch (id, account_id, source) values ($1, $2, 'ndjson')", [batchId, accountId]);
  const started = performance.now();
  for (let from = 0; from < count; from += chunk) {
    const n = Math.min(chunk, count - from);
    const ids = Array.from({ length: n }, () => uuidv7());
    const params: unknown[] = [];
    const rows = ids.map((id, k) => {
      const base = params.length;
      params.push(id, accountId, batchId, from + k + 1, imageUrl, 0.1, 0.1, 0.2, 0.2, `item ${from + k}`, randomBytes(24).toString("base64url"), new Date());
      return `(${Array.from({ length: 12 }, (_, c) => `$${base + c + 1}`).join(",")})`;
    });
    await queue.addBulk(ids.map((id, k) => ({ name: "check-source-image", data: { taskId: id }, opts: { jobId: id, priority: 10_000 + from + k + 1, attempts: 8 } })));
    await pool.query(
      `with inserted as (insert into task (id, account_id, batch_id, batch_line, image_url, up_ratio, down_ratio, left_ratio, right_ratio, prompt, callback_token, next_check_at)
         values ${rows.join(",")} returning id),
       event as (insert into task_event (task_id, to_status, source) select id, 'queued', 'api' from inserted)
       update batch set accepted_items = accepted_items + (select count(*) from inserted) where id = '${batchId}'`,
      params,
    );
  }
  const seconds = (performance.now() - started) / 1000;
  await queue.close();
  redis.disconnect();
  return count / seconds;
};

const main = async () => {
  const stack = await startBenchStack();
  const pool = new pg.Pool({ connectionString: stack.databaseUrl, max: 4 });
  try {
    const { accountId, key } = await createBenchAccount(pool);
    // Warm-up: the first requests compile and connect.
    await streamBatch(stack.apiUrl, key, 2_000);
    const baseline = await rawBaseline(pool, stack.redisUrl, stack.baselinePrefix, accountId, items);
    log(`baseline: ${items} items, ${baseline.toFixed(0)} items/s (multi-row insert of ${chunk} + addBulk)`);
    const started = performance.now();
    const answer = await streamBatch(stack.apiUrl, key, items);
    const apiRate = items / ((performance.now() - started) / 1000);
    if (answer.status !== 201) throw new Error(`POST /v1/batches answered ${answer.status}: ${answer.body.slice(0, 500)}`);
    const accepted = JSON.parse(answer.body).intake.accepted;
    if (accepted !== items) throw new Error(`accepted ${accepted} of ${items}`);
    log(`api: ${items} items, ${apiRate.toFixed(0)} items/s through POST /v1/batches (NDJSON)`);

    // Memory: idle RSS after the runs above settled, then the peak while 100,000 stream in.
    global.gc?.();
    await new Promise((r) => setTimeout(r, 2_000));
    const idle = await rssMb(stack.apiPid);
    let peak = idle;
    const sampler = setInterval(() => {
      rssMb(stack.apiPid).then((mb) => (peak = Math.max(peak, mb)), () => undefined);
    }, 50);
    const big = await streamBatch(stack.apiUrl, key, rssItems);
    clearInterval(sampler);
    if (big.status !== 201) throw new Error(`the ${rssItems}-item batch answered ${big.status}: ${big.body.slice(0, 500)}`);
    log(`memory: idle ${idle.toFixed(1)} MB, peak ${peak.toFixed(1)} MB while streaming ${rssItems} items`);
    if (stack.apiLogLines().length > 0) log(`api warnings:\n${stack.apiLogLines().slice(0, 10).join("\n")}`);
    console.log(
      `intake_ratio=${(apiRate / baseline).toFixed(3)} items_per_s=${apiRate.toFixed(0)} baseline_items_per_s=${baseline.toFixed(0)} peak_rss_over_idle_mb=${(peak - idle).toFixed(1)}`,
    );
  } finally {
    await pool.end();
    await stack.stop();
  }
};

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
