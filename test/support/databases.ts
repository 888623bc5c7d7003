import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";

const adminUrl = (databaseUrl: string) => databaseUrl.replace(/\/[^/]+$/, "/postgres");

// Each stack gets its own database, copied from the migrated template: the sweeper of one test
// file's worker must never find (and poll its own simulator for) another file's tasks.
export const cloneDatabase = async (templateUrl: string, suffix: string): Promise<string> => {
  const template = new URL(templateUrl).pathname.slice(1);
  const name = `${template}_${suffix}`.toLowerCase();
  const client = new pg.Client({ connectionString: adminUrl(templateUrl) });
  await client.connect();
  try {
    // Cloning needs the template to have no open connection; another clone may hold it briefly.
    for (let attempt = 0; ; attempt++) {
      try {
        await client.query(`create database "${name}" template "${template}"`);
        break;
      } catch (error) {
        if (attempt >= 50 || !/being accessed by other users/.test((error as Error).message)) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  } finally {
    await client.end();
  }
  return templateUrl.replace(/\/[^/]+$/, `/${name}`);
};

export const dropDatabases = async (anyUrl: string, namePrefix: string) => {
  const client = new pg.Client({ connectionString: adminUrl(anyUrl) });
  await client.connect();
  try {
    const { rows } = await client.query<{ datname: string }>("select datname from pg_database where datname like $1", [`${namePrefix}%`]);
    for (const { datname } of rows) await client.query(`drop database if exists "${datname}" with (force)`);
  } finally {
    await client.end();
  }
};

// DROP DATABASE makes Postgres run a checkpoint and waits for it (0.5-0.8 s each at load 10-14,
// ~100 stacks a run), so a stack's stop starts the drop and its file ends without waiting; the
// worker process (kept across files) finishes it beside the next file, and drops pending at once
// share one checkpoint. A drop that fails or is cut off by the run's end is left to the global
// teardown, which drops every database named after the run's template (each clone's name is). The
// drop is returned for a caller that must see it done (a role granted rights in the database).
export const dropCloneLater = (databaseUrl: string): Promise<void> =>
  dropDatabases(databaseUrl, new URL(databaseUrl).pathname.slice(1)).catch(() => undefined);

// A small pool on a test's own database, for the test's reads. pg-pool's end() resolves before its
// clients' sockets close, so the cleanup's `drop database ... with (force)` can terminate one of
// them (57P01) after the end: the pool then emits "error", which with no listener throws outside
// any test (vitest failed a green run on it). Errors of a pool being torn down are expected here.
export const testPool = (databaseUrl: string) => {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 3 });
  pool.on("error", () => undefined);
  return pool;
};

// What a stack of spawned processes (the fault stack, the process fleet) works in: its own copy of
// the database with a pool for the test's reads, and its own storage directory. Each is undone by a
// step pushed onto `cleanups`, which the caller runs in reverse.
export const openScratchWorkspace = async (templateUrl: string, suffix: string, storageLabel: string, cleanups: (() => Promise<unknown>)[]) => {
  const databaseUrl = await cloneDatabase(templateUrl, suffix);
  cleanups.push(async () => void dropCloneLater(databaseUrl));
  const db = testPool(databaseUrl);
  cleanups.push(() => db.end());
  const storageDir = await mkdtemp(path.join(tmpdir(), `kling-${storageLabel}-storage-`));
  cleanups.push(() => rm(storageDir, { recursive: true, force: true }));
  return { databaseUrl, db, storageDir };
};
