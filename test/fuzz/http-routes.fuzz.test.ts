import { randomUUID } from "node:crypto";
import http from "node:http";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { captureLogs, rawRequest, type RawAnswer } from "./hostile-kit.ts";
import { taskRow } from "../support/rows.ts";

// Property: whatever arrives on any route (method, path with any percent-encoding, query, headers,
// body), the API answers below 500, in the shape of the path's family, and logs nothing at error
// level. FUZZ_RUNS makes the run longer (default 250: ~15-30 s on the 2-core box); FUZZ_SEED
// replays a failure that fast-check printed.

const runs = Number(process.env.FUZZ_RUNS ?? 250);
const seed = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);

const logs = captureLogs();
let stack: Stack;
let key: string;
let taskId: string;
let callbackToken: string;
let createBody: Record<string, unknown>;
const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });

beforeAll(async () => {
  // Long-polls (`?wait=`) on a task that never moves here wait at most a second.
  stack = await startStack({ withWorker: false, apiEnv: { LOG_LEVEL: "debug", LIVE_MAX_WAIT_SECONDS: "1" }, apiLogDestination: logs.destination });
  key = (await stack.newAccount()).key;
  createBody = {
    image: (await makeImage(320, 320)).toString("base64"),
    up_expansion_ratio: 0.1,
    down_expansion_ratio: 0.1,
    left_expansion_ratio: 0.1,
    right_expansion_ratio: 0.1,
    prompt: "a wider view",
    n: 1,
    external_task_id: "fuzz-known",
    // A literal public address: this machine has no DNS for public names.
    callback_url: "https://93.184.215.14/hook",
    watermark_info: { enabled: false },
  };
  const created = await call(stack.api.url, "POST", "/v1/tasks", { key, body: createBody });
  expect(created.status).toBe(202);
  taskId = created.body.id;
  // The task's callback URL token, as the provider would have it: lets callbacks reach the receiver.
  callbackToken = (await taskRow(stack.db, taskId)).callbackToken;
});
afterAll(async () => {
  agent.destroy();
  await stack?.stop();
});

// --- paths ---------------------------------------------------------------------------------------

const percent = (bytes: Uint8Array) => [...bytes].map((b) => `%${b.toString(16).padStart(2, "0").toUpperCase()}`).join("");

// Characters node:http lets through in a path (no controls, no spaces), escapes valid and broken:
// truncated, non-hex, NUL, overlong forms, encoded surrogates, bytes past U+10FFFF, stray '%'.
const nastyEscape = fc.constantFrom("%", "%z", "%zz", "%0", "%00", "%E0%A4%A", "%C0%80", "%C0%AF", "%ED%A0%80", "%ED%B0%80", "%F4%90%80%80", "%FF", "%FE%FF", "%25", "%2F", "%3F", "%23", "%E2%82%AC", "%F0%9F%98%80");
const pathChar = fc.constantFrom(..."abcXYZ019-._~!$&'()*+,;=:@".split(""));
const segment = fc.oneof(
  { weight: 2, arbitrary: fc.array(pathChar, { minLength: 1, maxLength: 12 }).map((chars) => chars.join("")) },
  { weight: 3, arbitrary: fc.array(fc.oneof(pathChar, nastyEscape), { minLength: 1, maxLength: 8 }).map((parts) => parts.join("")) },
  { weight: 2, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 6 }).map(percent) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 6 }).map((s) => encodeURIComponent(s) || "x") },
  { weight: 1, arbitrary: fc.uuid().map(String) },
  { weight: 1, arbitrary: fc.constantFrom("..", ".", "", "%2e%2e", "a".repeat(300)) },
);
// An id: the real task, its external id, a stranger's uuid, or something hostile.
const idSegment = fc.oneof(
  { weight: 3, arbitrary: fc.constant("{task}") },
  { weight: 1, arbitrary: fc.constant("fuzz-known") },
  { weight: 1, arbitrary: fc.uuid().map(String) },
  { weight: 4, arbitrary: segment },
);
const indexSegment = fc.oneof(fc.constantFrom("0", "1", "8", "9", "-1", "1e3", "0x1", "00", "1.5"), segment);

const route = fc.oneof(
  fc.constant("/v1/tasks"),
  fc.tuple(idSegment).map(([id]) => `/v1/tasks/${id}`),
  fc.tuple(idSegment).map(([id]) => `/v1/tasks/${id}/events`),
  // Streams of tasks that are not there (the known task never ends here, so its stream would stay open).
  fc.tuple(idSegment.filter((id) => id !== "{task}" && id !== "fuzz-known")).map(([id]) => `/v1/tasks/${id}/stream`),
  fc.tuple(idSegment, indexSegment).map(([id, i]) => `/v1/tasks/${id}/images/${i}`),
  fc.constantFrom("/kling/v1/images/editing/expand", "/v1/images/editing/expand", "/KLING/v1/images/editing/expand/"),
  fc.tuple(fc.constantFrom("/kling/v1/images/editing/expand", "/v1/images/editing/expand"), idSegment).map(([p, id]) => `${p}/${id}`),
  fc.tuple(idSegment, indexSegment).map(([id, i]) => `/files/tasks/${id}/images/${i}`),
  fc.tuple(idSegment, fc.oneof(fc.constant("{token}"), segment)).map(([id, token]) => `/webhooks/kling/${id}/${token}`),
  // A provider route's callbacks name the route (PROVIDER_ROUTES); this stack has only "default".
  fc.tuple(idSegment, fc.oneof(fc.constant("{token}"), segment), fc.oneof(fc.constant("default"), segment)).map(([id, token, r]) => `/webhooks/kling/${id}/${token}/${r}`),
  fc.constantFrom("/healthz", "/readyz", "/v1/provider/routes"),
  fc.constant("/v1/batches"),
  fc
    .tuple(fc.oneof(fc.uuid().map(String), segment), fc.constantFrom("", "/tasks", "/results", "/cancel", "/retry", "/stream"))
    .map(([id, tail]) => `/v1/batches/${id}${tail}`),
  fc.constantFrom("/v1/webhooks/secret", "/v1/webhooks/secret/rotate", "/v1/webhooks/deliveries", "/v1/webhooks/deliveries/redeliver"),
  fc.tuple(idSegment).map(([id]) => `/v1/webhooks/deliveries/${id}`),
  fc.tuple(idSegment).map(([id]) => `/v1/webhooks/deliveries/${id}/redeliver`),
  fc.tuple(idSegment).map(([id]) => `/v1/tasks/${id}/source`),
  fc.constantFrom("/metrics", "/openapi.json", "/docs", "/", "/admin/queues", "/admin/queues/api/queues"),
  fc.tuple(fc.constantFrom("/docs/assets", "/dashboard"), fc.oneof(fc.constantFrom("app.js", "init.js", "swagger-ui.css", "..%2fapp.ts"), segment)).map(([p, f]) => `${p}/${f}`),
  // Somewhere under a known prefix, or nowhere at all.
  fc
    .tuple(fc.constantFrom("", "/v1/tasks", "/kling/v1/images/editing/expand", "/v1/images/editing/expand", "/files", "/webhooks/kling", "/v1/webhooks"), fc.array(segment, { minLength: 1, maxLength: 4 }))
    .map(([prefix, rest]) => `${prefix}/${rest.join("/")}`),
);

const queryName = fc.oneof(fc.constantFrom("external_task_id", "status", "limit", "cursor", "expires", "signature", "wait", "atomic", "dry_run", "format", "n", "task_id", "batch_id", "since", "until"), segment);
const queryValue = fc.oneof(fc.constantFrom("queued", "succeeded", "0", "1", "2", "200", "201", "-5", "1e2", "", "fuzz-known"), fc.uuid().map(String), segment);
const query = fc.oneof(
  { weight: 2, arbitrary: fc.constant("") },
  { weight: 1, arbitrary: fc.constantFrom("?external_task_id=fuzz-known", "?status=queued&limit=2", "?limit=1&cursor=00000000-0000-7000-8000-000000000000") },
  {
    weight: 2,
    arbitrary: fc.array(fc.tuple(queryName, fc.option(queryValue, { nil: undefined })), { minLength: 1, maxLength: 4 }).map(
      (pairs) => `?${pairs.map(([n, v]) => (v === undefined ? n : `${n}=${v}`)).join("&")}`,
    ),
  },
);

// --- headers -------------------------------------------------------------------------------------

const headerText = fc.string({ unit: "grapheme-ascii", maxLength: 40 });
const authorization = fc.oneof(
  { weight: 6, arbitrary: fc.constant("{key}") },
  { weight: 1, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.constantFrom("Bearer", "Bearer ", "bearer {key}", "Bearer {key} extra", "Basic YTpi", "Bearer wrong-key-0123456789", "Token {key}") },
  { weight: 1, arbitrary: headerText },
);
const contentType = fc.oneof(
  { weight: 3, arbitrary: fc.constant("application/json") },
  { weight: 3, arbitrary: fc.constantFrom(undefined, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/merge-patch+json") },
  { weight: 1, arbitrary: fc.constantFrom("application/x-ndjson", "text/csv") },
  {
    weight: 2,
    arbitrary: fc.constantFrom("application/json; charset=utf-16", "application/json; charset=latin1", "application/json; charset=", "application/json; charset=utf-8; x=\"", "application/", ";;", "application/json;"),
  },
  { weight: 1, arbitrary: headerText },
);
// A header that is usually absent.
const rarely = <T>(arbitrary: fc.Arbitrary<T>) => fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary });
const extraHeaders = fc
  .record({
    "content-encoding": rarely(fc.constantFrom("gzip", "deflate", "br", "zstd", "identity", "x-unknown")),
    "x-request-id": rarely(fc.oneof(headerText, fc.constant("a".repeat(200)))),
    accept: rarely(fc.constantFrom("*/*", "text/html", "application/xml")),
  })
  .map((headers) => Object.fromEntries(Object.entries(headers).filter(([, v]) => v !== undefined)) as Record<string, string>);

// --- bodies --------------------------------------------------------------------------------------

const nested = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
const wrongValue = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.string({ unit: "binary", maxLength: 20 }),
  fc.constantFrom("\u0000", "a\u0000b", "\ud800", "x\udc00y", "   ", "data:image/png;base64,AAAA", "http://127.0.0.1:1/x.png", "file:///etc/passwd", "1e309", "-0"),
  fc.array(fc.anything({ maxDepth: 2 }), { maxLength: 3 }),
  fc.object({ maxDepth: 2 }),
  fc.integer({ min: 64 * 1024, max: 600 * 1024 }).map((n) => "A".repeat(n)),
);
const createField = fc.constantFrom(
  "image",
  "up_expansion_ratio",
  "down_expansion_ratio",
  "bottom_expansion_ratio",
  "left_expansion_ratio",
  "right_expansion_ratio",
  "prompt",
  "n",
  "external_task_id",
  "callback_url",
  "watermark_info",
  "unknown_field",
);
type Body = { kind: string; text: string | Buffer; value?: unknown } | undefined;
const body: fc.Arbitrary<Body> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: fc.constant({ kind: "create", text: "{create}" }) },
  {
    weight: 5,
    arbitrary: fc.tuple(createField, fc.oneof(wrongValue, fc.constant("{delete}"))).map(([field, value]) => ({ kind: `create with ${field} mutated`, text: `{mutate:${field}}`, value })),
  },
  { weight: 1, arbitrary: fc.constantFrom("", "{", "[]", "null", "\"x\"", "123", "{\"a\":}", "\u0000", "{\"image\":\"\\u0000\"}", "\ufeff{}").map((text) => ({ kind: "bad json", text })) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 200_000 }).map((depth) => ({ kind: `nested ${depth}`, text: nested(depth) })) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 2048 }).map((bytes) => ({ kind: "random bytes", text: Buffer.from(bytes) })) },
  { weight: 1, arbitrary: fc.integer({ min: 100_000, max: 3_000_000 }).map((n) => ({ kind: `huge ${n}`, text: `{"prompt":"${"x".repeat(n)}"}` })) },
) as fc.Arbitrary<Body>;

// What the provider posts to a task's callback URL, with one field made wrong.
const callbackField = fc.constantFrom("task_id", "task_status", "task_status_msg", "task_info", "final_unit_deduction", "task_result", "created_at", "updated_at");
const callbackBody: fc.Arbitrary<Body> = fc
  .tuple(fc.constantFrom("submitted", "processing", "succeed", "failed"), fc.option(callbackField, { nil: undefined }), fc.oneof(wrongValue, fc.constant("{delete}")))
  .map(([status, field, value]) => ({ kind: `${status} callback${field ? ` with ${field} mutated` : ""}`, text: `{callback:${status}:${field ?? ""}}`, value }));

const chunked = fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) });

// Anything anywhere.
const anyRequest = fc.record({
  method: fc.constantFrom("GET", "GET", "POST", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "PURGE"),
  route,
  query,
  authorization,
  contentType,
  extraHeaders,
  body,
  chunked,
});

// Creates, where the body matters most: mostly well-formed requests carrying one bad field.
const createRequest = fc.record({
  method: fc.constant("POST"),
  route: fc.constantFrom("/v1/tasks", "/kling/v1/images/editing/expand", "/v1/images/editing/expand"),
  query: fc.constant(""),
  authorization: fc.oneof({ weight: 5, arbitrary: fc.constant("{key}") }, { weight: 1, arbitrary: authorization }),
  contentType: fc.oneof({ weight: 4, arbitrary: fc.constant("application/json") }, { weight: 1, arbitrary: contentType }),
  extraHeaders,
  body: fc.oneof({ weight: 1, arbitrary: fc.constant({ kind: "create", text: "{create}" } as Body) }, { weight: 4, arbitrary: body }),
  chunked,
});

// Callbacks that pass the URL token check, to a task of their own (so that a report can still
// move it), so that their bodies reach the receiver's parsing and the task's update.
const callbackRequest = fc.record({
  method: fc.constant("POST"),
  route: fc.constant("/webhooks/kling/{fresh-task}/{fresh-token}"),
  query: fc.constant(""),
  authorization: fc.constant(undefined),
  contentType: fc.oneof({ weight: 4, arbitrary: fc.constant("application/json") }, { weight: 1, arbitrary: contentType }),
  extraHeaders,
  body: fc.oneof({ weight: 4, arbitrary: callbackBody }, { weight: 1, arbitrary: body }),
  chunked,
});

const fuzzRequest = fc.oneof({ weight: 2, arbitrary: createRequest }, { weight: 1, arbitrary: callbackRequest }, { weight: 3, arbitrary: anyRequest });
type FuzzRequest = typeof fuzzRequest extends fc.Arbitrary<infer T> ? T : never;

// --- what must hold ------------------------------------------------------------------------------

const freshTask = async () => {
  const created = await call(stack.api.url, "POST", "/v1/tasks", { key, body: { ...createBody, external_task_id: `fuzz-${randomUUID()}` } });
  const id = created.body.id as string;
  return { id, token: (await taskRow(stack.db, id)).callbackToken };
};

const materialise = async (input: FuzzRequest) => {
  const fresh = input.route.includes("{fresh-task}") ? await freshTask() : undefined;
  const target = fresh?.id ?? taskId;
  const path = `${input.route
    .replaceAll("{task}", taskId)
    .replaceAll("{token}", callbackToken)
    .replaceAll("{fresh-task}", target)
    .replaceAll("{fresh-token}", fresh?.token ?? "")}${input.query}`;
  const headers: Record<string, string> = { ...input.extraHeaders };
  if (input.authorization === "{key}") headers.authorization = `Bearer ${key}`;
  else if (input.authorization !== undefined) headers.authorization = input.authorization.replaceAll("{key}", key);
  if (input.contentType !== undefined) headers["content-type"] = input.contentType;
  // The request id links a log line to the request that caused it, unless the fuzz set its own.
  headers["x-request-id"] ??= `fuzz-${randomUUID()}`;
  let payload: string | Buffer | undefined;
  if (input.body) {
    const { text } = input.body;
    if (text === "{create}") payload = JSON.stringify({ ...createBody, external_task_id: `fuzz-${randomUUID()}` });
    else if (typeof text === "string" && text.startsWith("{mutate:")) {
      const field = text.slice("{mutate:".length, -1);
      const { value } = input.body;
      const mutated: Record<string, unknown> = { ...createBody, external_task_id: `fuzz-${randomUUID()}` };
      if (value === "{delete}") delete mutated[field];
      else mutated[field] = value;
      payload = JSON.stringify(mutated);
    } else if (typeof text === "string" && text.startsWith("{callback:")) {
      const [status, field] = text.slice("{callback:".length, -1).split(":");
      const report: Record<string, unknown> = {
        task_id: `provider-${target}`,
        task_status: status,
        task_status_msg: status === "failed" ? "content policy" : "",
        task_info: { external_task_id: target },
        ...(status === "succeed" ? { task_result: { images: [{ index: 0, url: "http://127.0.0.1:9/result.png" }] } } : {}),
        created_at: Date.now(),
        updated_at: Date.now(),
      };
      const { value } = input.body;
      if (field && value === "{delete}") delete report[field];
      else if (field) report[field] = value;
      payload = JSON.stringify(report);
    } else payload = text;
  }
  // Large or unmeasured bodies go with Expect: 100-continue, as curl sends them: a refusal made
  // before reading may close the connection, and a client still sending could miss the answer.
  const expectContinue = payload !== undefined && (input.chunked || Buffer.byteLength(payload) > 64 * 1024);
  return { method: input.method, path, headers, body: payload, chunked: input.chunked, expectContinue };
};

const dropinPath = /^\/(kling\/)?v1\/images\/editing\/expand(\/|\?|$)/i;
const providerCodes: Record<number, number[]> = { 400: [1200, 1201], 401: [1001, 1002], 404: [1202, 1203], 429: [1302], 503: [5001] };

const checkAnswer = (method: string, path: string, answer: RawAnswer) => {
  // /readyz answers 503 by design when Postgres or Redis is slow to answer its probe.
  const readinessDown = path.startsWith("/readyz") && answer.status === 503 && (answer.body as { status?: string }).status === "not_ready";
  if (!readinessDown) expect(answer.status, answer.text.slice(0, 400)).toBeLessThan(500);
  expect(answer.headers["x-request-id"], "every answer carries a request id").toBeTruthy();
  if (answer.status < 400 || method === "HEAD") return;
  if (dropinPath.test(path)) {
    expect(answer.body, `provider shape: ${answer.text.slice(0, 300)}`).toEqual({ code: expect.any(Number), message: expect.any(String), request_id: expect.any(String) });
    expect(providerCodes[answer.status], `code for HTTP ${answer.status}`).toContain((answer.body as { code: number }).code);
  } else if (/^\/webhooks\/kling\/[^/?]+\/[^/?]+(\/[^/?]+)?\/?(\?|$)/i.test(path) && method === "POST") {
    // The receiver's own answers ({outcome, detail}) or a refusal made before it ran (the third
    // segment, when there is one, names a provider route).
    expect(answer.body, answer.text.slice(0, 300)).toSatisfy((b: unknown) => typeof b === "object" && b !== null && ("outcome" in b || "title" in b));
  } else {
    expect(answer.headers["content-type"], answer.text.slice(0, 300)).toMatch(/^application\/problem\+json/);
    expect(answer.body).toMatchObject({ status: answer.status, title: expect.any(String), detail: expect.any(String), request_id: expect.any(String) });
  }
};

describe("every route under hostile input", () => {
  it(`when ${runs} generated requests hit the API, then none is a 5xx, each answers in its prefix's shape, and nothing is logged as an error`, async () => {
    let sent = 0;
    const statuses = new Map<string, number>();
    const family = (path: string) => (dropinPath.test(path) ? "dropin" : (/^\/(v1\/tasks|files|webhooks|healthz|readyz)/i.exec(path)?.[1] ?? "other").toLowerCase());
    await fc.assert(
      fc.asyncProperty(fuzzRequest, async (input) => {
        logs.clear();
        const request = await materialise(input);
        const answer = await rawRequest(stack.api.url, { ...request, agent }, 20_000);
        sent++;
        const bucket = `${family(request.path)} ${answer.status}`;
        statuses.set(bucket, (statuses.get(bucket) ?? 0) + 1);
        checkAnswer(request.method, request.path, answer);
        const errors = logs.errors();
        logs.clear();
        expect(errors, "logged at error level").toEqual([]);
      }),
      { numRuns: runs, seed },
    );
    console.log(`fuzz: ${sent} requests; ${[...statuses].sort(([a], [b]) => a.localeCompare(b)).map(([bucket, n]) => `${bucket} x${n}`).join(", ")}`);
    // Late lines (after an answer went out) count too.
    expect(logs.errors()).toEqual([]);
  }, 600_000);
});
