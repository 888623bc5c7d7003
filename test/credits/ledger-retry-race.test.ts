import { randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAccountWithKey } from "../../apps/domain/account/api-key.ts";
import { accountBalance, reserveCredits, settleEndedCredits } from "../../apps/domain/credits/credit-ledger.ts";
import type { CreditTerms } from "../../apps/domain/credits/credit-terms.ts";
import type { Db } from "../../apps/domain/db/database.ts";
import { expandRequestBodySchema } from "../../apps/domain/expand-request/expand-request.schema.ts";
import { acceptTask } from "../../apps/domain/task/accept-task.ts";
import { transitionTask } from "../../apps/domain/task/task-transition.ts";
import { rowsOnlyAcceptDeps } from "./accept-deps.ts";
import { lockSteps, started } from "./lock-steps.ts";

// A settlement that does not move the task itself (the worker's sweep) racing a retry of that task
// (batch-control.ts retryBatch: the move back to queued, then reserveCredits, one transaction), for
// a task that ended with its hold still open (what the sweep is for; endedWithOpenHold shows how the
// product gets there). The retry, having moved the
// task, finds the old entry open and holds nothing more; a sweep whose snapshot still saw the task
// ended released that same entry: a queued task with no hold (ledger-property, seed 1591182286).
// Forced step by step: the retry is paused inside its transaction after its hold, or a third
// connection holds the balance row while the sweep and then the retry start, each until it waits
// for a lock (pg_stat_activity) or is done.
const steps = lockSteps("retryrace", ["retry-race-sweep", "retry-race-move", "retry-race-end"]);
let observer: Db;
let sweeper: Db;
let mover: Db;
let ender: Db;
const terms: CreditTerms = { perImage: 1, defaultCap: undefined, maxRouteCapacity: 8, replayWindowSeconds: 0 };
const waitsOrDone = steps.waitsOrDone;

beforeAll(async () => {
  await steps.open();
  observer = steps.observer();
  sweeper = steps.actor("retry-race-sweep");
  mover = steps.actor("retry-race-move");
  ender = steps.actor("retry-race-end");
});
afterAll(() => steps.close());

const gate = () => {
  let open = () => {};
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open: () => open(), opened };
};

const retry = (accountId: string, taskId: string, afterHold: () => Promise<void>) => () =>
  transitionTask({ db: mover, taskChanged: () => undefined }, { taskId, to: "queued", from: ["failed"], source: "api" }, async (tx) => {
    if (!(await reserveCredits(tx, accountId, undefined, [{ taskId, credits: 2 }]))) throw new Error("refused");
    await afterHold();
  });

// A task that failed uncharged with its hold still open, reached through the product's own paths: a
// retry moves the failed task back to queued and holds anew; an end of the task (the worker's fail)
// that began before the retry committed waits for the task row, then moves the task as the retry
// left it, but its settlement (in the move's statement, task-transition.ts) reads the entries in the
// statement's snapshot, taken before the retry's hold existed: the task has ended, the hold is open
// until a sweep settles it. With a cap, so that the hold and the settlement both take the balance row.
const endedWithOpenHold = async () => {
  const { accountId } = await createAccountWithKey(observer, `retry-race-${randomUUID().slice(0, 8)}`);
  await observer.updateTable("account").set({ spendCapCredits: 1_000 }).where("id", "=", accountId).execute();
  const request = expandRequestBodySchema.parse({ image: "https://images.example.com/source.png", up_expansion_ratio: 0.1, down_expansion_ratio: 0.1, left_expansion_ratio: 0.1, right_expansion_ratio: 0.1, n: 2 });
  const { task } = await acceptTask(rowsOnlyAcceptDeps(observer, terms), accountId, request);
  await fail(observer, task.id)();
  const held = gate();
  const release = gate();
  const retried = started(retry(accountId, task.id, async () => {
    held.open();
    await release.opened;
  }));
  await held.opened;
  const ended = started(fail(ender, task.id));
  await waitsOrDone("retry-race-end", ended);
  release.open();
  expect((await retried.promise).applied).toBe(true);
  expect((await ended.promise).applied).toBe(true);
  expect(await ledgerOf(accountId, task.id)).toEqual({ status: "failed", open: 1, balance: { spent: 0, reserved: 2 }, sum: 2 });
  return { accountId, taskId: task.id };
};

const fail = (db: Db, taskId: string) => () => transitionTask({ db, taskChanged: () => undefined }, { taskId, to: "failed", source: "worker", data: { finalUnitDeduction: "0" } });

// Each task that can still run holds exactly one open entry, and the balance is the sum over them.
const ledgerOf = async (accountId: string, taskId: string) => {
  const task = await observer.selectFrom("task").select("status").where("id", "=", taskId).executeTakeFirstOrThrow();
  const entries = await observer.selectFrom("creditEntry").select(["state", "reserved"]).where("accountId", "=", accountId).execute();
  const { spent, reserved } = await accountBalance(observer, accountId, undefined);
  return { status: task.status, open: entries.filter((e) => e.state === "reserved").length, balance: { spent, reserved }, sum: entries.filter((e) => e.state === "reserved").reduce((s, e) => s + Number(e.reserved), 0) };
};

describe("the sweep racing a retry of a task whose hold is still open", () => {
  it("when the retry has moved the task and found its old hold open before the sweep settles, then the sweep leaves that hold to the new run: the queued task holds one entry", async () => {
    const { accountId, taskId } = await endedWithOpenHold();
    const held = gate();
    const release = gate();
    const retried = started(retry(accountId, taskId, async () => {
      held.open();
      await release.opened;
    }));
    await held.opened;
    const swept = started(() => settleEndedCredits(sweeper));
    await waitsOrDone("retry-race-sweep", swept);
    release.open();
    expect((await retried.promise).applied).toBe(true);
    await swept.promise;
    await settleEndedCredits(observer);
    expect(await ledgerOf(accountId, taskId)).toEqual({ status: "queued", open: 1, balance: { spent: 0, reserved: 2 }, sum: 2 });
  });

  it("when the sweep has locked the task's entry before the retry moves the task, then the retry waits for it and holds anew", async () => {
    const { accountId, taskId } = await endedWithOpenHold();
    const holder = new pg.Client({ connectionString: steps.url() });
    await holder.connect();
    try {
      await holder.query("begin");
      await holder.query("select 1 from credit_balance where account_id = $1 for update", [accountId]);
      const swept = started(() => settleEndedCredits(sweeper));
      await waitsOrDone("retry-race-sweep", swept);
      const retried = started(retry(accountId, taskId, async () => undefined));
      await waitsOrDone("retry-race-move", retried);
      await holder.query("commit");
      expect((await retried.promise).applied).toBe(true);
      expect(await swept.promise).toBe(1);
    } finally {
      await holder.end();
    }
    await settleEndedCredits(observer);
    expect(await ledgerOf(accountId, taskId)).toEqual({ status: "queued", open: 1, balance: { spent: 0, reserved: 2 }, sum: 2 });
  });
});
