import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { signStandardWebhook, standardWebhookHeaders } from "../../apps/domain/webhooks/standard-webhooks.ts";
import { call, waitForTask } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { ratios } from "../support/fault-kit.ts";
import { taskRow, callbackRows } from "../support/rows.ts";

// Source 400x400 with 0.2 on every side: the provider's result must be 560x560.
const secretOf = (seed: string) => `whsec_${Buffer.from(`${seed}-${randomUUID()}`).toString("base64")}`;

const inbox = (stack: Stack, taskId: string) =>
  callbackRows(stack.db, taskId);

// The receiver settles each inbox row just after it answers, and the provider's last callback can
// still be in flight when the task is seen `succeeded`: wait until every row has its outcome.
const settledInbox = async (stack: Stack, taskId: string, atLeast: number) =>
  vi.waitFor(
    async () => {
      const rows = await inbox(stack, taskId);
      expect(rows.length).toBeGreaterThanOrEqual(atLeast);
      expect(rows.filter((r) => r.outcome === null)).toEqual([]);
      return rows;
    },
    { timeout: 10_000, interval: 50 },
  );

const eventsOf = async (stack: Stack, key: string, taskId: string): Promise<{ to: string; source: string }[]> =>
  (await call(stack.api.url, "GET", `/v1/tasks/${taskId}/events`, { key })).body.data;

describe("signed callbacks: the simulator and the API share a secret", () => {
  const secret = secretOf("shared");
  let stack: Stack;
  let image: string;

  beforeAll(async () => {
    stack = await startStack({ simulatorEnv: { SIM_WEBHOOK_SECRET: secret }, apiEnv: { PROVIDER_WEBHOOK_SECRET: secret } });
    image = (await makeImage(400, 400)).toString("base64");
  });
  afterAll(() => stack?.stop());

  it("when the provider signs its callbacks, then they are verified and applied and the task succeeds", async () => {
    const { key } = await stack.newAccount();
    const created = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { image, ...ratios } });
    expect(created.status).toBe(202);
    const done = await waitForTask(stack.api.url, key, created.body.id, ["succeeded", "failed"]);
    expect(done).toMatchObject({ status: "succeeded", failure: null });

    // submitted, processing and succeed: one callback each.
    const rows = await settledInbox(stack, done.id, 3);
    expect(rows.map((r) => r.outcome).every((o) => o === "applied" || o === "duplicate")).toBe(true);
    expect(rows.some((r) => r.outcome === "applied")).toBe(true);
    expect((await eventsOf(stack, key, done.id)).some((e) => e.source === "callback")).toBe(true);
  });

  it("when a callback with the right token is badly signed or unsigned, then it is answered 401, not stored, and changes nothing", async () => {
    // A long run keeps the task at the provider, so that an accepted `failed` callback would show.
    await call(stack.simulator.url, "PATCH", "/_sim/config", { body: { run_ms: 60_000 } });
    const { key } = await stack.newAccount();
    const created = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { image, ...ratios } });
    const task = await waitForTask(stack.api.url, key, created.body.id, ["submitted", "processing"]);
    const row = await taskRow(stack.db, task.id);
    const before = await settledInbox(stack, row.id, 1);
    const eventsBefore = await eventsOf(stack, key, row.id);

    const path = `/webhooks/kling/${row.id}/${row.callbackToken}`;
    const body = JSON.stringify({
      task_id: row.providerTaskId,
      task_status: "failed",
      task_status_msg: "forged",
      task_info: { external_task_id: row.id },
      created_at: Date.now(),
      updated_at: Date.now(),
    });
    const now = Math.floor(Date.now() / 1000);
    const json = { "content-type": "application/json" };
    const wrongKey = standardWebhookHeaders(secretOf("attacker"), "msg_forged", now, body);
    // Signed by us, but over other bytes than those sent.
    const tampered = standardWebhookHeaders(secret, "msg_tampered", now, body.replace("forged", "genuine"));
    const expired = standardWebhookHeaders(secret, "msg_old", now - 301, body);

    const answers = [
      await call(stack.api.url, "POST", path, { rawBody: body, headers: { ...json, ...wrongKey } }),
      await call(stack.api.url, "POST", path, { rawBody: body, headers: { ...json, ...tampered } }),
      await call(stack.api.url, "POST", path, { rawBody: body, headers: json }),
      await call(stack.api.url, "POST", path, { rawBody: body, headers: { ...json, ...expired } }),
    ];
    expect(answers.map((a) => a.status)).toEqual([401, 401, 401, 401]);
    expect(answers.map((a) => [a.body.outcome, a.body.detail])).toEqual([
      ["unauthenticated", "bad webhook signature: no_matching_signature"],
      ["unauthenticated", "bad webhook signature: no_matching_signature"],
      ["unauthenticated", "bad webhook signature: missing_headers"],
      ["unauthenticated", "bad webhook signature: timestamp_too_old"],
    ]);
    // Nothing unauthenticated is stored.
    expect(await inbox(stack, row.id)).toEqual(before);
    const after = (await call(stack.api.url, "GET", `/v1/tasks/${row.id}`, { key })).body;
    expect(after.status).toBe(task.status);
    expect(await eventsOf(stack, key, row.id)).toEqual(eventsBefore);

    // The same bytes, correctly signed, do go through: the refusals above were the signature's.
    const genuine = await call(stack.api.url, "POST", path, {
      rawBody: body,
      headers: { ...json, ...standardWebhookHeaders(secret, "msg_genuine", now, body) },
    });
    expect(genuine.status).toBe(200);
    expect(genuine.body.outcome).toBe("applied");
    expect((await call(stack.api.url, "GET", `/v1/tasks/${row.id}`, { key })).body.status).toBe("failed");
  });

  it("when a badly signed callback names an unknown task, then it is refused as unsigned rather than answered 404", async () => {
    const now = Math.floor(Date.now() / 1000);
    const unknown = await call(stack.api.url, "POST", `/webhooks/kling/${randomUUID()}/x`, {
      rawBody: "{}",
      headers: { "webhook-id": "msg_x", "webhook-timestamp": String(now), "webhook-signature": signStandardWebhook(secretOf("other"), "msg_x", now, "{}") },
    });
    expect(unknown.status).toBe(401);
    expect(unknown.body).toMatchObject({ outcome: "unauthenticated", detail: "bad webhook signature: no_matching_signature" });
  });
});

describe("signed callbacks: the provider signs with a secret we do not have", () => {
  let stack: Stack;

  beforeAll(async () => {
    const quickPolling = { CALLBACK_GRACE_MS: "300" };
    stack = await startStack({
      simulatorEnv: { SIM_WEBHOOK_SECRET: secretOf("provider") },
      apiEnv: { ...quickPolling, PROVIDER_WEBHOOK_SECRET: secretOf("ours") },
      workerEnv: quickPolling,
    });
  });
  afterAll(() => stack?.stop());

  it("when every callback fails verification, then none is stored and polling still brings the task to `succeeded`", async () => {
    const { key } = await stack.newAccount();
    const image = (await makeImage(400, 400)).toString("base64");
    const created = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { image, ...ratios } });
    const done = await waitForTask(stack.api.url, key, created.body.id, ["succeeded", "failed"]);
    expect(done).toMatchObject({ status: "succeeded", failure: null });
    expect(done.images[0]).toMatchObject({ width: 560, height: 560 });

    // The simulator has sent its callbacks (all refused) by the time polling found the end.
    const sent = (await call(stack.simulator.url, "GET", "/_sim/stats")).body;
    expect(sent.callbacks_sent).toBeGreaterThan(0);
    expect(await inbox(stack, done.id)).toEqual([]);
    const events = await eventsOf(stack, key, done.id);
    expect(events.some((e) => e.source === "poll")).toBe(true);
    expect(events.some((e) => e.source === "callback")).toBe(false);
  });
});
