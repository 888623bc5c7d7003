import type { TestProject } from "vitest/node";
import pg from "pg";
import { prepareDatabase } from "../../apps/domain/db/prepare-database.ts";
import { ensureServicesAnswer } from "./services.ts";

declare module "vitest" {
  export interface ProvidedContext {
    databaseUrl: string;
    redisUrl: string;
  }
}

const serverUrl = process.env.TEST_POSTGRES_URL ?? "postgresql://postgres@127.0.0.1:5432";
const redisUrl = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

// One fresh database per run, migrated with the real `prisma migrate deploy`; every test then makes
// its own accounts and data, and every test file its own queue prefix.
export default async function setup(project: TestProject) {
  await ensureServicesAnswer(serverUrl, redisUrl);
  const name = `kling_test_${process.pid}_${Date.now().toString(36)}`;
  const databaseUrl = `${serverUrl}/${name}`;
  await prepareDatabase(databaseUrl);
  project.provide("databaseUrl", databaseUrl);
  project.provide("redisUrl", redisUrl);
  return async () => {
    const admin = new pg.Client({ connectionString: `${serverUrl}/postgres` });
    await admin.connect();
    await admin.query(`drop database if exists "${name}" with (force)`);
    await admin.end();
  };
}
