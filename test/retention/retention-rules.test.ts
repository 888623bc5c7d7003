import { randomUUID } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createAccount } from "../../apps/domain/account/api-key.ts";
import { createDb, type Db } from "../../apps/domain/db/database.ts";
import { createLogger } from "../../apps/domain/logging/logger.ts";
import { retentionSettingsFrom, type RetentionSettings } from "../../apps/domain/retention/retention.config.ts";
import { runRetention } from "../../apps/domain/retention/retention-sweep.ts";
import { createLocalStorage, sourceImageKey, taskImageKey } from "../../apps/domain/storage/local-storage.ts";
import type { TaskStatus } from "../../apps/domain/db/database.ts";
import { cloneDatabase } from "../support/databases.ts";

// The retention rules on rows and files written straight into Postgres and a local store, with
// finished_at set in the past: what is past its time goes with everything hanging off it, and
// nothing else does.

const DAY_MS = 86_400_000;
const daysAgo = (days: number) => new Date(Date.now() - days * DAY_MS);
const settings = (env: Record<string, number | string> = {}): RetentionSettings =>
  retentionSettingsFrom({
    TASK_RETENTION_DAYS: 90,
    IMAGE_RETENTION_BY: "sweep",
    RETENTION_BATCH_SIZE: 1_000,
    RETENTION_EVERY_MS: 60_000,
    PROVIDER_CALLBACK_RETENTION_DAYS: 30,
    WEBHOOK_DELIVERY_RETENTION_DAYS: 30,
    ...env,
  } as Parameters<typeof retentionSettingsFrom>[0]);

describe("retention of finished tasks, their rows and their files", () => {
  let db: Db;
  let dir: string;
  const storage = () => createLocalStorage(dir);
  const logger = createLogger("retention-test", "silent");

  beforeAll(async () => {
    db = createDb(await cloneDatabase(inject("templateDatabaseUrl"), `retain${randomUUID().slice(0, 8)}`));
    dir = await mkdtemp(path.join(tmpdir(), "retention-"));
  });
  afterAll(async () => {
    await db?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const storedFiles = async () => new Set(await readdir(dir, { recursive: true }));

  // A task as the worker leaves it: an event, a stored result image and an uploaded source, an inbox
  // row, and an outbound delivery with an attempt.
  const task = async (accountId: string, status: TaskStatus, finishedDaysAgo: number | null, extra: { batchId?: string } = {}) => {
    const id = randomUUID();
    const sourceKey = sourceImageKey(id, "png");
    const imageKey = taskImageKey(id, 0, "png");
    await storage().put(sourceKey, Buffer.from("source"));
    await db
      .insertInto("task")
      .values({
        id,
        accountId,
        status,
        callbackToken: "t",
        upRatio: 0.1,
        downRatio: 0.1,
        leftRatio: 0.1,
        rightRatio: 0.1,
        sourceKey,
        callbackUrl: "https://consumer.example/hook",
        acceptedAt: daysAgo(200),
        finishedAt: finishedDaysAgo === null ? null : daysAgo(finishedDaysAgo),
        batchId: extra.batchId ?? null,
      })
      .execute();
    await db.insertInto("taskEvent").values({ taskId: id, toStatus: status, source: "worker", createdAt: daysAgo(200) }).execute();
    if (status === "succeeded") {
      await storage().put(imageKey, Buffer.from("image"));
      await db.insertInto("taskImage").values({ taskId: id, index: 0, providerUrl: "https://provider.example/0.png", storageKey: imageKey, storedAt: daysAgo(200) }).execute();
    }
    await db.insertInto("providerCallback").values({ taskId: id, rawBody: "{}", outcome: "applied", receivedAt: daysAgo(1) }).execute();
    const delivery = await db
      .insertInto("webhookDelivery")
      .values({ accountId, taskId: id, batchId: extra.batchId ?? null, eventType: "task.succeeded", url: "https://consumer.example/hook", payloadKind: "raw", payload: "{}", status: "pending", nextAttemptAt: new Date() })
      .returning("id")
      .executeTakeFirstOrThrow();
    await db.insertInto("webhookAttempt").values({ deliveryId: delivery.id, attempt: 1, startedAt: new Date(), statusCode: 500, latencyMs: 3 }).execute();
    return { id, files: status === "succeeded" ? [sourceKey, imageKey] : [sourceKey] };
  };

  const left = async (table: "task" | "taskImage" | "taskEvent" | "providerCallback" | "webhookDelivery", ids: string[]) => {
    const column = table === "task" ? "id" : "taskId";
    const rows = await db.selectFrom(table).select(`${column} as id` as never).where(column as never, "in", ids as never).execute();
    return new Set((rows as { id: string }[]).map((r) => r.id));
  };
  const run = (s: RetentionSettings) => runRetention({ db, storage: storage(), logger }, s);

  it("when finished tasks are past TASK_RETENTION_DAYS, then they go with their events, images rows, inbox rows, deliveries and files; recent and unfinished ones stay whole", async () => {
    const accountId = await createAccount(db, "retention");
    const old = [await task(accountId, "succeeded", 91), await task(accountId, "failed", 120), await task(accountId, "canceled", 95)];
    const kept = [await task(accountId, "succeeded", 10), await task(accountId, "queued", null), await task(accountId, "processing", null)];
    const oldIds = old.map((t) => t.id);
    const keptIds = kept.map((t) => t.id);
    const attemptsBefore = await db.selectFrom("webhookAttempt").select("id").execute();

    const summary = await run(settings());
    expect(summary).toMatchObject({ tasks: 3, imageTasks: 3, files: 4 });
    for (const table of ["task", "taskImage", "taskEvent", "providerCallback", "webhookDelivery"] as const) {
      expect(await left(table, oldIds), table).toEqual(new Set());
    }
    expect(await left("task", keptIds)).toEqual(new Set(keptIds));
    expect(await left("taskEvent", keptIds)).toEqual(new Set(keptIds));
    expect(await left("providerCallback", keptIds)).toEqual(new Set(keptIds));
    expect(await left("webhookDelivery", keptIds)).toEqual(new Set(keptIds));
    expect((await db.selectFrom("webhookAttempt").select("id").execute()).length).toBe(attemptsBefore.length - 3);
    const files = await storedFiles();
    for (const f of old.flatMap((t) => t.files)) expect(files.has(f), f).toBe(false);
    for (const f of kept.flatMap((t) => t.files)) expect(files.has(f), f).toBe(true);
    // Nothing more to do.
    expect(await run(settings())).toMatchObject({ tasks: 0, imageTasks: 0, files: 0 });
  });

  it("when IMAGE_RETENTION_DAYS is shorter, then only the files go: the task stays, says so and names no file", async () => {
    const accountId = await createAccount(db, "images");
    const older = await task(accountId, "succeeded", 40);
    const recent = await task(accountId, "succeeded", 20);
    expect(await run(settings({ IMAGE_RETENTION_DAYS: 30 }))).toMatchObject({ tasks: 0, imageTasks: 1, files: 2 });
    const files = await storedFiles();
    expect(older.files.map((f) => files.has(f))).toEqual([false, false]);
    expect(recent.files.map((f) => files.has(f))).toEqual([true, true]);
    const row = await db.selectFrom("task").select(["imagesDeletedAt", "sourceKey"]).where("id", "=", older.id).executeTakeFirstOrThrow();
    expect(row.imagesDeletedAt).toBeInstanceOf(Date);
    expect(row.sourceKey).toBeNull();
    const image = await db.selectFrom("taskImage").select("storageKey").where("taskId", "=", older.id).executeTakeFirstOrThrow();
    expect(image.storageKey).toBeNull();
  });

  it("when a bucket lifecycle rule deletes the files (IMAGE_RETENTION_BY=bucket-rule), then the sweep leaves them in the store but stops naming them", async () => {
    const accountId = await createAccount(db, "bucket-rule");
    const older = await task(accountId, "succeeded", 40);
    expect(await run(settings({ IMAGE_RETENTION_DAYS: 30, IMAGE_RETENTION_BY: "bucket-rule" }))).toMatchObject({ imageTasks: 1, files: 0 });
    const files = await storedFiles();
    expect(older.files.map((f) => files.has(f))).toEqual([true, true]);
    const image = await db.selectFrom("taskImage").select("storageKey").where("taskId", "=", older.id).executeTakeFirstOrThrow();
    expect(image.storageKey).toBeNull();
  });

  it("when TASK_RETENTION_DAYS is 0, then every task, row and file is kept whatever its age", async () => {
    const accountId = await createAccount(db, "keep");
    const ancient = await task(accountId, "succeeded", 3_000);
    expect(settings({ TASK_RETENTION_DAYS: 0 })).toMatchObject({ taskDays: null, imageDays: null });
    expect(await run(settings({ TASK_RETENTION_DAYS: 0 }))).toMatchObject({ tasks: 0, imageTasks: 0, files: 0, batches: 0 });
    expect(await left("task", [ancient.id])).toEqual(new Set([ancient.id]));
    const files = await storedFiles();
    expect(ancient.files.map((f) => files.has(f))).toEqual([true, true]);
    // Not left for the next tests' passes, which have retention on.
    await db.deleteFrom("task").where("id", "=", ancient.id).execute();
  });

  it("when a batch's tasks go, then the batch goes with its last one, its batch-level deliveries too", async () => {
    const accountId = await createAccount(db, "batch");
    const batchId = randomUUID();
    await db.insertInto("batch").values({ id: batchId, accountId, source: "json", upload: "complete", endStatus: "completed", finishedAt: daysAgo(91) }).execute();
    await db.insertInto("webhookDelivery").values({ accountId, batchId, eventType: "batch.completed", url: "https://consumer.example/hook", payloadKind: "raw", payload: "{}", status: "pending" }).execute();
    const first = await task(accountId, "succeeded", 100, { batchId });
    const last = await task(accountId, "failed", 50, { batchId });
    expect(await run(settings())).toMatchObject({ tasks: 1, batches: 0 });
    expect(await db.selectFrom("batch").select("id").where("id", "=", batchId).execute()).toHaveLength(1);
    await db.updateTable("task").set({ finishedAt: daysAgo(92) }).where("id", "=", last.id).execute();
    expect(await run(settings())).toMatchObject({ tasks: 1, batches: 1 });
    expect(await db.selectFrom("batch").select("id").where("id", "=", batchId).execute()).toHaveLength(0);
    expect(await db.selectFrom("webhookDelivery").select("id").where("batchId", "=", batchId).execute()).toHaveLength(0);
    expect(await left("task", [first.id, last.id])).toEqual(new Set());
  });

  it("when more tasks are due than RETENTION_BATCH_SIZE, then each pass deletes at most that many, oldest first", async () => {
    const accountId = await createAccount(db, "bounded");
    const due = [];
    for (const age of [95, 96, 97, 98, 99]) due.push(await task(accountId, "failed", age));
    const small = settings({ RETENTION_BATCH_SIZE: 2 });
    expect(await run(small)).toMatchObject({ tasks: 2, imageTasks: 2 });
    // The oldest two went first.
    expect(await left("task", due.map((t) => t.id))).toEqual(new Set(due.slice(0, 3).map((t) => t.id)));
    expect(await run(small)).toMatchObject({ tasks: 2 });
    expect(await run(small)).toMatchObject({ tasks: 1 });
    expect(await run(small)).toMatchObject({ tasks: 0 });
  });

  it("when the store fails a delete, then the pass sends no more deletes, marks none of the tasks, and the next pass deletes them all", async () => {
    const accountId = await createAccount(db, "outage");
    const due = [];
    for (let i = 0; i < 10; i++) due.push(await task(accountId, "succeeded", 40));
    const keys = due.flatMap((t) => t.files);
    expect(keys).toHaveLength(20);
    const asked: string[] = [];
    const down = {
      remove: async (key: string) => {
        asked.push(key);
        throw new Error("store unreachable");
      },
    };
    const images = settings({ IMAGE_RETENTION_DAYS: 30 });
    expect(await runRetention({ db, storage: down, logger }, images)).toMatchObject({ imageTasks: 0, files: 0, fileErrors: 10 });
    // One round of concurrent deletes at most (8 at once), not one failing request per file.
    expect(asked.length).toBeGreaterThan(0);
    expect(asked.length).toBeLessThanOrEqual(8);
    const rows = await db.selectFrom("task").select(["imagesDeletedAt", "sourceKey"]).where("id", "in", due.map((t) => t.id)).execute();
    expect(rows.map((r) => r.imagesDeletedAt)).toEqual(due.map(() => null));
    expect(rows.every((r) => r.sourceKey !== null)).toBe(true);
    const files = await storedFiles();
    expect(keys.filter((k) => !files.has(k))).toEqual([]);

    expect(await run(images)).toMatchObject({ imageTasks: 10, files: 20, fileErrors: 0 });
    const after = await storedFiles();
    expect(keys.filter((k) => after.has(k))).toEqual([]);
  });
});
