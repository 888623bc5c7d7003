import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBenchAccount } from "../bench/api-fill.ts";
import { startBenchStack, type BenchStack } from "../bench/api-stack.ts";
import { jsonBatchBody, measureGrowth, postBatch } from "../bench/batch-memory-kit.ts";

// A JSON batch is held whole while it is read (32 MB at most); the API, in its own process at its
// default settings, must take the largest one with its resident memory rising by at most 2x the
// body (issue 17: a 28 MB batch raised it by 250 MB). Measured as `npm run bench:batch-memory`
// does: peak VmHWM over the idle VmRSS, from /proc.
describe("a JSON batch near its size limit", () => {
  let stack: BenchStack;
  let pool: pg.Pool;
  beforeAll(async () => {
    // Intake waits longer for Redis than in production: a loaded machine must not answer 503.
    stack = await startBenchStack({ ...process.env, ENQUEUE_TIMEOUT_MS: "20000" });
    pool = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
  });
  afterAll(async () => {
    await pool?.end();
    await stack?.stop();
  });

  it("when a 28 MB batch is accepted, then the API's resident memory rises by at most 2x the body", async () => {
    const { key } = await createBenchAccount(pool);
    const send = (body: Buffer) => postBatch(stack.apiUrl, key, "application/json", "/v1/batches", (req) => req.end(body));
    // Warm-up: the first batch compiles the intake path and opens its connections.
    const warmUp = await send(jsonBatchBody(2).body);
    expect(warmUp.status).toBe(201);

    const { body, count } = jsonBatchBody(28);
    const bodyMb = body.length / 1024 / 1024;
    const { answer, growthMb } = await measureGrowth(stack.apiPid, () => send(body));
    expect(answer.status, answer.body.slice(0, 300)).toBe(201);
    expect(JSON.parse(answer.body).intake.accepted).toBe(count);
    expect(growthMb / bodyMb, `peak +${growthMb.toFixed(0)} MB for a ${bodyMb.toFixed(1)} MB body`).toBeLessThanOrEqual(2);
  }, 240_000);
});
