import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ratios, testImage } from "../support/fault-kit.ts";
import { call, waitForTask } from "../support/http.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { startWebhookConsumer, type WebhookConsumer } from "../support/webhook-consumer.ts";

// Every worker hears every event's NOTIFY and tries to claim it: the claim gives each attempt to
// one of them, so with several workers a consumer still gets each event once, in order per task.
// With one attempt at a time per worker, what a worker hears while busy goes through the queue
// instead: the same events, once each, in order.

// The sweep runs too seldom here to make up for an event the hand-off dropped.
const rareSweep = { WEBHOOK_SWEEP_MS: "600000" };

describe.each([
  { workers: 3, env: rareSweep, title: "three workers hear" },
  { workers: 1, env: { ...rareSweep, WEBHOOK_CONCURRENCY: "1" }, title: "a worker sending one at a time hears" },
])("outbound callbacks: $title", ({ workers, env, title }) => {
  let stack: Stack;
  let consumer: WebhookConsumer;

  beforeAll(async () => {
    consumer = await startWebhookConsumer();
    stack = await startStack({ apiEnv: { ALLOWED_PRIVATE_HOSTS: "127.0.0.1" }, workerEnv: env });
    for (let i = 1; i < workers; i++) await stack.startWorker();
  });
  afterAll(async () => {
    await stack?.stop();
    await consumer?.close();
  });

  it(`when ${title} the events of several drop-in tasks, then each event is sent once, and each task's in order`, async () => {
    const { key } = await stack.newAccount();
    const image = await testImage();
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const created = await call(stack.api.url, "POST", "/kling/v1/images/editing/expand", {
        key,
        body: { image, ...ratios, callback_url: `${consumer.url}/t/${i}` },
      });
      expect(created.status).toBe(200);
      ids.push(created.body.data.task_id as string);
    }
    for (const id of ids) await waitForTask(stack.api.url, key, id, ["succeeded"]);
    // Each POST is made before its attempt is recorded: once every delivery is decided, every
    // request any worker made has arrived.
    const arrived = await Promise.all(ids.map((_, i) => consumer.waitFor(`/t/${i}`, 3)));
    const deadline = Date.now() + 20_000;
    for (;;) {
      const listed = (await call(stack.api.url, "GET", "/v1/webhooks/deliveries?limit=100", { key })).body.data as { status: string }[];
      if (listed.length === ids.length * 3 && listed.every((d) => d.status === "succeeded")) break;
      if (Date.now() > deadline) throw new Error(`deliveries not all sent: ${JSON.stringify(listed)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    for (let i = 0; i < ids.length; i++) {
      const requests = consumer.received.filter((r) => r.path === `/t/${i}`);
      expect(requests.map((r) => (JSON.parse(r.body) as { task_status: string }).task_status)).toEqual(["submitted", "processing", "succeed"]);
      expect(new Set(requests.map((r) => r.headers["webhook-id"])).size).toBe(3);
      expect(arrived[i]).toHaveLength(3);
    }
  });
});
