import type { Db } from "../db/database.ts";
import { recordWebhookEvent } from "../webhooks/outbound-events.ts";
import { toBatchView } from "./batch.presenter.ts";
import { batchesProgress } from "./batch.repository.ts";
import { breakOffLapsedUploads } from "./upload-lease.ts";

// The worker's look at every unfinished batch, on the sweeper's timer: a batch whose last task has
// ended is recorded as ended with its batch.completed event (batchProgress does both in one
// transaction), even when nobody reads it; one with a callback_url whose counts moved gets a
// batch.progress event, at most one per `progressEveryMs`. Counts come from the task table, so
// nothing on the task paths counts per batch. One grouped count query covers every open batch.
// First, uploads whose API process died (their lease lapsed) end as broken_off, so their batches
// run to an end like any other.
export const sweepBatchEvents = async (db: Db, options: { progressEveryMs: number; limit?: number }) => {
  const brokenOff = (await breakOffLapsedUploads(db)).length;
  const open = await db
    .selectFrom("batch")
    .selectAll()
    .where("endStatus", "is", null)
    .orderBy("createdAt")
    .limit(options.limit ?? 500)
    .execute();
  let ended = 0;
  let progressed = 0;
  for (const progress of await batchesProgress(db, open)) {
    const batch = progress.batch;
    if (progress.batch.endStatus) {
      ended++;
      continue;
    }
    if (!batch.callbackUrl || progress.total === 0) continue;
    const last = await db
      .selectFrom("webhookDelivery")
      .select(["createdAt", "payload"])
      .where("batchId", "=", batch.id)
      .where("eventType", "=", "batch.progress")
      .orderBy("seq", "desc")
      .limit(1)
      .executeTakeFirst();
    if (last && Date.now() - last.createdAt.getTime() < options.progressEveryMs) continue;
    const view = toBatchView(progress);
    // Unchanged counts are no news.
    if (last && JSON.stringify((last.payload as { counts?: unknown } | null)?.counts) === JSON.stringify(view.counts)) continue;
    await recordWebhookEvent(db, { accountId: batch.accountId, batchId: batch.id, eventType: "batch.progress", url: batch.callbackUrl, payload: view });
    progressed++;
  }
  return { ended, progressed, brokenOff };
};
