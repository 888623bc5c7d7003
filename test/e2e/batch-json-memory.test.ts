import { readdir, readlink } from "node:fs/promises";
import { request } from "node:http";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { bodySpoolDir } from "../../apps/api/middleware/body-spool.ts";
import { createBenchAccount } from "../bench/api-fill.ts";
import { startBenchStack, type BenchStack } from "../bench/api-stack.ts";
import { batchRatios, jsonBatchBody, jsonInlineBatchBody, measureGrowth, postBatch } from "../bench/batch-memory-kit.ts";

// A JSON batch is the one upload held whole before it is answered (its fields may follow its
// items). Its memory is bounded: an API process (its own, so that its resident size is its own)
// grows by at most 2x the body while it takes a 28 MB batch, as peak resident memory over idle. The
// long figures are `npm run bench:batch-memory`'s; this is its largest case, once per form.
const BODY_MB = 28;

// Spooled bodies the API process still has open (unlinked files: their links end in "(deleted)").
const openSpools = async (pid: number) => {
  let count = 0;
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [])) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "");
    if (target.startsWith(bodySpoolDir())) count++;
  }
  return count;
};

const waitFor = async (what: string, check: () => Promise<boolean>, timeoutMs = 20_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

describe("a large JSON batch's memory", () => {
  let stack: BenchStack;
  let pool: pg.Pool;
  let key: string;
  beforeAll(async () => {
    // A loaded machine must not end the intake with a 503 from a slow Redis.
    stack = await startBenchStack({ ...process.env, REDIS_URL: inject("redisUrl"), ENQUEUE_TIMEOUT_MS: "20000" });
    pool = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
    ({ key } = await createBenchAccount(pool));
    // The first requests compile and connect, and grow the young generation to its working size.
    const lines = Array.from({ length: 2_000 }, (_, i) => JSON.stringify({ image: `https://images.example.com/p-${i}.jpg`, ...batchRatios })).join("\n");
    expect((await postBatch(stack.apiUrl, key, "application/x-ndjson", "/v1/batches?name=warm", (req) => req.end(lines))).status).toBe(201);
  }, 240_000);
  afterAll(async () => {
    await pool?.end();
    await stack?.stop();
  });

  const takes = async (body: Buffer, count: number) => {
    const { answer, growthMb } = await measureGrowth(stack.apiPid, () => postBatch(stack.apiUrl, key, "application/json", "/v1/batches", (req) => req.end(body)));
    expect(answer.status, answer.body.slice(0, 300)).toBe(201);
    expect(JSON.parse(answer.body).intake.accepted).toBe(count);
    const bodyMb = body.length / 1024 / 1024;
    expect(growthMb, `grew ${growthMb.toFixed(0)} MB for a ${bodyMb.toFixed(1)} MB body`).toBeLessThanOrEqual(2 * bodyMb);
    // Answered: its spooled copy is gone.
    expect(await openSpools(stack.apiPid)).toBe(0);
  };

  it("when a 28 MB batch of inline Base64 images is taken, then the API grows by at most 2x the body", async () => {
    const { body, count } = await jsonInlineBatchBody(BODY_MB);
    await takes(body, count);
  }, 180_000);

  it("when a 28 MB batch of 10,000 items with image URLs is taken, then the API grows by at most 2x the body", async () => {
    const { body, count } = jsonBatchBody(BODY_MB);
    await takes(body, count);
  }, 180_000);

  it("when the client goes away halfway through its upload, then the spooled body is closed and nothing of it stays on disk", async () => {
    const { body } = jsonBatchBody(8);
    const req = request(new URL("/v1/batches", stack.apiUrl), {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "content-length": String(body.length) },
    });
    req.on("error", () => undefined);
    req.write(body.subarray(0, body.length >> 1));
    await waitFor("the API to spool the upload", async () => (await openSpools(stack.apiPid)) === 1);
    req.destroy();
    await waitFor("the spooled body to be closed", async () => (await openSpools(stack.apiPid)) === 0);
    const left = (await readdir(bodySpoolDir()).catch(() => [] as string[])).filter((name) => name.startsWith(`${stack.apiPid}-`));
    expect(left).toEqual([]);
  }, 60_000);
});
