import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, waitForTask } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startStack, testLinkKey, type Stack } from "../support/stack.ts";
import { countTasksOf, countEventsOf } from "../support/rows.ts";

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
    // A bare "Bearer" is a missing key (1001): tested below and in test/e2e/hostile-http.test.ts.
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

  it("when the Bearer token is empty, then the drop-in route answers 401 with code 1001 (missing), like the provider", async () => {
    for (const header of ["Bearer", "Bearer ", "bearer   "]) {
      const answer = await call(stack.api.url, "POST", "/kling/v1/images/editing/expand", { body: body(), headers: { authorization: header } });
      expect(answer.status).toBe(401);
      expect(answer.body.code).toBe(1001);
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
  it("when an account reuses its external_task_id for another request, then it is a clear conflict and only the first task exists", async () => {
    const { key, accountId } = await stack.newAccount();
    const first = await call(stack.api.url, "POST", "/v1/tasks", { key, body: body({ external_task_id: "job-7" }) });
    expect(first.status).toBe(202);
    const other = body({ external_task_id: "job-7", prompt: "a different request" });
    const again = await call(stack.api.url, "POST", "/v1/tasks", { key, body: other });
    expect(again.status).toBe(409);
    expect(again.body.detail).toContain("job-7");
    expect(again.body.errors).toEqual([{ field: "external_task_id", message: expect.stringContaining("already used") }]);
    const dropin = await call(stack.api.url, "POST", "/kling/v1/images/editing/expand", { key, body: other });
    expect(dropin.status).toBe(400);
    expect(dropin.body.code).toBe(1201);
    expect(await countTasksOf(stack.db, accountId)).toBe(1);
    expect(await countEventsOf(stack.db, accountId)).toBe(1);
  });

  it("when a client retries a create with the same external_task_id and the same request, then it gets the first task back and no second one exists", async () => {
    const { key, accountId } = await stack.newAccount();
    const request = body({ external_task_id: "retry-1" });
    const first = await call(stack.api.url, "POST", "/kling/v1/images/editing/expand", { key, body: request });
    expect(first.body.code).toBe(0);
    // The same request, with the other spelling of the downward ratio and n as a string: still the same.
    const { down_expansion_ratio: down, ...rest } = request as Record<string, unknown>;
    const respelled = { ...rest, bottom_expansion_ratio: down, n: "1" };
    const retried = await call(stack.api.url, "POST", "/kling/v1/images/editing/expand", { key, body: respelled });
    expect(retried.status).toBe(200);
    expect(retried.body.code).toBe(0);
    expect(retried.body.data).toEqual(first.body.data);
    const native = await call(stack.api.url, "POST", "/v1/tasks", { key, body: request });
    expect(native.status).toBe(202);
    expect(native.headers.get("idempotent-replayed")).toBe("true");
    expect(native.body.id).toBe(first.body.data.task_id);
    expect(await countTasksOf(stack.db, accountId)).toBe(1);
    expect(await countEventsOf(stack.db, accountId)).toBe(1);
  });

  it("when an external_task_id equals the id of another of the account's tasks, then it is refused, so a lookup by either id is never ambiguous", async () => {
    const { key, accountId } = await stack.newAccount();
    const first = await call(stack.api.url, "POST", "/v1/tasks", { key, body: body() });
    const clash = await call(stack.api.url, "POST", "/v1/tasks", { key, body: body({ external_task_id: first.body.id }) });
    expect(clash.status).toBe(400);
    expect(clash.body.errors).toEqual([{ field: "external_task_id", message: expect.stringContaining("task_id of another task") }]);
    expect(await countTasksOf(stack.db, accountId)).toBe(1);
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
    const expired = signImageLink(stack.api.url, testLinkKey, taskId, 0, 60, Date.now() - 3_600_000);
    const answer = await call(stack.api.url, "GET", new URL(expired).pathname + new URL(expired).search);
    expect(answer.status).toBe(401);
    expect(answer.body.detail).toContain("expired");
  });

  it("when a link is forged with a secret that was ever public (the old development default), then it is refused", async () => {
    const { signImageLink } = await import("../../apps/domain/storage/signed-link.ts");
    await stack.startWorker();
    const { key } = await stack.newAccount();
    const created = await call(stack.api.url, "POST", "/v1/tasks", { key, body: body() });
    const done = await waitForTask(stack.api.url, key, created.body.id, ["succeeded", "failed"]);
    expect(done.status).toBe("succeeded");
    // Far in the future, signed with what used to sign every link of a development install.
    const forged = signImageLink(stack.api.url, Buffer.from("dev-only-signing-secret-change-me"), done.id, 0, 10 * 365 * 86_400);
    const answer = await call(stack.api.url, "GET", new URL(forged).pathname + new URL(forged).search);
    expect(answer.status).toBe(401);
    // The genuine link of the same image is served.
    expect((await fetch(done.images[0].url)).status).toBe(200);

    // Behind a proxy that mounts us under a path, links keep the path.
    const edge = await stack.startApi({ PUBLIC_BASE_URL: "https://edge.example.com/kling-api/" });
    const seen = await call(edge.url, "GET", `/v1/tasks/${done.id}`, { key });
    expect(seen.body.images[0].url).toMatch(/^https:\/\/edge\.example\.com\/kling-api\/files\/tasks\//);
  });
});
