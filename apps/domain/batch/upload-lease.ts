import { sql } from "kysely";
import type { Db, Tx } from "../db/database.ts";
import { AppError } from "../errors/app-error.ts";

// Upload leases. A streamed upload is read by one API process, which holds the batch's lease while
// it reads (renewed on a timer and with each chunk); a process that dies (SIGKILL, a lost machine)
// stops renewing, and the worker's sweep ends the upload as broken_off with exactly the chunks it
// committed. A chunk is written only under the lease of a batch still receiving (its renewal takes
// the batch row's lock in the chunk's transaction), so an upload that was canceled or ended by the
// sweep meanwhile stops at its next chunk and never adds tasks after the cancel.
export const leaseUntil = (leaseMs: number) => sql<Date>`now() + make_interval(secs => ${leaseMs / 1000})`;

// True when the batch is still receiving (and its lease now runs `leaseMs` from now).
export const renewUploadLease = async (db: Db | Tx, batchId: string, leaseMs: number): Promise<boolean> => {
  const row = await db
    .updateTable("batch")
    .set({ uploadLeaseUntil: leaseUntil(leaseMs) })
    .where("id", "=", batchId)
    .where("upload", "=", "receiving")
    .returning("id")
    .executeTakeFirst();
  return row !== undefined;
};

// Why an upload may not go on (called once its lease could not be renewed).
export const uploadStopReason = async (db: Db | Tx, batchId: string): Promise<AppError> => {
  const batch = await db.selectFrom("batch").select(["canceledAt", "linesRead"]).where("id", "=", batchId).executeTakeFirst();
  if (batch?.canceledAt) return new AppError("conflict", `batch ${batchId} was canceled while its upload was being read; nothing after line ${batch.linesRead} was written`);
  return new AppError("conflict", `the upload of batch ${batchId} held no live lease (this server stalled past BATCH_UPLOAD_LEASE_MS) and was ended as broken_off; nothing after line ${batch?.linesRead ?? 0} was written`);
};

// The end of an upload that was read to its end: false when it had been stopped meanwhile.
export const completeUpload = async (db: Db, batchId: string): Promise<boolean> => {
  const row = await db
    .updateTable("batch")
    .set({ upload: "complete", receivedAt: new Date(), uploadLeaseUntil: null })
    .where("id", "=", batchId)
    .where("upload", "=", "receiving")
    .returning("id")
    .executeTakeFirst();
  return row !== undefined;
};

export const breakOffUpload = async (db: Db, batchId: string) => {
  await db
    .updateTable("batch")
    .set({ upload: "broken_off", receivedAt: sql<Date>`coalesce(received_at, now())`, uploadLeaseUntil: null })
    .where("id", "=", batchId)
    .where("upload", "=", "receiving")
    .execute();
};

// The sweep's part: every upload whose reader stopped renewing ends as broken_off. Its committed
// chunks' tasks run on (their jobs were added before their rows); the batch then ends as any other
// (completed_with_errors, with batch.completed) once they have.
export const breakOffLapsedUploads = async (db: Db): Promise<string[]> => {
  const rows = await db
    .updateTable("batch")
    .set({ upload: "broken_off", receivedAt: sql<Date>`coalesce(received_at, now())`, uploadLeaseUntil: null })
    .where("uploadLeaseUntil", "<", sql<Date>`now()`)
    .where("upload", "=", "receiving")
    .returning("id")
    .execute();
  return rows.map((r) => r.id);
};

// Renews an upload's lease on a timer while its body is being read (a chunk can take longer than the
// lease on a slow client); `stopped` is set once the batch is found no longer receiving.
export const holdUploadLease = (db: Db, batchId: string, leaseMs: number) => {
  let stopped: AppError | undefined;
  let renewing = false;
  const timer = setInterval(() => {
    if (renewing || stopped) return;
    renewing = true;
    renewUploadLease(db, batchId, leaseMs)
      .then(async (alive) => {
        if (!alive) stopped = await uploadStopReason(db, batchId);
      })
      // A database that does not answer surfaces at the next chunk's write; the lease may lapse meanwhile.
      .catch(() => undefined)
      .finally(() => (renewing = false));
  }, Math.max(100, Math.floor(leaseMs / 3)));
  timer.unref();
  return {
    get stopped() {
      return stopped;
    },
    release: () => clearInterval(timer),
  };
};
