import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createDb, type Db } from "../../apps/domain/db/database.ts";
import { createFairPriority } from "../../apps/domain/queues/fair-priority.ts";
import { resyncFairPriority } from "../../apps/domain/task/reconcile-tasks.ts";
import { cloneDatabase, dropDatabases } from "../support/databases.ts";

// The sweeper's resync of fair priorities (Redis counts set back to the queued rows in Postgres)
// racing intake, which takes its priority before it writes the task's row: driven step by step
// against Redis and Postgres, no worker or API.

let redis: Redis;
let db: Db;
let databaseUrl: string;
beforeAll(async () => {
  redis = new Redis(inject("redisUrl"), { maxRetriesPerRequest: null });
  databaseUrl = await cloneDatabase(inject("templateDatabaseUrl"), `fair${randomUUID().slice(0, 8)}`);
  db = createDb(databaseUrl);
});
afterAll(async () => {
  redis?.disconnect();
  await db?.destroy();
  if (databaseUrl) await dropDatabases(databaseUrl, new URL(databaseUrl).pathname.slice(1));
});

const fair = () => createFairPriority(redis, `fair-test-${randomUUID().slice(0, 8)}`);

describe("fair priority resync during intake", () => {
  it("when a resync runs while an account's intakes have their priorities but no rows yet, then its numbering does not restart and a single task of another account stays ahead", async () => {
    const fp = fair();
    const a = randomUUID();
    const b = randomUUID();
    // A's burst: three intakes have their priorities, none has written its row yet.
    const inFlight = [await fp.next(a), await fp.next(a), await fp.next(a)];
    expect(inFlight).toEqual([1, 2, 3]);
    await resyncFairPriority({ db }, fp);
    const bSingle = await fp.next(b);
    const aLater = await fp.next(a);
    expect(aLater).toBeGreaterThan(Math.max(...inFlight));
    expect(bSingle).toBeLessThan(aLater);
  });
});
