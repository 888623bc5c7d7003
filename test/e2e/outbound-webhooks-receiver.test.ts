import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnService, type ChildService } from "../support/child-processes.ts";
import { ratios, testImage } from "../support/fault-kit.ts";
import { freePort } from "../support/free-port.ts";
import { call, waitForTask } from "../support/http.ts";
import { taskRow } from "../support/rows.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { startWebhookConsumer, type Received, type WebhookConsumer } from "../support/webhook-consumer.ts";

// The outbound callback a provider callback causes is sent by the API that received it, right after
// the one commit that moved the task and wrote the delivery leased to it (WEBHOOK_SEND_FROM_RECEIVER).
// The workers run only when a test starts them, so what arrives while none runs came from the API.

const headersOf = (r: Received) => Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, String(v)]));
const statusOf = (secret: string, r: Received) => (new Webhook(secret).verify(r.body, headersOf(r)) as { task_status: string }).task_status;

describe("outbound callbacks sent by the receiver of the provider's callback", () => {
  let stack: Stack;
  let consumer: WebhookConsumer;
  const children: ChildService[] = [];
  // Short attempts and leases, so that a failed or abandoned attempt is taken over within seconds.
  const sendEnv = { WEBHOOK_ATTEMPT_TIMEOUT_MS: "1000", WEBHOOK_RETRY_SCHEDULE: "0,100ms,200ms" };
  const workerEnv = { ...sendEnv, JOB_LOCK_MS: "1000", WEBHOOK_SWEEP_MS: "200" };

  beforeAll(async () => {
    consumer = await startWebhookConsumer();
    // The provider's clock is the test's: a task stays `submitted` there, and only the callbacks
    // this test sends move it.
    stack = await startStack({ withWorker: false, simulatorEnv: { SIM_CLOCK: "manual" }, apiEnv: sendEnv, workerEnv });
  });
  afterAll(async () => {
    await Promise.all(children.map((child) => child.kill("SIGKILL")));
    await stack?.stop();
    await consumer?.close();
  });

  const deliveryRows = (taskId: string) => stack.db.selectFrom("webhookDelivery").selectAll().where("taskId", "=", taskId).orderBy("seq").execute();
  const waitForDeliveries = async (taskId: string, done: (rows: Awaited<ReturnType<typeof deliveryRows>>) => boolean) => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const rows = await deliveryRows(taskId);
      if (done(rows)) return rows;
      if (Date.now() > deadline) throw new Error(`deliveries of ${taskId} not as awaited: ${JSON.stringify(rows)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  // A drop-in task the provider accepted, its `kling.submitted` delivered (by a worker); the worker
  // is stopped again unless `keepWorker`. Each test stops the workers it started.
  const submittedTask = async (key: string, path: string, options: { keepWorker?: boolean } = {}) => {
    const worker = await stack.startWorker();
    const created = await call(stack.api.url, "POST", "/kling/v1/images/editing/expand", {
      key,
      body: { image: await testImage(), ...ratios, callback_url: `${consumer.url}${path}` },
    });
    expect(created.status).toBe(200);
    const taskId = created.body.data.task_id as string;
    await waitForTask(stack.api.url, key, taskId, ["submitted"]);
    if (!options.keepWorker) {
      await waitForDeliveries(taskId, (rows) => rows.length === 1 && rows[0]!.status === "succeeded");
      await worker.stop();
    }
    return { task: await taskRow(stack.db, taskId), worker };
  };
  const providerCallback = async (apiUrl: string, task: Awaited<ReturnType<typeof taskRow>>, status: string) => {
    const body = JSON.stringify({
      task_id: task.providerTaskId,
      task_status: status,
      task_status_msg: "",
      created_at: Date.now(),
      updated_at: Date.now(),
      task_info: { external_task_id: task.id },
    });
    return call(apiUrl, "POST", `/webhooks/kling/${task.id}/${task.callbackToken}`, { rawBody: body, headers: { "content-type": "application/json" } });
  };
  // The delivery as the move wrote it: its first attempt taken (leased to the API) by that same
  // statement; a claim after the commit would have moved updated_at past created_at.
  const expectWrittenLeased = (row: Awaited<ReturnType<typeof deliveryRows>>[number]) => {
    expect(row).toMatchObject({ eventType: "kling.processing", status: "pending", attempts: 1 });
    expect(row.leaseUntil).not.toBeNull();
    expect(row.updatedAt.getTime()).toBe(row.createdAt.getTime());
  };

  it("when the provider's callback moves a task and no worker runs, then the API sends the outbound callback itself, written leased by the move (one commit); its failed attempt is retried by a worker with the same webhook-id", async () => {
    const { key } = await stack.newAccount();
    const secret = (await call(stack.api.url, "GET", "/v1/webhooks/secret", { key })).body.secret as string;
    consumer.script("/direct", [{ status: 200 }, "hang"]);
    const { task } = await submittedTask(key, "/direct");

    expect((await providerCallback(stack.api.url, task, "processing")).status).toBe(200);
    const arrived = await consumer.waitFor("/direct", 2);
    expect(arrived.map((r) => statusOf(secret, r))).toEqual(["submitted", "processing"]);
    const [, processing] = await deliveryRows(task.id);
    expect(processing!.id).toBe(arrived[1]!.headers["webhook-id"]);
    expectWrittenLeased(processing!);

    // The consumer never answers: the API's attempt times out, and its retry is the workers'.
    await waitForDeliveries(task.id, (rows) => rows[1]?.leaseUntil === null);
    const worker = await stack.startWorker();
    const again = await consumer.waitFor("/direct", 3);
    expect(again[2]!.headers["webhook-id"]).toBe(arrived[1]!.headers["webhook-id"]);
    expect(statusOf(secret, again[2]!)).toBe("processing");
    const rows = await waitForDeliveries(task.id, (r) => r[1]?.status === "succeeded");
    expect(rows[1]).toMatchObject({ attempts: 2, lastStatusCode: 200 });
    await worker.stop();
  });

  it("when an earlier event of the task is still undelivered, then the API leaves the new one to the workers, and the consumer gets them in order", async () => {
    const { key } = await stack.newAccount();
    const secret = (await call(stack.api.url, "GET", "/v1/webhooks/secret", { key })).body.secret as string;
    // `kling.submitted` is held by the consumer until the worker's attempt times out, then retried.
    consumer.script("/ordered", ["hang"]);
    const { task, worker } = await submittedTask(key, "/ordered", { keepWorker: true });
    await consumer.waitFor("/ordered", 1);

    expect((await providerCallback(stack.api.url, task, "processing")).status).toBe(200);
    const arrived = await consumer.waitFor("/ordered", 3);
    expect(arrived.map((r) => statusOf(secret, r))).toEqual(["submitted", "submitted", "processing"]);
    const rows = await waitForDeliveries(task.id, (r) => r.length === 2 && r.every((d) => d.status === "succeeded"));
    expect(rows.map((r) => r.attempts)).toEqual([2, 1]);
    await worker.stop();
  });

  it("when the API is SIGKILLed after its commit while it sends the outbound callback, then a worker sends it once the lease lapses, with the same webhook-id", async () => {
    const port = await freePort();
    const api = spawnService("api", { ...stack.workerEnv(sendEnv), PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: "info" });
    children.push(api);
    await api.ready;
    const { key } = await stack.newAccount();
    const secret = (await call(stack.api.url, "GET", "/v1/webhooks/secret", { key })).body.secret as string;
    consumer.script("/crash", [{ status: 200 }, "hang"]);
    const { task } = await submittedTask(key, "/crash");
    const killed = new Promise<void>((resolve) =>
      consumer.onRequest((request) => {
        if (request.path === "/crash" && statusOf(secret, request) === "processing") void api.kill("SIGKILL").then(() => resolve());
      }),
    );

    expect((await providerCallback(`http://127.0.0.1:${port}`, task, "processing")).status).toBe(200);
    await killed;
    expect(api.alive()).toBe(false);
    const [, processing] = await deliveryRows(task.id);
    expectWrittenLeased(processing!);

    await stack.startWorker();
    const arrived = await consumer.waitFor("/crash", 3, 20_000);
    expect(arrived[2]!.headers["webhook-id"]).toBe(arrived[1]!.headers["webhook-id"]);
    expect(statusOf(secret, arrived[2]!)).toBe("processing");
    const rows = await waitForDeliveries(task.id, (r) => r[1]?.status === "succeeded");
    expect(rows[1]).toMatchObject({ attempts: 2, lastStatusCode: 200 });
  });
});
