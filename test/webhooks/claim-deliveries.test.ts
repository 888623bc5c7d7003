import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createAccount } from "../../apps/domain/account/api-key.ts";
import { createDb, type Db } from "../../apps/domain/db/database.ts";
import { claimDeliveries } from "../../apps/domain/webhooks/webhook-delivery.store.ts";
import { cloneDatabase } from "../support/databases.ts";

// A worker claims the events it hears of in one statement: what it takes is exactly what one
// attempt at a time, in order per task, allows; a second claimer (another worker hearing the same
// NOTIFY) takes nothing of it.

describe("claiming deliveries in one statement", () => {
  let db: Db;
  beforeAll(async () => {
    db = createDb(await cloneDatabase(inject("templateDatabaseUrl"), `claim${randomUUID().slice(0, 8)}`));
  });
  afterAll(() => db?.destroy());

  const record = async (accountId: string, taskId: string | null, extra: { nextAttemptAt?: Date; status?: "pending" | "succeeded" } = {}) =>
    (
      await db
        .insertInto("webhookDelivery")
        .values({
          accountId,
          taskId,
          eventType: "kling.processing",
          url: "https://consumer.example/hook",
          payloadKind: "raw",
          payload: "{}",
          status: extra.status ?? "pending",
          nextAttemptAt: extra.nextAttemptAt ?? new Date(),
        })
        .returning("id")
        .executeTakeFirstOrThrow()
    ).id;

  it("when a burst names two events of one task, one of another task, one not due and one decided, then the earlier of the first task and the other task's are taken, leased, once", async () => {
    const accountId = await createAccount(db, "claims");
    const task = async () => {
      const id = randomUUID();
      await db.insertInto("task").values({ id, accountId, callbackToken: "t", upRatio: 0.1, downRatio: 0.1, leftRatio: 0.1, rightRatio: 0.1 }).execute();
      return { id };
    };
    const [taskA, taskB] = [await task(), await task()];
    const a1 = await record(accountId, taskA.id);
    const a2 = await record(accountId, taskA.id);
    const b1 = await record(accountId, taskB.id);
    const later = await record(accountId, null, { nextAttemptAt: new Date(Date.now() + 60_000) });
    const decided = await record(accountId, null, { status: "succeeded" });

    const claimed = await claimDeliveries(db, [a2, b1, later, decided, a1], 20_000);
    expect(new Set(claimed.map((d) => d.id))).toEqual(new Set([a1, b1]));
    expect(claimed.every((d) => d.attempts === 1 && d.leaseUntil !== null && d.leaseUntil.getTime() > Date.now())).toBe(true);
    // Another worker that heard the same events: all leased, behind, not due or decided.
    expect(await claimDeliveries(db, [a1, a2, b1, later, decided], 20_000)).toEqual([]);
    expect(await claimDeliveries(db, [], 20_000)).toEqual([]);
  });
});
