import { randomUUID } from "node:crypto";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAccount } from "../../apps/domain/account/api-key.ts";
import { serverKeyFrom, generateServerKeyMaterial } from "../../apps/domain/crypto/server-key.ts";
import { createDb, type Db } from "../../apps/domain/db/database.ts";
import { prepareDatabase } from "../../apps/domain/db/prepare-database.ts";
import { parseAllowedPrivateHost } from "../../apps/domain/http/private-host-allowlist.ts";
import { createLogger } from "../../apps/domain/logging/logger.ts";
import { deliverWebhook, type DeliverWebhookDeps } from "../../apps/domain/webhooks/deliver-webhook.ts";
import { claimDeliveries, dueDeliveries } from "../../apps/domain/webhooks/webhook-delivery.store.ts";
import { startPrivatePostgres, type PrivatePostgres } from "../support/private-postgres.ts";
import { startWebhookConsumer, type WebhookConsumer } from "../support/webhook-consumer.ts";

// The claim commits without waiting for its WAL flush (webhook-delivery.store.ts): a Postgres that
// crashes right after it may forget it. Then nothing is lost and nothing goes out of order: the
// delivery is back as it was before the claim, the sweep finds it, and it is sent with the same
// webhook-id; the task's later event still waits for it. The server is the test's own, its WAL
// writer slowed to its longest delay so that the crash comes before the claim is flushed.

describe("a claim forgotten by a Postgres crash", () => {
  let server: PrivatePostgres;
  let databaseUrl: string;
  let db: Db;
  let consumer: WebhookConsumer;
  beforeAll(async () => {
    server = await startPrivatePostgres({ wal_writer_delay: "10000", wal_writer_flush_after: "0" });
    databaseUrl = `${server.serverUrl}/claimcrash`;
    await prepareDatabase(databaseUrl);
    db = createDb(databaseUrl);
    consumer = await startWebhookConsumer();
  }, 180_000);
  afterAll(async () => {
    await db?.destroy();
    await consumer?.close();
    await server?.stop();
  });

  it("when Postgres crashes after a claim, then the delivery is pending and unleased again, the sweep finds it, and it reaches the consumer with the same webhook-id before the task's next event", async () => {
    const accountId = await createAccount(db, "crash");
    const taskId = randomUUID();
    await db.insertInto("task").values({ id: taskId, accountId, callbackToken: "t", upRatio: 0.1, downRatio: 0.1, leftRatio: 0.1, rightRatio: 0.1 }).execute();
    const record = async (eventType: string) =>
      (
        await db
          .insertInto("webhookDelivery")
          .values({ accountId, taskId, eventType, url: `${consumer.url}/hook`, payloadKind: "raw", payload: "{}", status: "pending", nextAttemptAt: new Date() })
          .returning("id")
          .executeTakeFirstOrThrow()
      ).id;
    const first = await record("kling.processing");
    const second = await record("kling.succeed");
    // Durable before the crash: only the claim is at stake.
    await sql`checkpoint`.execute(db);

    const claimed = await claimDeliveries(db, [first, second], 60_000);
    expect(claimed.map((d) => d.id)).toEqual([first]);
    await db.destroy();
    await server.crash();
    await server.start();
    db = createDb(databaseUrl);

    const row = await db.selectFrom("webhookDelivery").select(["status", "attempts", "leaseUntil"]).where("id", "=", first).executeTakeFirstOrThrow();
    expect(row).toEqual({ status: "pending", attempts: 0, leaseUntil: null });
    // The sweep's query: the first is due and held by nobody; the second still waits for it.
    expect((await dueDeliveries(db, 10)).map((d) => d.id)).toEqual([first]);

    const sent: { id: string; attempts: number }[] = [];
    const deps: DeliverWebhookDeps = {
      db,
      logger: createLogger("claim-crash", "silent"),
      serverKey: serverKeyFrom(generateServerKeyMaterial()),
      signLink: () => "http://127.0.0.1/unused",
      schedule: [0, 1_000],
      attemptTimeoutMs: 5_000,
      maxResponseBytes: 1_024,
      allowedPrivateHosts: [parseAllowedPrivateHost("127.0.0.1")!],
      enqueue: async (delivery) => void sent.push(delivery),
    };
    expect(await deliverWebhook(deps, first)).toBe("sent");
    // Decided: the task's next event is handed on, and goes next.
    expect(sent).toEqual([{ id: second, attempts: 0 }]);
    expect(await deliverWebhook(deps, second)).toBe("sent");
    const received = await consumer.waitFor("/hook", 2);
    expect(received.map((r) => r.headers["webhook-id"])).toEqual([first, second]);
  }, 120_000);
});
