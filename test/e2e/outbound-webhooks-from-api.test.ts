import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ratios, testImage } from "../support/fault-kit.ts";
import { call } from "../support/http.ts";
import { taskRow } from "../support/rows.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { startWebhookConsumer, type WebhookConsumer } from "../support/webhook-consumer.ts";

// The outbound callback a provider callback causes is sent by the API that received it, right after
// its commit (WEBHOOK_SEND_FROM_API): no worker is woken for it, so none runs here until the test
// starts one. Its retries still go to the workers' queue, and a task's later event still waits for
// the earlier one.

// No poll of these tasks (the simulator never heard of them): only the test's callbacks move them.
const schedule = { WEBHOOK_RETRY_SCHEDULE: "0,300ms,600ms", WEBHOOK_ATTEMPT_TIMEOUT_MS: "2000", CALLBACK_GRACE_MS: "600000", POLL_AT_EXPECTED_END: "false" };

describe("outbound callbacks sent from the API", () => {
  let stack: Stack;
  let consumer: WebhookConsumer;
  let listener: pg.Client;
  const notified: string[] = [];

  beforeAll(async () => {
    consumer = await startWebhookConsumer();
    stack = await startStack({ withWorker: false, apiEnv: schedule, workerEnv: schedule });
    listener = new pg.Client({ connectionString: stack.env.databaseUrl });
    await listener.connect();
    listener.on("notification", (message) => notified.push(message.payload ?? ""));
    await listener.query("listen webhook_delivery");
  });
  afterAll(async () => {
    await listener?.end();
    await stack?.stop();
    await consumer?.close();
  });

  // A drop-in task with a callback_url, and the provider's callbacks for it (no worker submits it:
  // the first callback takes it from `queued`).
  const dropinTask = async (key: string, path: string) => {
    const created = await call(stack.api.url, "POST", "/kling/v1/images/editing/expand", {
      key,
      body: { image: await testImage(), ...ratios, callback_url: `${consumer.url}${path}` },
    });
    expect(created.status).toBe(200);
    const row = await taskRow(stack.db, created.body.data.task_id as string);
    let at = Date.now();
    const report = async (status: string) => {
      const answer = await call(stack.api.url, "POST", `/webhooks/kling/${row.id}/${row.callbackToken}`, {
        body: { task_id: `p-${row.id}`, task_status: status, task_status_msg: "", task_info: { external_task_id: row.id }, created_at: at, updated_at: ++at },
      });
      expect(answer.body).toMatchObject({ outcome: "applied" });
    };
    return { id: row.id, report };
  };
  const deliveriesOf = async (key: string, taskId: string) =>
    ((await call(stack.api.url, "GET", `/v1/webhooks/deliveries?task_id=${taskId}`, { key })).body.data as { id: string; event_type: string; status: string; attempts: number }[]).reverse();
  const waitForDeliveries = async (key: string, taskId: string, done: (ds: Awaited<ReturnType<typeof deliveriesOf>>) => boolean) => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const found = await deliveriesOf(key, taskId);
      if (done(found)) return found;
      if (Date.now() > deadline) throw new Error(`deliveries of ${taskId} not as awaited: ${JSON.stringify(found)}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  };

  it("when provider callbacks move a drop-in task, then the API sends each outbound callback itself, in order, without a NOTIFY", async () => {
    const { key } = await stack.newAccount();
    const task = await dropinTask(key, "/direct");
    await task.report("submitted");
    const [first] = await consumer.waitFor("/direct", 1);
    expect(JSON.parse(first!.body)).toMatchObject({ task_id: task.id, task_status: "submitted" });
    await task.report("processing");
    const arrived = await consumer.waitFor("/direct", 2);
    expect(arrived.map((r) => (JSON.parse(r.body) as { task_status: string }).task_status)).toEqual(["submitted", "processing"]);
    const deliveries = await waitForDeliveries(key, task.id, (ds) => ds.length === 2 && ds.every((d) => d.status === "succeeded"));
    expect(deliveries.map((d) => [d.event_type, d.attempts])).toEqual([
      ["kling.submitted", 1],
      ["kling.processing", 1],
    ]);
    expect(arrived.map((r) => r.headers["webhook-id"])).toEqual(deliveries.map((d) => d.id));
    // A redelivery still wakes the workers by NOTIFY: once it is heard, any NOTIFY of the two
    // events (committed before it) would have been heard too.
    expect((await call(stack.api.url, "POST", `/v1/webhooks/deliveries/${deliveries[0]!.id}/redeliver`, { key })).status).toBe(202);
    const deadline = Date.now() + 10_000;
    while (!notified.includes(`${deliveries[0]!.id}_0`) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
    expect(notified).toEqual([`${deliveries[0]!.id}_0`]);
  });

  it("when the consumer fails the API's attempt, then its retry goes to the workers' queue, and the task's next event waits for it", async () => {
    const { key } = await stack.newAccount();
    consumer.script("/flaky", [{ status: 500 }]);
    const task = await dropinTask(key, "/flaky");
    await task.report("submitted");
    await waitForDeliveries(key, task.id, (ds) => ds.length === 1 && ds[0]!.attempts === 1 && ds[0]!.status === "pending");
    await task.report("processing");
    // The API does not send `processing` ahead of the failed `submitted`: a worker, started only now,
    // retries `submitted` from the queue and then sends `processing`, the same webhook-id on the retry.
    await stack.startWorker();
    // The first three (a `failed` may come after them: see below).
    const arrived = (await consumer.waitFor("/flaky", 3)).slice(0, 3);
    expect(arrived.map((r) => (JSON.parse(r.body) as { task_status: string }).task_status)).toEqual(["submitted", "submitted", "processing"]);
    expect(arrived[0]!.headers["webhook-id"]).toBe(arrived[1]!.headers["webhook-id"]);
    // The worker's first start rebuilds Redis' state from Postgres and polls the in-flight task,
    // which the simulator never heard of: a `kling.failed` may follow, after these two (it waits for
    // them); it is not what this test is about.
    const ours = (ds: Awaited<ReturnType<typeof deliveriesOf>>) => ds.filter((d) => d.event_type !== "kling.failed");
    const deliveries = ours(await waitForDeliveries(key, task.id, (ds) => ours(ds).length === 2 && ours(ds).every((d) => d.status === "succeeded")));
    expect(deliveries.map((d) => [d.event_type, d.attempts])).toEqual([
      ["kling.submitted", 2],
      ["kling.processing", 1],
    ]);
  });
});
