import { sql } from "kysely";
import { z } from "zod";
import type { DB, Db, TaskStatus, Tx } from "../db/database.ts";
import { keysetPage, type PageQuery } from "../db/keyset-page.ts";
import { AppError } from "../errors/app-error.ts";
import { selectTaskWithImages, type TaskWithImages } from "../task/task.repository.ts";
import { taskStatuses } from "../task/task-status.ts";
import { recordWebhookEvent } from "../webhooks/outbound-events.ts";
import { toBatchView } from "./batch.presenter.ts";
import type { Batch, BatchEndStatus, BatchProgress, BatchStatus } from "./batch-progress.ts";
import { batchCredits, type CreditFigures } from "../credits/credit-totals.ts";

// Throughput is measured over the last minute of completions (or since the first submission, when
// the batch started less than a minute ago).
const THROUGHPUT_WINDOW_MS = 60_000;

const notFound = (id: string) => new AppError("not_found", `batch '${id}' not found`);
const isUuid = (value: string) => z.uuid().safeParse(value).success;

export const findAccountBatch = async (db: Db, accountId: string, batchId: string): Promise<Batch> => {
  if (!isUuid(batchId)) throw notFound(batchId);
  const batch = await db.selectFrom("batch").selectAll().where("id", "=", batchId).where("accountId", "=", accountId).executeTakeFirst();
  if (!batch) throw notFound(batchId);
  return batch;
};

const endStatusOf = (batch: Batch, counts: Record<TaskStatus, number>): BatchEndStatus =>
  batch.canceledAt ? "canceled" : counts.failed > 0 || batch.rejectedItems > 0 || batch.upload === "broken_off" ? "completed_with_errors" : "completed";

// Counts by status come from the task table (indexed by batch and status): nothing is counted per
// item on the intake or worker paths. The end is recorded the first time it is seen.
// Each batch's task counts and figures by status, for many batches in one grouped query (the
// worker's sweep looks at every open batch each second).
const batchTaskFigures = async (db: Db, batchIds: readonly string[], windowStart: Date) => {
  const rows =
    batchIds.length === 0
      ? []
      : await db
          .selectFrom("task")
          .select([
            "batchId",
            "status",
            (eb) => eb.fn.countAll<string>().as("count"),
            sql<Date | null>`min(submitted_at)`.as("firstSubmittedAt"),
            sql<Date | null>`max(finished_at)`.as("lastFinishedAt"),
            sql<string>`count(*) filter (where finished_at >= ${windowStart})`.as("recent"),
          ])
          .where("batchId", "in", batchIds)
          .groupBy(["batchId", "status"])
          .execute();
  const byBatch = new Map<string, typeof rows>();
  for (const row of rows) {
    const list = byBatch.get(row.batchId!) ?? [];
    list.push(row);
    byBatch.set(row.batchId!, list);
  }
  return byBatch;
};
type BatchTaskFigures = Awaited<ReturnType<typeof batchTaskFigures>> extends Map<string, infer R> ? R : never;

export const batchProgress = async (db: Db, batch: Batch): Promise<BatchProgress> => (await batchesProgress(db, [batch]))[0]!;

// The progress of several batches, in their order, from one count query.
export const batchesProgress = async (db: Db, batches: readonly Batch[]): Promise<BatchProgress[]> => {
  const now = Date.now();
  const windowStart = new Date(now - THROUGHPUT_WINDOW_MS);
  const ids = batches.map((b) => b.id);
  const [figures, credits] = await Promise.all([batchTaskFigures(db, ids, windowStart), batchCredits(db, ids)]);
  const progress: BatchProgress[] = [];
  for (const batch of batches) {
    progress.push(await progressFrom(db, batch, figures.get(batch.id) ?? [], credits.get(batch.id) ?? { spent: 0, reserved: 0 }, now, windowStart));
  }
  return progress;
};

const progressFrom = async (db: Db, batch: Batch, rows: BatchTaskFigures, credits: CreditFigures, now: number, windowStart: Date): Promise<BatchProgress> => {
  const counts = Object.fromEntries(taskStatuses.map((s) => [s, 0])) as Record<TaskStatus, number>;
  let recent = 0;
  let firstSubmittedAt: Date | null = null;
  let lastFinishedAt: Date | null = null;
  for (const row of rows) {
    counts[row.status] = Number(row.count);
    recent += Number(row.recent);
    if (row.firstSubmittedAt && (!firstSubmittedAt || row.firstSubmittedAt < firstSubmittedAt)) firstSubmittedAt = row.firstSubmittedAt;
    if (row.lastFinishedAt && (!lastFinishedAt || row.lastFinishedAt > lastFinishedAt)) lastFinishedAt = row.lastFinishedAt;
  }
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const finished = counts.succeeded + counts.failed + counts.canceled;
  const remaining = total - finished;
  const windowFrom = Math.max(windowStart.getTime(), (firstSubmittedAt ?? batch.createdAt).getTime());
  const windowSeconds = Math.max(1, (now - windowFrom) / 1000);
  const throughputPerSecond = recent > 0 ? recent / windowSeconds : null;
  const etaSeconds = remaining === 0 ? 0 : throughputPerSecond ? Math.ceil(remaining / throughputPerSecond) : null;

  const progressOf = (b: Batch, s: BatchStatus): BatchProgress => ({
    batch: b,
    status: s,
    counts,
    total,
    finished,
    // No task rows yet while items are still arriving (a chunk not yet committed) is 0 done, not
    // all done: a list read between the batch row and its first chunk showed 100 and then 25.
    percent: total === 0 ? (s === "receiving" ? 0 : 100) : Math.round((finished / total) * 1000) / 10,
    creditsSpent: credits.spent,
    creditsReserved: credits.reserved,
    throughputPerSecond: throughputPerSecond === null ? null : Math.round(throughputPerSecond * 100) / 100,
    etaSeconds,
    firstSubmittedAt,
    lastFinishedAt,
  });

  let status: BatchStatus;
  if (batch.endStatus) status = batch.endStatus as BatchEndStatus;
  else if (batch.upload === "receiving") status = "receiving";
  else if (remaining > 0) status = "running";
  else {
    status = endStatusOf(batch, counts);
    // Guarded, so that concurrent readers (a GET, the worker's batch sweep) record the end once, and
    // its batch.completed event with it, in the same transaction.
    const ended = batch;
    const recorded = await db.transaction().execute(async (tx) => {
      const row = await tx
        .updateTable("batch")
        .set({ endStatus: status, finishedAt: lastFinishedAt ?? new Date() })
        .where("id", "=", ended.id)
        .where("endStatus", "is", null)
        .returningAll()
        .executeTakeFirst();
      if (row?.callbackUrl) {
        await recordWebhookEvent(tx, {
          accountId: row.accountId,
          batchId: row.id,
          eventType: "batch.completed",
          url: row.callbackUrl,
          payload: toBatchView(progressOf(row, status)),
        });
      }
      return row;
    });
    if (recorded) batch = recorded;
  }
  return progressOf(batch, status);
};

// Newest first; ids are UUIDv7, so "after this id" is a stable cursor.
export const listAccountBatches = async (db: Db, accountId: string, query: PageQuery) => {
  let select = db.selectFrom("batch").selectAll().where("accountId", "=", accountId);
  const page = await keysetPage(select, { column: "id", field: "id", order: "desc" }, query);
  return { batches: page.rows, nextCursor: page.nextCursor };
};

// In upload order (task ids are UUIDv7 given as the lines were read).
export const listBatchTasks = async (db: Db, batchId: string, query: PageQuery & { status?: TaskStatus }) => {
  let select = selectTaskWithImages(db).where("task.batchId", "=", batchId);
  if (query.status) select = select.where("task.status", "=", query.status);
  const page = await keysetPage(select, { column: "task.id", field: "id", order: "asc" }, query);
  return { tasks: page.rows, nextCursor: page.nextCursor };
};

// Every task of the batch, page by page: memory holds one page whatever the batch's size.
export async function* batchTasksInPages(db: Db, batchId: string, pageSize = 500): AsyncGenerator<TaskWithImages[]> {
  let cursor: string | undefined;
  for (;;) {
    const { tasks, nextCursor } = await listBatchTasks(db, batchId, { cursor, limit: pageSize });
    if (tasks.length > 0) yield tasks;
    if (!nextCursor) return;
    cursor = nextCursor;
  }
}
