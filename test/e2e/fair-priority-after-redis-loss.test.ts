import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { postBatchStream, ndjsonLines, waitUntil } from "../support/batches.ts";
import { call } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startPrivateRedis, type PrivateRedis } from "../support/redis-server.ts";
import { startStack, type Stack } from "../support/stack.ts";

// A single task overtakes a batch backlog (fair-priority.ts). After Redis restarts empty the sweeper
// re-adds every job from Postgres; re-added without a priority, they went ahead of every
// prioritised job, so single tasks waited behind the whole batch. The provider runs one task at a
// time and the worker takes one submit job at a time, so the order of submissions is the queue's.
describe("fair priority across an emptied Redis", () => {
  let redis: PrivateRedis;
  let stack: Stack;
  const batchSize = 60;
  const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0, left_expansion_ratio: 0, right_expansion_ratio: 0 };
  beforeAll(async () => {
    redis = await startPrivateRedis();
    stack = await startStack({
      withWorker: false,
      simulatorEnv: { SIM_CAPACITY: "1", SIM_RUN_MS: "30" },
      apiEnv: { REDIS_URL: redis.url, PROVIDER_CAPACITY: "1" },
      workerEnv: { REDIS_URL: redis.url, PROVIDER_CAPACITY: "1", SUBMIT_CONCURRENCY: "1", REDIS_WATCHDOG_MS: "200" },
    });
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
    await redis?.kill();
  });

  it("when Redis lost every job under a large batch, then single tasks (queued before and after the loss) are still submitted ahead of the batch's items", async () => {
    const { key } = await stack.newAccount();
    const image = (await makeImage(300, 300)).toString("base64");
    const createSingle = async () => {
      const created = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { image, ...ratios } });
      expect(created.status).toBe(202);
      return created.body.id as string;
    };
    const batch = await postBatchStream(stack.api.url, key, ndjsonLines(batchSize, (i) => ({ image, external_task_id: `bulk-${i}`, ...ratios })));
    expect(batch.status).toBe(201);
    expect(batch.body.intake, JSON.stringify(batch.body.intake.errors?.[0])).toMatchObject({ accepted: batchSize, rejected: 0 });
    const before = await createSingle();

    // Redis restarted empty: every job, counter and marker gone (FLUSHALL on the test's own server).
    const admin = new Redis(redis.url);
    await admin.flushall();
    admin.disconnect();
    const after = await createSingle();

    await stack.startWorker();
    const singles = [before, after];
    const submittedAt = async () =>
      stack.db.selectFrom("task").select(["id", "batchId", "submittedAt"]).where("submittedAt", "is not", null).execute();
    const rows = await waitUntil(submittedAt, (r) => singles.every((id) => r.some((t) => t.id === id)), 60_000, "both single tasks submitted");
    const lastSingle = Math.max(...rows.filter((t) => singles.includes(t.id)).map((t) => t.submittedAt!.getTime()));
    const batchItemsAhead = rows.filter((t) => t.batchId !== null && t.submittedAt!.getTime() < lastSingle).length;
    // A few batch items may be taken while the sweep is still re-adding (the worker takes a job as
    // soon as one exists); the whole batch ahead is the bug.
    expect(batchItemsAhead).toBeLessThanOrEqual(5);
  }, 90_000);
});
