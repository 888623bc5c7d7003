import { sql } from "kysely";
import { addHeld, lockBalance } from "../credits/credit-ledger.ts";
import { itemCredits } from "./batch-request.schema.ts";
import { capViolation, emptyUpload, spendCapError, type AcceptBatchDeps, type Prepared, type WriteBatch } from "./batch-intake.ts";
import { refuseUuidExternalIds, writeChunk } from "./batch-chunk.ts";

// An atomic batch: one transaction for the whole upload (accept-batch.ts).
export const acceptAtomically: WriteBatch = async (deps, input, result, batchRow, prepare, stallAt) => {
  const stored: string[] = [];
  const rollback = new Error("atomic batch rolled back");
  let outcome: "committed" | "refused" = "refused";
  try {
    await deps.db.transaction().execute(async (tx) => {
      // The transaction waits on the caller's upload between chunks: the pool's idle-in-transaction
      // bound (seconds) would end it under a slow client.
      await sql`set local idle_in_transaction_session_timeout = '10min'`.execute(tx);
      await tx.insertInto("batch").values(batchRow).execute();
      let chunk: Prepared[] = [];
      let lastLine = 0;
      let held = 0;
      const flush = async () => {
        await refuseUuidExternalIds(tx, input.accountId, chunk, (line, v) => {
          result.rejected++;
          result.errors.push(...v.map((x) => ({ line, ...x })));
        });
        if (result.rejected === 0) {
          const inserted = await writeChunk(tx, batchRow.id, input.accountId, chunk, 0, lastLine, stallAt(), deps.credits, false);
          result.accepted += inserted.length;
          const written = new Set(inserted);
          held += chunk.filter((c) => written.has(c.id)).reduce((sum, c) => sum + itemCredits(c.request.n, deps.credits.perImage), 0);
          for (const p of chunk.filter((c) => !written.has(c.id))) {
            result.rejected++;
            result.errors.push({ line: p.line, field: "external_task_id", message: "already names another task of this account" });
          }
        }
        chunk = [];
      };
      for await (const raw of input.items) {
        lastLine = raw.line;
        const item = await prepare(raw);
        if (item?.inline) stored.push(item.inline.key);
        if (item) chunk.push(item);
        if (chunk.length >= deps.chunkItems) await flush();
      }
      await flush();
      if (lastLine === 0) throw emptyUpload();
      if (result.rejected > 0) throw rollback;
      // The whole batch's holds at once, under the balance row's lock (held only from here to the
      // commit): over the cap, nothing is kept.
      const balance = await lockBalance(tx, input.accountId, deps.credits.defaultCap);
      if (balance.cap !== undefined && balance.spent + balance.reserved + held > balance.cap) {
        result.spendCapReached = true;
        result.errors.push({ line: lastLine, ...capViolation(balance.cap, balance.spent + balance.reserved) });
        throw rollback;
      }
      await addHeld(tx, input.accountId, held);
      await tx.updateTable("batch").set({ upload: "complete", receivedAt: new Date() }).where("id", "=", batchRow.id).execute();
      outcome = "committed";
    });
  } catch (error) {
    await Promise.all(stored.map((key) => deps.storage.remove(key).catch(() => undefined)));
    if (error !== rollback) throw error;
  }
  if (outcome === "refused") {
    result.batchId = undefined;
    result.accepted = 0;
    if (result.spendCapReached) throw spendCapError(result);
    return result;
  }
  await enqueueCommitted(deps, input.accountId, batchRow.id);
  return result;
};

// After an atomic batch's commit: its jobs, page by page (memory stays one page). A failure here
// is not the caller's: the rows are committed and the sweeper re-drives them.
const enqueueCommitted = async (deps: AcceptBatchDeps, accountId: string, batchId: string) => {
  let after: string | undefined;
  try {
    for (;;) {
      let q = deps.db.selectFrom("task").select(["id", "imageUrl", "sourceWidth"]).where("batchId", "=", batchId).orderBy("id").limit(deps.chunkItems);
      if (after) q = q.where("id", ">", after);
      const page = await q.execute();
      if (page.length === 0) return;
      const settle = await deps.enqueueBatchJobs(
        accountId,
        page.map((t) => ({ id: t.id, stage: t.imageUrl && t.sourceWidth === null ? "source" : "submit" })),
      );
      // Committed before their jobs: nothing in flight for the resync to keep.
      await settle().catch(() => undefined);
      after = page[page.length - 1]!.id;
    }
  } catch {
    // Re-driven by the sweeper (next_check_at was set at intake).
  }
};
