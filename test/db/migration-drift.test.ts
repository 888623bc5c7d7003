import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { cloneDatabase, dropDatabases } from "../support/databases.ts";

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

const schemaOnlyDump = async (databaseUrl: string) => {
  const { stdout } = await run("pg_dump", ["--schema-only", "--no-owner", "--no-privileges", "-T", "_prisma_migrations", databaseUrl]);
  // pg_dump 15.20+ prints a per-run random \restrict token; it is not part of the schema.
  const text = stdout.replace(/^\\(un)?restrict .*$/gm, "").replace(/^--.*$/gm, "").replace(/\n{2,}/g, "\n");
  // A migration that adds a column appends it; the order of columns is not drift.
  const columnsSorted = text.replace(/(CREATE TABLE [^\n]+\(\n)([\s\S]*?)(\n\);)/g, (_m, head: string, body: string, tail: string) =>
    head + body.split("\n").map((line) => line.replace(/,$/, "")).sort().join("\n") + tail,
  );
  // Functions exist only in the migrations (schema.prisma cannot declare them): each is cut out and
  // named, and the test checks those names against the ones the migrations are meant to make.
  const functions: string[] = [];
  const schema = columnsSorted.replace(/CREATE FUNCTION public\.(\w+)\([\s\S]*?\n(\$\w*\$);\n/g, (_m, name: string) => {
    functions.push(name);
    return "";
  });
  // pg_dump orders by dependencies, and a function returning a table's rows moves that table ahead
  // of the others: the order of statements is not drift either.
  return { schema: schema.split(/;\n/).map((statement) => statement.trim()).sort().join(";\n"), functions };
};

// The functions the migrations create, for their cached plans (prisma/migrations/20261208010000_intake_function).
const migrationFunctions = ["intake_task"];

describe("migrations", () => {
  const templateUrl = inject("templateDatabaseUrl");
  let databaseUrl: string;
  const scratchName = `kling_drift_${process.pid}_${Date.now().toString(36)}`;
  const scratchUrl = templateUrl.replace(/\/[^/]+$/, `/${scratchName}`);
  const admin = () => new pg.Client({ connectionString: templateUrl.replace(/\/[^/]+$/, "/postgres") });

  beforeAll(async () => {
    databaseUrl = await cloneDatabase(templateUrl, `drift${process.pid}`);
  });
  afterAll(async () => {
    await dropDatabases(databaseUrl, new URL(databaseUrl).pathname.slice(1));
    const client = admin();
    await client.connect();
    await client.query(`drop database if exists "${scratchName}" with (force)`);
    await client.end();
  });

  it("when schema.prisma is applied from empty, then it gives exactly the schema the migrations build", async () => {
    // The template database was built by `prisma migrate deploy` in the global setup.
    const { stdout: script } = await run("node_modules/.bin/prisma", ["migrate", "diff", "--from-empty", "--to-schema-datamodel", "prisma/schema.prisma", "--script"], {
      cwd: repoRoot,
      env: { ...process.env, DATABASE_URL: databaseUrl },
    });
    const client = admin();
    await client.connect();
    await client.query(`create database "${scratchName}"`);
    await client.end();
    const scratch = new pg.Client({ connectionString: scratchUrl });
    await scratch.connect();
    // The CLI prints its "Loaded Prisma config" line on stdout too.
    await scratch.query(script.replace(/Loaded Prisma config from .*$/m, ""));
    await scratch.end();

    const [fromMigrations, fromSchema] = await Promise.all([schemaOnlyDump(databaseUrl), schemaOnlyDump(scratchUrl)]);
    expect(fromMigrations.schema).toContain('CREATE TABLE public.task');
    expect(fromSchema).toEqual({ schema: fromMigrations.schema, functions: [] });
    expect(fromMigrations.functions).toEqual(migrationFunctions);
    // Nothing here is timed: the bound only has to cover the Prisma CLI (1.4 s of CPU, 6.7 s of wall
    // time at load 13) and two pg_dumps, which beside a CPU hog at load 17-20 overran vitest's 30 s.
  }, 120_000);
});
