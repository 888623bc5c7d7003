import { sql } from "kysely";
import { forEachConcurrently } from "../async/for-each-concurrently.ts";
import type { Db } from "../db/database.ts";
import type { ObjectStorage } from "../storage/local-storage.ts";
import { terminalStatuses } from "../task/task-status.ts";

// Every kind of row or file that is kept for a while and then deleted: one home, so what goes when
// reads in one place (docs/retention.md). Each step deletes a bounded batch, oldest first, along an
// index, so a backlog drains over several sweeps instead of one long transaction.

const DAY_MS = 86_400_000;
const daysAgo = (days: number, now: number) => new Date(now - days * DAY_MS);
// Files deleted at once: S3 takes one request per object.
const FILE_DELETE_CONCURRENCY = 8;

// Kept for reading what the provider said, not forever (PROVIDER_CALLBACK_RETENTION_DAYS). Rows of a
// pruned task go with it (pruneFinishedTasks) whatever their age.
export const pruneCallbackInbox = async (db: Db, retentionDays: number, batch = 10_000, now = Date.now()): Promise<number> => {
  const result = await sql`
    delete from provider_callback where id in (
      select id from provider_callback where received_at < ${daysAgo(retentionDays, now)} limit ${batch}
    )
  `.execute(db);
  return Number(result.numAffectedRows ?? 0);
};

// The delivery log is for reading and redelivering recent events, not an archive: deliveries that
// ended (delivered, given up, or disabled) go once past the retention (WEBHOOK_DELIVERY_RETENTION_DAYS),
// their attempts with them (cascade). Pending ones stay whatever their age.
export const pruneFinishedDeliveries = async (db: Db, retentionDays: number, batch = 10_000, now = Date.now()): Promise<number> => {
  const result = await sql`
    delete from webhook_delivery where id in (
      select id from webhook_delivery
      where finished_at < ${daysAgo(retentionDays, now)} and status in ('succeeded', 'failed', 'disabled')
      limit ${batch}
    )
  `.execute(db);
  return Number(result.numAffectedRows ?? 0);
};

export type ImagePruneResult = { tasks: number; files: number; errors: number };

// The stored files of tasks finished before the image retention: result images and an uploaded
// source. `sweep` deletes them from the store; `bucket-rule` leaves that to the bucket's lifecycle
// rule. Either way the rows stop naming them (no link is handed out to a file that is gone or going)
// and the task is marked, which takes it off the index this step walks. A task whose delete failed
// stays unmarked and is tried again by the next sweep.
export const pruneExpiredImages = async (
  deps: { db: Db; storage: Pick<ObjectStorage, "remove"> },
  options: { retentionDays: number; by: "sweep" | "bucket-rule"; batch: number; now?: number },
): Promise<ImagePruneResult> => {
  const due = await deps.db
    .selectFrom("task")
    .select(["id", "sourceKey"])
    .where("imagesDeletedAt", "is", null)
    .where("finishedAt", "<", daysAgo(options.retentionDays, options.now ?? Date.now()))
    // In the index's own order (nulls last, then finished_at): an `is null` does not let Postgres
    // use task(images_deleted_at, finished_at) for an order by finished_at alone, and it would
    // then walk task(finished_at) past every task already done (measured: 210,000 rows, 1 s).
    .orderBy("imagesDeletedAt", "asc")
    .orderBy("finishedAt", "asc")
    .limit(options.batch)
    .execute();
  if (due.length === 0) return { tasks: 0, files: 0, errors: 0 };
  const images = await deps.db
    .selectFrom("taskImage")
    .select(["taskId", "storageKey"])
    .where("taskId", "in", due.map((t) => t.id))
    .where("storageKey", "is not", null)
    .execute();
  const files = [
    ...due.flatMap((t) => (t.sourceKey ? [{ taskId: t.id, key: t.sourceKey }] : [])),
    ...images.map((i) => ({ taskId: i.taskId, key: i.storageKey! })),
  ];
  const failed = new Set<string>();
  if (options.by === "sweep") {
    // After a failed delete the pass sends no more: a store that is down or silent would otherwise
    // cost every file of the batch its own timeouts and retries (hours for a full batch at
    // S3_TIMEOUT_MS), holding up the reconcile sweep this runs in. The rest wait for the next pass.
    let storeFailing = false;
    await forEachConcurrently(files, FILE_DELETE_CONCURRENCY, async (file) => {
      if (storeFailing) {
        failed.add(file.taskId);
        return;
      }
      try {
        await deps.storage.remove(file.key);
      } catch {
        storeFailing = true;
        failed.add(file.taskId);
      }
    });
  }
  const done = due.map((t) => t.id).filter((id) => !failed.has(id));
  if (done.length > 0) {
    await deps.db.transaction().execute(async (tx) => {
      await tx.updateTable("taskImage").set({ storageKey: null }).where("taskId", "in", done).execute();
      await tx
        .updateTable("task")
        .set({ imagesDeletedAt: new Date(), sourceKey: null })
        .where("id", "in", done)
        .where("imagesDeletedAt", "is", null)
        .execute();
    });
  }
  const filesOfDone = options.by === "sweep" ? files.filter((f) => !failed.has(f.taskId)).length : 0;
  return { tasks: done.length, files: filesOfDone, errors: failed.size };
};

export type TaskPruneResult = { tasks: number; batches: number };

// Finished tasks past the task retention go with everything that hangs off them: events, images
// rows, outbound deliveries and their attempts (all by cascade), and the provider callbacks of the
// inbox (whose link would otherwise only be nulled). While files are deleted by retention, a task
// goes only once its files have (so no file is left that nothing names). Then the ended batches
// whose last task has gone, with their batch-level deliveries. A pruned task or batch then answers
// 404, exactly like one that never existed.
export const pruneFinishedTasks = async (
  db: Db,
  options: { retentionDays: number; filesFirst: boolean; batch: number; now?: number },
): Promise<TaskPruneResult> => {
  const cutoff = daysAgo(options.retentionDays, options.now ?? Date.now());
  let query = db
    .selectFrom("task")
    .select("id")
    .where("finishedAt", "<", cutoff)
    .where("status", "in", terminalStatuses)
    .orderBy("finishedAt", "asc")
    .limit(options.batch);
  if (options.filesFirst) query = query.where("imagesDeletedAt", "is not", null);
  const ids = (await query.execute()).map((t) => t.id);
  const tasks =
    ids.length === 0
      ? 0
      : await db.transaction().execute(async (tx) => {
          await tx.deleteFrom("providerCallback").where("taskId", "in", ids).execute();
          // Checked again as the row is deleted: a task retried (batch retry) since it was read stays.
          const gone = await tx
            .deleteFrom("task")
            .where("id", "in", ids)
            .where("finishedAt", "<", cutoff)
            .where("status", "in", terminalStatuses)
            .executeTakeFirst();
          return Number(gone.numDeletedRows);
        });
  const batches = await db.transaction().execute(async (tx) => {
    // Deleting a batch would cascade to its tasks: only an ended one that has none left goes.
    const gone = await tx
      .deleteFrom("batch")
      .where("id", "in", (eb) =>
        eb
          .selectFrom("batch as b")
          .select("b.id")
          .where("b.finishedAt", "<", cutoff)
          .where((w) => w.not(w.exists(w.selectFrom("task").select(sql.lit(1).as("one")).whereRef("task.batchId", "=", "b.id"))))
          .orderBy("b.finishedAt", "asc")
          .limit(options.batch),
      )
      .where("finishedAt", "<", cutoff)
      .returning("id")
      .execute();
    if (gone.length > 0) {
      await tx.deleteFrom("webhookDelivery").where("batchId", "in", gone.map((b) => b.id)).where("taskId", "is", null).execute();
    }
    return gone.length;
  });
  return { tasks, batches };
};
