import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningApi } from "../../apps/api/api.server.ts";
import { call } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.ts";

// A Postgres that stops answering (the process frozen, a silent network path): every request gets
// an answer within a bound, a create whose outcome is unknown says how to learn it, and the client
// that retries it unchanged learns the truth: one task, never two. The shared Postgres is never
// touched: our API reaches it through a proxy the test makes silent.

let stack: Stack;
let proxy: TcpProxy;
let api: RunningApi;
let key: string;
let image: string;
const QUERY_TIMEOUT_MS = 1_500;
// Ten query deadlines: what the answers must come within.
const REFERENCE_WAIT_S = (10 * QUERY_TIMEOUT_MS) / 1000;

beforeAll(async () => {
  stack = await startStack({ withWorker: false });
  const target = new URL(stack.env.databaseUrl);
  proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
  api = await stack.startApi({
    DATABASE_URL: proxy.via(stack.env.databaseUrl),
    DB_QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS),
    DB_CONNECT_TIMEOUT_MS: "1000",
    // The key stays cached, so the create gets as far as writing its task when Postgres goes silent.
    AUTH_CACHE_MS: "60000",
  });
  key = (await stack.newAccount()).key;
  image = (await makeImage(400, 300)).toString("base64");
});
afterAll(async () => {
  await proxy?.setMode("pass");
  await stack?.stop();
  await proxy?.stop();
});

const body = (externalTaskId: string) => ({
  image,
  up_expansion_ratio: 0.1,
  down_expansion_ratio: 0.1,
  left_expansion_ratio: 0.1,
  right_expansion_ratio: 0.1,
  external_task_id: externalTaskId,
});

const tasksNamed = async (externalTaskId: string) =>
  stack.db.selectFrom("task").select("id").where("externalTaskId", "=", externalTaskId).execute();

describe("a Postgres that hangs", () => {
  it("when Postgres stops answering mid-create, then the create and a read answer 503 within a bound, and a retry once it is back returns the one task", async () => {
    const external = `hung-${Date.now()}`;
    // Warm: the API's pool holds several open connections through the proxy, so what comes next is
    // sent on one of them and meets the silence mid-statement.
    expect((await call(api.url, "POST", "/v1/tasks", { key, body: body(`${external}-warm`) })).status).toBe(202);
    const warm = await Promise.all(Array.from({ length: 4 }, () => call(api.url, "GET", "/v1/tasks?limit=1", { key })));
    expect(warm.map((w) => w.status)).toEqual([200, 200, 200, 200]);

    // The reference: a long-poll of REFERENCE_WAIT_S on the stack's own API (Postgres reached
    // directly, the task queued with no worker), which only its own clock ends. Both answers must
    // come while it is still open: bounded by the query and connection deadlines, not by how long
    // Postgres hangs, measured by a clock in the same process that a loaded machine slows alike.
    const warmTask = (await call(api.url, "GET", "/v1/tasks?limit=1", { key })).body.data[0].id as string;
    const referenceGone = new AbortController();
    let referenceOpen = true;
    const reference = fetch(`${stack.api.url}/v1/tasks/${warmTask}?wait=${REFERENCE_WAIT_S}`, {
      headers: { authorization: `Bearer ${key}` },
      signal: referenceGone.signal,
    })
      .then((res) => res.text())
      .catch(() => undefined)
      .finally(() => (referenceOpen = false));

    await proxy.setMode("hang");
    const [create, read] = await Promise.all([
      call(api.url, "POST", "/v1/tasks", { key, body: body(external) }),
      call(api.url, "GET", "/v1/tasks?limit=1", { key }),
    ]);
    const answeredWhileReferenceOpen = referenceOpen;
    referenceGone.abort();
    await reference;
    expect(create.body.detail).toMatch(/did not answer in time.*may or may not have been stored.*retry it unchanged/);
    for (const answer of [create, read]) {
      expect(answer.status, JSON.stringify(answer.body)).toBe(503);
      expect(answer.headers.get("retry-after")).toBeTruthy();
      expect(answer.body.detail).toMatch(/database/);
    }
    // Bounded by the query and connection deadlines (seconds), not by how long Postgres hangs.
    expect(answeredWhileReferenceOpen).toBe(true);

    await proxy.setMode("pass");
    // The retried create, unchanged: the first one's row may have landed once Postgres answered
    // again (what the proxy held is delivered), or not. Either way there is one task afterwards.
    const retried = await call(api.url, "POST", "/v1/tasks", { key, body: body(external) });
    expect(retried.status, JSON.stringify(retried.body)).toBe(202);
    const again = await call(api.url, "POST", "/v1/tasks", { key, body: body(external) });
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(again.body.id).toBe(retried.body.id);
    expect(await tasksNamed(external)).toEqual([{ id: retried.body.id }]);
  }, 60_000);
});
