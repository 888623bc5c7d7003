import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { standardWebhookHeaders } from "../../apps/domain/webhooks/standard-webhooks.ts";
import { call } from "../support/http.ts";
import { settle, submitMany, testImage } from "../support/fault-kit.ts";
import { callbackRows, taskRow } from "../support/rows.ts";
import { expectEachRunOnce, startRoutesStack, type RoutesStack } from "../support/routes-kit.ts";

// Callbacks name their route, so that each route's own webhook secret verifies them.

const secretOf = (seed: string) => `whsec_${Buffer.from(`${seed}-${randomUUID()}`).toString("base64")}`;
const secretOne = secretOf("one");
const secretTwo = secretOf("two");

beforeAll(async () => {
  await testImage();
});

describe("two routes, each signing its callbacks with its own secret", () => {
  let routes: RoutesStack;
  beforeAll(async () => {
    routes = await startRoutesStack({
      routes: [
        { name: "one", kind: "kling", capacity: 2, webhookSecret: secretOne, simulatorEnv: { SIM_RUN_MS: "600" } },
        { name: "two", kind: "cometapi", capacity: 2, webhookSecret: secretTwo, simulatorEnv: { SIM_RUN_MS: "600" } },
      ],
      // Progress by callbacks alone: no poll comes before the grace runs out.
      env: { CALLBACK_GRACE_MS: "60000", POLL_AT_EXPECTED_END: "false" },
    });
  });
  afterAll(() => routes?.stop());

  it("when both routes call back, then each route's callbacks verify with its own secret, and one signed with another route's secret or sent without its route is refused", { timeout: 60_000 }, async () => {
    const { key } = await routes.stack.newAccount();
    const tasks = await submitMany(routes.stack, key, 4);
    for (const task of await settle(routes.stack, tasks, 40_000)) expect(task.status, task.status_message).toBe("succeeded");
    const { ranOn } = await expectEachRunOnce(routes, tasks);
    expect(new Set(Object.values(ranOn))).toEqual(new Set(["one", "two"]));
    for (const task of tasks) {
      const rows = await callbackRows(routes.stack.db, task.id);
      expect(rows.some((r) => r.outcome === "applied"), `task ${task.id}: a callback applied`).toBe(true);
    }

    const onOne = tasks.find((t) => ranOn[t.id] === "one")!;
    const row = await taskRow(routes.stack.db, onOne.id);
    const body = JSON.stringify({ task_id: row.providerTaskId, task_status: "processing", task_info: { external_task_id: row.id }, updated_at: 1 });
    const now = Math.floor(Date.now() / 1000);
    const json = { "content-type": "application/json" };
    const send = (path: string, secret?: string) =>
      call(routes.stack.api.url, "POST", path, { rawBody: body, headers: { ...json, ...(secret ? standardWebhookHeaders(secret, `msg_${randomUUID()}`, now, body) : {}) } });
    const base = `/webhooks/kling/${row.id}/${row.callbackToken}`;
    const stored = (await callbackRows(routes.stack.db, row.id)).length;

    expect((await send(`${base}/one`, secretTwo)).body).toMatchObject({ outcome: "unauthenticated", detail: expect.stringMatching(/bad webhook signature/) });
    expect((await send(`${base}/one`)).status).toBe(401);
    expect((await send(`${base}/nosuch`, secretOne)).body).toMatchObject({ outcome: "unauthenticated" });
    // Without its route in the URL, a callback must carry one of the configured secrets.
    expect((await send(base)).status).toBe(401);
    expect((await callbackRows(routes.stack.db, row.id)).length).toBe(stored);
    // Signed with its own route's secret: authenticated (a stale report, so it changes nothing).
    const genuine = await send(`${base}/one`, secretOne);
    expect(genuine).toMatchObject({ status: 200, body: { outcome: "stale" } });
    expect((await call(routes.stack.api.url, "GET", `/v1/tasks/${row.id}`, { key })).body.status).toBe("succeeded");
  });
});
