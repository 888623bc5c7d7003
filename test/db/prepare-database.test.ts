import pg from "pg";
import { afterAll, describe, expect, inject, it } from "vitest";
import { migrationsUpToDate, prepareDatabase } from "../../apps/domain/db/prepare-database.ts";
import { cloneDatabase, dropDatabases } from "../support/databases.ts";

// `npm start` and `npm run db:prepare` prepare the database: `prisma migrate deploy` only when the
// database does not already record every migration as applied (it costs ~2 s of CPU even when it
// finds nothing to do). Each case works on its own copy of the migrated template.

// The key of the session-level advisory lock `prisma migrate deploy` takes on the database
// (Prisma's documentation, "Advisory locking"): held here, any Prisma run waits on it and fails.
const PRISMA_MIGRATE_LOCK = 72707369;

describe("preparing the database", () => {
  const templateUrl = inject("templateDatabaseUrl");
  const prefix = `${new URL(templateUrl).pathname.slice(1)}_prep`;
  afterAll(() => dropDatabases(templateUrl, prefix));

  const copy = (label: string) => cloneDatabase(templateUrl, `prep${label}`);
  const onDatabase = async <T>(databaseUrl: string, use: (client: pg.Client) => Promise<T>) => {
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      return await use(client);
    } finally {
      await client.end();
    }
  };
  const lastMigration = (client: pg.Client) =>
    client.query<{ name: string }>("select migration_name as name from _prisma_migrations order by migration_name desc limit 1").then((r) => r.rows[0]!.name);

  it("when every migration is recorded as applied, then it answers up to date without running Prisma", async () => {
    const databaseUrl = await copy("uptodate");
    const lock = new pg.Client({ connectionString: databaseUrl });
    await lock.connect();
    try {
      // Prisma would wait for this lock and give up (P1002): only a preparation that leaves Prisma
      // out answers while it is held.
      await lock.query("select pg_advisory_lock($1)", [PRISMA_MIGRATE_LOCK]);
      expect(await prepareDatabase(databaseUrl)).toEqual({ created: false, applied: "up to date" });
    } finally {
      await lock.end();
    }
  });

  it("when the last migration is recorded as failed, then Prisma runs and its own refusal (P3009) is the answer", async () => {
    const databaseUrl = await copy("failed");
    await onDatabase(databaseUrl, async (client) => {
      const name = await lastMigration(client);
      await client.query("update _prisma_migrations set finished_at = null, logs = 'failed here' where migration_name = $1", [name]);
    });
    expect(await migrationsUpToDate(databaseUrl)).toBe(false);
    await expect(prepareDatabase(databaseUrl)).rejects.toThrow(/P3009/);
  }, 60_000);

  it("when a migration is missing, rolled back or edited since it was applied, or none ever was, then it is not up to date", async () => {
    const databaseUrl = await copy("changed");
    await onDatabase(databaseUrl, async (client) => {
      const name = await lastMigration(client);
      const row = (await client.query("select * from _prisma_migrations where migration_name = $1", [name])).rows[0];
      expect(await migrationsUpToDate(databaseUrl)).toBe(true);

      await client.query("delete from _prisma_migrations where migration_name = $1", [name]);
      expect(await migrationsUpToDate(databaseUrl)).toBe(false);

      await client.query("insert into _prisma_migrations select * from json_populate_record(null::_prisma_migrations, $1)", [JSON.stringify(row)]);
      await client.query("update _prisma_migrations set rolled_back_at = now() where migration_name = $1", [name]);
      expect(await migrationsUpToDate(databaseUrl)).toBe(false);

      await client.query("update _prisma_migrations set rolled_back_at = null, checksum = $2 where migration_name = $1", [name, "0".repeat(64)]);
      expect(await migrationsUpToDate(databaseUrl)).toBe(false);

      await client.query("drop table _prisma_migrations");
      expect(await migrationsUpToDate(databaseUrl)).toBe(false);
    });
  });
});
