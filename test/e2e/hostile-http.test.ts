import { randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { call } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { captureLogs, rawRequest, sendHeadOnly, type RawAnswer } from "../fuzz/hostile-kit.ts";
import { taskRow } from "../support/rows.ts";

// Requests a well-behaved client never sends: broken percent-encoding, NUL in ids, bodies declared
// and never sent, odd content types. Each must end in a 4xx in the shape of its prefix, and none
// may be logged as an error. (Each case here was a 500, a hang or a wrong shape before.)

const logs = captureLogs();
let stack: Stack;
let key: string;
let image: string;

beforeAll(async () => {
  stack = await startStack({ withWorker: false, apiEnv: { LOG_LEVEL: "debug" }, apiLogDestination: logs.destination });
  key = (await stack.newAccount()).key;
  image = (await makeImage(400, 400)).toString("base64");
});
afterAll(() => stack?.stop());
afterEach(() => {
  const errors = logs.errors();
  logs.clear();
  expect(errors, "logged at error level").toEqual([]);
});

const createBody = (extra: Record<string, unknown> = {}) => ({
  image,
  up_expansion_ratio: 0.1,
  down_expansion_ratio: 0.1,
  left_expansion_ratio: 0.1,
  right_expansion_ratio: 0.1,
  ...extra,
});

const dropinPrefixes = ["/kling/v1/images/editing/expand", "/v1/images/editing/expand"];

const expectProblem = (answer: RawAnswer, status: number) => {
  expect(answer.status, answer.text).toBe(status);
  expect(answer.headers["content-type"]).toMatch(/^application\/problem\+json/);
  expect(answer.body).toMatchObject({ status, title: expect.any(String), detail: expect.any(String), request_id: expect.any(String) });
};

const expectProviderError = (answer: RawAnswer, status: number, code: number) => {
  expect(answer.status, answer.text).toBe(status);
  expect(answer.headers["content-type"]).toMatch(/^application\/json/);
  expect(answer.body).toEqual({ code, message: expect.any(String), request_id: expect.any(String) });
};

const get = (path: string, headers: Record<string, string> = {}) => rawRequest(stack.api.url, { method: "GET", path, headers });
const withKey = () => ({ authorization: `Bearer ${key}` });

const countCallbacks = async () => Number((await stack.db.selectFrom("providerCallback").select((eb) => eb.fn.countAll<string>().as("n")).executeTakeFirstOrThrow()).n);

describe("bad percent-encoding and NUL in URLs", () => {
  it.each([
    ["/v1/tasks/%zz"],
    ["/v1/tasks/%E0%A4%A/events"],
    ["/v1/tasks/%C0%80/images/0"],
    ["/v1/tasks/%ED%A0%80"],
    ["/v1/tasks/%00"],
    ["/v1/tasks?external_task_id=%00"],
    ["/v1/tasks?external_task_id=%E0%A4%A"],
    ["/v1/tasks?status=%00&limit=%zz"],
    ["/v1/tasks/" + randomUUID() + "/images/%"],
  ])("when a native route is asked for %s, then it answers a 400 problem", async (path) => {
    expectProblem(await get(path, withKey()), 400);
  });

  it.each([
    ["/files/tasks/%/images/0"],
    ["/files/tasks/%zz/images/0?expires=1&signature=x"],
    [`/files/tasks/${randomUUID()}/images/0?expires=%00&signature=%E0%A4%A`],
    ["/nowhere/%zz"],
    ["/healthz?x=%"],
  ])("when an unauthenticated route is asked for %s, then it answers a 400 problem without a key", async (path) => {
    expectProblem(await get(path), 400);
  });

  it.each([["/webhooks/kling/%zz/x"], [`/webhooks/kling/${randomUUID()}/%00`], ["/webhooks/kling/%00/%E0%A4%A"]])(
    "when a provider callback is posted to %s, then it answers a 400 problem and stores nothing",
    async (path) => {
      const before = await countCallbacks();
      const answer = await rawRequest(stack.api.url, { method: "POST", path, headers: { "content-type": "application/json" }, body: "{}" });
      expectProblem(answer, 400);
      expect(await countCallbacks()).toBe(before);
    },
  );

  it.each(dropinPrefixes.flatMap((prefix) => [`${prefix}/%E0%A4%A`, `${prefix}/%zz`, `${prefix}/abc%00def`, `${prefix}/%ED%B0%80`]))(
    "when the drop-in route is asked for %s, then it answers 400/1201 in the provider's shape",
    async (path) => {
      expectProviderError(await get(path, withKey()), 400, 1201);
    },
  );
});

describe("bodies the database cannot store", () => {
  it("when a callback with a valid token carries \\u0000 or a lone surrogate in a string, then it is refused with a 400 and the task is untouched", async () => {
    const created = await call(stack.api.url, "POST", "/v1/tasks", { key, body: createBody() });
    const id = created.body.id as string;
    const { callbackToken } = await taskRow(stack.db, id);
    for (const report of [
      { task_id: "p-1", task_status: "failed", task_status_msg: "bad\u0000thing", task_info: { external_task_id: id } },
      { task_id: "p-\u0000", task_status: "processing", task_info: { external_task_id: id } },
      { task_id: "p-1", task_status: "failed", task_status_msg: "half a pair: \ud800", task_info: { external_task_id: id } },
    ]) {
      const answer = await rawRequest(stack.api.url, {
        method: "POST",
        path: `/webhooks/kling/${id}/${callbackToken}`,
        headers: { "content-type": "application/json" },
        // JSON.stringify writes U+0000 and lone surrogates as escapes: valid JSON, unstorable once parsed.
        body: JSON.stringify(report),
      });
      expectProblem(answer, 400);
    }
    expect((await call(stack.api.url, "GET", `/v1/tasks/${id}`, { key })).body.status).toBe("queued");
  });

  it("when a callback body holds a NUL byte, then it is refused with a 400 rather than failing to store", async () => {
    const answer = await rawRequest(stack.api.url, {
      method: "POST",
      path: `/webhooks/kling/${randomUUID()}/token`,
      headers: { "content-type": "application/json" },
      body: Buffer.from('{"task_id":"a\u0000b"}', "utf8"),
    });
    expectProblem(answer, 400);
  });
});

describe("the drop-in routes answer like the provider", () => {
  it.each(dropinPrefixes)("when %s is sent a body without Content-Type or as text/plain, then it is read as JSON", async (prefix) => {
    for (const headers of [{}, { "content-type": "text/plain" }, { "content-type": "text/plain; charset=utf-8" }] as Record<string, string>[]) {
      const answer = await rawRequest(stack.api.url, {
        method: "POST",
        path: prefix,
        headers: { ...withKey(), ...headers },
        body: JSON.stringify(createBody()),
      });
      expect(answer.status, answer.text).toBe(200);
      expect(answer.body).toMatchObject({ code: 0, data: { task_status: "submitted" } });
    }
  });

  // README: 404/1202 "no such route or method"; 1203 is "no such task".
  it.each(dropinPrefixes)("when a path under %s does not exist, then it answers 404/1202 in the provider's shape", async (prefix) => {
    expectProviderError(await get(`${prefix}/a/b`, withKey()), 404, 1202);
    expectProviderError(await get(`${prefix}/${randomUUID()}/images/0`, withKey()), 404, 1202);
  });

  it.each(["/kling/v1/videos/text2video", "/kling/v1/images/generations/x", "/v1/images/generations", "/v1/images/kolors-virtual-try-on/a"])(
    "when %s (another route of the provider's families, not ours) is called, then it answers 404/1202 in the provider's shape",
    async (path) => {
      expectProviderError(await get(path, withKey()), 404, 1202);
    },
  );

  it.each(dropinPrefixes)("when %s is called with a method it does not have, then it answers 404/1202", async (prefix) => {
    for (const [method, path] of [
      ["PUT", prefix],
      ["DELETE", prefix],
      ["PATCH", `${prefix}/some-task`],
      ["POST", `${prefix}/some-task`],
    ] as const) {
      expectProviderError(await rawRequest(stack.api.url, { method, path, headers: withKey() }), 404, 1202);
    }
  });

  it.each(["Bearer", "Bearer ", "Bearer    ", ""])("when the Authorization header is %j, then the drop-in route answers 401/1001 (missing)", async (header) => {
    const answer = await rawRequest(stack.api.url, { method: "GET", path: `${dropinPrefixes[0]}/x`, headers: { authorization: header } });
    expectProviderError(answer, 401, 1001);
  });

  it("when the key is present but wrong, then the drop-in route answers 401/1002 (invalid)", async () => {
    for (const header of ["Bearer not-a-key", "Basic abc", "Bearer a b"]) {
      const answer = await rawRequest(stack.api.url, { method: "GET", path: `${dropinPrefixes[1]}/x`, headers: { authorization: header } });
      expectProviderError(answer, 401, 1002);
    }
  });

  it.each(dropinPrefixes)("when a body over the limit is declared to %s, then it answers 400/1201 naming the limit, without reading it", async (prefix) => {
    const answer = await sendHeadOnly(stack.api.url, {
      method: "POST",
      path: prefix,
      headers: { ...withKey(), "content-type": "application/json" },
      declaredLength: 17 * 1024 * 1024,
    });
    expect(answer.status).toBe(400);
    expect(answer.headers.connection).toBe("close");
    await answer.closed;
  });
});

describe("authentication comes before the body", () => {
  it.each([["/v1/tasks"], ...dropinPrefixes.map((p) => [p])])(
    "when %s is sent a 15 MB body without a valid key, then it answers 401 before the body is sent and closes",
    async (path) => {
      for (const headers of [{}, { authorization: "Bearer wrong-key-0123456789" }] as Record<string, string>[]) {
        const answer = await sendHeadOnly(stack.api.url, {
          method: "POST",
          path,
          headers: { ...headers, "content-type": "application/json" },
          declaredLength: 15 * 1024 * 1024,
        });
        expect(answer.status).toBe(401);
        expect(answer.headers.connection).toBe("close");
        await answer.closed;
      }
    },
  );

  it("when a native create over the limit is declared, then it answers a 413 problem without reading it", async () => {
    const answer = await sendHeadOnly(stack.api.url, {
      method: "POST",
      path: "/v1/tasks",
      headers: { ...withKey(), "content-type": "application/json" },
      declaredLength: 17 * 1024 * 1024,
    });
    expect(answer.status).toBe(413);
    expect(answer.headers.connection).toBe("close");
    await answer.closed;
  });

  it("when a client asks for 100-continue, then only an authenticated request is told to send its body", async () => {
    const refused = await sendHeadOnly(
      stack.api.url,
      { method: "POST", path: "/v1/tasks", headers: { "content-type": "application/json", expect: "100-continue" }, declaredLength: 9_000_000 },
      { untilInterim: true },
    );
    expect(refused.status).toBe(401);
    await refused.closed;

    const welcome = await sendHeadOnly(
      stack.api.url,
      { method: "POST", path: "/v1/tasks", headers: { ...withKey(), "content-type": "application/json", expect: "100-continue" }, declaredLength: 100 },
      { untilInterim: true },
    );
    expect(welcome.status).toBe(100);
    welcome.socket.destroy();
  });

  it("when the key is valid, then a create still works through the same routes", async () => {
    const created = await call(stack.api.url, "POST", "/v1/tasks", { key, body: createBody() });
    expect(created.status).toBe(202);
  });
});
