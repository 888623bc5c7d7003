import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createAccount } from "../../apps/domain/account/api-key.ts";
import { createDb, type Db } from "../../apps/domain/db/database.ts";
import { BATCH_PRIORITY_BASE, createFairPriority } from "../../apps/domain/queues/fair-priority.ts";
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

let lastPrefix = "";
const fair = () => {
  lastPrefix = `fair-test-${randomUUID().slice(0, 8)}`;
  return createFairPriority(redis, lastPrefix);
};

const account = () => createAccount(db, `fair-${randomUUID().slice(0, 8)}`);
// A queued task row, as intake writes it.
const queuedRow = async (accountId: string) => {
  const id = randomUUID();
  await db
    .insertInto("task")
    .values({ id, accountId, requestHash: id, imageUrl: "https://example.com/a.png", upRatio: 0.5, downRatio: 0, leftRatio: 0, rightRatio: 0, n: 1, callbackToken: id, nextCheckAt: new Date() })
    .execute();
  return id;
};

describe("fair priority resync during intake", () => {
  it("when a resync runs while an account's intakes have their priorities but no rows yet, then its numbering does not restart and a single task of another account stays ahead", async () => {
    const fp = fair();
    const a = randomUUID();
    const b = randomUUID();
    // A's burst: three intakes have their priorities, none has written its row yet.
    const inFlight = [await fp.take(a), await fp.take(a), await fp.take(a)];
    expect(inFlight.map((t) => t.priority)).toEqual([1, 2, 3]);
    await resyncFairPriority({ db }, fp);
    const bSingle = await fp.take(b);
    const aLater = await fp.take(a);
    expect(aLater.priority).toBeGreaterThan(3);
    expect(bSingle.priority).toBeLessThan(aLater.priority);
  });

  it("when intakes take priorities while the resync reads Postgres, then the applied counts keep them", async () => {
    const fp = fair();
    const a = randomUUID();
    const apply = await fp.beginResync();
    // Taken after the snapshot, before the counts are applied (the read of Postgres under way).
    await fp.take(a);
    await fp.takeBatchRange(a, 5);
    await apply(new Map(), new Map());
    expect((await fp.take(a)).priority).toBe(2);
    expect((await fp.takeBatchRange(a, 1)).priority).toBe(BATCH_PRIORITY_BASE + 6);
  });

  it("when an intake's row is written and settled, then the resync counts the row once, and forgets it once it left the queue", async () => {
    const fp = fair();
    const a = await account();
    const b = randomUUID();
    const taken = await fp.take(a);
    const id = await queuedRow(a);
    await taken.settle();
    await resyncFairPriority({ db }, fp);
    expect((await fp.next(a))).toBe(2);
    await db.updateTable("task").set({ status: "canceled" }).where("id", "=", id).execute();
    await resyncFairPriority({ db }, fp);
    // Neither the canceled task nor the re-driven one (no row) holds A back now: A and B tie.
    expect(await fp.next(a)).toBe(1);
    expect(await fp.next(b)).toBe(1);
  });

  it("when an intake never settles (its API died), then its mark stops counting once its deadline on Redis' clock has passed", async () => {
    const fp = fair();
    const a = randomUUID();
    await fp.take(a);
    await resyncFairPriority({ db }, fp);
    expect(await fp.next(a)).toBe(2);
    // The deadline is Redis' time + minutes: rather than wait, move the mark's deadline into the past.
    const deadlines = `${lastPrefix}:{fair}:in-flight-deadlines`;
    const [member] = await redis.zrange(deadlines, 0, -1);
    const redisSeconds = Number((await redis.time())[0]);
    expect(Number(await redis.zscore(deadlines, member!))).toBeGreaterThan(redisSeconds * 1000 + 4 * 60_000);
    await redis.zadd(deadlines, "XX", redisSeconds * 1000 - 1, member!);
    await resyncFairPriority({ db }, fp);
    expect(await fp.next(a)).toBe(1);
    expect(await redis.zcard(deadlines)).toBe(0);
  });

  it("when an intake settles after its mark was reaped, then nothing is taken off twice", async () => {
    const fp = fair();
    const a = randomUUID();
    const late = await fp.take(a);
    const deadlines = `${lastPrefix}:{fair}:in-flight-deadlines`;
    const [member] = await redis.zrange(deadlines, 0, -1);
    await redis.zadd(deadlines, "XX", 0, member!);
    await resyncFairPriority({ db }, fp);
    // A second intake of A, in flight: the late settle of the first must not cancel its mark.
    const second = await fp.take(a);
    await late.settle();
    expect(await redis.hget(`${lastPrefix}:{fair}:in-flight`, a)).toBe("1");
    await resyncFairPriority({ db }, fp);
    expect(await fp.next(a)).toBe(2);
    await second.settle();
    expect(await redis.hget(`${lastPrefix}:{fair}:in-flight`, a)).toBeNull();
  });

  it("when two resyncs overlap, then the one whose snapshot is stale leaves the counts alone", async () => {
    const fp = fair();
    const a = randomUUID();
    const first = await fp.beginResync();
    await fp.take(a);
    await resyncFairPriority({ db }, fp);
    // The stale one would count A's intake twice (in its "since" and in the other's result).
    await first(new Map(), new Map());
    expect((await fp.take(a)).priority).toBe(2);
  });

  // A create's settle is not a command of its own while creates keep coming: it rides on the next
  // take (fair-take.lua), or the settles of one turn of the event loop go in one command. Failed on
  // the code before (a command per settle: 4 commands here, and 3 for the three settles).
  it("when intakes settle while others take, then the settles ride on the next take, and those of one turn share one command", async () => {
    const fp = fair();
    const a = randomUUID();
    const marks = `${lastPrefix}:{fair}:in-flight`;
    const counted = new Redis(inject("redisUrl"), { maxRetriesPerRequest: null });
    const counting = createFairPriority(counted, lastPrefix);
    let commands = 0;
    const send = counted.sendCommand.bind(counted);
    counted.sendCommand = ((...args: Parameters<typeof send>) => {
      commands++;
      return send(...args);
    }) as typeof counted.sendCommand;
    try {
      const first = await counting.take(a);
      commands = 0;
      const settled = first.settle();
      const second = await counting.take(a);
      await settled;
      expect(commands).toBe(1);
      expect(await redis.hget(marks, a)).toBe("1");
      const third = await counting.take(a);
      const fourth = await counting.take(a);
      commands = 0;
      await Promise.all([second.settle(), third.settle(), fourth.settle()]);
      expect(commands).toBe(1);
      expect(await redis.hget(marks, a)).toBeNull();
      // Settled twice: nothing is taken off again.
      await second.settle();
      expect(commands).toBe(1);
    } finally {
      counted.disconnect();
    }
  });

  it("when a take that carries waiting settles fails, then the take fails (no priority it never got) and so do those settles", async () => {
    const fp = fair();
    const a = randomUUID();
    const failing = new Redis(inject("redisUrl"), { maxRetriesPerRequest: null });
    const failingFp = createFairPriority(failing, lastPrefix);
    try {
      const first = await failingFp.take(a);
      const settled = first.settle();
      // Same turn: the settle is still waiting for a command to ride on when the next take fails.
      const send = failing.sendCommand.bind(failing);
      failing.sendCommand = ((command: Parameters<typeof send>[0]) => {
        command.reject(new Error("Redis is gone"));
        return command.promise;
      }) as typeof failing.sendCommand;
      await expect(failingFp.take(a)).rejects.toThrow("Redis is gone");
      await expect(settled).rejects.toThrow("Redis is gone");
      failing.sendCommand = send;
      expect((await fp.take(a)).priority).toBe(2);
    } finally {
      failing.disconnect();
    }
  });
});
