import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { captureLogs } from "../fuzz/hostile-kit.ts";
import { waitUntil } from "../support/batches.ts";
import { call } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";

// What a careful (or hostile) client meets at intake: nulls, wrong types, bodies that are JSON but
// not objects, batch items missing a ratio, private addresses, callback URLs that do not resolve
// yet or carry credentials, unknown drop-in paths, and idempotent replays.

const logs = captureLogs();
let stack: Stack;
let key: string;
let image: string;
const DROPIN = ["/kling/v1/images/editing/expand", "/v1/images/editing/expand"];
const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 };

beforeAll(async () => {
  stack = await startStack({ apiEnv: { LOG_LEVEL: "debug" }, apiLogDestination: logs.destination });
  ({ key } = await stack.newAccount());
  image = (await makeImage(400, 300)).toString("base64");
});
afterAll(async () => {
  await stack?.stop();
});

const create = (body: unknown, path = "/v1/tasks") => call(stack.api.url, "POST", path, { key, body });
const createRaw = (rawBody: string, path = "/v1/tasks") =>
  call(stack.api.url, "POST", path, { key, rawBody, headers: { "content-type": "application/json" } });
const messageOf = (answer: { body: any }) => String(answer.body.detail ?? answer.body.message);

describe("null and wrong types", () => {
  it.each(["/v1/tasks", ...DROPIN])("when %s gets null for every optional field, then it is as if they were left out", async (path) => {
    const answer = await create({ image, ...ratios, prompt: null, n: null, watermark_info: null, callback_url: null, external_task_id: null, bottom_expansion_ratio: null }, path);
    expect(answer.status, JSON.stringify(answer.body)).toBe(path === "/v1/tasks" ? 202 : 200);
    if (path === "/v1/tasks") expect(answer.body.request).toMatchObject({ n: 1, prompt: null, watermark: null });
  });

  it.each([
    { field: "image", value: 42, says: /^image: must be a string: an http\(s\) URL or raw Base64$/ },
    { field: "image", value: null, says: /^image: is required: an http\(s\) URL or raw Base64$/ },
    { field: "up_expansion_ratio", value: "0.1", says: /^up_expansion_ratio: must be a number from 0 to 2$/ },
    { field: "left_expansion_ratio", value: undefined, says: /^left_expansion_ratio: is required: a number from 0 to 2$/ },
    { field: "callback_url", value: 7, says: /^callback_url: must be a string: an http\(s\) URL$/ },
    { field: "watermark_info", value: true, says: /^watermark_info: must be an object \{enabled: true or false\}$/ },
  ])("when $field is $value, then the message says which type it wants, not a library's words", async ({ field, value, says }) => {
    for (const path of ["/v1/tasks", ...DROPIN]) {
      const answer = await create({ image, ...ratios, [field]: value }, path);
      expect(answer.status).toBe(400);
      expect(messageOf(answer)).toMatch(says);
      expect(messageOf(answer)).not.toMatch(/Invalid input|expected \w+, received/);
    }
  });

  it.each(["123", '"an image"', "[1, 2]", "null", "true"])("when the body is %s (valid JSON, not an object), then it says so, not 'not valid JSON'", async (raw) => {
    for (const path of ["/v1/tasks", ...DROPIN]) {
      const answer = await createRaw(raw, path);
      expect(answer.status).toBe(400);
      expect(messageOf(answer)).toMatch(/^body: must be a JSON object; got /);
    }
    expect(messageOf(await createRaw("{not json"))).toBe("body: is not valid JSON");
  });
});

describe("batch items", () => {
  it("when an item has no ratio and the batch no default for it, then it is refused as a single create is: 'is required'", async () => {
    const answer = await call(stack.api.url, "POST", "/v1/batches", {
      key,
      body: { dry_run: true, defaults: { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1 }, items: [{ image }, { image, right_expansion_ratio: null }] },
    });
    expect(answer.status, JSON.stringify(answer.body)).toBeLessThan(300);
    const single = await create({ image, up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1 });
    expect(single.body.errors).toEqual([{ field: "right_expansion_ratio", message: "is required: a number from 0 to 2" }]);
    expect(answer.body.intake.errors).toEqual([
      { line: 1, field: "right_expansion_ratio", message: "is required: a number from 0 to 2" },
      { line: 2, field: "right_expansion_ratio", message: "is required: a number from 0 to 2" },
    ]);
  });

  it("when an item's image URL is a literal private address, then the item is refused at intake", async () => {
    const answer = await call(stack.api.url, "POST", "/v1/batches", { key, body: { dry_run: true, defaults: ratios, items: [{ image: "http://10.0.0.7/a.png" }] } });
    expect(answer.body.intake.errors).toEqual([{ line: 1, field: "image", message: expect.stringMatching(/10\.0\.0\.7 is not public/) }]);
  });
});

describe("private image URLs", () => {
  it.each(["http://10.0.0.7/a.png", "http://[::1]/a.png", "http://169.254.169.254/latest/meta-data", "http://127.0.0.2:8080/a.png"])(
    "when the image URL is %s, then intake refuses it (400) instead of failing the task later",
    async (url) => {
      for (const path of ["/v1/tasks", ...DROPIN]) {
        const answer = await create({ image: url, ...ratios }, path);
        expect(answer.status).toBe(400);
        expect(messageOf(answer)).toMatch(/^image: .*is not public/);
      }
    },
  );
});

describe("callback_url", () => {
  const secretUrl = "http://hook-user:hunter2-pass@no-such-host.invalid/hook?token=tok-abc123&api_key=key-xyz&sig=sig-999&page=2";
  const secrets = ["hunter2-pass", "hook-user", "tok-abc123", "key-xyz", "sig-999"];

  it("when its host does not resolve now, then it is accepted; a delivery that cannot resolve it is a retried attempt; its credentials are never shown", async () => {
    const answer = await create({ image, ...ratios, callback_url: secretUrl });
    expect(answer.status, JSON.stringify(answer.body)).toBe(202);
    const shown = [JSON.stringify(answer.body)];
    expect(answer.body.callback_url).toBe("http://redacted:redacted@no-such-host.invalid/hook?token=redacted&api_key=redacted&sig=redacted&page=2");
    const deliveries = await waitUntil(
      async () => (await call(stack.api.url, "GET", `/v1/webhooks/deliveries?task_id=${answer.body.id}`, { key })).body,
      (page: any) => page.data?.some((d: any) => d.last_attempt !== null),
      20_000,
      "a delivery attempt",
    );
    const tried = deliveries.data.find((d: any) => d.last_attempt !== null);
    // Not refused for good: it waits for its next attempt.
    expect(tried).toMatchObject({ status: "pending", last_attempt: { status_code: null, error: expect.any(String) } });
    expect(tried.next_attempt_at).not.toBeNull();
    shown.push(JSON.stringify(deliveries));
    shown.push(JSON.stringify((await call(stack.api.url, "GET", `/v1/tasks/${answer.body.id}`, { key })).body));
    shown.push(JSON.stringify((await call(stack.api.url, "GET", `/v1/tasks?limit=5`, { key })).body));
    shown.push(JSON.stringify(logs.lines()));
    for (const text of shown) for (const secret of secrets) expect(text).not.toContain(secret);
  });

  it.each([
    { what: "a literal private address", url: "http://10.9.8.7/hook", says: /not public/ },
    { what: "a non-http scheme", url: "ftp://example.com/hook", says: /http\(s\) URL/ },
    { what: "malformed", url: "http://exa mple.com:99999/", says: /http\(s\) URL/ },
    { what: "2,049 characters", url: `https://93.184.215.14/${"a".repeat(2049 - "https://93.184.215.14/".length)}`, says: /at most 2048 characters/ },
  ])("when it is $what, then it is refused", async ({ url, says }) => {
    const answer = await create({ image, ...ratios, callback_url: url });
    expect(answer.status).toBe(400);
    expect(messageOf(answer)).toMatch(new RegExp(`^callback_url: .*${says.source}`));
  });

  it("when it is 2,048 characters, then it is accepted", async () => {
    const url = `https://93.184.215.14/${"a".repeat(2048 - "https://93.184.215.14/".length)}`;
    expect((await create({ image, ...ratios, callback_url: url })).status).toBe(202);
  });
});

describe("drop-in paths and replays", () => {
  it.each(DROPIN)("when GET %s/a/b is asked, then it answers 404/1202", async (prefix) => {
    const answer = await call(stack.api.url, "GET", `${prefix}/a/b`, { key });
    expect(answer.status).toBe(404);
    expect(answer.body).toMatchObject({ code: 1202 });
  });

  it("when a native create is replayed with its Idempotency-Key, then the replay carries the first answer's Location", async () => {
    const headers = { "idempotency-key": randomUUID() };
    const first = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { image, ...ratios }, headers });
    const again = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { image, ...ratios }, headers });
    expect(first.status).toBe(202);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(first.headers.get("location")).toBe(`/v1/tasks/${first.body.id}`);
    expect(again.headers.get("location")).toBe(first.headers.get("location"));
  });
});

describe("the dashboard", () => {
  it("when it is served, then its CSP lets images come from the API's own origin (and blob: for sources read with the key) only", async () => {
    const page = await fetch(new URL("/", stack.api.url));
    const csp = page.headers.get("content-security-policy") ?? "";
    expect(csp.split(";").map((d) => d.trim()).find((d) => d.startsWith("img-src"))).toBe("img-src 'self' blob:");
    // The page's script reads sources from our stored copy, never a task's own image URL.
    const script = await (await fetch(new URL("/dashboard/app.js", stack.api.url))).text();
    expect(script).toContain("/source`");
    expect(script).not.toMatch(/request\.image\.url/);
  });
});
