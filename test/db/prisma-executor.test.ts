import { randomUUID } from "node:crypto";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createAccount } from "../../apps/domain/account/api-key.ts";
import { createDb, type Db, type Tx } from "../../apps/domain/db/database.ts";
import { prismaDbOver } from "../../apps/domain/db/prisma-kysely.ts";
import { cloneDatabase } from "../support/databases.ts";

// Kysely statements run through Prisma Client (prisma-kysely.ts, CALLBACK_DB_CLIENT=prisma) keep what
// the pg path promises: a transaction commits or rolls back as a whole, carries the same `set local`
// deadlines (a statement past DB_QUERY_TIMEOUT_MS is cancelled by the server), and rows come out as
// pg gives them (camelCase, int8 as a string).
describe("Kysely through Prisma Client", () => {
  let pgDb: Db;
  let db: Db;
  let accountId: string;
  const queryTimeoutMs = 400;

  beforeAll(async () => {
    pgDb = createDb(await cloneDatabase(inject("templateDatabaseUrl"), `prismaexec${randomUUID().slice(0, 8)}`), { queryTimeoutMs });
    db = prismaDbOver(pgDb);
    accountId = await createAccount(pgDb, "prisma executor");
  });
  afterAll(async () => {
    await db?.destroy();
    await pgDb?.destroy();
  });

  const newTask = (id: string, on: Db | Tx = db) =>
    on.insertInto("task").values({ id, accountId, status: "queued", callbackToken: "t", upRatio: 0.1, downRatio: 0.1, leftRatio: 0.1, rightRatio: 0.1 });

  it("when a transaction runs, then it carries the pg path's server-side deadlines, and they end with it", async () => {
    const settings = sql<{ statementTimeout: string; lockTimeout: string; idle: string }>`
      select current_setting('statement_timeout') as statement_timeout, current_setting('lock_timeout') as lock_timeout,
             current_setting('idle_in_transaction_session_timeout') as idle`;
    const inside = await db.transaction().execute(async (tx) => (await settings.execute(tx)).rows[0]);
    const onPg = await pgDb.transaction().execute(async (tx) => (await settings.execute(tx)).rows[0]);
    expect(inside).toEqual(onPg);
    expect(inside?.statementTimeout).toBe(`${queryTimeoutMs}ms`);
    // Outside a transaction nothing is left on the (pooled) connection.
    const outside = (await settings.execute(db)).rows[0];
    expect(outside?.statementTimeout).not.toBe(`${queryTimeoutMs}ms`);
  });

  it("when a statement in a transaction outlasts the deadline, then the server cancels it and nothing of the transaction stays", async () => {
    const id = randomUUID();
    const slow = db.transaction().execute(async (tx) => {
      await newTask(id, tx).execute();
      await sql`select pg_sleep(${(queryTimeoutMs * 5) / 1000})`.execute(tx);
    });
    await expect(slow).rejects.toThrow(/statement timeout/);
    expect(await pgDb.selectFrom("task").select("id").where("id", "=", id).execute()).toEqual([]);
  });

  it("when the work in a transaction throws, then its writes are rolled back; when it returns, they are committed", async () => {
    const [dropped, kept] = [randomUUID(), randomUUID()];
    await expect(
      db.transaction().execute(async (tx) => {
        await newTask(dropped, tx).execute();
        throw new Error("changed my mind");
      }),
    ).rejects.toThrow("changed my mind");
    await db.transaction().execute(async (tx) => {
      await newTask(kept, tx).execute();
    });
    const found = await pgDb.selectFrom("task").select("id").where("id", "in", [dropped, kept]).execute();
    expect(found.map((r) => r.id)).toEqual([kept]);
  });

  it("when rows come back, then they are shaped as on pg: camelCase, int8 as a string, counts of changed rows", async () => {
    const id = randomUUID();
    await newTask(id).execute();
    const updated = await db.updateTable("task").set({ providerUpdatedAt: "1733570000123" }).where("id", "=", id).executeTakeFirst();
    expect(updated.numUpdatedRows).toBe(1n);
    const [viaPrisma, viaPg] = await Promise.all(
      [db, pgDb].map((d) => d.selectFrom("task").select(["id", "providerUpdatedAt", "acceptedAt", "upRatio"]).select((eb) => eb.fn.countAll().over().as("total")).where("id", "=", id).executeTakeFirstOrThrow()),
    );
    expect(viaPrisma).toEqual(viaPg);
    expect(viaPrisma?.providerUpdatedAt).toBe("1733570000123");
  });
});
