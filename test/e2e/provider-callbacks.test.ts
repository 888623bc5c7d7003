import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFileServer } from "../support/file-server.ts";
import { call, waitForTask } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { ratios } from "../support/fault-kit.ts";
import { taskRow, callbackRows, countCallbacksOf } from "../support/rows.ts";

// Source 400x400 with 0.2 on every side: the provider's result must be 560x560.

describe("callbacks: duplicate, out of order, forged", () => {
  let stack: Stack;
  let results: Awaited<ReturnType<typeof startFileServer>>;
  let image: string;

  beforeAll(async () => {
    // Simulated tasks run for a minute and the simulator's own callbacks are dropped, so only the
    // callbacks this test sends reach the receiver.
    // Each test holds a provider slot for that minute: room for all of them.
    const capacity = "20";
    stack = await startStack({
      simulatorEnv: { SIM_RUN_MS: "60000", SIM_CALLBACK_LOSS: "1", SIM_CAPACITY: capacity },
      apiEnv: { PROVIDER_CAPACITY: capacity },
      workerEnv: { PROVIDER_CAPACITY: capacity },
    });
    const result = await makeImage(560, 560);
    results = await startFileServer({
      "/result-0.png": { body: result },
      // A whole header, half the data: what a download cut off in transit leaves.
      "/truncated.png": { body: result.subarray(0, Math.floor(result.length / 2)) },
    });
    image = (await makeImage(400, 400)).toString("base64");
  });
  afterAll(async () => {
    await results?.stop();
    await stack?.stop();
  });

  const submittedTask = async () => {
    const account = await stack.newAccount();
    const created = await call(stack.api.url, "POST", "/v1/tasks", { key: account.key, body: { image, ...ratios } });
    expect(created.status).toBe(202);
    const task = await waitForTask(stack.api.url, account.key, created.body.id, ["submitted"]);
    const row = await taskRow(stack.db, task.id);
    let updatedAt = Date.now();
    const send = (status: string, extra: Record<string, unknown> = {}, token = row.callbackToken) =>
      call(stack.api.url, "POST", `/webhooks/kling/${row.id}/${token}`, {
        body: {
          task_id: row.providerTaskId,
          task_status: status,
          task_status_msg: "",
          task_info: { external_task_id: row.id },
          created_at: updatedAt,
          updated_at: ++updatedAt,
          ...extra,
        },
      });
    return { ...account, row, send };
  };

  const outcomes = async (taskId: string) =>
    (await callbackRows(stack.db, taskId)).map((c) => c.outcome);

  it("when callbacks repeat and arrive out of order, then the task only moves forward and each one is kept with its outcome", async () => {
    const { key, row, send } = await submittedTask();
    expect((await send("processing")).body.outcome).toBe("applied");
    expect((await send("processing")).body.outcome).toBe("duplicate");
    expect((await send("submitted")).body.outcome).toBe("stale");
    const success = await send("succeed", {
      final_unit_deduction: "1",
      task_result: { images: [{ index: 0, url: results.url("/result-0.png") }] },
    });
    expect(success.status).toBe(200);
    expect(success.body.outcome).toBe("applied");
    const done = await waitForTask(stack.api.url, key, row.id, ["succeeded", "failed"]);
    expect(done.status).toBe("succeeded");
    expect(done.images[0]).toMatchObject({ width: 560, height: 560 });
    expect((await send("processing")).body.outcome).toBe("stale");
    expect((await send("succeed", { task_result: { images: [] } })).body.outcome).toBe("stale");

    expect((await call(stack.api.url, "GET", `/v1/tasks/${row.id}`, { key })).body.status).toBe("succeeded");
    expect(await outcomes(row.id)).toEqual(["applied", "duplicate", "stale", "applied", "stale", "stale"]);
    // An applied callback's row is written by its move's statement: the same body and status as one
    // stored apart.
    const applied = (await callbackRows(stack.db, row.id)).filter((c) => c.outcome === "applied");
    expect(applied.map((c) => [JSON.parse(c.rawBody).task_status, c.providerStatus, c.detail, c.webhookId])).toEqual([
      ["processing", "processing", null, null],
      ["succeed", "succeed", null, null],
    ]);
    const events = (await call(stack.api.url, "GET", `/v1/tasks/${row.id}/events`, { key })).body.data;
    expect(events.map((e: { to: string }) => e.to)).toEqual(["queued", "submitting", "submitted", "processing", "archiving", "succeeded"]);
    expect(events.filter((e: { source: string }) => e.source === "callback").map((e: { to: string }) => e.to)).toEqual(["processing", "archiving"]);
  });

  it("when the provider's result image is cut off (a whole header, half the data), then the task fails as archive_failed, never `succeeded` with a broken image", async () => {
    const { key, row, send } = await submittedTask();
    expect((await send("succeed", { task_result: { images: [{ index: 0, url: results.url("/truncated.png") }] } })).body.outcome).toBe("applied");
    const done = await waitForTask(stack.api.url, key, row.id, ["succeeded", "failed"]);
    expect(done).toMatchObject({ status: "failed", failure: { class: "archive_failed", message: expect.stringMatching(/truncated or corrupt/) } });
  });

  it("when the terminal callback comes before `processing`, then the late `processing` changes nothing", async () => {
    const { key, row, send } = await submittedTask();
    expect((await send("failed", { task_status_msg: "content policy: flagged" })).body.outcome).toBe("applied");
    expect((await send("processing")).body.outcome).toBe("stale");
    const task = (await call(stack.api.url, "GET", `/v1/tasks/${row.id}`, { key })).body;
    expect(task).toMatchObject({ status: "failed", failure: { class: "provider_failed", message: "content policy: flagged" } });
    const dropin = (await call(stack.api.url, "GET", `/kling/v1/images/editing/expand/${row.id}`, { key })).body.data;
    expect(dropin).toMatchObject({ task_status: "failed", task_status_msg: "content policy: flagged" });
  });

  it("when the holder of a task's token sends the same callback over and over, then each is answered but the inbox keeps a bounded number", async () => {
    const { row, send } = await submittedTask();
    const answers = [];
    for (let i = 0; i < 60; i++) answers.push(await send("submitted"));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    const kept = await outcomes(row.id);
    expect(kept.length).toBeLessThanOrEqual(50);
    expect(kept.length).toBeGreaterThanOrEqual(49);
    // A callback that moves the task still moves it with the inbox full, and is not kept past the bound.
    expect((await send("processing")).body.outcome).toBe("applied");
    expect((await taskRow(stack.db, row.id)).status).toBe("processing");
    expect((await outcomes(row.id)).length).toBeLessThanOrEqual(50);
  });

  it("when a callback body is larger than any task object (64 KB), then it is refused unread and nothing is stored", async () => {
    const { row } = await submittedTask();
    const before = await outcomes(row.id);
    const huge = await call(stack.api.url, "POST", `/webhooks/kling/${row.id}/${row.callbackToken}`, { rawBody: JSON.stringify({ pad: "x".repeat(100_000) }), headers: { "content-type": "application/json" } });
    expect(huge.status).toBe(413);
    expect(await outcomes(row.id)).toEqual(before);
  });

  it("when a callback has a wrong token, an unknown task, a foreign external_task_id or a broken body, then it is refused and changes nothing; only the authenticated ones are kept", async () => {
    const { key, row, send } = await submittedTask();
    const forged = await send("failed", {}, "not-the-token");
    expect(forged.status).toBe(401);
    const foreign = await send("failed", { task_info: { external_task_id: "0190f0c0-0000-7000-8000-000000000000" } });
    expect(foreign.status).toBe(400);
    const broken = await call(stack.api.url, "POST", `/webhooks/kling/${row.id}/${row.callbackToken}`, { rawBody: "{not json" });
    expect(broken.status).toBe(400);
    const notATask = await call(stack.api.url, "POST", `/webhooks/kling/${row.id}/${row.callbackToken}`, { body: { hello: "world" } });
    expect(notATask.status).toBe(400);
    // An unknown task answers exactly like a bad token: the route tells nobody which task ids exist.
    const unknown = await call(stack.api.url, "POST", "/webhooks/kling/0190f0c0-0000-7000-8000-000000000001/x", { body: {} });
    expect(unknown.status).toBe(401);
    expect(unknown.body).toEqual(forged.body);

    expect((await call(stack.api.url, "GET", `/v1/tasks/${row.id}`, { key })).body.status).toBe("submitted");
    // The forged one was not stored; the three from the token's holder were, as rejected.
    expect(await outcomes(row.id)).toEqual(["rejected", "rejected", "rejected"]);
    const orphans = await stack.db.selectFrom("providerCallback").select("id").where("taskId", "is", null).execute();
    expect(orphans).toEqual([]);
  });

});

describe("callbacks lost", () => {
  let stack: Stack;
  beforeAll(async () => {
    const quickPolling = { CALLBACK_GRACE_MS: "300" };
    stack = await startStack({
      simulatorEnv: { SIM_RUN_MS: "400", SIM_CALLBACK_LOSS: "1" },
      apiEnv: quickPolling,
      workerEnv: quickPolling,
    });
  });
  afterAll(() => stack?.stop());

  it("when the provider never calls back, then polling still brings every task to `succeeded`", async () => {
    const { key } = await stack.newAccount();
    const image = (await makeImage(400, 400)).toString("base64");
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const created = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { image, ...ratios } });
      ids.push(created.body.id);
    }
    for (const id of ids) {
      const done = await waitForTask(stack.api.url, key, id, ["succeeded", "failed"]);
      expect(done).toMatchObject({ status: "succeeded", failure: null });
      expect(done.images[0]).toMatchObject({ width: 560, height: 560 });
      const events = (await call(stack.api.url, "GET", `/v1/tasks/${id}/events`, { key })).body.data;
      expect(events.some((e: { source: string }) => e.source === "poll")).toBe(true);
      expect(await countCallbacksOf(stack.db, id)).toBe(0);
    }
    const stats = (await call(stack.simulator.url, "GET", "/_sim/stats")).body;
    expect(stats.callbacks_lost).toBeGreaterThanOrEqual(3);
    expect(stats.callbacks_sent).toBe(0);
  });
});
