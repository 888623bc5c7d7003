import { randomUUID } from "node:crypto";
import { sql } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAccountWithKey } from "../../apps/domain/account/api-key.ts";
import { acceptBatch } from "../../apps/domain/batch/accept-batch.ts";
import type { AcceptBatchDeps } from "../../apps/domain/batch/batch-intake.ts";
import { batchFieldsSchema } from "../../apps/domain/batch/batch-request.schema.ts";
import { reserveCredits } from "../../apps/domain/credits/credit-ledger.ts";
import type { CreditTerms } from "../../apps/domain/credits/credit-terms.ts";
import { type Db, type Tx } from "../../apps/domain/db/database.ts";
import { databaseUnavailable, retryOnConflict } from "../../apps/domain/errors/dependency-errors.ts";
import { metrics } from "../../apps/domain/metrics/metrics.ts";
import { expandRequestBodySchema } from "../../apps/domain/expand-request/expand-request.schema.ts";
import { acceptTask } from "../../apps/domain/task/accept-task.ts";
import { transitionTask } from "../../apps/domain/task/task-transition.ts";
import { rowsOnlyAcceptDeps } from "./accept-deps.ts";
import { lockSteps, started } from "./lock-steps.ts";

// The ledger's lock order (credit-ledger.ts), replayed step by step on separate connections: a
// create whose external_task_id names a task that an end or a retry is writing at that moment (a
// client's replay of its create racing the task's end). The interleaving is forced, not hoped for: a
// third connection holds the balance row locked while the two others are started one after the
// other, each until it waits for a lock (pg_stat_activity) or is done; then the holder commits.
// With the create locking the balance before its insert (the order before the fix) this deadlocked
// (40P01) every time: the create got the balance first and waited for the end's task row, which
// waited for the balance.
const steps = lockSteps("lockorder", ["lock-order-create", "lock-order-move"]);
type Actor = "lock-order-create" | "lock-order-move";
let observer: Db;
let creator: Db;
let mover: Db;
const terms: CreditTerms = { perImage: 1, defaultCap: undefined, maxRouteCapacity: 8, replayWindowSeconds: 0 };

beforeAll(async () => {
  await steps.open();
  observer = steps.observer();
  creator = steps.actor("lock-order-create");
  mover = steps.actor("lock-order-move");
});
afterAll(() => steps.close());

const acceptDeps = (db: Db) => rowsOnlyAcceptDeps(db, terms);

const batchDeps = (db: Db): AcceptBatchDeps => ({
  ...acceptDeps(db),
  enqueueBatchJobs: async () => async () => undefined,
  withdrawBatchJobs: async () => undefined,
  chunkItems: 10,
  uploadLeaseMs: 60_000,
});

// A streamed batch of one chunk whose first item repeats `externalTaskId` (then refused by line).
const uploadBatch = (accountId: string, externalTaskId: string) =>
  acceptBatch(batchDeps(creator), {
    accountId,
    source: "ndjson",
    fields: batchFieldsSchema.parse({}),
    items: (async function* () {
      for (const [line, id] of [externalTaskId, `ext-${randomUUID()}`].entries()) {
        yield { line: line + 1, value: { image: "https://images.example.com/source.png", up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1, n: 1, external_task_id: id } };
      }
    })(),
    atomic: false,
    dryRun: false,
  });

const request = (externalTaskId: string, n: number) =>
  expandRequestBodySchema.parse({
    image: "https://images.example.com/source.png",
    up_expansion_ratio: 0.1,
    down_expansion_ratio: 0.1,
    left_expansion_ratio: 0.1,
    right_expansion_ratio: 0.1,
    n,
    external_task_id: externalTaskId,
  });

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };
const outcomeOf = (work: () => Promise<unknown>) => (): Promise<Outcome> =>
  work().then(
    (value) => ({ ok: true, value }),
    (error: unknown) => ({ ok: false, error }),
  );

// Callers run a transaction Postgres undid for a deadlock again (retryOnConflict), so a deadlock
// shows as a retry rather than as an error: both are counted as a failure of the lock order.
const conflictRetries = async () => (await metrics.databaseConflictRetries.get()).values.reduce((sum, v) => sum + v.value, 0);

// `first` and `second` start in this order while the balance row is locked elsewhere, then race for
// it. Returns their outcomes, each a failure too if a deadlock made anything run again meanwhile.
const raceBehindBalanceLock = async (accountId: string, first: [Actor, () => Promise<unknown>], second: [Actor, () => Promise<unknown>]) => {
  const holder = new pg.Client({ connectionString: steps.url() });
  await holder.connect();
  const retriesBefore = await conflictRetries();
  try {
    await holder.query("begin");
    await holder.query("select 1 from credit_balance where account_id = $1 for update", [accountId]);
    const a = started(outcomeOf(first[1]));
    await steps.waitsOrDone(first[0], a);
    const b = started(outcomeOf(second[1]));
    await steps.waitsOrDone(second[0], b);
    await holder.query("commit");
    const [aDone, bDone] = await Promise.all([a.promise, b.promise]);
    const retried = (await conflictRetries()) - retriesBefore;
    const counted = (o: Outcome): Outcome => (retried > 0 && o.ok ? { ok: false, error: new Error(`${retried} transaction(s) ran again after a deadlock`) } : o);
    return [counted(aDone), counted(bDone)] as const;
  } finally {
    await holder.end();
  }
};

const failure = (outcome: Outcome) => !outcome.ok && JSON.stringify({ code: (outcome.error as { code?: unknown }).code, message: String(outcome.error) });

const setUp = async () => {
  const { accountId } = await createAccountWithKey(observer, `lock-order-${randomUUID().slice(0, 8)}`);
  // A cap (far above what the tests hold): only a capped hold takes the balance row; without one it
  // goes to a stripe row of its own (credit-ledger.ts) and the order under test is not exercised.
  await observer.updateTable("account").set({ spendCapCredits: 1_000 }).where("id", "=", accountId).execute();
  const externalTaskId = `ext-${randomUUID()}`;
  const first = await acceptTask(acceptDeps(observer), accountId, request(externalTaskId, 2));
  return { accountId, externalTaskId, task: first.task };
};

const ledgerOf = async (accountId: string) => {
  const balance = await observer.selectFrom("creditBalance").select(["spent", "reserved"]).where("accountId", "=", accountId).executeTakeFirstOrThrow();
  const entries = await observer.selectFrom("creditEntry").select(["taskId", "state", "reserved", "settled"]).where("accountId", "=", accountId).execute();
  return {
    balance: { spent: Number(balance.spent), reserved: Number(balance.reserved) },
    entries: entries.map((e) => ({ taskId: e.taskId, state: e.state, reserved: Number(e.reserved), settled: Number(e.settled) })),
  };
};

const end = (taskId: string) => () => transitionTask({ db: mover, taskChanged: () => undefined }, { taskId, to: "failed", source: "worker", data: { finalUnitDeduction: "0" } });

// What a retry does (batch-control.ts retryBatch): the move back to work and the new hold, in one
// transaction, task first.
const retry = (taskId: string, n: number) => () =>
  transitionTask({ db: mover, taskChanged: () => undefined }, { taskId, to: "queued", from: ["failed"], source: "api" }, async (tx) => {
    if (!(await reserveCredits(tx, (await tx.selectFrom("task").select("accountId").where("id", "=", taskId).executeTakeFirstOrThrow()).accountId, undefined, [{ taskId, credits: n }]))) {
      throw new Error("refused");
    }
  });

describe("the credit ledger's lock order", () => {
  it("when a create replaying an external_task_id reaches the balance before the end of that task does, then neither deadlocks: the create answers the task, the end settles it", async () => {
    const { accountId, externalTaskId, task } = await setUp();
    const [create, ended] = await raceBehindBalanceLock(accountId, ["lock-order-create", () => acceptTask(acceptDeps(creator), accountId, request(externalTaskId, 2))], ["lock-order-move", end(task.id)]);
    expect([failure(create), failure(ended)]).toEqual([false, false]);
    expect(create.ok && (create.value as { task: { id: string }; replayed: boolean })).toMatchObject({ task: { id: task.id }, replayed: true });
    expect(ended.ok && (ended.value as { applied: boolean }).applied).toBe(true);
    expect(await ledgerOf(accountId)).toEqual({ balance: { spent: 0, reserved: 0 }, entries: [{ taskId: task.id, state: "released", reserved: 2, settled: 0 }] });
  });

  it("when the end of a task reaches the balance before a create replaying its external_task_id, then neither deadlocks either", async () => {
    const { accountId, externalTaskId, task } = await setUp();
    const [ended, create] = await raceBehindBalanceLock(accountId, ["lock-order-move", end(task.id)], ["lock-order-create", () => acceptTask(acceptDeps(creator), accountId, request(externalTaskId, 2))]);
    expect([failure(ended), failure(create)]).toEqual([false, false]);
    expect(create.ok && (create.value as { task: { id: string }; replayed: boolean })).toMatchObject({ task: { id: task.id }, replayed: true });
    expect(await ledgerOf(accountId)).toEqual({ balance: { spent: 0, reserved: 0 }, entries: [{ taskId: task.id, state: "released", reserved: 2, settled: 0 }] });
  });

  it("when a create replaying an external_task_id reaches the balance before a retry of that task does, then neither deadlocks: the retry holds its credits again", async () => {
    const { accountId, externalTaskId, task } = await setUp();
    await end(task.id)();
    const [create, retried] = await raceBehindBalanceLock(accountId, ["lock-order-create", () => acceptTask(acceptDeps(creator), accountId, request(externalTaskId, 2))], ["lock-order-move", retry(task.id, 2)]);
    expect([failure(create), failure(retried)]).toEqual([false, false]);
    expect(create.ok && (create.value as { task: { id: string }; replayed: boolean })).toMatchObject({ task: { id: task.id }, replayed: true });
    expect(retried.ok && (retried.value as { applied: boolean }).applied).toBe(true);
    const ledger = await ledgerOf(accountId);
    expect(ledger.balance).toEqual({ spent: 0, reserved: 2 });
    expect(ledger.entries.map((e) => e.state).sort()).toEqual(["released", "reserved"]);
  });

  it("when a batch chunk repeating an external_task_id reaches the balance before the end of that task does, then neither deadlocks: the item is refused by line, the other one is written", async () => {
    const { accountId, externalTaskId, task } = await setUp();
    const [upload, ended] = await raceBehindBalanceLock(accountId, ["lock-order-create", () => uploadBatch(accountId, externalTaskId)], ["lock-order-move", end(task.id)]);
    expect([failure(upload), failure(ended)]).toEqual([false, false]);
    expect(upload.ok && (upload.value as { accepted: number; rejected: number; errors: unknown[] })).toMatchObject({ accepted: 1, rejected: 1, errors: [{ line: 1, field: "external_task_id" }] });
    const ledger = await ledgerOf(accountId);
    expect(ledger.balance).toEqual({ spent: 0, reserved: 1 });
    expect(ledger.entries.map((e) => [e.state, e.reserved]).sort()).toEqual([["released", 2], ["reserved", 1]]);
  });
});

describe("a transaction undone for a deadlock", () => {
  // Two transactions that lock two balance rows in opposite orders, each taking its second lock once
  // the other holds its first: a deadlock every time; Postgres undoes one of them.
  const opposite = async (attempts: number) => {
    const accounts = await Promise.all([1, 2].map(async () => (await createAccountWithKey(observer, `conflict-${randomUUID().slice(0, 8)}`)).accountId));
    await observer.insertInto("creditBalance").values(accounts.map((accountId) => ({ accountId }))).execute();
    const lock = (tx: Tx, accountId: string) => sql`select 1 from credit_balance where account_id = ${accountId}::uuid for update`.execute(tx);
    const gate = () => {
      let open = () => {};
      const opened = new Promise<void>((resolve) => (open = resolve));
      return { open: () => open(), opened };
    };
    const held = [gate(), gate()];
    const retriesBefore = await conflictRetries();
    const outcomes = await Promise.allSettled(
      [mover, creator].map((db, i) =>
        retryOnConflict(
          () =>
            db.transaction().execute(async (tx) => {
              await lock(tx, accounts[i]!);
              held[i]!.open();
              await held[1 - i]!.opened;
              await lock(tx, accounts[1 - i]!);
            }),
          attempts,
        ),
      ),
    );
    return { outcomes, retried: (await conflictRetries()) - retriesBefore };
  };

  it("when two transactions deadlock, then the caller runs the one Postgres undid again and both commit", async () => {
    const { outcomes, retried } = await opposite(3);
    expect(outcomes.map((o) => o.status)).toEqual(["fulfilled", "fulfilled"]);
    expect(retried).toBe(1);
  });

  it("when no attempt is left, then the deadlock reaches the caller as a 503 that says to retry, not as an internal error", async () => {
    const { outcomes, retried } = await opposite(1);
    expect(retried).toBe(0);
    const rejected = outcomes.filter((o): o is PromiseRejectedResult => o.status === "rejected");
    expect(rejected.map((o) => (o.reason as { code?: unknown }).code)).toEqual(["40P01"]);
    const answer = databaseUnavailable(rejected[0]!.reason);
    expect({ code: answer.code, status: answer.httpStatus, message: answer.message }).toEqual({
      code: "dependency_unavailable",
      status: 503,
      message: "the database undid the change because a concurrent change collided with it; retry",
    });
  });
});
