import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, type ApiAnswer } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { countTasksOf } from "../support/rows.ts";

// KLING.md "Create: request body", every rule except the image itself (validation-image.test.ts):
// the value just inside each limit is accepted, the value just outside is rejected naming the field
// and the reason, and a rejection writes nothing.

type Body = Record<string, unknown>;
const RATIO_FIELDS = ["up_expansion_ratio", "down_expansion_ratio", "left_expansion_ratio", "right_expansion_ratio"] as const;
const DROPIN_PATHS = ["/kling/v1/images/editing/expand", "/v1/images/editing/expand"] as const;

let stack: Stack;
let image: string; // a valid 400x300 PNG, raw Base64

beforeAll(async () => {
  // n = 9 must fit a route: a task holds n provider slots, and one no route can hold is refused.
  stack = await startStack({ apiEnv: { PROVIDER_CAPACITY: "9" }, workerEnv: { PROVIDER_CAPACITY: "9" }, simulatorEnv: { SIM_CAPACITY: "9" } });
  image = (await makeImage(400, 300)).toString("base64");
});
afterAll(async () => {
  await stack?.stop();
});

// A valid body with all ratios 0, then `patch` applied; a patch value of `undefined` removes the key.
const body = (patch: Body = {}): Body => {
  const out: Body = { image, up_expansion_ratio: 0, down_expansion_ratio: 0, left_expansion_ratio: 0, right_expansion_ratio: 0 };
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined) delete out[k];
    else out[k] = v;
  }
  return out;
};

// Ratios given as {up, down, left, right}; `bottom` sends bottom_expansion_ratio instead of down.
const ratios = (r: { up?: number; down?: number; bottom?: number; left?: number; right?: number }): Body => ({
  up_expansion_ratio: r.up ?? 0,
  down_expansion_ratio: r.bottom !== undefined && r.down === undefined ? undefined : (r.down ?? 0),
  ...(r.bottom !== undefined ? { bottom_expansion_ratio: r.bottom } : {}),
  left_expansion_ratio: r.left ?? 0,
  right_expansion_ratio: r.right ?? 0,
});

type Sent = { answer: ApiAnswer; accountId: string };

// Every submission gets its own account, so "nothing was written" is checkable per case.
const submit = async (
  payload: Body | undefined,
  options: { path?: string; rawBody?: string; headers?: Record<string, string> } = {},
): Promise<Sent> => {
  const { accountId, key } = await stack.newAccount();
  const answer = await call(stack.api.url, "POST", options.path ?? "/v1/tasks", {
    key,
    ...(options.rawBody !== undefined ? { rawBody: options.rawBody } : { body: payload }),
    headers: options.headers,
  });
  return { answer, accountId };
};

const expectNothingWritten = async (accountId: string) => {
  expect(await countTasksOf(stack.db, accountId)).toBe(0);
};

const expectAccepted = async ({ answer }: Sent) => {
  expect(answer.status, JSON.stringify(answer.body)).toBe(202);
  expect(answer.body).toMatchObject({ status: "queued" });
};

// Native answer: RFC 9457 problem details, with the field and the reason in `errors` and `detail`.
const expectRejected = async ({ answer, accountId }: Sent, field: string, reason: RegExp) => {
  expect(answer.status, JSON.stringify(answer.body)).toBe(400);
  expect(answer.headers.get("content-type")).toMatch(/^application\/problem\+json/);
  expect(answer.body).toMatchObject({
    type: expect.stringMatching(/validation-failed$/),
    title: expect.any(String),
    status: 400,
    instance: "/v1/tasks",
    request_id: expect.any(String),
  });
  expect(answer.body.errors).toEqual(expect.arrayContaining([{ field, message: expect.stringMatching(reason) }]));
  expect(answer.body.detail).toContain(`${field}: `);
  await expectNothingWritten(accountId);
};

// Drop-in answer: the provider's shape, HTTP 400 with code 1201, the message naming the field.
const expectProviderRejected = async ({ answer, accountId }: Sent, message: RegExp) => {
  expect(answer.status, JSON.stringify(answer.body)).toBe(400);
  expect(answer.body).toEqual({ code: 1201, message: expect.stringMatching(message), request_id: expect.any(String) });
  await expectNothingWritten(accountId);
};

describe("expansion ratios (0..2 each)", () => {
  const sides = [
    { field: "up_expansion_ratio", side: "up" },
    { field: "down_expansion_ratio", side: "down" },
    { field: "bottom_expansion_ratio", side: "bottom" },
    { field: "left_expansion_ratio", side: "left" },
    { field: "right_expansion_ratio", side: "right" },
  ] as const;

  it.each(sides)("when $field is -0.01, then it is rejected as out of 0..2", async ({ field, side }) => {
    await expectRejected(await submit(body(ratios({ [side]: -0.01 }))), field, /between 0 and 2/);
  });

  it.each(sides)("when $field is 0, then the task is accepted", async ({ side }) => {
    await expectAccepted(await submit(body(ratios({ [side]: 0 }))));
  });

  it.each(sides)("when $field is 2 and the others 0 (area exactly 3), then the task is accepted", async ({ side }) => {
    await expectAccepted(await submit(body(ratios({ [side]: 2 }))));
  });

  it.each(sides)("when $field is 2.01, then it is rejected as out of 0..2", async ({ field, side }) => {
    await expectRejected(await submit(body(ratios({ [side]: 2.01 }))), field, /between 0 and 2/);
  });

  it.each(RATIO_FIELDS)("when %s is the string \"0.1\", then it is rejected as not a number", async (field) => {
    await expectRejected(await submit(body({ [field]: "0.1" })), field, /must be a number/);
  });

  it.each(RATIO_FIELDS)("when %s is missing, then it is rejected as required", async (field) => {
    await expectRejected(await submit(body({ [field]: undefined })), field, /number|required/);
  });

  it("when bottom_expansion_ratio is sent instead of down_expansion_ratio, then it is accepted and stored as the downward ratio", async () => {
    const sent = await submit(body(ratios({ up: 0.25, bottom: 0.5 })));
    await expectAccepted(sent);
    expect(sent.answer.body.request).toMatchObject({ up_expansion_ratio: 0.25, down_expansion_ratio: 0.5 });
  });

  it("when down_expansion_ratio and bottom_expansion_ratio differ, then it is rejected", async () => {
    await expectRejected(await submit(body(ratios({ down: 0.2, bottom: 0.3 }))), "bottom_expansion_ratio", /differs from down_expansion_ratio/);
  });

  it("when down_expansion_ratio and bottom_expansion_ratio are equal, then it is accepted", async () => {
    const sent = await submit(body(ratios({ down: 0.3, bottom: 0.3 })));
    await expectAccepted(sent);
    expect(sent.answer.body.request.down_expansion_ratio).toBe(0.3);
  });
});

describe("expanded area: (1+up+down)*(1+left+right) <= 3", () => {
  it.each([
    { up: 1, down: 1, left: 0, right: 0 }, // 3 * 1
    { up: 0, down: 0, left: 1, right: 1 }, // 1 * 3
    { up: 0.5, down: 0.5, left: 0.25, right: 0.25 }, // 2 * 1.5
    { up: 0.1, down: 0.1, left: 0.75, right: 0.75 }, // 1.2 * 2.5, not exactly 3 in binary floating point
    { up: 1, down: 0.5, left: 0, right: 0 }, // 2.5
  ])("when the area factor is at most 3 (up $up, down $down, left $left, right $right), then it is accepted", async (r) => {
    await expectAccepted(await submit(body(ratios(r))));
  });

  it.each([
    { up: 1, down: 1, left: 0.01, right: 0, factor: 3.03 },
    { up: 0.5, down: 0.5, left: 0.5, right: 0.01, factor: 3.02 },
    { up: 2, down: 0.01, left: 0, right: 0, factor: 3.01 },
    // A hair over: the message must not round it to "is 3; may be at most 3x".
    { up: 2, down: 0.0000001, left: 0, right: 0, factor: "3\\.0000001" },
  ])("when the area factor is just over 3 ($factor), then it is rejected naming the 3x limit", async ({ factor, ...r }) => {
    const sent = await submit(body(ratios(r)));
    await expectRejected(sent, "expansion", new RegExp(`is ${factor}; the expanded area may be at most 3x`));
  });

  it("when every ratio is the seed's default 1 (9x area), then it is rejected naming the 3x limit", async () => {
    await expectRejected(await submit(body(ratios({ up: 1, down: 1, left: 1, right: 1 }))), "expansion", /is 9; .*at most 3x/);
  });
});

describe("prompt (at most 2500 characters)", () => {
  it.each([
    { what: "2500 ASCII characters", prompt: "a".repeat(2500) },
    { what: "2500 emoji (5000 UTF-16 units)", prompt: "😀".repeat(2500) },
  ])("when the prompt is $what, then it is accepted", async ({ prompt }) => {
    const sent = await submit(body({ prompt }));
    await expectAccepted(sent);
    expect(sent.answer.body.request.prompt).toBe(prompt);
  });

  it.each([
    { what: "2501 ASCII characters", prompt: "a".repeat(2501) },
    { what: "2501 emoji", prompt: "😀".repeat(2501) },
  ])("when the prompt is $what, then it is rejected as too long", async ({ prompt }) => {
    await expectRejected(await submit(body({ prompt })), "prompt", /at most 2500 characters/);
  });

  it.each([{ prompt: 42 }, { prompt: ["a"] }, { prompt: { text: "a" } }])("when the prompt is not a string ($prompt), then it is rejected", async ({ prompt }) => {
    await expectRejected(await submit(body({ prompt })), "prompt", /must be a string/);
  });
});

describe("n (1..9 images)", () => {
  it.each([
    { n: 1, stored: 1 },
    { n: 9, stored: 9 },
    { n: "3", stored: 3 },
  ])("when n is $n, then it is accepted as $stored", async ({ n, stored }) => {
    const sent = await submit(body({ n }));
    await expectAccepted(sent);
    expect(sent.answer.body.request.n).toBe(stored);
  });

  it.each([
    { n: 0, reason: /from 1 to 9/ },
    { n: 10, reason: /from 1 to 9/ },
    { n: 1.5, reason: /whole number/ },
    { n: "x", reason: /whole number/ },
    { n: "10", reason: /from 1 to 9/ },
    { n: true, reason: /whole number/ },
  ])("when n is $n, then it is rejected", async ({ n, reason }) => {
    await expectRejected(await submit(body({ n })), "n", reason);
  });
});

describe("callback_url, external_task_id, watermark_info", () => {
  it.each(["ftp://x", "not a url", "", 12])("when callback_url is %j, then it is rejected", async (callback_url) => {
    await expectRejected(await submit(body({ callback_url })), "callback_url", /http\(s\) URL|string/);
  });

  // A literal public address: this machine has no DNS for public names.
  // (The test stack allows 127.0.0.1 itself, its image hosts' address.)
  it.each([
    { url: "http://127.0.0.2:9/hook", reason: /public/ },
    { url: "http://[::7f00:1]/hook", reason: /public/ },
    { url: "http://10.1.2.3/hook", reason: /public/ },
    { url: "http://localhost:3000/hook", reason: /public/ },
  ])("when callback_url is $url, then it is refused by the same address rules as image URLs", async ({ url, reason }) => {
    await expectRejected(await submit(body({ callback_url: url })), "callback_url", reason);
  });

  it("when callback_url is a public https URL, then it is accepted and kept", async () => {
    const sent = await submit(body({ callback_url: "https://93.184.215.14/hook" }));
    await expectAccepted(sent);
    expect(sent.answer.body.callback_url).toBe("https://93.184.215.14/hook");
  });

  it.each([
    { what: "empty", value: "", reason: /must not be empty/ },
    { what: "257 characters", value: "e".repeat(257), reason: /at most 256 characters/ },
    { what: "a number", value: 7, reason: /must be a string/ },
  ])("when external_task_id is $what, then it is rejected", async ({ value, reason }) => {
    await expectRejected(await submit(body({ external_task_id: value })), "external_task_id", reason);
  });

  it.each([
    { what: "256 characters", id: "e".repeat(256) },
    { what: "256 emoji (512 UTF-16 units)", id: "😀".repeat(256) },
  ])("when external_task_id is $what, then it is accepted and kept", async ({ id }) => {
    const sent = await submit(body({ external_task_id: id }));
    await expectAccepted(sent);
    expect(sent.answer.body.external_task_id).toBe(id);
  });

  it("when external_task_id is 257 emoji, then it is rejected as too long", async () => {
    await expectRejected(await submit(body({ external_task_id: "😀".repeat(257) })), "external_task_id", /at most 256 characters/);
  });

  it.each([true, false])("when watermark_info is {enabled: %s}, then it is accepted", async (enabled) => {
    const sent = await submit(body({ watermark_info: { enabled } }));
    await expectAccepted(sent);
    expect(sent.answer.body.request.watermark).toBe(enabled);
  });

  it("when watermark_info.enabled is \"yes\", then it is rejected as not a boolean", async () => {
    await expectRejected(await submit(body({ watermark_info: { enabled: "yes" } })), "watermark_info.enabled", /true or false/);
  });

  it("when watermark_info is not an object, then it is rejected", async () => {
    await expectRejected(await submit(body({ watermark_info: true })), "watermark_info", /object/);
  });
});

// Postgres text cannot hold U+0000 and JSON can carry a lone surrogate: a caller's bad string must
// be a 400 naming the field, not a 500 (which the drop-in route turns into 5000 "retry later").
describe("strings the database cannot store", () => {
  const cases = [
    { what: "a prompt with a NUL character", field: "prompt", value: "sky\u0000line" },
    { what: "a prompt with a lone surrogate", field: "prompt", value: "\ud800" },
    { what: "an external_task_id with a NUL character", field: "external_task_id", value: "order\u00001" },
  ];

  it.each(cases)("when the native route gets $what, then it is a 400 naming the field and writes nothing", async ({ field, value }) => {
    await expectRejected(await submit(body({ [field]: value })), field, /./);
  });

  it.each(cases)("when the drop-in route gets $what, then it answers 400/1201 naming the field", async ({ field, value }) => {
    await expectProviderRejected(await submit(body({ [field]: value }), { path: DROPIN_PATHS[0] }), new RegExp(`^${field}: `));
  });
});

describe("the request body itself", () => {
  it("when the body is not valid JSON, then it is a 400 saying so", async () => {
    const sent = await submit(undefined, { rawBody: "{", headers: { "content-type": "application/json" } });
    await expectRejected(sent, "body", /not valid JSON/);
  });

  it("when the body is a JSON array, then it is a 400 asking for a JSON object", async () => {
    await expectRejected(await submit([body()] as unknown as Body), "body", /must be a JSON object/);
  });

  it("when the body has no content-type, then it is a 400 saying to send JSON", async () => {
    const sent = await submit(undefined, { rawBody: JSON.stringify(body()) });
    await expectRejected(sent, "body", /Content-Type: application\/json/);
  });

  it("when several fields are wrong at once, then every one is listed", async () => {
    const sent = await submit(body({ up_expansion_ratio: 3, n: 0, prompt: 5 }));
    expect(sent.answer.status).toBe(400);
    expect(sent.answer.body.errors.map((e: { field: string }) => e.field)).toEqual(
      expect.arrayContaining(["up_expansion_ratio", "n", "prompt"]),
    );
    await expectNothingWritten(sent.accountId);
  });
});

describe("the same rejections through the drop-in routes (HTTP 400, code 1201)", () => {
  const cases: { what: string; patch: Body; message: RegExp }[] = [
    { what: "a data: prefix", patch: { image: `data:image/png;base64,${"A".repeat(8)}` }, message: /image: .*data: prefix/ },
    { what: "a ratio out of range", patch: { left_expansion_ratio: 2.01 }, message: /left_expansion_ratio: must be between 0 and 2/ },
    { what: "an area over 3x", patch: ratios({ up: 1, down: 1, left: 1, right: 1 }), message: /expansion: .*at most 3x/ },
    { what: "n out of range", patch: { n: "10" }, message: /n: must be from 1 to 9/ },
    { what: "a prompt over 2500 characters", patch: { prompt: "p".repeat(2501) }, message: /prompt: must be at most 2500 characters/ },
  ];

  it.each(DROPIN_PATHS.flatMap((path) => cases.map((c) => ({ path, ...c }))))(
    "when $path gets $what, then it answers 400/1201 naming the field and writes nothing",
    async ({ path, patch, message }) => {
      await expectProviderRejected(await submit(body(patch), { path }), message);
    },
  );

  it.each(DROPIN_PATHS)("when %s gets a body that is not JSON, then it answers 400/1201 and writes nothing", async (path) => {
    const sent = await submit(undefined, { path, rawBody: "{", headers: { "content-type": "application/json" } });
    await expectProviderRejected(sent, /body: is not valid JSON/);
  });

  it.each(DROPIN_PATHS)("when %s gets a valid body, then it answers code 0 (the rejections above are not a broken route)", async (path) => {
    const { answer } = await submit(body({ n: "2" }), { path });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ code: 0, data: { task_status: "submitted" } });
  });
});
