import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startStack, testSigningSecret, type Stack } from "../support/stack.ts";

let stack: Stack;
let image: string;

beforeAll(async () => {
  // No worker: these tests are about intake and reads only.
  stack = await startStack({ withWorker: false });
  image = (await makeImage(400, 400)).toString("base64");
});
afterAll(() => stack?.stop());

const body = (extra: Record<string, unknown> = {}) => ({
  image,
  up_expansion_ratio: 0.2,
  down_expansion_ratio: 0.2,
  left_expansion_ratio: 0.2,
  right_expansion_ratio: 0.2,
  ...extra,
});

describe("authentication", () => {
  it.each([
    ["/v1/tasks", "GET"],
    ["/v1/tasks", "POST"],
    ["/kling/v1/images/editing/expand/x", "GET"],
    ["/kling/v1/images/editing/expand", "POST"],
  ])("when %s %s has no Authorization header, then it answers 401 and nothing is written", async (path, method) => {
    const answer = await call(stack.api.url, method, path, method === "POST" ? { body: body() } : {});
    expect(answer.status).toBe(401);
    if (path.startsWith("/kling")) expect(answer.body).toMatchObject({ code: 1001 });
    else expect(answer.body).toMatchObject({ status: 401, title: "Authentication required" });
  });

  it("when the key is unknown or malformed, then the drop-in route answers 401 with code 1002", async () => {
    // A bare "Bearer" is a missing key (1001): test/e2e/hostile-http.test.ts covers it.
    for (const header of ["Bearer not-a-key", "Basic abc", "Bearer a b"]) {
      const answer = await call(stack.api.url, "POST", "/kling/v1/images/editing/expand", {
        body: body(),
        headers: { authorization: header },
      });
      expect(answer.status).toBe(401);
      expect(answer.body.code).toBe(1002);
      expect(typeof answer.body.request_id).toBe("string");
    }
  });

  it("when health is probed, then it needs no key and readiness reports Postgres and Redis", async () => {
    expect((await call(stack.api.url, "GET", "/healthz")).body).toEqual({ status: "ok" });
    const ready = await call(stack.api.url, "GET", "/readyz");
    expect(ready.status).toBe(200);
    expect(ready.body.checks.postgres.ok).toBe(true);
    expect(ready.body.checks.redis.ok).toBe(true);
  });
});

describe("ownership", () => {
  it("when another account asks for a task, then every route answers 404 as if it did not exist", async () => {
    const owner = await stack.newAccount();
    const stranger = await stack.newAccount();
    const created = await call(stack.api.url, "POST", "/v1/tasks", { key: owner.key, body: body({ external_task_id: "mine" }) });
    expect(created.status).toBe(202);
    const id = created.body.id;
    for (const path of [`/v1/tasks/${id}`, `/v1/tasks/${id}/events`, `/v1/tasks/${id}/images/0`]) {
      const answer = await call(stack.api.url, "GET", path, { key: stranger.key });
      expect(answer.status).toBe(404);
      expect(answer.body.status).toBe(404);
    }
    const dropin = await call(stack.api.url, "GET", `/kling/v1/images/editing/expand/${id}`, { key: stranger.key });
    expect(dropin.status).toBe(404);
    expect(dropin.body.code).toBe(1203);
    const byExternal = await call(stack.api.url, "GET", "/kling/v1/images/editing/expand/mine", { key: stranger.key });
    expect(byExternal.status).toBe(404);
    const listed = await call(stack.api.url, "GET", "/v1/tasks?external_task_id=mine", { key: stranger.key });
    expect(listed.body.data).toEqual([]);
    // The owner still sees it.
    expect((await call(stack.api.url, "GET", `/v1/tasks/${id}`, { key: owner.key })).status).toBe(200);
  });

  it("when an id is not a task id at all, then it is a 404, not a server error", async () => {
    const { key } = await stack.newAccount();
    expect((await call(stack.api.url, "GET", "/v1/tasks/not-a-uuid", { key })).status).toBe(404);
    expect((await call(stack.api.url, "GET", "/kling/v1/images/editing/expand/12345", { key })).body.code).toBe(1203);
  });
});

describe("external_task_id", () => {
  it("when an account reuses its external_task_id, then it is a clear conflict and only the first task exists", async () => {
    const { key, accountId } = await stack.newAccount();
    const first = await call(stack.api.url, "POST", "/v1/tasks", { key, body: body({ external_task_id: "job-7" }) });
    expect(first.status).toBe(202);
    const again = await call(stack.api.url, "POST", "/v1/tasks", { key, body: body({ external_task_id: "job-7" }) });
    expect(again.status).toBe(409);
    expect(again.body.detail).toContain("job-7");
    expect(again.body.errors).toEqual([{ field: "external_task_id", message: expect.stringContaining("already used") }]);
    const dropin = await call(stack.api.url, "POST", "/kling/v1/images/editing/expand", { key, body: body({ external_task_id: "job-7" }) });
    expect(dropin.status).toBe(400);
    expect(dropin.body.code).toBe(1201);
    expect(await stack.db.task.count({ where: { accountId } })).toBe(1);
    expect(await stack.db.taskEvent.count({ where: { task: { accountId } } })).toBe(1);
  });

  it("when two accounts use the same external_task_id, then both are accepted", async () => {
    const a = await stack.newAccount();
    const b = await stack.newAccount();
    expect((await call(stack.api.url, "POST", "/v1/tasks", { key: a.key, body: body({ external_task_id: "shared" }) })).status).toBe(202);
    expect((await call(stack.api.url, "POST", "/v1/tasks", { key: b.key, body: body({ external_task_id: "shared" }) })).status).toBe(202);
  });
});

describe("signed image links", () => {
  it("when a link's signature is wrong or it has expired, then it is refused", async () => {
    const { signImageLink } = await import("../../apps/domain/storage/signed-link.ts");
    const taskId = "0190f0c0-0000-7000-8000-000000000000";
    const bad = await call(stack.api.url, "GET", `/files/tasks/${taskId}/images/0?expires=9999999999&signature=abc`);
    expect(bad.status).toBe(401);
    const expired = signImageLink(stack.api.url, testSigningSecret, taskId, 0, 60, Date.now() - 3_600_000);
    const answer = await call(stack.api.url, "GET", new URL(expired).pathname + new URL(expired).search);
    expect(answer.status).toBe(401);
    expect(answer.body.detail).toContain("expired");
  });
});
