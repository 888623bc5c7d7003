import { mkdtemp, rm } from "node:fs/promises";
import { randomUUID } from "node:crypto";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createAccount } from "../../apps/domain/account/api-key.ts";
import { accountBalance } from "../../apps/domain/credits/credit-ledger.ts";
import { createDb, type Db } from "../../apps/domain/db/database.ts";
import { expandRequestBodySchema } from "../../apps/domain/expand-request/expand-request.schema.ts";
import { literalAddressRefusal } from "../../apps/domain/http/safe-fetch.ts";
import { createFairPriority } from "../../apps/domain/queues/fair-priority.ts";
import { createTaskQueues, type TaskQueues } from "../../apps/domain/queues/task-queues.ts";
import { createLocalStorage } from "../../apps/domain/storage/local-storage.ts";
import { acceptTask, type AcceptTaskDeps } from "../../apps/domain/task/accept-task.ts";
import { deletePrefixKeys } from "../bench/api-stack.ts";
import { cloneDatabase, dropDatabases } from "../support/databases.ts";

// A single create is one Postgres statement (accept-task.ts: the task, its event, its credit hold
// and the replay window's lookup together), driven against real Postgres and Redis, no API. Counted
// where pg sends each query, in this process (only this file's Db talks to Postgres here).

let redis: Redis;
let db: Db;
let databaseUrl: string;
let storageDir: string;
let queues: TaskQueues;
const prefix = `intake-stmt-${randomUUID().slice(0, 8)}`;
const sent: string[] = [];
const originalQuery = pg.Client.prototype.query;

beforeAll(async () => {
  redis = new Redis(inject("redisUrl"), { maxRetriesPerRequest: null });
  databaseUrl = await cloneDatabase(inject("templateDatabaseUrl"), `intakestmt${randomUUID().slice(0, 8)}`);
  db = createDb(databaseUrl);
  storageDir = await mkdtemp(path.join(tmpdir(), "intake-stmt-"));
  queues = createTaskQueues(redis, prefix);
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const config = args[0] as string | { text?: string };
    sent.push(typeof config === "string" ? config : (config?.text ?? "?"));
    return (originalQuery as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof pg.Client.prototype.query;
});
afterAll(async () => {
  pg.Client.prototype.query = originalQuery;
  await queues?.close();
  if (redis) await deletePrefixKeys(redis, prefix);
  redis?.disconnect();
  await db?.destroy();
  if (databaseUrl) await dropDatabases(databaseUrl, new URL(databaseUrl).pathname.slice(1));
  if (storageDir) await rm(storageDir, { recursive: true, force: true });
});

const depsWith = (replayWindowSeconds: number): AcceptTaskDeps => {
  const fair = createFairPriority(redis, prefix);
  return {
    db,
    storage: createLocalStorage(storageDir),
    enqueueFirstJob: async (task) => {
      const { priority, settle } = await fair.take(task.accountId);
      await queues.enqueue(task.stage, { taskId: task.id }, { priority });
      return settle;
    },
    withdrawFirstJob: (task) => queues.withdraw(task.stage, task.id),
    stallRecheckMs: 60_000,
    checkCallbackUrl: async () => undefined,
    imageUrlRefusal: (url) => literalAddressRefusal(url, []),
    credits: { perImage: 1, defaultCap: undefined, maxRouteCapacity: 9, replayWindowSeconds },
  };
};

const request = (prompt: string) =>
  expandRequestBodySchema.parse({ image: "https://images.example.com/a.png", up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.2, right_expansion_ratio: 0.2, prompt });

const statementsDuring = async <T>(work: () => Promise<T>) => {
  const before = sent.length;
  const result = await work();
  return { result, statements: sent.slice(before) };
};

// The balance row and the hold stripes together (no cap here: the holds are on stripes).
const heldFor = async (accountId: string) => (await accountBalance(db, accountId, undefined)).reserved;

describe("the single create's statement", () => {
  it("when a task is created (replay window off, or on and nothing to replay), then Postgres gets one statement for it", async () => {
    const accountId = await createAccount(db, "one-statement");
    for (const window of [0, 60]) {
      const { result, statements } = await statementsDuring(() => acceptTask(depsWith(window), accountId, request(`window ${window}`)));
      expect(result.replayed).toBe(false);
      expect(statements).toHaveLength(1);
      expect(await db.selectFrom("taskEvent").select("toStatus").where("taskId", "=", result.task.id).execute()).toEqual([{ toStatus: "queued" }]);
    }
    expect(await heldFor(accountId)).toBe(2);
  });

  it("when the replay window answers a create, then it is still one statement, nothing more is held or written, and the job it added is taken back", async () => {
    const accountId = await createAccount(db, "replayed");
    const first = await acceptTask(depsWith(60), accountId, request("same"));
    const tasksBefore = await db.selectFrom("task").select("id").where("accountId", "=", accountId).execute();
    const jobsBefore = await queues.queue("source").getJobCountByTypes("prioritized", "waiting");
    const { result, statements } = await statementsDuring(() => acceptTask(depsWith(60), accountId, request("same")));
    expect(result).toMatchObject({ replayed: true, replayedBy: "window", task: { id: first.task.id } });
    expect(statements).toHaveLength(1);
    expect(await db.selectFrom("task").select("id").where("accountId", "=", accountId).execute()).toEqual(tasksBefore);
    expect(await heldFor(accountId)).toBe(1);
    expect(await queues.queue("source").getJobCountByTypes("prioritized", "waiting")).toBe(jobsBefore);
    // With the window off the same request is a second task.
    const again = await acceptTask(depsWith(0), accountId, request("same"));
    expect(again.replayed).toBe(false);
    expect(again.task.id).not.toBe(first.task.id);
  });

  // The credit hold of an account without a cap goes to a stripe row (credit-ledger.ts): a create
  // does not wait for the balance row, whose lock another create holds until its commit. Failed on
  // the code before (every hold updated the balance row: the uncapped create waited for the lock).
  it("when another transaction holds the account's balance row, then a create without a cap goes through, and one with a cap waits for it", async () => {
    const accountId = await createAccount(db, "balance-locked");
    await acceptTask(depsWith(0), accountId, request("makes the balance row"));
    const holder = new pg.Client({ connectionString: databaseUrl, application_name: "balance-holder" });
    await holder.connect();
    try {
      await holder.query("begin");
      await holder.query("select 1 from credit_balance where account_id = $1 for update", [accountId]);
      // Whichever comes first: the create's answer, or one of our connections waiting for a lock.
      const outcome = (create: Promise<unknown>) =>
        Promise.race([
          create.then(() => "created" as const),
          (async () => {
            for (;;) {
              const { rows } = await holder.query<{ waiting: boolean }>(
                "select exists (select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock') as waiting",
              );
              if (rows[0]!.waiting) return "waited for the lock" as const;
              await new Promise((resolve) => setImmediate(resolve));
            }
          })(),
        ]);
      expect(await outcome(acceptTask(depsWith(0), accountId, request("no cap")))).toBe("created");
      await db.updateTable("account").set({ spendCapCredits: 100 }).where("id", "=", accountId).execute();
      const capped = acceptTask(depsWith(0), accountId, request("capped"));
      expect(await outcome(capped)).toBe("waited for the lock");
      await holder.query("commit");
      expect((await capped).replayed).toBe(false);
    } finally {
      await holder.end();
    }
    // The two holds without a cap and the capped one, one credit each.
    expect(await heldFor(accountId)).toBe(3);
  });
});

// Intake's statement is the PL/pgSQL function intake_task (for its plans, cached per connection).
// An account already seen without a cap holds on a stripe by a statement that leaves out the capped
// hold, which checks for itself that the account still has no cap; one that has since got one is
// held on its balance row, and refused past its cap, as before. Each create stays one statement.
describe("the create of an account without a cap", () => {
  const stripes = async (accountId: string) =>
    Number((await db.selectFrom("creditHoldStripe").select((eb) => eb.fn.sum<string>("reserved").as("sum")).where("accountId", "=", accountId).executeTakeFirst())?.sum ?? 0);
  const onBalanceRow = async (accountId: string) => Number((await db.selectFrom("creditBalance").select("reserved").where("accountId", "=", accountId).executeTakeFirst())?.reserved ?? 0);

  it("when the account's creates have run without a cap, then they hold on stripes, one statement each, the call of a function", async () => {
    const accountId = await createAccount(db, "stripe-only");
    for (const prompt of ["first", "next"]) {
      const { result, statements } = await statementsDuring(() => acceptTask(depsWith(0), accountId, request(prompt)));
      expect(result.replayed).toBe(false);
      expect(statements).toHaveLength(1);
      expect(statements[0]).toMatch(/^select \* from intake_task\(/);
      expect(await db.selectFrom("creditEntry").select(["reserved", "state"]).where("taskId", "=", result.task.id).execute()).toEqual([{ reserved: "1.000000", state: "reserved" }]);
    }
    expect(await stripes(accountId)).toBe(2);
    expect(await onBalanceRow(accountId)).toBe(0);
  });

  it("when the account gets a cap after such creates, then the next create is held against it, and refused past it with nothing written", async () => {
    const accountId = await createAccount(db, "capped-later");
    await acceptTask(depsWith(0), accountId, request("one"));
    await acceptTask(depsWith(0), accountId, request("two"));
    await db.updateTable("account").set({ spendCapCredits: 3 }).where("id", "=", accountId).execute();
    const third = await statementsDuring(() => acceptTask(depsWith(0), accountId, request("three")));
    expect(third.statements).toHaveLength(1);
    expect(third.result.replayed).toBe(false);
    // Held on the balance row, under the cap (the stripes' two count against it).
    expect(await onBalanceRow(accountId)).toBe(1);
    const tasksBefore = await db.selectFrom("task").select("id").where("accountId", "=", accountId).execute();
    const before = sent.length;
    await expect(acceptTask(depsWith(0), accountId, request("four"))).rejects.toMatchObject({ code: "spend_cap_exceeded" });
    // The create's statement, then the balance read for the refusal's message.
    expect(sent.slice(before)).toHaveLength(2);
    expect(await db.selectFrom("task").select("id").where("accountId", "=", accountId).execute()).toEqual(tasksBefore);
    expect(await accountBalance(db, accountId, undefined)).toMatchObject({ reserved: 3, cap: 3 });
  });
});
