import { sql } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningApi } from "../../apps/api/api.server.ts";
import { createDb } from "../../apps/domain/db/database.ts";
import { call, waitForTask } from "../support/http.ts";
import { makeImage } from "../support/images.ts";
import { startPgBouncer, type PgBouncer } from "../support/pgbouncer.ts";
import { startStack, type Stack } from "../support/stack.ts";
import { startWebhookConsumer, type WebhookConsumer } from "../support/webhook-consumer.ts";

// The apps behind PgBouncer in transaction mode, as many deployments run Postgres: every
// transaction may land on another server connection, so nothing may rest on session state. Before,
// the API exited at start ("unsupported startup parameter: statement_timeout"), and with those
// ignored the server-side deadlines vanished and every NOTIFY was lost.

let stack: Stack;
let bouncer: PgBouncer;
let consumer: WebhookConsumer;
let api: RunningApi;
let image: string;
const ratios = { up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1 };

beforeAll(async () => {
  stack = await startStack({ withWorker: false });
  bouncer = await startPgBouncer({ target: stack.env.databaseUrl, poolSize: 5 });
  consumer = await startWebhookConsumer();
  const pooled = { DATABASE_URL: bouncer.via(stack.env.databaseUrl), DATABASE_DIRECT_URL: stack.env.databaseUrl };
  api = await stack.startApi({ ...pooled, DB_QUERY_TIMEOUT_MS: "1500", ALLOWED_PRIVATE_HOSTS: "127.0.0.1" });
  // The sweep that re-adds due callbacks is pushed out of the test's reach: what arrives, came by
  // NOTIFY on the worker's direct LISTEN connection.
  await stack.startWorker({ ...pooled, PUBLIC_BASE_URL: api.url, WEBHOOK_SWEEP_MS: "600000" });
  image = (await makeImage(400, 300)).toString("base64");
});
afterAll(async () => {
  await stack?.stop();
  await consumer?.close();
  await bouncer?.stop();
});

const transactionsOf = async (database: string) =>
  Number((await bouncer.show("stats")).find((row) => row.database === database)?.total_xact_count ?? 0);

// Statements of this stack's database running now (`waiting`: on a wait event of that type).
const activeStatements = async (like: string, waiting?: string) => {
  const client = new pg.Client({ connectionString: stack.env.databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>(
      "select count(*) as n from pg_stat_activity where datname = current_database() and state = 'active' and query like $1 and ($2::text is null or wait_event_type = $2) and pid <> pg_backend_pid()",
      [like, waiting ?? null],
    );
    return Number(rows[0]!.n);
  } finally {
    await client.end();
  }
};

describe("Postgres behind PgBouncer in transaction mode", () => {
  it("when an API and a worker reach Postgres through PgBouncer, then tasks run end to end and each task's callback arrives by NOTIFY", async () => {
    const database = new URL(stack.env.databaseUrl).pathname.slice(1);
    const before = await transactionsOf(database);
    const { key } = await stack.newAccount();
    const ids = await Promise.all(
      Array.from({ length: 6 }, async (_, i) => {
        const created = await call(api.url, "POST", "/v1/tasks", { key, body: { image, ...ratios, callback_url: `${consumer.url}/bounced/${i}` } });
        expect(created.status, JSON.stringify(created.body)).toBe(202);
        return created.body.id as string;
      }),
    );
    for (const id of ids) await waitForTask(api.url, key, id, ["succeeded"], 30_000);
    for (const [i, id] of ids.entries()) {
      const [arrived] = await consumer.waitFor(`/bounced/${i}`, 1, 15_000);
      expect(JSON.parse(arrived!.body)).toMatchObject({ type: "task.succeeded", data: { id, status: "succeeded" } });
    }
    // The work went through the bouncer, not around it.
    expect(await transactionsOf(database)).toBeGreaterThan(before + ids.length * 3);
  });

  it("when a statement runs past DB_QUERY_TIMEOUT_MS through PgBouncer, then the server cancels it in a transaction, the client gives up on a lone one, and no setting outlives its transaction", async () => {
    const db = createDb(bouncer.via(stack.env.databaseUrl), { queryTimeoutMs: 800, poolSize: 3 });
    try {
      const inTransaction = await db
        .transaction()
        .execute((trx) => sql`select pg_sleep(5)`.execute(trx))
        .then(
          () => undefined,
          (error: { code?: string }) => error,
        );
      expect(inTransaction?.code).toBe("57014"); // canceling statement due to statement timeout

      // The client gave up before its statement ended: the statement is seen still running after
      // the rejection (an order, where a wall-clock bound under 5 s failed on a loaded machine).
      await expect(sql`select 'lone statement' as tag, pg_sleep(5)`.execute(db)).rejects.toThrow(/Query read timeout/);
      await expect.poll(() => activeStatements("select 'lone statement'%")).toBe(1);

      // Lone statements on whatever server connection the bouncer gives: the defaults, every time.
      for (let i = 0; i < 6; i++) {
        const { rows } = await sql<{ statement: string; lock: string }>`select current_setting('statement_timeout') as statement, current_setting('lock_timeout') as lock`.execute(db);
        expect(rows[0]).toEqual({ statement: "0", lock: "0" });
      }
    } finally {
      await db.destroy();
    }
  });

  it("when a table the create writes is locked past the deadline, then the create through PgBouncer answers 503 within a bound and works once the lock goes", async () => {
    const { key } = await stack.newAccount();
    const external = `locked-${Date.now()}`;
    const locker = new pg.Client({ connectionString: stack.env.databaseUrl });
    const reference = new pg.Client({ connectionString: stack.env.databaseUrl });
    await locker.connect();
    await reference.connect();
    try {
      await locker.query("begin");
      await locker.query("lock table task in access exclusive mode");
      // The bound is Postgres's own clock, not the test's: a lock wait of 10 s queued before the
      // create must still be waiting when the create's 503 comes (a wall-clock bound of 10 s around
      // the call measured the loaded machine as much as the deadline).
      await reference.query("begin");
      await reference.query("set local lock_timeout = '10s'");
      let referenceWaitOver = false;
      const referenceWait = reference.query("lock table task in access share mode").then(
        () => "acquired",
        (error: Error) => error.message,
      );
      void referenceWait.finally(() => (referenceWaitOver = true));
      await expect.poll(() => activeStatements("lock table task in access share mode", "Lock")).toBe(1);
      const refused = await call(api.url, "POST", "/v1/tasks", { key, body: { image, ...ratios, external_task_id: external } });
      expect(refused.status, JSON.stringify(refused.body)).toBe(503);
      expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
      expect(referenceWaitOver).toBe(false);
      await locker.query("rollback");
      expect(await referenceWait).toBe("acquired");
      await reference.query("rollback");
    } finally {
      await locker.end();
      await reference.end();
    }
    const created = await call(api.url, "POST", "/v1/tasks", { key, body: { image, ...ratios, external_task_id: external } });
    expect(created.status, JSON.stringify(created.body)).toBe(202);
  });
});
