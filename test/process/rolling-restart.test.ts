import { QueueEvents } from "bullmq";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jobCatalog } from "../../apps/domain/queues/job-catalog.ts";
import { spawnService, type ChildService } from "../support/child-processes.ts";
import { eventually, releaseOneAtATime, settle, startFaultStack, submitMany, testImage } from "../support/fault-kit.ts";
import { call } from "../support/http.ts";
import { openSse } from "../support/sse.ts";
import type { Stack } from "../support/stack.ts";

// Rolling restarts: a worker or an API stopped with SIGTERM hands its work on at once, so no task
// waits for BullMQ's stall check (which only takes a job over once its lock has lapsed), and an API
// ends its live streams so their clients reconnect to another process.

describe("a worker stopped with SIGTERM while tasks run", () => {
  let stack: Stack;
  const children: ChildService[] = [];
  const stalled: string[] = [];
  const watchers: QueueEvents[] = [];
  // Long locks: were any job left to the stall check, the run would wait this long and the check
  // below would see a `stalled` event.
  const locks = { JOB_LOCK_MS: "60000", SLOT_WAIT_MS: "60000" };

  beforeAll(async () => {
    await testImage();
    // The manual clock: tasks at the provider run until the test ends them, so a worker that waited
    // for a slot to come free would wait for ever rather than until a run ended.
    stack = await startFaultStack({ capacity: 2, withWorker: false, simulatorEnv: { SIM_CLOCK: "manual" } });
    for (const kind of ["source", "submit", "archive"] as const) {
      const events = new QueueEvents(jobCatalog[kind].queue, { connection: { url: stack.env.redisUrl }, prefix: stack.env.queuePrefix });
      events.on("stalled", ({ jobId }) => stalled.push(`${kind}:${jobId}`));
      await events.waitUntilReady();
      watchers.push(events);
    }
  });
  afterAll(async () => {
    await Promise.all(children.map((child) => child.kill("SIGKILL")));
    await Promise.all(watchers.map((w) => w.close()));
    await stack?.stop();
  });

  it("when it holds submit jobs waiting for provider slots, then it exits at once handing them back, and another worker finishes every task with no job stalled", async () => {
    // A drain as long as the locks: had it waited for a slot (none frees under the manual clock)
    // rather than handing its jobs back, the stop would have been forced (not exit 0).
    const first = spawnService("worker", { ...stack.workerEnv({ ...locks, WORKER_DRAIN_MS: "60000" }), LOG_LEVEL: "info" });
    children.push(first);
    await first.ready;
    const { key } = await stack.newAccount();
    const tasks = await submitMany(stack, key, 4);
    // Two tasks at the provider (its capacity), the next ones waiting in the slot line in this worker.
    await eventually("two tasks at the provider and others waiting for a slot", async () => {
      const rows = await stack.db.selectFrom("task").select(["status", "waitReason"]).where("id", "in", tasks.map((t) => t.id)).execute();
      const atProvider = rows.filter((r) => r.status === "submitted" || r.status === "processing").length;
      const waiting = rows.filter((r) => r.status === "queued" && r.waitReason?.startsWith("waiting for a free provider slot")).length;
      return atProvider === 2 && waiting > 0 ? true : undefined;
    });
    const second = await stack.startWorker(locks);

    const exit = await first.kill("SIGTERM");
    // A clean stop, not one forced at the shutdown deadline.
    expect(exit).toEqual({ code: 0, signal: null });
    // It did not wait for a slot to come free: both tasks at the provider were still running.
    const atExit = await stack.db.selectFrom("task").select("status").where("id", "in", tasks.map((t) => t.id)).execute();
    expect(atExit.filter((r) => r.status === "succeeded")).toHaveLength(0);

    await releaseOneAtATime(stack, tasks, { capacity: 2 });
    const done = await settle(stack, tasks, 45_000);
    expect(done.map((t) => t.status)).toEqual(tasks.map(() => "succeeded"));
    expect(stalled).toEqual([]);
    await second.stop();
  }, 90_000);

  it("when a job is still running at the drain deadline (a source image that does not come), then it is handed back to the queue and another worker takes it at once", async () => {
    // The first download of the image hangs; the next one is served.
    const image = Buffer.from(await testImage(), "base64");
    let requests = 0;
    const images = createServer((_req, res) => {
      requests++;
      if (requests > 1) res.writeHead(200, { "content-type": "image/png" }).end(image);
    });
    await new Promise<void>((resolve) => images.listen(0, "127.0.0.1", resolve));
    try {
      const first = spawnService("worker", { ...stack.workerEnv({ ...locks, WORKER_DRAIN_MS: "300", IMAGE_FETCH_TIMEOUT_MS: "60000", IMAGE_FETCH_TOTAL_TIMEOUT_MS: "60000" }), LOG_LEVEL: "info" });
      children.push(first);
      await first.ready;
      const { key } = await stack.newAccount();
      const [task] = await submitMany(stack, key, 1, () => ({ image: `http://127.0.0.1:${(images.address() as AddressInfo).port}/photo.png` }));
      await eventually("the download under way", async () => (requests === 1 ? true : undefined));
      const second = await stack.startWorker(locks);

      const exit = await first.kill("SIGTERM");
      expect(exit).toEqual({ code: 0, signal: null });
      expect(first.output()).toMatch(/handed back to the queue/);
      await releaseOneAtATime(stack, [task!], { capacity: 2 });
      const [done] = await settle(stack, [task!], 30_000);
      expect(done.status).toBe("succeeded");
      // Downloaded again by the other worker (the provider fetches it too), the first try still hanging.
      expect(requests).toBeGreaterThan(1);
      expect(stalled).toEqual([]);
      await second.stop();
    } finally {
      images.closeAllConnections();
      images.close();
    }
  }, 60_000);
});

describe("an API stopped with SIGTERM while a client follows a task's live stream", () => {
  let stack: Stack;
  let api: ChildService | undefined;

  beforeAll(async () => {
    await testImage();
    stack = await startFaultStack({ capacity: 2, simulatorEnv: { SIM_RUN_MS: "60000" } });
  });
  afterAll(async () => {
    await api?.kill("SIGKILL");
    await stack?.stop();
  });

  it("when it is stopped, then the open stream ends at once without its `end` event, the process exits cleanly, and the other API serves the reconnect", async () => {
    api = spawnService("api", { ...stack.workerEnv(), PORT: "0", LOG_LEVEL: "info" });
    await api.ready;
    const url = api.output().match(/api listening on (http:\/\/\S+)/)![1]!;
    const { key } = await stack.newAccount();
    const [task] = await submitMany(stack, key, 1);
    const stream = await openSse(`${url}/v1/tasks/${task!.id}/stream`, { authorization: `Bearer ${key}` });
    expect(stream.status).toBe(200);
    const first = await stream.next();
    expect(first.event).toBe("task");

    const exit = await api.kill("SIGTERM");
    expect(exit).toEqual({ code: 0, signal: null });
    // The stream was closed by the server, not left to time out; no `end` event (the task runs on).
    await stream.ended;
    // Events sent before the close (the task moving on to `submitting`) may still be in the buffer;
    // none of them is `end`, and after them the stream is over (not merely quiet).
    const rest: string[] = [];
    const over = await (async () => {
      for (;;) {
        try {
          rest.push((await stream.next(1_000)).event ?? "message");
        } catch (error) {
          return (error as Error).message;
        }
      }
    })();
    expect(rest).not.toContain("end");
    expect(over).toBe("the stream ended before the next event");
    // New connections are refused, so a load balancer sends clients to another process...
    await expect(fetch(`${url}/livez`)).rejects.toThrow();
    // ...where the client resumes with its last event id.
    const resumed = await openSse(`${stack.api.url}/v1/tasks/${task!.id}/stream`, { authorization: `Bearer ${key}`, "last-event-id": first.id! });
    expect(resumed.status).toBe(200);
    resumed.close();
    expect((await call(stack.api.url, "GET", `/v1/tasks/${task!.id}`, { key })).status).toBe(200);
  });
});
