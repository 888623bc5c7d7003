import { Agent, fetch as undiciFetch } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newAccessKey, runAccessKeyCli, waitUntil } from "../support/access-keys.ts";
import { call } from "../support/http.ts";
import { imageSize, makeImage } from "../support/images.ts";
import { forgeJwt, klingClaims, nowSeconds } from "../support/jwt-forge.ts";
import { createKlingClient, signKlingJwt, type FetchLike } from "../support/kling-official-client.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { startTlsProxy } from "../support/tls-proxy.ts";

// Small, so a revoked key stops working quickly; the leeway is set rather than left to its default.
const AUTH_CACHE_MS = 500;
const LEEWAY_SECONDS = 10;
// Scheduling noise on a shared 2-core machine, on top of the cache's own lifetime (still well
// under the default AUTH_CACHE_MS, so a cache that ignored its setting would fail the test).
const REVOCATION_MARGIN_MS = 2_000;
// The access-key CLI is a process of its own (npm, tsx, a Postgres pool): seconds, more under load.
const CLI_TEST_TIMEOUT_MS = 120_000;

let stack: Stack;
let image: string;

beforeAll(async () => {
  stack = await startStack({ apiEnv: { AUTH_CACHE_MS: String(AUTH_CACHE_MS), JWT_CLOCK_TOLERANCE_SECONDS: String(LEEWAY_SECONDS) } });
  image = (await makeImage(400, 300)).toString("base64");
});
afterAll(() => stack?.stop());

// Kling's official request: raw Base64, the official spelling of the downward ratio.
const expandBody = (externalTaskId: string) => ({
  image,
  up_expansion_ratio: 0.1,
  down_expansion_ratio: 0.1,
  left_expansion_ratio: 0.25,
  right_expansion_ratio: 0.25,
  n: 1,
  external_task_id: externalTaskId,
});
const expanded = { width: 600, height: 360 };
const uniqueId = (prefix: string) => `${prefix}-${Math.random().toString(36).slice(2, 10)}`;

describe("a client written for Kling's official API, pointed at us", () => {
  it("when it signs its own JWT with a pair made by the CLI, then create, get by either id and list work, the task succeeds and its image downloads without auth", async () => {
    const { accountId, key } = await stack.newAccount();
    const minted = await runAccessKeyCli(stack, ["--account", accountId, "--label", "official client"]);
    expect(minted.exitCode).toBe(0);
    expect(minted.output).toMatchObject({ account_id: accountId, access_key: expect.any(String), secret_key: expect.any(String) });
    const client = createKlingClient({ baseUrl: stack.api.url, accessKey: minted.output.access_key, secretKey: minted.output.secret_key });

    const externalId = uniqueId("official");
    const created = await client.create(expandBody(externalId));
    expect(created).toMatchObject({ status: 200, code: 0, message: "SUCCEED", data: { task_status: "submitted", task_info: { external_task_id: externalId } } });
    expect(typeof created.request_id).toBe("string");
    const taskId: string = created.data.task_id;

    expect((await client.get(taskId)).data.task_id).toBe(taskId);
    expect((await client.get(externalId)).data.task_id).toBe(taskId);
    const listed = await client.list({ pageNum: 1, pageSize: 10 });
    expect(listed.code).toBe(0);
    expect(listed.data.map((t) => t.task_id)).toEqual([taskId]);

    const done = await client.waitUntilDone(taskId);
    expect(done.data).toMatchObject({ task_id: taskId, task_status: "succeed", task_info: { external_task_id: externalId } });
    const url: string = done.data.task_result.images[0].url;
    expect(new URL(url).origin).toBe(stack.api.url);
    const download = await client.download(url);
    expect(download.status).toBe(200);
    expect(await imageSize(download.bytes)).toMatchObject(expanded);

    // The JWT and the account's API key name the same account.
    expect((await call(stack.api.url, "GET", `/v1/tasks/${taskId}`, { key })).status).toBe(200);
  }, CLI_TEST_TIMEOUT_MS);

  it("when the API sits behind a TLS terminator and PUBLIC_BASE_URL names it, then the same client works over HTTPS and its image links point at, and download through, the HTTPS host", async () => {
    const proxy = await startTlsProxy();
    // The client trusts the test certificate for its own requests only; nothing global changes.
    const agent = new Agent({ connect: { ca: proxy.ca } });
    try {
      const edge = await stack.startApi({ PUBLIC_BASE_URL: proxy.url });
      proxy.forwardTo(edge.url);
      const tlsFetch: FetchLike = (url, init) => undiciFetch(url, { ...init, dispatcher: agent });
      const { accountId } = await stack.newAccount();
      const pair = await newAccessKey(stack, accountId);
      const client = createKlingClient({ baseUrl: proxy.url, accessKey: pair.accessKey, secretKey: pair.secretKey, fetch: tlsFetch });

      const externalId = uniqueId("tls");
      const created = await client.create(expandBody(externalId));
      expect(created).toMatchObject({ status: 200, code: 0 });
      const done = await client.waitUntilDone(created.data.task_id);
      expect(done.data.task_status).toBe("succeed");
      const url = new URL(done.data.task_result.images[0].url);
      expect(url.origin).toBe(proxy.url);
      const download = await client.download(url.toString());
      expect(download.status).toBe(200);
      expect(await imageSize(download.bytes)).toMatchObject(expanded);
      expect(proxy.forwarded).toContain(`GET ${url.pathname}${url.search}`);

      // Verification is on: a client that does not trust the certificate is refused by TLS.
      const untrusting = fetch(`${proxy.url}/v1/images/editing/expand/${externalId}`);
      await expect(untrusting).rejects.toMatchObject({ cause: { code: expect.stringMatching(/SELF_SIGNED|UNABLE_TO_VERIFY/) } });
    } finally {
      await agent.close();
      await proxy.stop();
    }
  });
});

// Every case is checked on the drop-in route (the provider's code) and on a native route (RFC 9457).
const dropinPath = "/v1/images/editing/expand?pageNum=1&pageSize=1";
const nativePath = "/v1/tasks?limit=1";

type Refusal = { code: 1002 | 1003 | 1004; detail: RegExp };

const expectAccepted = async (token: string) => {
  const dropin = await call(stack.api.url, "GET", dropinPath, { key: token });
  expect(dropin.status, JSON.stringify(dropin.body)).toBe(200);
  expect(dropin.body).toMatchObject({ code: 0, data: expect.any(Array) });
  const native = await call(stack.api.url, "GET", nativePath, { key: token });
  expect(native.status, JSON.stringify(native.body)).toBe(200);
};

const expectRefused = async (token: string, refusal: Refusal) => {
  const dropin = await call(stack.api.url, "GET", dropinPath, { key: token });
  expect(dropin.status, JSON.stringify(dropin.body)).toBe(401);
  expect(dropin.body).toMatchObject({ code: refusal.code, request_id: expect.any(String) });
  expect(dropin.body.message).toMatch(refusal.detail);
  const native = await call(stack.api.url, "GET", nativePath, { key: token });
  expect(native.status, JSON.stringify(native.body)).toBe(401);
  expect(native.headers.get("content-type")).toContain("application/problem+json");
  expect(native.headers.get("www-authenticate")).toContain("Bearer");
  expect(native.body).toMatchObject({ status: 401, title: "Authentication required" });
  expect(native.body.detail).toMatch(refusal.detail);
};

const invalid = (detail: RegExp): Refusal => ({ code: 1002, detail });

describe("Kling JWTs", () => {
  let accessKey: string;
  let secretKey: string;
  beforeAll(async () => {
    const { accountId } = await stack.newAccount();
    ({ accessKey, secretKey } = await newAccessKey(stack, accountId));
  });

  it("when the JWT is signed as Kling documents, then both route families accept it", async () => {
    await expectAccepted(signKlingJwt(accessKey, secretKey));
  });

  it("when exp is past by more than the leeway, then it is refused as expired (1004)", async () => {
    await expectRefused(forgeJwt({ claims: klingClaims(accessKey, { exp: nowSeconds() - 60 }), secret: secretKey }), { code: 1004, detail: /expired/ });
  });

  it("when nbf is ahead by more than the leeway, then it is refused as not yet valid (1003)", async () => {
    await expectRefused(forgeJwt({ claims: klingClaims(accessKey, { nbf: nowSeconds() + 60 }), secret: secretKey }), { code: 1003, detail: /not valid yet/ });
  });

  it("when exp is just past and nbf just ahead, within the leeway, then it is accepted (clock drift)", async () => {
    await expectAccepted(forgeJwt({ claims: klingClaims(accessKey, { exp: nowSeconds() - 3 }), secret: secretKey }));
    await expectAccepted(forgeJwt({ claims: klingClaims(accessKey, { nbf: nowSeconds() + 3 }), secret: secretKey }));
  });

  it("when the JWT is signed with another secret, then it is refused as invalid (1002)", async () => {
    await expectRefused(forgeJwt({ claims: klingClaims(accessKey), secret: `${secretKey}x` }), invalid(/signature/));
  });

  it("when iss names an access key that does not exist, then it is refused as invalid (1002)", async () => {
    await expectRefused(forgeJwt({ claims: klingClaims("ak_does_not_exist_0000"), secret: secretKey }), invalid(/unknown or revoked/));
  });

  it("when the token is unsigned (alg none), then it is refused (1002)", async () => {
    const unsigned = forgeJwt({ header: { alg: "none", typ: "JWT" }, claims: klingClaims(accessKey), hmac: "none" });
    expect(unsigned.endsWith(".")).toBe(true);
    await expectRefused(unsigned, invalid(/HS256/));
  });

  it("when the header says HS512 or RS256 (even with a signature the secret makes), then it is refused (1002)", async () => {
    await expectRefused(forgeJwt({ header: { alg: "HS512", typ: "JWT" }, claims: klingClaims(accessKey), secret: secretKey, hmac: "sha512" }), invalid(/HS256/));
    // Algorithm confusion: an RS256 header over an HMAC made with the secret.
    await expectRefused(forgeJwt({ header: { alg: "RS256", typ: "JWT" }, claims: klingClaims(accessKey), secret: secretKey }), invalid(/HS256/));
  });

  it("when the JWT has no exp (or a non-numeric one), then it is refused (1002)", async () => {
    const { exp: _exp, ...noExp } = klingClaims(accessKey);
    await expectRefused(forgeJwt({ claims: noExp, secret: secretKey }), invalid(/exp/));
    await expectRefused(forgeJwt({ claims: klingClaims(accessKey, { exp: String(nowSeconds() + 1800) }), secret: secretKey }), invalid(/exp/));
  });

  it("when the JWT's exp lies years ahead, then it is refused (1002): tokens are short-lived", async () => {
    await expectRefused(forgeJwt({ claims: klingClaims(accessKey, { exp: nowSeconds() + 10 * 365 * 86_400 }), secret: secretKey }), invalid(/exp/));
  });

  it("when the JWT has no iss, then it is refused (1002)", async () => {
    const { iss: _iss, ...noIss } = klingClaims(accessKey);
    await expectRefused(forgeJwt({ claims: noIss, secret: secretKey }), invalid(/iss/));
  });

  it("when the segments between the dots are garbage, then it is 401/1002, never a server error", async () => {
    const b64 = (text: string) => Buffer.from(text).toString("base64url");
    const header = b64(JSON.stringify({ alg: "HS256", typ: "JWT" }));
    for (const token of [
      "abc.def.ghi",
      `${b64("{not json")}.${b64("{}")}.sig`,
      `${header}.${b64("[1,2]")}.sig`,
      `${header}.${b64('"a string"')}.sig`,
      `${header}.${b64(JSON.stringify({ iss: { nested: true } }))}.sig`,
      `${header}.${b64(JSON.stringify({ iss: "x".repeat(5_000) }))}.sig`,
      `${header}.${b64(JSON.stringify(klingClaims(accessKey)))}.!!not-base64!!`,
    ]) {
      await expectRefused(token, invalid(/./));
    }
  });

  it("when the access key is revoked with the CLI, then its JWTs stop working within AUTH_CACHE_MS, on both route families", async () => {
    const { accountId } = await stack.newAccount();
    const pair = await newAccessKey(stack, accountId);
    const token = signKlingJwt(pair.accessKey, pair.secretKey);
    await expectAccepted(token); // now in this API's cache

    const revoked = await runAccessKeyCli(stack, ["--revoke", pair.accessKey]);
    expect(revoked).toMatchObject({ exitCode: 0, output: { revoked: true } });
    const refused = async (path: string) => {
      const answer = await call(stack.api.url, "GET", path, { key: token });
      return { ok: answer.status === 401, seen: answer.body };
    };
    const within = AUTH_CACHE_MS + REVOCATION_MARGIN_MS;
    await Promise.all([
      waitUntil(() => refused(dropinPath), within, "drop-in route refuses the revoked key"),
      waitUntil(() => refused(nativePath), within, "native route refuses the revoked key"),
    ]);
    await expectRefused(token, invalid(/unknown or revoked/));
  }, CLI_TEST_TIMEOUT_MS);
});
