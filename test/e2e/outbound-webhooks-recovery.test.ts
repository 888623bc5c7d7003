import { randomUUID } from "node:crypto";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { standardWebhookHeaders } from "../../apps/domain/webhooks/standard-webhooks.ts";
import { spawnService, type ChildService } from "../support/child-processes.ts";
import { ratios, testImage } from "../support/fault-kit.ts";
import { call, waitForTask } from "../support/http.ts";
import { callbackRows, taskRow } from "../support/rows.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { startWebhookConsumer, type WebhookConsumer } from "../support/webhook-consumer.ts";

const headersOf = (headers: Record<string, unknown>) => Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, String(v)]));

describe("an outbound callback whose worker is SIGKILLed mid-delivery", () => {
  let stack: Stack;
  let consumer: WebhookConsumer;
  const children: ChildService[] = [];
  // Short locks and attempts, so a killed worker's delivery is taken over within seconds.
  const env = { JOB_LOCK_MS: "1000", WEBHOOK_ATTEMPT_TIMEOUT_MS: "1000", WEBHOOK_SWEEP_MS: "200", WEBHOOK_RETRY_SCHEDULE: "0,100ms,200ms" };

  beforeAll(async () => {
    consumer = await startWebhookConsumer();
    stack = await startStack({ withWorker: false, apiEnv: { ALLOWED_PRIVATE_HOSTS: "127.0.0.1" } });
  });
  afterAll(async () => {
    await Promise.all(children.map((child) => child.kill("SIGKILL")));
    await stack?.stop();
    await consumer?.close();
  });

  it("when the worker dies while the consumer holds the request, then after a restart the event is delivered with the same webhook-id", async () => {
    const child = spawnService("worker", { ...stack.workerEnv(env), LOG_LEVEL: "info" });
    children.push(child);
    await child.ready;
    const { key } = await stack.newAccount();
    const secret = (await call(stack.api.url, "GET", "/v1/webhooks/secret", { key })).body.secret as string;
    consumer.script("/crash", ["hang"]);
    const killed = new Promise<void>((resolve) =>
      consumer.onRequest((request) => {
        if (request.path === "/crash") void child.kill("SIGKILL").then(() => resolve());
      }),
    );
    const created = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { image: await testImage(), ...ratios, callback_url: `${consumer.url}/crash` } });
    expect(created.status).toBe(202);
    await killed;
    expect(child.alive()).toBe(false);
    // The task itself finished before its callback was sent (the event is recorded with the change).
    expect((await taskRow(stack.db, created.body.id)).status).toBe("succeeded");

    await stack.startWorker(env);
    const arrived = await consumer.waitFor("/crash", 2, 20_000);
    expect(arrived[1]!.headers["webhook-id"]).toBe(arrived[0]!.headers["webhook-id"]);
    const event = new Webhook(secret).verify(arrived[1]!.body, headersOf(arrived[1]!.headers)) as { type: string; data: { id: string } };
    expect(event).toMatchObject({ type: "task.succeeded", data: { id: created.body.id } });
    const deadline = Date.now() + 10_000;
    let delivery: { status: string } | undefined;
    while (Date.now() < deadline) {
      delivery = (await call(stack.api.url, "GET", `/v1/webhooks/deliveries?task_id=${created.body.id}`, { key })).body.data[0];
      if (delivery?.status === "succeeded") break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(delivery).toMatchObject({ status: "succeeded", last_attempt: { status_code: 200 } });
  });
});

describe("a signed provider callback replayed", () => {
  const secret = `whsec_${Buffer.from(`replay-${randomUUID()}`).toString("base64")}`;
  let stack: Stack;

  beforeAll(async () => {
    // The provider runs long and loses its own callbacks: only the ones this test sends arrive.
    stack = await startStack({
      simulatorEnv: { SIM_WEBHOOK_SECRET: secret, SIM_RUN_MS: "60000", SIM_CALLBACK_LOSS: "1" },
      apiEnv: { PROVIDER_WEBHOOK_SECRET: secret },
    });
  });
  afterAll(() => stack?.stop());

  it("when a signed callback comes again with the same webhook-id inside the tolerance window, then it is recorded as a duplicate and not applied", async () => {
    const { key } = await stack.newAccount();
    const created = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { image: await testImage(), ...ratios } });
    const submitted = await waitForTask(stack.api.url, key, created.body.id, ["submitted", "processing"]);
    const row = await taskRow(stack.db, submitted.id);
    const path = `/webhooks/kling/${row.id}/${row.callbackToken}`;
    const report = (status: string) =>
      JSON.stringify({ task_id: row.providerTaskId, task_status: status, task_status_msg: "", created_at: Date.now(), updated_at: Date.now(), task_info: { external_task_id: row.id } });
    const send = (id: string, body: string) =>
      call(stack.api.url, "POST", path, { rawBody: body, headers: { "content-type": "application/json", ...standardWebhookHeaders(secret, id, Math.floor(Date.now() / 1000), body) } });

    const processing = report("processing");
    expect((await send("msg-a", processing)).status).toBe(200);
    expect((await send("msg-b", report("failed"))).status).toBe(200);
    expect((await taskRow(stack.db, row.id)).status).toBe("failed");
    // The same message again: without its id it would count as stale (processing after failed).
    expect((await send("msg-a", processing)).status).toBe(200);
    const rows = await callbackRows(stack.db, row.id);
    const replays = rows.filter((r) => r.webhookId === "msg-a");
    expect(replays.map((r) => r.outcome)).toEqual([expect.stringMatching(/^(applied|duplicate)$/), "duplicate"]);
    expect(replays[1]!.detail).toMatch(/replay of webhook-id msg-a/);
    expect(rows.find((r) => r.webhookId === "msg-b")?.outcome).toBe("applied");
    // A new id with the same body is a new message, judged by the task's state.
    expect((await send("msg-c", processing)).status).toBe(200);
    expect((await callbackRows(stack.db, row.id)).find((r) => r.webhookId === "msg-c")?.outcome).toBe("stale");
  });
});
