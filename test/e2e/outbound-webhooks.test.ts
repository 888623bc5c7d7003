import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ratios, testImage } from "../support/fault-kit.ts";
import { call, waitForTask } from "../support/http.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { startWebhookConsumer, type Received, type WebhookConsumer } from "../support/webhook-consumer.ts";

// Outbound callbacks end to end: real API, worker, simulator and a real receiving server; every
// signature is checked with the public Standard Webhooks library (npm `standardwebhooks`).

const headersOf = (r: Received) => Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, String(v)]));
const verifyWith = (secret: string, r: Received) => new Webhook(secret).verify(r.body, headersOf(r)) as Record<string, any>;

describe("outbound callbacks", () => {
  let stack: Stack;
  let consumer: WebhookConsumer;
  const since = new Date(Date.now() - 1_000).toISOString();

  beforeAll(async () => {
    consumer = await startWebhookConsumer();
    stack = await startStack({
      // A test device, not a deployment: the API and the workers must share ALLOWED_PRIVATE_HOSTS
      // (docs/callbacks.md), since the API sends what a provider callback triggers with its own list.
      // Here intake lets loopback callback URLs through (as a public name that later resolves to a
      // private address would pass) and the worker allows only 127.0.0.1, so that the worker's
      // delivery-time check is what refuses; the refused case asserts only the first event's send,
      // which is the worker's.
      apiEnv: { ALLOWED_PRIVATE_HOSTS: "127.0.0.1,localhost,[::1]" },
      workerEnv: { WEBHOOK_RETRY_SCHEDULE: "0,100ms,200ms", WEBHOOK_ATTEMPT_TIMEOUT_MS: "600", WEBHOOK_SWEEP_MS: "300" },
    });
  });
  afterAll(async () => {
    await stack?.stop();
    await consumer?.close();
  });

  const secretOf = async (key: string) => (await call(stack.api.url, "GET", "/v1/webhooks/secret", { key })).body;
  const deliveries = async (key: string, query: string) => (await call(stack.api.url, "GET", `/v1/webhooks/deliveries?${query}`, { key })).body;
  const deliveryOf = async (key: string, id: string) => (await call(stack.api.url, "GET", `/v1/webhooks/deliveries/${id}`, { key })).body;
  const waitForDelivery = async (key: string, taskId: string, status: string, timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = (await deliveries(key, `task_id=${taskId}`)).data.find((d: { status: string }) => d.status === status);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no ${status} delivery for task ${taskId}: ${JSON.stringify(await deliveries(key, `task_id=${taskId}`))}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const submitDropin = async (key: string, callbackUrl: string) => {
    const created = await call(stack.api.url, "POST", "/kling/v1/images/editing/expand", {
      key,
      body: { image: await testImage(), ...ratios, callback_url: callbackUrl },
    });
    expect(created.status).toBe(200);
    return created.body.data.task_id as string;
  };
  const submitNative = async (key: string, callbackUrl: string, image?: string) => {
    const created = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { image: image ?? (await testImage()), ...ratios, callback_url: callbackUrl } });
    expect(created.status).toBe(202);
    return created.body.id as string;
  };

  it("when a drop-in task runs, then its callback_url gets submitted, processing and succeed in order, signed, as the drop-in GET shows the task", async () => {
    const { key } = await stack.newAccount();
    const { secret } = await secretOf(key);
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    const taskId = await submitDropin(key, `${consumer.url}/dropin`);
    await waitForTask(stack.api.url, key, taskId, ["succeeded"]);
    // Each event's first arrival (a late-answered attempt is sent again under its webhook-id: at
    // least once, beside a loaded machine's 600 ms attempt timeout), one webhook-id per event.
    const arrived = await consumer.waitForEvents("/dropin", 3);
    const bodies = arrived.map((r) => verifyWith(secret, r));
    expect(bodies.map((b) => b.task_status)).toEqual(["submitted", "processing", "succeed"]);
    expect(bodies.every((b) => b.task_id === taskId)).toBe(true);
    // The log pages one delivery at a time, newest first, each once, and the last page says so.
    const paged: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { data: { id: string }[]; next_cursor: string | null } = await deliveries(key, `task_id=${taskId}&limit=1${cursor ? `&cursor=${cursor}` : ""}`);
      paged.push(...page.data.map((d) => d.id));
      cursor = page.next_cursor;
    } while (cursor);
    expect(paged).toEqual(arrived.map((r) => String(r.headers["webhook-id"])).reverse());
    // The last one is the provider's task object as our drop-in GET shows it, with our image links.
    const shown = (await call(stack.api.url, "GET", `/kling/v1/images/editing/expand/${taskId}`, { key })).body.data;
    const last = bodies[2]!;
    expect(Object.keys(last).sort()).toEqual(Object.keys(shown).sort());
    expect({ ...last, task_result: undefined }).toEqual({ ...shown, task_result: undefined });
    const images = last.task_result.images as { index: number; url: string }[];
    expect(images.map((i) => new URL(i.url).pathname)).toEqual(shown.task_result.images.map((i: { url: string }) => new URL(i.url).pathname));
    expect(new URL(images[0]!.url).origin).toBe(stack.api.url);
    // The link works without a key, as the provider's do.
    expect((await fetch(images[0]!.url)).status).toBe(200);
  });

  it("when a native task succeeds or fails, then task.succeeded or task.failed arrives with the task as GET /v1/tasks/{id} shows it", async () => {
    const { key } = await stack.newAccount();
    const { secret } = await secretOf(key);
    const okId = await submitNative(key, `${consumer.url}/native`);
    consumer.script("/missing.png", [{ status: 404 }]);
    const failedId = await submitNative(key, `${consumer.url}/native`, `${consumer.url}/missing.png`);
    await waitForTask(stack.api.url, key, okId, ["succeeded"]);
    await waitForTask(stack.api.url, key, failedId, ["failed"]);
    const arrived = await consumer.waitForEvents("/native", 2);
    const events = arrived.map((r) => verifyWith(secret, r));
    const succeeded = events.find((e) => e.data.id === okId)!;
    const failed = events.find((e) => e.data.id === failedId)!;
    expect(succeeded.type).toBe("task.succeeded");
    expect(failed.type).toBe("task.failed");
    const shown = (await call(stack.api.url, "GET", `/v1/tasks/${okId}`, { key })).body;
    expect({ ...succeeded.data, images: undefined }).toEqual({ ...shown, images: undefined });
    expect(succeeded.data.images.map((i: { sha256: string }) => i.sha256)).toEqual(shown.images.map((i: { sha256: string }) => i.sha256));
    expect(failed.data).toMatchObject({ status: "failed", failure: { class: expect.any(String) } });
    // Only end states are sent for native tasks.
    expect(arrived).toHaveLength(2);
  });

  it("when the consumer answers 500 and then times out, then the event is retried with the same webhook-id until it succeeds, and later events wait for it", async () => {
    const { key } = await stack.newAccount();
    const { secret } = await secretOf(key);
    consumer.script("/flaky", [{ status: 500 }, "hang"]);
    const taskId = await submitDropin(key, `${consumer.url}/flaky`);
    await waitForTask(stack.api.url, key, taskId, ["succeeded"]);
    const arrived = await consumer.waitFor("/flaky", 5);
    const statuses = arrived.map((r) => verifyWith(secret, r).task_status);
    expect(statuses).toEqual(["submitted", "submitted", "submitted", "processing", "succeed"]);
    expect(new Set(arrived.slice(0, 3).map((r) => r.headers["webhook-id"])).size).toBe(1);
    const first = await deliveryOf(key, String(arrived[0]!.headers["webhook-id"]));
    expect(first).toMatchObject({ status: "succeeded", attempts: 3, event_type: "kling.submitted", task_id: taskId });
    expect(first.attempt_log.map((a: { status_code: number | null }) => a.status_code)).toEqual([500, null, 200]);
    expect(first.attempt_log[1].error).toMatch(/timed out/);
    expect(first.attempt_log[0].response_body).toBe("answer 500");
  });

  it("when the consumer answers 410, then the URL is disabled for the account, its next events are not sent, and a redelivery sends again", async () => {
    const { key } = await stack.newAccount();
    consumer.script("/gone", [{ status: 410 }]);
    const firstTask = await submitNative(key, `${consumer.url}/gone`);
    const disabled = await waitForDelivery(key, firstTask, "disabled");
    expect(disabled).toMatchObject({ attempts: 1, last_attempt: { status_code: 410 } });
    const secondTask = await submitNative(key, `${consumer.url}/gone`);
    await waitForTask(stack.api.url, key, secondTask, ["succeeded"]);
    const second = await waitForDelivery(key, secondTask, "disabled");
    expect(second.attempts).toBe(0);
    expect(consumer.received.filter((r) => r.path === "/gone")).toHaveLength(1);

    const again = await call(stack.api.url, "POST", `/v1/webhooks/deliveries/${disabled.id}/redeliver`, { key });
    expect(again.status).toBe(202);
    const redelivered = await waitForDelivery(key, firstTask, "succeeded");
    expect(redelivered.id).toBe(disabled.id);
    const arrived = await consumer.waitFor("/gone", 2);
    expect(arrived.map((r) => r.headers["webhook-id"])).toEqual([disabled.id, disabled.id]);
  });

  it("when the consumer redirects, then the redirect is not followed and the delivery fails; redelivering everything failed since a time sends it again", async () => {
    const { key } = await stack.newAccount();
    consumer.script("/moved", [
      { status: 302, location: `${consumer.url}/elsewhere` },
      { status: 307, location: `${consumer.url}/elsewhere` },
      { status: 308, location: `${consumer.url}/elsewhere` },
    ]);
    const taskId = await submitNative(key, `${consumer.url}/moved`);
    const failed = await waitForDelivery(key, taskId, "failed");
    expect(failed).toMatchObject({ attempts: 3, last_attempt: { status_code: 308, error: expect.stringMatching(/redirects are not followed/) } });
    expect(consumer.received.filter((r) => r.path === "/elsewhere")).toEqual([]);

    const bulk = await call(stack.api.url, "POST", "/v1/webhooks/deliveries/redeliver", { key, body: { status: "failed", since } });
    expect(bulk.status).toBe(202);
    expect(bulk.body).toEqual({ redelivered: 1, ids: [failed.id] });
    await waitForDelivery(key, taskId, "succeeded");
    expect((await consumer.waitFor("/moved", 4)).at(-1)!.headers["webhook-id"]).toBe(failed.id);
    // Nothing failed is left in that window, so a second bulk redelivery sends nothing.
    expect((await call(stack.api.url, "POST", "/v1/webhooks/deliveries/redeliver", { key, body: { since } })).body.redelivered).toBe(0);
  });

  it("when the callback_url is a name resolving to loopback or a loopback literal the worker does not allow, then nothing is sent and the delivery fails at once", async () => {
    const { key } = await stack.newAccount();
    const byName = await submitNative(key, `http://localhost:${consumer.port}/by-name`);
    const byLiteral = await submitNative(key, `http://[::1]:${consumer.port}/by-literal`);
    for (const taskId of [byName, byLiteral]) {
      const failed = await waitForDelivery(key, taskId, "failed");
      expect(failed).toMatchObject({ attempts: 1, last_attempt: { status_code: null, error: expect.stringMatching(/public address|not public/) } });
      // The reason names no resolved address.
      expect(failed.last_attempt.error).not.toMatch(/127\.0\.0\.1/);
    }
    expect(consumer.received.filter((r) => r.path === "/by-name" || r.path === "/by-literal")).toEqual([]);
    // Intake refuses what is private already (the API's own allow-list does not name 10.0.0.1).
    const refused = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { image: await testImage(), ...ratios, callback_url: "http://10.0.0.1/x" } });
    expect(refused.status).toBe(400);
  });

  it("when the secret is rotated, then during the grace period each callback carries a signature with the new and with the old secret", async () => {
    const { key } = await stack.newAccount();
    const before = await secretOf(key);
    const rotated = await call(stack.api.url, "POST", "/v1/webhooks/secret/rotate", { key });
    expect(rotated.status).toBe(200);
    expect(rotated.body.secret).not.toBe(before.secret);
    expect(rotated.body.previous).toMatchObject({ secret: before.secret, valid_until: expect.any(String) });
    expect(await secretOf(key)).toEqual(rotated.body);
    const taskId = await submitNative(key, `${consumer.url}/rotated`);
    await waitForTask(stack.api.url, key, taskId, ["succeeded"]);
    const [arrived] = await consumer.waitFor("/rotated", 1);
    expect(String(arrived!.headers["webhook-signature"]).split(" ")).toHaveLength(2);
    expect(verifyWith(rotated.body.secret, arrived!).data.id).toBe(taskId);
    expect(verifyWith(before.secret, arrived!).data.id).toBe(taskId);
    const stranger = (await secretOf((await stack.newAccount()).key)).secret;
    expect(() => verifyWith(stranger, arrived!)).toThrow();
  });

  it("when another account or bad input reaches the webhook routes, then it gets 4xx and sees nothing of others", async () => {
    const owner = await stack.newAccount();
    const other = await stack.newAccount();
    const taskId = await submitNative(owner.key, `${consumer.url}/owned`);
    const delivery = await waitForDelivery(owner.key, taskId, "succeeded");
    expect((await deliveries(other.key, `task_id=${taskId}`)).data).toEqual([]);
    expect((await call(stack.api.url, "GET", `/v1/webhooks/deliveries/${delivery.id}`, { key: other.key })).status).toBe(404);
    expect((await call(stack.api.url, "POST", `/v1/webhooks/deliveries/${delivery.id}/redeliver`, { key: other.key })).status).toBe(404);
    expect((await secretOf(other.key)).secret).not.toBe((await secretOf(owner.key)).secret);

    const u = stack.api.url;
    const k = owner.key;
    for (const query of ["status=bogus", "since=yesterday", "limit=0", "limit=201", "cursor=abc", "task_id=not-a-uuid", "until=2026-13-01T00:00:00Z"]) {
      const answer = await call(u, "GET", `/v1/webhooks/deliveries?${query}`, { key: k });
      expect([query, answer.status]).toEqual([query, 400]);
    }
    const bodies: unknown[] = [{}, { since: 5 }, { since, status: "succeeded" }, { since, extra: 1 }, [], "x"];
    for (const body of bodies) {
      const answer = await call(u, "POST", "/v1/webhooks/deliveries/redeliver", { key: k, body });
      expect([body, answer.status]).toEqual([body, 400]);
    }
    expect((await call(u, "POST", "/v1/webhooks/deliveries/redeliver", { key: k, rawBody: "{not json", headers: { "content-type": "application/json" } })).status).toBe(400);
    expect((await call(u, "GET", "/v1/webhooks/deliveries/not-a-uuid", { key: k })).status).toBe(404);
    expect((await call(u, "POST", "/v1/webhooks/deliveries/%E0%A4%A/redeliver", { key: k })).status).toBe(400);
    expect((await call(u, "GET", "/v1/webhooks/secret")).status).toBe(401);
    expect((await call(u, "POST", "/v1/webhooks/secret/rotate", { key: "wrong-key-0123456789" })).status).toBe(401);
    expect((await call(u, "DELETE", "/v1/webhooks/secret", { key: k })).status).toBe(405);
    expect((await call(u, "GET", "/v1/webhooks/secret/rotate", { key: k })).status).toBe(405);
    // Paging: newest first, the cursor goes on.
    const first = await deliveries(k, "limit=1");
    expect(first.data).toHaveLength(1);
    expect(first.next_cursor).toBeNull();
  });
});
