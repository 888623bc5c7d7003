import type { TestProject } from "vitest/node";
import { prepareDatabase } from "../../apps/domain/db/prepare-database.ts";
import { dropDatabases } from "./databases.ts";
import { ensureServicesAnswer } from "./services.ts";

declare module "vitest" {
  export interface ProvidedContext {
    // A migrated database that every stack clones; nothing connects to it directly.
    templateDatabaseUrl: string;
    redisUrl: string;
  }
}

const serverUrl = process.env.TEST_POSTGRES_URL ?? "postgresql://postgres@127.0.0.1:5432";
const redisUrl = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

// One fresh template database per run, migrated with the real `prisma migrate deploy`; each test
// stack clones it, and every test makes its own accounts and data.
export default async function setup(project: TestProject) {
  await ensureServicesAnswer(serverUrl, redisUrl);
  const name = `kling_test_${process.pid}_${Date.now().toString(36)}`;
  const databaseUrl = `${serverUrl}/${name}`;
  await prepareDatabase(databaseUrl);
  project.provide("templateDatabaseUrl", databaseUrl);
  project.provide("redisUrl", redisUrl);
  return () => dropDatabases(databaseUrl, name);
}
