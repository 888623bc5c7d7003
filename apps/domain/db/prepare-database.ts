import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import pg from "pg";

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));

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

export const prepareDatabase = async (databaseUrl: string) => {
  const created = await ensureDatabaseExists(databaseUrl);
  const output = await applyMigrations(databaseUrl);
  const applied = /No pending migrations/.test(output) ? "up to date" : "migrations applied";
  return { created, applied };
};
