import type { TestProject } from "vitest/node";
import { ensureBuilt } from "../../ops/build/build-apps.mjs";
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

// The integration and e2e projects both name this setup, and vitest runs it once per project (each
// its own module instance): without sharing, a run migrated two templates, a `prisma migrate
// deploy` each. The template is shared through the process, and dropped by the last teardown.
type SharedTemplate = { name: string; url: Promise<string>; users: number };
const holder = globalThis as typeof globalThis & { klingTestTemplate?: SharedTemplate };

// One fresh template database per run, migrated with the real `prisma migrate deploy`; each test
// stack clones it, and every test makes its own accounts and data.
export default async function setup(project: TestProject) {
  await ensureServicesAnswer(serverUrl, redisUrl);
  // The programs the tests spawn run from the build, as deployed (ops/build): built once here when a
  // source changed, not by each spawn.
  await ensureBuilt();
  if (!holder.klingTestTemplate) {
    const name = `kling_test_${process.pid}_${Date.now().toString(36)}`;
    const url = `${serverUrl}/${name}`;
    holder.klingTestTemplate = { name, url: prepareDatabase(url).then(() => url), users: 0 };
  }
  const template = holder.klingTestTemplate;
  template.users++;
  const databaseUrl = await template.url;
  project.provide("templateDatabaseUrl", databaseUrl);
  project.provide("redisUrl", redisUrl);
  return async () => {
    if (--template.users > 0) return;
    if (holder.klingTestTemplate === template) holder.klingTestTemplate = undefined;
    await dropDatabases(databaseUrl, template.name);
  };
}
