import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createAccount } from "../../apps/domain/account/api-key.ts";
import { createDb, type Db } from "../../apps/domain/db/database.ts";
import { pruneFinishedDeliveries } from "../../apps/domain/retention/prune.ts";
import { cloneDatabase } from "../support/databases.ts";

// The delivery log keeps what a consumer may still read or redeliver; ended deliveries past the
// retention go with their attempt logs, and nothing still to be sent is ever pruned.

describe("pruning the outbound delivery log", () => {
  let db: Db;
  beforeAll(async () => {
    db = createDb(await cloneDatabase(inject("templateDatabaseUrl"), `prune${randomUUID().slice(0, 8)}`));
  });
  afterAll(() => db?.destroy());

  it("when deliveries ended before the retention, then they and their attempts go; recent ones and pending ones of any age stay", async () => {
    const accountId = await createAccount(db, "pruning");
    const daysAgo = (days: number) => new Date(Date.now() - days * 86_400_000);
    const delivery = async (status: "pending" | "succeeded" | "failed" | "disabled", finishedAt: Date | null, createdAt = finishedAt ?? daysAgo(40)) => {
      const { id } = await db
        .insertInto("webhookDelivery")
        .values({ accountId, eventType: "task.succeeded", url: "https://consumer.example/hook", payloadKind: "raw", payload: "{}", status, finishedAt, createdAt, nextAttemptAt: status === "pending" ? new Date() : null })
        .returning("id")
        .executeTakeFirstOrThrow();
      await db.insertInto("webhookAttempt").values({ deliveryId: id, attempt: 1, startedAt: createdAt, statusCode: 500, latencyMs: 3, error: "HTTP 500", responseBody: null }).execute();
      return id;
    };
    const old = [await delivery("succeeded", daysAgo(31)), await delivery("failed", daysAgo(45)), await delivery("disabled", daysAgo(60))];
    const kept = [await delivery("succeeded", daysAgo(29)), await delivery("failed", daysAgo(1)), await delivery("pending", null, daysAgo(90))];

    expect(await pruneFinishedDeliveries(db, 30)).toBe(3);
    const left = await db.selectFrom("webhookDelivery").select("id").where("accountId", "=", accountId).execute();
    expect(new Set(left.map((d) => d.id))).toEqual(new Set(kept));
    const attempts = await db.selectFrom("webhookAttempt").select("deliveryId").where("deliveryId", "in", [...old, ...kept]).execute();
    expect(new Set(attempts.map((a) => a.deliveryId))).toEqual(new Set(kept));
    // Nothing more to do.
    expect(await pruneFinishedDeliveries(db, 30)).toBe(0);
  });
});
