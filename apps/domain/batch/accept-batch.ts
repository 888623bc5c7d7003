import { v7 as uuidv7 } from "uuid";
import { asJson } from "../db/database.ts";
import { AppError, type FieldViolation } from "../errors/app-error.ts";
import { isDatabaseUnavailable, retryOnConflict } from "../errors/dependency-errors.ts";
import { accountBalance, isCapRefusal } from "../credits/credit-ledger.ts";
import type { RawItem } from "./batch-item-sources.ts";
import { itemCredits, type BatchFields } from "./batch-request.schema.ts";
import { breakOffUpload, completeUpload, holdUploadLease, leaseUntil, renewUploadLease, uploadStopReason } from "./upload-lease.ts";
import { emptyUpload, newIntakeResult, rejectLine, type AcceptBatchDeps, type BatchIntakeResult, type BatchSource, type Prepared, type WriteBatch } from "./batch-intake.ts";
import { itemPreparer, refuseUnreachable } from "./prepare-batch-item.ts";
import { cleanUp, fitUnderCap, jobOf, refuseUuidExternalIds, writeChunk } from "./batch-chunk.ts";
import { acceptAtomically } from "./accept-batch-atomic.ts";

// One batch's intake: items are read one at a time, validated exactly as a single create, and
// written in chunks (one multi-row statement per chunk: tasks, their first events and the batch's
// counts together, so the batch's counts always equal its task rows) after their jobs went to
// BullMQ in one addBulk (job first, as in accept-task.ts: a row never exists without its job).
// Memory holds one chunk, whatever the item count.
//
// Not atomic: each chunk commits on its own; an upload that breaks off leaves the batch marked
// `broken_off` with exactly the lines of its committed chunks (their line numbers are on the tasks).
// Atomic: one transaction for the whole upload; any bad item, a spend cap or a broken upload rolls
// everything back; the jobs are added after the commit (a row whose job is then lost is re-driven by
// the sweeper after STALL_RECHECK_MS, as for any task).
// Dry run: everything validated, nothing written.
export const acceptBatch = async (
  deps: AcceptBatchDeps,
  input: {
    accountId: string;
    source: BatchSource;
    fields: BatchFields;
    items: AsyncIterable<RawItem>;
    atomic: boolean;
    dryRun: boolean;
    // Known up front (the JSON form): a batch over the cap is refused whole before anything is written.
    plannedCredits?: number;
  },
): Promise<BatchIntakeResult> => {
  const { accountId, fields } = input;
  if (fields.callback_url) await refuseUnreachable(deps, fields.callback_url, "callback_url");
  // A first look at the ledger: a batch known up front to pass the cap is refused before anything
  // is read or written. The binding check is each chunk's hold, under the balance row's lock.
  const balance = await accountBalance(deps.db, accountId, deps.credits.defaultCap);
  const cap = balance.cap;
  const capBase = balance.spent + balance.reserved;
  if (cap !== undefined && !input.dryRun && input.plannedCredits !== undefined && capBase + input.plannedCredits > cap) {
    throw new AppError(
      "spend_cap_exceeded",
      `the batch costs ${input.plannedCredits} credits; with ${capBase} spent or reserved the account would pass its spend cap of ${cap} credits; nothing was created`,
    );
  }

  const result = newIntakeResult();
  const prepare = itemPreparer(deps, input, result, { cap, capBase });

  if (input.dryRun) {
    for await (const raw of input.items) {
      const item = await prepare(raw);
      if (item) result.accepted++;
    }
    return result;
  }

  const batchId = uuidv7();
  result.batchId = batchId;
  const batchRow = {
    id: batchId,
    accountId,
    name: fields.name ?? null,
    source: input.source,
    defaults: asJson(fields.defaults),
    callbackUrl: fields.callback_url ?? null,
  };
  const stallAt = () => new Date(Date.now() + deps.stallRecheckMs);

  if (input.atomic) return acceptAtomically(deps, input, result, batchRow, prepare, stallAt);
  return acceptInChunks(deps, input, result, batchRow, prepare, stallAt);
};

// Not atomic: each chunk commits on its own, under the upload's lease (upload-lease.ts).
const acceptInChunks: WriteBatch = async (deps, input, result, batchRow, prepare, stallAt) => {
  const { accountId } = input;
  const batchId = batchRow.id;
  const reject = (line: number, violations: FieldViolation[]) => rejectLine(result, line, violations);

  await deps.db.insertInto("batch").values({ ...batchRow, uploadLeaseUntil: leaseUntil(deps.uploadLeaseMs) }).execute();
  const lease = holdUploadLease(deps.db, batchId, deps.uploadLeaseMs);
  let chunk: Prepared[] = [];
  let rejectedBefore = result.rejected;
  let lastLine = 0;
  const flush = async () => {
    await refuseUuidExternalIds(deps.db, accountId, chunk, reject);
    const rejectedNow = result.rejected - rejectedBefore;
    const jobs = chunk.map(jobOf);
    const settle = jobs.length > 0 ? await deps.enqueueBatchJobs(accountId, jobs) : undefined;
    try {
      // Written only into a batch still receiving, under its renewed lease (upload-lease.ts). The
      // chunk's statement writes its tasks, then holds their credits under the balance row's lock
      // (the ledger's lock order, credit-ledger.ts); which items fit was decided from a read of the
      // balance just before. Another batch or create that took the room meanwhile makes the hold
      // refuse the statement: decided again from a fresh read. Items past the cap are refused by
      // line, and their jobs withdrawn.
      let decided: ReturnType<typeof fitUnderCap>;
      let inserted: string[];
      for (;;) {
        decided = fitUnderCap(await accountBalance(deps.db, accountId, deps.credits.defaultCap), deps, chunk);
        try {
          inserted = await retryOnConflict(() =>
            deps.db.transaction().execute(async (tx) => {
              if (!(await renewUploadLease(tx, batchId, deps.uploadLeaseMs))) throw await uploadStopReason(tx, batchId);
              return writeChunk(tx, batchId, accountId, decided.fit, rejectedNow + decided.overCap.length, lastLine, stallAt(), deps.credits, true);
            }),
          );
          break;
        } catch (error) {
          if (!isCapRefusal(error)) throw error;
        }
      }
      const overCap = decided.overCap.map((o) => o.item);
      for (const o of decided.overCap) reject(o.item.line, [o.violation]);
      if (overCap.length > 0) {
        result.spendCapReached = true;
        await cleanUp(deps, overCap);
      }
      const written = new Set([...inserted, ...overCap.map((p) => p.id)]);
      const lost = chunk.filter((p) => !written.has(p.id));
      for (const p of lost) reject(p.line, [{ field: "external_task_id", message: "already names another task of this account" }]);
      if (lost.length > 0) await cleanUp(deps, lost);
      result.credits -= [...lost, ...overCap].reduce((sum, p) => sum + itemCredits(p.request.n, deps.credits.perImage), 0);
      result.accepted += inserted.length;
    } catch (error) {
      await cleanUp(deps, chunk);
      throw error;
    } finally {
      // The chunk's rows are committed or will not be (fair-priority.ts: in-flight marks).
      await settle?.().catch(() => undefined);
    }
    chunk = [];
    rejectedBefore = result.rejected;
  };

  try {
    for await (const raw of input.items) {
      // Canceled (or ended by the sweep) meanwhile: stop reading now rather than at the next chunk.
      if (lease.stopped) throw lease.stopped;
      lastLine = raw.line;
      const item = await prepare(raw);
      if (item) chunk.push(item);
      if (chunk.length >= deps.chunkItems) await flush();
    }
    await flush();
    if (lastLine > 0 && !(await completeUpload(deps.db, batchId))) throw await uploadStopReason(deps.db, batchId);
  } catch (error) {
    // Whatever was committed stays and runs; the batch says the upload did not complete.
    await cleanUp(deps, chunk);
    await breakOffUpload(deps.db, batchId).catch(() => undefined);
    throw brokenOff(error, batchId, result.accepted);
  } finally {
    lease.release();
  }
  if (lastLine === 0) {
    // Nothing to do is a mistake worth saying, not an empty batch that "completed".
    await deps.db.deleteFrom("batch").where("id", "=", batchId).execute();
    throw emptyUpload();
  }
  return result;
};

// An upload that stopped after some chunks were committed: the batch exists and keeps them.
export class BatchBrokenOffError extends AppError {
  constructor(
    readonly batchId: string,
    readonly accepted: number,
    code: AppError["code"],
    message: string,
    cause: unknown,
  ) {
    super(code, `${message}; batch ${batchId} keeps the ${accepted} items accepted before the upload stopped (GET /v1/batches/${batchId})`, { cause });
  }
}

const brokenOff = (error: unknown, batchId: string, accepted: number) => {
  if (error instanceof AppError) return new BatchBrokenOffError(batchId, accepted, error.code, error.message, error);
  if (isDatabaseUnavailable(error)) return new BatchBrokenOffError(batchId, accepted, "dependency_unavailable", "the database did not answer", error);
  return new BatchBrokenOffError(batchId, accepted, "validation_failed", "the upload broke off", error);
};

