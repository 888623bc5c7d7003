import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const migrationsDir = path.join(repoRoot, "prisma/migrations");

// `prisma migrate deploy` does not create the database (STACK.md), so create it first.
export const ensureDatabaseExists = async (databaseUrl: string): Promise<boolean> => {
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.replace(/^\//, ""));
  if (!name) throw new Error("DATABASE_URL: names no database");
  const admin = new URL(databaseUrl);
  admin.pathname = "/postgres";
  const client = new pg.Client({ connectionString: admin.toString(), connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    const found = await client.query("select 1 from pg_database where datname = $1", [name]);
    if (found.rowCount) return false;
    try {
      await client.query(`create database "${name.replaceAll('"', '""')}"`);
    } catch (error) {
      // Another process created it between our check and our create.
      if ((error as { code?: string }).code !== "42P04") throw error;
      return false;
    }
    return true;
  } finally {
    await client.end();
  }
};

// Runs the Prisma CLI (JS schema engine, see prisma.config.ts); it takes an advisory lock, so several
// processes starting at once are safe.
export const applyMigrations = (databaseUrl: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const child = spawn(`${repoRoot}node_modules/.bin/prisma`, ["migrate", "deploy"], {
      cwd: repoRoot,
      env: { ...process.env, DATABASE_URL: databaseUrl },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve(output) : reject(new Error(`prisma migrate deploy exited ${code}:\n${output}`)),
    );
  });

// Each migration directory and the checksum Prisma records for it (SHA-256 of its migration.sql).
const localMigrations = async () => {
  const entries = await readdir(migrationsDir, { withFileTypes: true });
  return Promise.all(
    entries
      .filter((entry) => entry.isDirectory())
      .map(async (entry) => ({
        name: entry.name,
        checksum: createHash("sha256")
          .update(await readFile(path.join(migrationsDir, entry.name, "migration.sql")))
          .digest("hex"),
      })),
  );
};

// Whether the database already holds exactly our migrations, each finished and unchanged: then
// `prisma migrate deploy` (~2 s of CPU, at every `npm start`) would find nothing to do. Anything
// else (no table yet, a migration missing, one failed or still running in another process, rolled
// back, edited since, or one we do not know) goes to Prisma, which applies, waits for its lock or
// refuses as it always did. One query, read without Prisma's advisory lock: a migration in
// progress shows as a row not finished, which is "not up to date".
export const migrationsUpToDate = async (databaseUrl: string): Promise<boolean> => {
  const schema = new URL(databaseUrl).searchParams.get("schema") ?? "public";
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    const [local, recorded] = await Promise.all([
      localMigrations(),
      client
        .query<{ name: string; checksum: string; finished: boolean; rolledBack: boolean }>(
          `select migration_name as name, checksum, finished_at is not null as finished, rolled_back_at is not null as "rolledBack"
             from "${schema.replaceAll('"', '""')}"._prisma_migrations`,
        )
        .then((result) => result.rows)
        .catch((error: { code?: string }) => {
          // undefined_table: never migrated.
          if (error.code === "42P01") return undefined;
          throw error;
        }),
    ]);
    if (!recorded || recorded.length !== local.length) return false;
    const byName = new Map(recorded.map((row) => [row.name, row]));
    return local.every(({ name, checksum }) => {
      const row = byName.get(name);
      return row !== undefined && row.finished && !row.rolledBack && row.checksum === checksum;
    });
  } finally {
    await client.end();
  }
};

// Stop 26's code made run-time plan functions (`kling_plan_<hash>`) for the task move; they were
// withdrawn (they raised the callback path's p99, docs/benchmarks.md), but a database that ran that
// code still holds them, and they depend on the enum types a migration may alter.
const dropPlanFunctions = async (client: pg.Client) => {
  const { rows } = await client.query<{ signature: string }>(
    "select oid::regprocedure::text as signature from pg_proc where proname like 'kling\\_plan\\_%' and pronamespace = current_schema()::regnamespace",
  );
  for (const { signature } of rows) await client.query(`drop function if exists ${signature}`);
};

export const prepareDatabase = async (databaseUrl: string) => {
  const created = await ensureDatabaseExists(databaseUrl);
  if (!created && (await migrationsUpToDate(databaseUrl))) return { created, applied: "up to date" };
  if (!created) {
    const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5_000 });
    await client.connect();
    try {
      await dropPlanFunctions(client);
    } finally {
      await client.end();
    }
  }
  const output = await applyMigrations(databaseUrl);
  const applied = /No pending migrations/.test(output) ? "up to date" : "migrations applied";
  return { created, applied };
};
