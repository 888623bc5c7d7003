import { randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseApiConfig } from "../../apps/api/api.config.ts";
import { startApi, type RunningApi } from "../../apps/api/api.server.ts";
import { captureLogs } from "../fuzz/hostile-kit.ts";
import { waitUntil } from "../support/batches.ts";
import { call } from "../support/http.ts";
import { startStack, testServerKey, type Stack } from "../support/stack.ts";

// A Postgres with no connection to spare, the two ways it happens: the server refuses a new one
// ("too many clients", 53300; here a role's CONNECTION LIMIT, so the shared server's own limit is
// never touched), or the process's pool is all in use past DB_CONNECT_TIMEOUT_MS. Either way every
// request is a 503 with Retry-After, the API logs one line for the lot, and it recovers by itself.

let stack: Stack;
let key: string;
const role = `kling_pool_${randomUUID().slice(0, 8)}`;
const apis: RunningApi[] = [];
const held: pg.Client[] = [];

const asRole = (databaseUrl: string) => {
  const url = new URL(databaseUrl);
  url.username = role;
  return url.toString();
};

const startLoggedApi = async (env: Record<string, string>) => {
  const logs = captureLogs();
  const api = await startApi(
    parseApiConfig({
      REDIS_URL: stack.env.redisUrl,
      QUEUE_PREFIX: stack.env.queuePrefix,
      STORAGE_DIR: stack.env.storageDir,
      SERVER_KEY: testServerKey,
      PORT: "0",
      LOG_LEVEL: "warn",
      ...env,
    }),
    { logDestination: logs.destination },
  );
  apis.push(api);
  return { api, logs };
};

const refusalLines = (logs: ReturnType<typeof captureLogs>) => logs.lines().filter((line) => /database unavailable/.test(line.msg ?? ""));

beforeAll(async () => {
  stack = await startStack({ withWorker: false });
  key = (await stack.newAccount()).key;
  const admin = new pg.Client({ connectionString: stack.env.databaseUrl });
  await admin.connect();
  try {
    await admin.query(`create role "${role}" login connection limit 2`);
    await admin.query(`grant usage on schema public to "${role}"`);
    await admin.query(`grant select, insert, update, delete on all tables in schema public to "${role}"`);
  } finally {
    await admin.end();
  }
});
afterAll(async () => {
  await Promise.all(held.map((client) => client.end().catch(() => undefined)));
  await Promise.all(apis.map((api) => api.stop()));
  // The role can be dropped once the grants in the stack's database are gone with it.
  await stack?.stop({ waitForDatabaseDrop: true });
  // The database (and the grants in it) went with the stack; the role is the server's.
  const admin = new pg.Client({ connectionString: stack.env.databaseUrl.replace(/\/[^/]+$/, "/postgres") });
  await admin.connect();
  await admin.query(`drop role if exists "${role}"`).finally(() => admin.end());
});

describe("a Postgres with no connection to spare", () => {
  it("when the server refuses new connections (too many clients), then every request is a 503 with Retry-After in the route's shape, one log line says so, and the API recovers once connections free up", async () => {
    const { api, logs } = await startLoggedApi({ DATABASE_URL: asRole(stack.env.databaseUrl), DB_POOL_SIZE: "2" });
    // The role's two connections, taken before the API opened any of its own.
    for (let i = 0; i < 2; i++) {
      const client = new pg.Client({ connectionString: asRole(stack.env.databaseUrl) });
      await client.connect();
      held.push(client);
    }

    const answers = await Promise.all(Array.from({ length: 12 }, () => call(api.url, "GET", "/v1/tasks?limit=1", { key })));
    for (const answer of answers) {
      expect(answer.status, JSON.stringify(answer.body)).toBe(503);
      expect(answer.headers.get("retry-after")).toMatch(/^\d+$/);
      expect(answer.body.detail).toMatch(/database has no free connection/);
    }
    const dropIn = await call(api.url, "GET", "/kling/v1/images/editing/expand/unknown-task", { key });
    expect(dropIn.status).toBe(503);
    expect(dropIn.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(dropIn.body.code).toBe(5001);

    const lines = refusalLines(logs);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ trouble: "busy", code: "53300" });
    expect(logs.errors()).toEqual([]);

    await Promise.all(held.splice(0).map((client) => client.end()));
    // The backends of the closed connections leave the server a moment after the close.
    await waitUntil(() => call(api.url, "GET", "/v1/tasks?limit=1", { key }), (answer) => answer.status === 200, 15_000, "a 200 once connections are free");
  });

  it("when the pool is all in use past DB_CONNECT_TIMEOUT_MS, then the requests that waited are a 503 with Retry-After, and the API answers again once the pool frees up", async () => {
    const { api, logs } = await startLoggedApi({
      DATABASE_URL: stack.env.databaseUrl,
      DB_POOL_SIZE: "1",
      DB_CONNECT_TIMEOUT_MS: "300",
      DB_QUERY_TIMEOUT_MS: "4000",
    });
    expect((await call(api.url, "GET", "/v1/tasks?limit=1", { key })).status).toBe(200);
    // Every key lookup now waits on a lock: the pool's one connection is held by the first request.
    const locker = new pg.Client({ connectionString: stack.env.databaseUrl });
    await locker.connect();
    held.push(locker);
    await locker.query("begin");
    await locker.query("lock table api_key in access exclusive mode");
    // Keys not seen yet, so each lookup goes to the database: the first holds the pool's one
    // connection waiting on the lock, the rest wait for the pool.
    const answers = await Promise.all(
      Array.from({ length: 6 }, (_, i) => call(api.url, "GET", "/v1/tasks?limit=1", { key: `${key}-unseen-${i}` })),
    );
    await locker.query("rollback");
    for (const answer of answers) {
      expect(answer.status, JSON.stringify(answer.body)).toBe(503);
      expect(answer.headers.get("retry-after")).toMatch(/^\d+$/);
    }
    expect(answers.some((answer) => /database has no free connection/.test(answer.body.detail))).toBe(true);
    expect(refusalLines(logs)).toHaveLength(1);
    expect((await call(api.url, "GET", "/v1/tasks?limit=1", { key })).status).toBe(200);
  });
});
