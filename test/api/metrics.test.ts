import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNativeClient, waitForTask } from "../../apps/client/native-client.ts";
import { spawnService, type ChildService } from "../support/child-processes.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { startWebhookConsumer, type WebhookConsumer } from "../support/webhook-consumer.ts";

// The worker runs as its own process, as deployed: what it counts (provider calls, stage times,
// queue waits) reaches the API's /metrics only through its push to Redis.
let stack: Stack;
let worker: ChildService;
let consumer: WebhookConsumer;
beforeAll(async () => {
  consumer = await startWebhookConsumer();
  // Loopback callback URLs accepted at intake, for the outbound deliveries' counter.
  stack = await startStack({ withWorker: false, apiEnv: { ALLOWED_PRIVATE_HOSTS: "127.0.0.1" } });
  worker = spawnService("worker", { ...stack.workerEnv(), METRICS_PUSH_MS: "200", LOG_LEVEL: "info", WEBHOOK_RETRY_SCHEDULE: "0,100ms,200ms" });
  await worker.ready.catch((e) => { throw new Error(`${e}\n${worker.output()}`); });
});
afterAll(async () => {
  await worker?.kill("SIGTERM");
  await stack?.stop();
  await consumer?.close();
});

type Sample = { name: string; labels: Record<string, string>; value: number };
const parse = (text: string): Sample[] =>
  text
    .split("\n")
    .filter((line) => line && !line.startsWith("#"))
    .map((line) => {
      const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!m) throw new Error(`not a sample line: ${line}`);
      const labels: Record<string, string> = Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1]!, l[2]!]));
      return { name: m[1]!, labels, value: Number(m[3]) };
    });

const scrape = async () => {
  const res = await fetch(`${stack.api.url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return parse(await res.text());
};
const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);

describe("/metrics", () => {
  it("when tasks run through a separate worker process, then intake, stages, provider calls, callbacks, credits, slots, gate and queues all show, with bounded labels", async () => {
    const before = await scrape();
    const { key } = await stack.newAccount();
    const client = createNativeClient({ baseUrl: stack.api.url, apiKey: key });
    const image = (await makeImage(400, 300)).toString("base64");
    const ids: string[] = [];
    // Outbound callbacks: the first answer on /flaky is a 500 (tried again, then delivered), /gone answers 410.
    consumer.script("/flaky", [{ status: 500 }]);
    consumer.script("/gone", [{ status: 410 }]);
    const callbacks = [`${consumer.url}/flaky`, `${consumer.url}/gone`, undefined];
    for (let i = 0; i < 3; i++) {
      const { data } = await client.POST("/v1/tasks", {
        body: { image, up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1, n: 2, callback_url: callbacks[i] },
      });
      ids.push(data!.id);
    }
    for (const id of ids) expect((await waitForTask(client, id)).status).toBe("succeeded");

    // Pushed every 200 ms: wait for a scrape that has the worker's last transitions. No bound of
    // its own (a count of tries was a clock a loaded machine overran): the push either comes or
    // the test's timeout says it never did.
    let after = await scrape();
    const moved = (name: string, labels: Record<string, string>) => value(after, name, labels) - value(before, name, labels);
    while (
      moved("kling_task_stage_duration_seconds_count", { stage: "archiving" }) < 3 ||
      ["succeeded", "failed_attempt", "disabled"].some((result) => moved("kling_webhook_deliveries_total", { result }) < 1)
    ) {
      await new Promise((r) => setTimeout(r, 100));
      after = await scrape();
    }
    const delta = (name: string, labels: Record<string, string> = {}) => value(after, name, labels) - value(before, name, labels);

    expect(delta("kling_tasks_accepted_total", { image: "base64" })).toBe(3);
    expect(delta("kling_tasks_finished_total", { status: "succeeded" })).toBe(3);
    expect(delta("kling_task_duration_seconds_count", { status: "succeeded" })).toBe(3);
    for (const stage of ["queued", "provider", "archiving"]) expect(delta("kling_task_stage_duration_seconds_count", { stage }), stage).toBe(3);
    expect(delta("kling_provider_calls_total", { operation: "create", code: "0" })).toBe(3);
    expect(delta("kling_callbacks_received_total", { outcome: "applied" })).toBeGreaterThanOrEqual(3);
    expect(delta("kling_credits_spent_total")).toBe(6);
    expect(delta("kling_queue_wait_seconds_count", { queue: "submit" })).toBeGreaterThanOrEqual(3);
    expect(value(after, "kling_provider_gate", { mode: "closed" })).toBe(1);
    expect(value(after, "kling_provider_gate", { mode: "open" })).toBe(0);
    expect(value(after, "kling_provider_slots_capacity")).toBeGreaterThan(0);
    expect(value(after, "kling_provider_slots_in_use")).toBe(0);
    expect(after.some((s) => s.name === "kling_queue_jobs" && s.labels.queue === "submit" && s.labels.state === "waiting")).toBe(true);
    expect(value(after, "kling_tasks_active", { status: "queued" })).toBe(0);
    expect(value(after, "kling_scrape_source_up", { source: "postgres" })).toBe(1);
    // Outbound deliveries by result, counted in the worker process.
    expect(delta("kling_webhook_deliveries_total", { result: "failed_attempt" })).toBeGreaterThanOrEqual(1);
    expect(delta("kling_webhook_deliveries_total", { result: "succeeded" })).toBeGreaterThanOrEqual(1);
    expect(delta("kling_webhook_deliveries_total", { result: "disabled" })).toBeGreaterThanOrEqual(1);
    expect(delta("kling_webhook_deliveries_total", { result: "gave_up" })).toBe(0);
    expect(after.filter((s) => s.name === "kling_webhook_deliveries_total").every((s) => ["succeeded", "failed_attempt", "gave_up", "disabled", "refused"].includes(s.labels.result!))).toBe(true);

    const uuid = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;
    expect(after.filter((s) => Object.values(s.labels).some((v) => uuid.test(v)))).toEqual([]);
    // A hang guard (three tasks and deliveries through a spawned worker); nothing above is timed.
  }, 120_000);

  // Prometheus's own checker (Debian's `prometheus` package), where it is installed.
  it.skipIf(!existsSync("/usr/bin/promtool"))("when promtool checks the exposition, then it finds no error", async () => {
    const text = await (await fetch(`${stack.api.url}/metrics`)).text();
    const check = spawnSync("/usr/bin/promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    expect(check.stderr + check.stdout).not.toMatch(/error/i);
    expect(check.status, check.stderr + check.stdout).toBe(0);
  });

  it("when a task is queued and not yet taken, then it shows as active and waiting in its queue", async () => {
    const { key } = await stack.newAccount();
    const client = createNativeClient({ baseUrl: stack.api.url, apiKey: key });
    await worker.kill("SIGTERM");
    const image = (await makeImage(400, 300)).toString("base64");
    await client.POST("/v1/tasks", { body: { image, up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 } });
    const samples = await scrape();
    expect(value(samples, "kling_tasks_active", { status: "queued" })).toBe(1);
    expect(value(samples, "kling_queue_jobs", { queue: "submit", state: "prioritized" }) + value(samples, "kling_queue_jobs", { queue: "submit", state: "waiting" })).toBe(1);
  });
});
