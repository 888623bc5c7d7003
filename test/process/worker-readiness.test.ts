import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../apps/domain/logging/logger.ts";
import { startWorkerHealth } from "../../apps/worker/worker-health.ts";
import { spawnService, type ChildService } from "../support/child-processes.ts";
import { eventually, startFaultStack } from "../support/fault-kit.ts";
import { freePort } from "../support/free-port.ts";
import type { Stack } from "../support/stack.ts";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.ts";

// A worker is ready only when it can do its work (issue 15): with WORKER_HEALTH_PORT set it answers
// /readyz 503 with the reason while its start waits on Redis, while Redis stops answering, and from
// SIGTERM on; 200 once every processor runs and Postgres and its queues answer.

const get = async (url: string) => {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  return { status: response.status, body: (await response.json()) as Record<string, any> };
};

describe("a worker process with WORKER_HEALTH_PORT", () => {
  let stack: Stack;
  let redis: TcpProxy;
  const children: ChildService[] = [];

  beforeAll(async () => {
    stack = await startFaultStack({ capacity: 2, withWorker: false });
    const target = new URL(stack.env.redisUrl);
    redis = await startTcpProxy({ host: target.hostname, port: Number(target.port || 6379) });
  });
  afterAll(async () => {
    await Promise.all(children.map((child) => child.kill("SIGKILL")));
    await redis?.stop();
    await stack?.stop();
  });

  it("when its Redis refuses at start, then /readyz is 503 naming what the start waits on (/healthz 200); once Redis answers, 200 with every check ok; when Redis stops answering, 503 naming Redis", async () => {
    await redis.setMode("refuse");
    const port = await freePort();
    const health = `http://127.0.0.1:${port}`;
    const worker = spawnService("worker", { ...stack.workerEnv(), REDIS_URL: redis.via(stack.env.redisUrl), WORKER_HEALTH_PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: "info" });
    children.push(worker);

    const starting = await eventually("the worker's health server answering", () => get(`${health}/readyz`).catch(() => undefined), 60_000);
    expect(starting).toMatchObject({ status: 503, body: { status: "starting", reason: expect.stringMatching(/^starting: .*Redis/) } });
    expect(await get(`${health}/healthz`)).toEqual({ status: 200, body: { status: "ok" } });
    expect(worker.output()).not.toMatch(/worker started/);

    await redis.setMode("pass");
    await worker.ready;
    const ready = await get(`${health}/readyz`);
    expect(ready).toMatchObject({
      status: 200,
      body: { status: "ready", checks: { postgres: { ok: true }, redis: { ok: true }, processors: { ok: true } } },
    });

    await redis.setMode("refuse");
    const lost = await get(`${health}/readyz`);
    expect(lost).toMatchObject({ status: 503, body: { status: "not_ready", reason: expect.stringMatching(/^redis: /), checks: { postgres: { ok: true }, redis: { ok: false } } } });
    await redis.setMode("pass");
    await eventually("ready again once Redis answers", async () => ((await get(`${health}/readyz`)).status === 200 ? true : undefined), 30_000);
  }, 120_000);
});

describe("the worker health server", () => {
  const logger = createLogger("worker", "silent", "json");
  const ok = { postgres: async () => 1, redis: async () => 1, stoppedProcessors: () => [] };

  it("when a processor has stopped, then /readyz is 503 naming it", async () => {
    const health = await startWorkerHealth({ host: "127.0.0.1", port: 0, logger });
    try {
      health.running({ ...ok, stoppedProcessors: () => ["{submit}"] });
      expect(await get(`${health.url}/readyz`)).toMatchObject({ status: 503, body: { status: "not_ready", reason: "processors: not running: {submit}" } });
    } finally {
      await health.close();
    }
  });

  it("when the worker is draining after SIGTERM, then /readyz is 503 draining though every check passes, and /healthz still 200", async () => {
    const health = await startWorkerHealth({ host: "127.0.0.1", port: 0, logger });
    try {
      health.running(ok);
      expect((await get(`${health.url}/readyz`)).status).toBe(200);
      health.draining();
      expect(await get(`${health.url}/readyz`)).toMatchObject({ status: 503, body: { status: "draining" } });
      expect((await get(`${health.url}/healthz`)).status).toBe(200);
      // A late start step cannot make a draining worker look ready again.
      health.running(ok);
      expect((await get(`${health.url}/readyz`)).status).toBe(503);
    } finally {
      await health.close();
    }
  });

  it("when asked for another path or with another method, then it answers 404 or 405 with a message", async () => {
    const health = await startWorkerHealth({ host: "127.0.0.1", port: 0, logger });
    try {
      expect(await get(`${health.url}/metrics`)).toMatchObject({ status: 404, body: { error: { code: "not_found" } } });
      const post = await fetch(`${health.url}/readyz`, { method: "POST" });
      expect(post.status).toBe(405);
    } finally {
      await health.close();
    }
  });
});
