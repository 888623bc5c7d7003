import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBootstrapAccessKey, revokeAccessKey } from "../../apps/domain/account/access-key.ts";
import { hashApiKey, revokeApiKey } from "../../apps/domain/account/api-key.ts";
import { decryptSecret, serverKeyFrom } from "../../apps/domain/crypto/server-key.ts";
import { newAccessKey, waitUntil } from "../support/access-keys.ts";
import { call } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { signKlingJwt } from "../support/kling-official-client.ts";
import { startStack, testServerKey, type Stack } from "../support/stack.ts";

const AUTH_CACHE_MS = 500;
// Scheduling noise on a shared 2-core machine, on top of the cache's own lifetime (still well
// under the default AUTH_CACHE_MS, so a cache that ignored its setting would fail the test).
const REVOCATION_MARGIN_MS = 2_000;

let stack: Stack;

beforeAll(async () => {
  // No worker: these tests are about who may call, not about tasks running.
  stack = await startStack({ withWorker: false, apiEnv: { AUTH_CACHE_MS: String(AUTH_CACHE_MS) } });
});
afterAll(() => stack?.stop());

const random = (bytes = 12) => randomBytes(bytes).toString("base64url");
const listPath = "/v1/images/editing/expand?pageNum=1&pageSize=1";

// A read on the drop-in route: the provider's code on a refusal.
const probe = async (apiUrl: string, bearer: string) => {
  const answer = await call(apiUrl, "GET", listPath, { key: bearer });
  return { status: answer.status, code: answer.body?.code as number | undefined, body: answer.body };
};

describe("revocation across API processes", () => {
  it("when an API key and an access key are revoked, then two API processes that both had them cached refuse them within AUTH_CACHE_MS, and the account's other key keeps working", async () => {
    const second = await stack.startApi();
    const { accountId, key } = await stack.newAccount();
    const { key: otherKey } = await stack.newAccount();
    const pair = await newAccessKey(stack, accountId);
    const kept = await newAccessKey(stack, accountId);
    const jwt = signKlingJwt(pair.accessKey, pair.secretKey);
    for (const api of [stack.api.url, second.url]) {
      for (const bearer of [key, jwt, otherKey]) expect((await probe(api, bearer)).code).toBe(0);
    }

    expect(await revokeApiKey(stack.db, key)).toBe(true);
    expect(await revokeAccessKey(stack.db, pair.accessKey)).toBe(true);
    const within = AUTH_CACHE_MS + REVOCATION_MARGIN_MS;
    await Promise.all(
      [stack.api.url, second.url].flatMap((api) =>
        [key, jwt].map((bearer) =>
          waitUntil(
            async () => {
              const seen = await probe(api, bearer);
              return { ok: seen.status === 401 && seen.code === 1002, seen: seen.body };
            },
            within,
            `${api} refuses a revoked ${bearer === key ? "API key" : "access key"}`,
          ),
        ),
      ),
    );
    // Only what was revoked stops: another account's key and the account's other pair still work.
    for (const api of [stack.api.url, second.url]) {
      expect((await probe(api, otherKey)).code).toBe(0);
      expect((await probe(api, signKlingJwt(kept.accessKey, kept.secretKey))).code).toBe(0);
    }
  });

  it("when a key was looked up within AUTH_CACHE_MS, then the next request costs no query: it is answered while its table is locked", async () => {
    const cached = await stack.startApi({ AUTH_CACHE_MS: "60000" });
    const { accountId, key } = await stack.newAccount();
    const pair = await newAccessKey(stack, accountId);
    const jwt = signKlingJwt(pair.accessKey, pair.secretKey);
    const { key: coldKey } = await stack.newAccount();
    expect((await probe(cached.url, key)).code).toBe(0);
    expect((await probe(cached.url, jwt)).code).toBe(0);

    // Any read of api_key or access_key now waits for this transaction.
    const locker = new pg.Client({ connectionString: stack.env.databaseUrl });
    await locker.connect();
    try {
      await locker.query("begin");
      await locker.query("lock table api_key, access_key in access exclusive mode");
      let coldSettled = false;
      const cold = probe(cached.url, coldKey).finally(() => (coldSettled = true));
      expect((await probe(cached.url, key)).code).toBe(0);
      expect((await probe(cached.url, jwt)).code).toBe(0);
      // The control: a key this process has not seen needs the table, so it is still waiting.
      expect(coldSettled).toBe(false);
      await locker.query("commit");
      expect((await cold).code).toBe(0);
    } finally {
      await locker.end();
    }
  });
});

describe("BOOTSTRAP_ACCESS_KEY and BOOTSTRAP_SECRET_KEY", () => {
  const bootstrapEnv = () => ({
    BOOTSTRAP_API_KEY: `boot-key-${random()}`,
    BOOTSTRAP_ACCESS_KEY: `ak_boot_${random()}`,
    BOOTSTRAP_SECRET_KEY: `sk_boot_${random(32)}`,
  });
  const accessKeyRows = (accessKey: string) => stack.db.selectFrom("accessKey").selectAll().where("accessKey", "=", accessKey).execute();
  const accountOfApiKey = async (key: string) =>
    (await stack.db.selectFrom("apiKey").select("accountId").where("keyHash", "=", hashApiKey(key)).executeTakeFirstOrThrow()).accountId;

  it("when an API starts with them (twice), then JWTs signed with that pair act for BOOTSTRAP_API_KEY's account, and one row holds the secret sealed", async () => {
    const env = bootstrapEnv();
    const first = await stack.startApi(env);
    const again = await stack.startApi(env);
    const jwt = signKlingJwt(env.BOOTSTRAP_ACCESS_KEY, env.BOOTSTRAP_SECRET_KEY);

    // A task made with the JWT is the bootstrap account's: its API key sees it, another account does not.
    const image = (await makeImage(320, 320)).toString("base64");
    const created = await call(first.url, "POST", "/v1/images/editing/expand", {
      key: jwt,
      body: { image, up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 },
    });
    expect(created.body).toMatchObject({ code: 0 });
    const taskId = created.body.data.task_id;
    expect((await call(again.url, "GET", `/v1/tasks/${taskId}`, { key: env.BOOTSTRAP_API_KEY })).status).toBe(200);
    expect((await call(again.url, "GET", `/v1/images/editing/expand/${taskId}`, { key: jwt })).body.code).toBe(0);
    const stranger = await stack.newAccount();
    expect((await call(first.url, "GET", `/v1/tasks/${taskId}`, { key: stranger.key })).status).toBe(404);

    // Idempotent: one pair, one key, one account, after two starts.
    const rows = await accessKeyRows(env.BOOTSTRAP_ACCESS_KEY);
    expect(rows).toHaveLength(1);
    const accountId = await accountOfApiKey(env.BOOTSTRAP_API_KEY);
    expect(rows[0]).toMatchObject({ accountId, revokedAt: null });
    expect(await stack.db.selectFrom("apiKey").select("id").where("accountId", "=", accountId).execute()).toHaveLength(1);

    // Sealed at rest: no spelling of the secret is in the row, and only the server key opens it.
    const sealed = rows[0]!.secretEncrypted;
    const secret = env.BOOTSTRAP_SECRET_KEY;
    for (const spelling of [secret, Buffer.from(secret).toString("base64"), Buffer.from(secret).toString("base64url"), Buffer.from(secret).toString("hex")]) {
      expect(sealed).not.toContain(spelling);
    }
    const sealingKey = (material: string) => serverKeyFrom(material).derive("access-key-secrets");
    expect(decryptSecret(sealingKey(testServerKey), sealed, env.BOOTSTRAP_ACCESS_KEY)).toBe(secret);
    expect(() => decryptSecret(sealingKey(`another-${testServerKey}`), sealed, env.BOOTSTRAP_ACCESS_KEY)).toThrow();
  });

  it("when an API runs with another SERVER_KEY, then it cannot open the sealed secret and refuses the JWT, writing nothing", async () => {
    const env = bootstrapEnv();
    await stack.startApi(env);
    const jwt = signKlingJwt(env.BOOTSTRAP_ACCESS_KEY, env.BOOTSTRAP_SECRET_KEY);
    const foreign = await stack.startApi({ SERVER_KEY: `another-${testServerKey}` });
    // Its API keys still work: only the sealed secrets depend on SERVER_KEY.
    expect((await probe(foreign.url, env.BOOTSTRAP_API_KEY)).code).toBe(0);
    const answer = await probe(foreign.url, jwt);
    // Refused as a key this server cannot verify (the operator gets an error in the log), not a
    // 5000 that a Kling client would retry for ever.
    expect(answer.status, JSON.stringify(answer.body)).toBe(401);
    expect(answer.code).toBe(1002);
    expect(answer.body.message).toMatch(/cannot verify/);
    const image = (await makeImage(320, 320)).toString("base64");
    const create = await call(foreign.url, "POST", "/v1/images/editing/expand", {
      key: jwt,
      body: { image, up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 },
    });
    expect(create.status).toBe(401);
    const accountId = await accountOfApiKey(env.BOOTSTRAP_API_KEY);
    expect(await stack.db.selectFrom("task").select("id").where("accountId", "=", accountId).execute()).toEqual([]);
    // Bootstrapping the same pair under the other key stops the start with a message naming SERVER_KEY.
    const pair = { accessKey: env.BOOTSTRAP_ACCESS_KEY, secretKey: env.BOOTSTRAP_SECRET_KEY };
    await expect(ensureBootstrapAccessKey(stack.db, serverKeyFrom(`another-${testServerKey}`), accountId, pair)).rejects.toThrow(/SERVER_KEY/);
  });

  it("when several APIs start together with the same pair, then they all come up and one row exists", async () => {
    const env = bootstrapEnv();
    const apis = await Promise.all([stack.startApi(env), stack.startApi(env), stack.startApi(env)]);
    expect(await accessKeyRows(env.BOOTSTRAP_ACCESS_KEY)).toHaveLength(1);
    const jwt = signKlingJwt(env.BOOTSTRAP_ACCESS_KEY, env.BOOTSTRAP_SECRET_KEY);
    for (const api of apis) expect((await probe(api.url, jwt)).code).toBe(0);
  });

  it("when BOOTSTRAP_API_KEY has dots, like a JWT's shape, then it still works as an API key", async () => {
    const key = `local.dev.key-${random()}`;
    const api = await stack.startApi({ BOOTSTRAP_API_KEY: key });
    expect((await probe(api.url, key)).code).toBe(0);
    expect((await call(api.url, "GET", "/v1/tasks", { key })).status).toBe(200);
    // Dots alone prove nothing: an unknown dotted key is still refused.
    expect((await probe(api.url, `${key}x`)).code).toBe(1002);
  });

  it("when the pair already exists with another secret or for another account, then bootstrapping refuses rather than reuse or overwrite it", async () => {
    const env = bootstrapEnv();
    await stack.startApi(env);
    const serverKey = serverKeyFrom(testServerKey);
    const accountId = await accountOfApiKey(env.BOOTSTRAP_API_KEY);
    const changedSecret = { accessKey: env.BOOTSTRAP_ACCESS_KEY, secretKey: `sk_other_${random(32)}` };
    await expect(ensureBootstrapAccessKey(stack.db, serverKey, accountId, changedSecret)).rejects.toThrow(/another account or secret/);
    const other = await stack.newAccount();
    const samePair = { accessKey: env.BOOTSTRAP_ACCESS_KEY, secretKey: env.BOOTSTRAP_SECRET_KEY };
    await expect(ensureBootstrapAccessKey(stack.db, serverKey, other.accountId, samePair)).rejects.toThrow(/another account or secret/);
    // The original still works as it was.
    expect((await probe(stack.api.url, signKlingJwt(samePair.accessKey, samePair.secretKey))).code).toBe(0);
  });
});
