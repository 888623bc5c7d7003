import { bullQueueName } from "../../apps/domain/queues/job-catalog.ts";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { inject } from "vitest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseApiConfig } from "../../apps/api/api.config.ts";
import { startApi, type RunningApi } from "../../apps/api/api.server.ts";
import { call, waitForTask } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { ratios } from "../support/fault-kit.ts";
import { countTasksOf, countEventsOf } from "../support/rows.ts";
import { startTcpProxy } from "../support/tcp-proxy.ts";


let stack: Stack;
let image: string;

beforeAll(async () => {
  stack = await startStack({ withWorker: false });
  image = (await makeImage(400, 400)).toString("base64");
});
afterAll(() => stack?.stop());

// An extra API process on the same stores; a test breaks its Redis or Postgres address by pointing
// it at port 1, which refuses at once.
const startExtraApi = (env: Record<string, string>): Promise<RunningApi> =>
  startApi(
    parseApiConfig({
      DATABASE_URL: stack.env.databaseUrl,
      REDIS_URL: inject("redisUrl"),
      QUEUE_PREFIX: stack.env.queuePrefix,
      STORAGE_DIR: stack.env.storageDir,
      LOG_LEVEL: "silent",
      PORT: "0",
      ...env,
    }),
  );

describe("dependencies down at intake", () => {
  it("when Redis is unreachable, then intake answers 503 at once on both route families and nothing is written", async () => {
    const api = await startExtraApi({ REDIS_URL: "redis://127.0.0.1:1" });
    try {
      const { key, accountId } = await stack.newAccount();
      const native = await call(api.url, "POST", "/v1/tasks", { key, body: { image, ...ratios, external_task_id: "r-1" } });
      expect(native.status).toBe(503);
      expect(native.headers.get("retry-after")).toBe("5");
      expect(native.body.detail).toMatch(/Redis.*nothing was stored/);
      const dropin = await call(api.url, "POST", "/kling/v1/images/editing/expand", { key, body: { image, ...ratios, external_task_id: "r-2" } });
      expect(dropin.status).toBe(503);
      expect(dropin.body.code).toBe(5001);
      expect(await countTasksOf(stack.db, accountId)).toBe(0);
      expect(await countEventsOf(stack.db, accountId)).toBe(0);
      const ready = await call(api.url, "GET", "/readyz");
      expect(ready.status).toBe(503);
      expect(ready.body.checks).toMatchObject({ postgres: { ok: true }, redis: { ok: false } });
      // The same request succeeds once it reaches an API whose Redis answers: nothing was reserved.
      const retried = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { image, ...ratios, external_task_id: "r-1" } });
      expect(retried.status).toBe(202);
    } finally {
      await api.stop();
    }
  });

  it("when Redis is connected but stops answering, then intake answers 503 with Retry-After at the default ENQUEUE_TIMEOUT_MS and nothing is written", async () => {
    // The case the timeout is for: no refused connection to notice, the commands just get no answer
    // (a frozen server, a path that drops packets). The API runs with the production default, which
    // the test stacks raise (test/support/stack.ts) for their loaded event loop.
    const redis = new URL(inject("redisUrl"));
    const proxy = await startTcpProxy({ host: redis.hostname, port: Number(redis.port || 6379) });
    const api = await startExtraApi({ REDIS_URL: proxy.via(inject("redisUrl")) });
    try {
      const { key, accountId } = await stack.newAccount();
      await proxy.setMode("hang");
      const answer = await call(api.url, "POST", "/v1/tasks", { key, body: { image, ...ratios, external_task_id: "hung-1" } });
      expect(answer.status, JSON.stringify(answer.body)).toBe(503);
      expect(answer.headers.get("retry-after")).toBe("5");
      expect(answer.body.detail).toMatch(/Redis.*nothing was stored/);
      expect(await countTasksOf(stack.db, accountId)).toBe(0);
      expect(await countEventsOf(stack.db, accountId)).toBe(0);
    } finally {
      await proxy.setMode("pass");
      await api.stop();
      await proxy.stop();
    }
  });

  it("when Postgres is unreachable, then requests answer 503 and readiness says which dependency is down", async () => {
    const api = await startExtraApi({ DATABASE_URL: "postgresql://postgres@127.0.0.1:1/nowhere" });
    try {
      const answer = await call(api.url, "POST", "/v1/tasks", { key: "any-key-at-all", body: { image, ...ratios } });
      expect(answer.status).toBe(503);
      expect(answer.body.detail).toMatch(/database is unreachable/);
      const dropin = await call(api.url, "GET", "/kling/v1/images/editing/expand/abc", { key: "any-key-at-all" });
      expect(dropin.status).toBe(503);
      expect(dropin.body.code).toBe(5001);
      const ready = await call(api.url, "GET", "/readyz");
      expect(ready.status).toBe(503);
      expect(ready.body.checks).toMatchObject({ postgres: { ok: false }, redis: { ok: true } });
    } finally {
      await api.stop();
    }
  });
});

describe("work survives missing workers and lost jobs", () => {
  it("when tasks are accepted while no worker runs and one job is lost from Redis, then a worker started later finishes every task", async () => {
    const { key } = await stack.newAccount();
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const created = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { image, ...ratios } });
      expect(created.status).toBe(202);
      ids.push(created.body.id);
    }
    // Lose one task's job, as a Redis without persistence would on restart.
    const connection = new Redis(inject("redisUrl"), { maxRetriesPerRequest: null });
    const submitQueue = new Queue(bullQueueName("submit"), { connection, prefix: stack.env.queuePrefix });
    expect(await submitQueue.remove(ids[0]!)).toBe(1);
    await submitQueue.close();
    connection.disconnect();

    // The sweeper re-drives tasks that went without progress for STALL_RECHECK_MS.
    await stack.db.updateTable("task").set({ nextCheckAt: new Date() }).where("id", "=", ids[0]!).execute();
    await stack.startWorker();
    for (const id of ids) {
      expect(await waitForTask(stack.api.url, key, id, ["succeeded", "failed"])).toMatchObject({ status: "succeeded", failure: null });
    }
    const events = (await call(stack.api.url, "GET", `/v1/tasks/${ids[0]}/events`, { key })).body.data;
    expect(events.map((e: { to: string }) => e.to).at(-1)).toBe("succeeded");
    const simTasks = (await call(stack.simulator.url, "GET", "/_sim/tasks")).body as { external_task_id: string; create_count: number }[];
    for (const id of ids) {
      expect(simTasks.filter((t) => t.external_task_id === id).map((t) => t.create_count)).toEqual([1]);
    }
  });
});

describe("several processes side by side", () => {
  it("when two APIs and two workers share Postgres and Redis, then every task is submitted once and succeeds", async () => {
    const secondApi = await startExtraApi({});
    await stack.startWorker();
    await stack.startWorker();
    try {
      const { key } = await stack.newAccount();
      const ids: string[] = [];
      for (let i = 0; i < 10; i++) {
        const api = i % 2 === 0 ? stack.api : secondApi;
        const created = await call(api.url, "POST", "/v1/tasks", { key, body: { image, ...ratios, n: 1 + (i % 3) } });
        expect(created.status).toBe(202);
        ids.push(created.body.id);
      }
      for (const [i, id] of ids.entries()) {
        const done = await waitForTask(i % 2 === 0 ? secondApi.url : stack.api.url, key, id, ["succeeded", "failed"]);
        expect(done).toMatchObject({ status: "succeeded", failure: null });
        expect(done.images).toHaveLength(1 + (i % 3));
      }
      const simTasks = (await call(stack.simulator.url, "GET", "/_sim/tasks")).body as { external_task_id: string; create_count: number }[];
      for (const id of ids) {
        expect(simTasks.filter((t) => t.external_task_id === id).map((t) => t.create_count)).toEqual([1]);
      }
    } finally {
      await secondApi.stop();
    }
  });
});
