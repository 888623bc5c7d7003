import { randomUUID, randomBytes } from "node:crypto";
import fc from "fast-check";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inject } from "vitest";
import { createAccountWithKey } from "../../apps/domain/account/api-key.ts";
import { accountBalance, heldAccountSql, holdCreditsCtes, isCapRefusal, refundCredits, reserveCredits, settleCredits, settleEndedCredits } from "../../apps/domain/credits/credit-ledger.ts";
import { createDb, type Db } from "../../apps/domain/db/database.ts";
import { cloneDatabase, dropDatabases } from "../support/databases.ts";

// The credit ledger under random operations in random interleavings from several connections:
// intake holds (the statement intake uses), ends with or without a charge (then settlement, as the
// transition function does), retries (a new hold in the transaction that moves the task back),
// refunds and the sweep. After every run the balance equals the sum over the entries, each task
// holds at most one open entry (one exactly while it runs, none once it ended), and spent +
// reserved never passed the cap, sampled all through the run.
const suffix = `ledger${randomUUID().slice(0, 8)}`;
let url: string;
let observer: Db;
let connections: Db[];

beforeAll(async () => {
  url = await cloneDatabase(inject("templateDatabaseUrl"), suffix);
  observer = createDb(url, { poolSize: 1 });
  connections = [0, 1, 2].map(() => createDb(url, { poolSize: 1 }));
});
afterAll(async () => {
  await Promise.all([observer, ...(connections ?? [])].filter(Boolean).map((db) => db.destroy()));
  if (url) await dropDatabases(url, new URL(url).pathname.slice(1));
});

type Op =
  | { kind: "create"; task: number }
  | { kind: "end"; task: number; outcome: "succeeded" | "failed" | "canceled"; charged: boolean }
  | { kind: "retry"; task: number }
  | { kind: "refund"; task: number }
  | { kind: "sweep" };

const TASKS = 6;
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("create" as const), task: fc.nat(TASKS - 1) }),
  fc.record({ kind: fc.constant("end" as const), task: fc.nat(TASKS - 1), outcome: fc.constantFrom("succeeded" as const, "failed" as const, "canceled" as const), charged: fc.boolean() }),
  fc.record({ kind: fc.constant("retry" as const), task: fc.nat(TASKS - 1) }),
  fc.record({ kind: fc.constant("refund" as const), task: fc.nat(TASKS - 1) }),
  fc.constant({ kind: "sweep" as const }),
);

class Refused extends Error {}

const run = async (db: Db, accountId: string, ids: string[], sizes: number[], op: Op) => {
  if (op.kind === "sweep") return void (await settleEndedCredits(db));
  const id = ids[op.task]!;
  const n = sizes[op.task]!;
  switch (op.kind) {
    case "create":
      // Intake's statement (accept-task.ts): the task, then the hold; the entry takes its account
      // from the hold. The same id again is a create colliding with a task that may be moving.
      try {
        await db
          .with("inserted", (q) =>
            q
              .insertInto("task")
              .values({ id, accountId, upRatio: 0.1, downRatio: 0.1, leftRatio: 0.1, rightRatio: 0.1, n, callbackToken: randomBytes(8).toString("hex") })
              .returning(["id", "accountId", "n"]),
          )
          .with("held_capped", () => holdCreditsCtes("inserted", accountId, 1, undefined).held_capped)
          .with("held_open", () => holdCreditsCtes("inserted", accountId, 1, undefined).held_open)
          .with("held", () => holdCreditsCtes("inserted", accountId, 1, undefined).held)
          .with("entry", (q) => q.insertInto("creditEntry").columns(["accountId", "taskId", "reserved"]).expression((eb) => eb.selectFrom("inserted").select([heldAccountSql("held").as("accountId"), "inserted.id", sql<string>`${n}::numeric`.as("reserved")])))
          .selectFrom("inserted")
          .select("id")
          .execute();
      } catch (error) {
        // Over the cap, or the task exists already: nothing was written.
        if (!isCapRefusal(error) && (error as { code?: string }).code !== "23505") throw error;
      }
      return;
    case "end": {
      // The provider charges at most what was held (n); "failed" with a charge is an archive that failed.
      // The product's end settles in the move's own statement (task-transition.ts, settle_* CTEs);
      // this one settles in a second statement, as the sweep settles an end whose settlement missed
      // the hold (an end that waited behind a retry: test/credits/ledger-retry-race.test.ts). The
      // window between the two is where a retry meets a settlement that runs apart from the move
      // (the failure of seed 1591182286, path "3": a queued task left with no hold).
      const charge = op.outcome === "canceled" || !op.charged ? "0" : String(n);
      const ended = await db
        .updateTable("task")
        .set({ status: op.outcome, finalUnitDeduction: op.outcome === "canceled" ? null : charge })
        .where("id", "=", id)
        .where("status", "not in", ["succeeded", "failed", "canceled"])
        .returning("id")
        .execute();
      if (ended.length > 0) await settleCredits(db, [id]);
      return;
    }
    case "retry":
      try {
        await db.transaction().execute(async (tx) => {
          const moved = await tx
            .updateTable("task")
            .set({ status: "queued", finalUnitDeduction: null })
            .where("id", "=", id)
            .where("status", "in", ["failed", "canceled"])
            .returning("id")
            .execute();
          if (moved.length === 0) return;
          if (!(await reserveCredits(tx, accountId, undefined, [{ taskId: id, credits: n }]))) throw new Refused();
        });
      } catch (error) {
        if (!(error instanceof Refused)) throw error;
      }
      return;
    case "refund":
      await refundCredits(db, id);
      return;
  }
};

// The ledger's own reading: the balance row plus the account's hold stripes (credit-ledger.ts).
const balanceOf = async (db: Db, accountId: string) => {
  const { spent, reserved } = await accountBalance(db, accountId, undefined);
  return { spent, reserved };
};

describe("the credit ledger, property-based", () => {
  it("when holds, ends, settlements, releases, retries, refunds and sweeps interleave on three connections, with a cap or without one (holds on stripes), then the balance is always the sum over the entries and never above the cap", async () => {
    await fc.assert(
      fc.asyncProperty(
        // No cap (undefined): the holds go to the account's stripes instead of its balance row.
        fc.option(fc.integer({ min: 2, max: 14 }), { nil: undefined, freq: 3 }),
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: TASKS, maxLength: TASKS }),
        fc.array(fc.array(opArb, { minLength: 1, maxLength: 14 }), { minLength: 3, maxLength: 3 }),
        async (cap, sizes, scripts) => {
          const { accountId } = await createAccountWithKey(observer, `prop-${randomUUID().slice(0, 8)}`);
          if (cap !== undefined) await observer.updateTable("account").set({ spendCapCredits: cap }).where("id", "=", accountId).execute();
          const ids = sizes.map(() => randomUUID());
          const samples: number[] = [];
          let running = true;
          const sampler = (async () => {
            while (running) {
              const b = await balanceOf(observer, accountId);
              samples.push(b.spent + b.reserved);
              await new Promise((r) => setImmediate(r));
            }
          })();
          await Promise.all(scripts.map(async (script, i) => {
            for (const op of script) await run(connections[i]!, accountId, ids, sizes, op);
          }));
          running = false;
          await sampler;
          await settleEndedCredits(observer);

          const balance = await balanceOf(observer, accountId);
          const entries = await observer.selectFrom("creditEntry").select(["taskId", "state", "reserved", "settled"]).where("accountId", "=", accountId).execute();
          const sum = (state: string, field: "reserved" | "settled") => entries.filter((e) => e.state === state).reduce((s, e) => s + Number(e[field]), 0);
          expect(balance).toEqual({ spent: sum("settled", "settled"), reserved: sum("reserved", "reserved") });
          expect(balance.spent + balance.reserved).toBeLessThanOrEqual(cap ?? Infinity);
          expect(Math.max(0, ...samples)).toBeLessThanOrEqual(cap ?? Infinity);
          const tasks = await observer.selectFrom("task").select(["id", "status"]).where("accountId", "=", accountId).execute();
          for (const task of tasks) {
            const open = entries.filter((e) => e.taskId === task.id && e.state === "reserved").length;
            expect({ task: task.id, status: task.status, open }).toEqual({ task: task.id, status: task.status, open: ["succeeded", "failed", "canceled"].includes(task.status) ? 0 : 1 });
          }
          // Nothing is held or charged for a task that was never written.
          expect(entries.every((e) => tasks.some((t) => t.id === e.taskId))).toBe(true);
        },
      ),
      // LEDGER_SEED (and LEDGER_PATH) replay a run fast-check reported.
      { numRuns: 25, ...(process.env.LEDGER_SEED ? { seed: Number(process.env.LEDGER_SEED), path: process.env.LEDGER_PATH } : {}) },
    );
  }, 120_000);
});
