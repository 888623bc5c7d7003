import { randomBytes } from "node:crypto";
import { sql } from "kysely";
import { v7 as uuidv7 } from "uuid";
import type { Db, Tx } from "../db/database.ts";
import { asJson } from "../db/database.ts";
import { AppError, validationError, type FieldViolation } from "../errors/app-error.ts";
import { isDatabaseUnavailable, retryOnConflict } from "../errors/dependency-errors.ts";
import type { ExpandRequest } from "../expand-request/expand-request.schema.ts";
import { inspectSourceImage } from "../expand-request/source-image.ts";
import { SafeFetchError } from "../http/safe-fetch.ts";
import { sourceImageKey, type ObjectStorage } from "../storage/local-storage.ts";
import type { RawItem } from "./batch-item-sources.ts";
import { itemCredits, parseBatchItem, type BatchFields } from "./batch-request.schema.ts";
import { breakOffUpload, completeUpload, holdUploadLease, leaseUntil, renewUploadLease, uploadStopReason } from "./batch.repository.ts";
import { accountBalance, addHeld, heldAccountSql, holdCreditsCte, isCapRefusal, lockBalance, type AccountBalance } from "../credits/credit-ledger.ts";
import { aboveCapacityMessage, type CreditTerms } from "../credits/credit-terms.ts";

export type BatchJob = { id: string; stage: "source" | "submit" };

export type AcceptBatchDeps = {
  db: Db;
  storage: ObjectStorage;
  stallRecheckMs: number;
  checkCallbackUrl: (url: string) => Promise<void>;
  // As a single create's (accept-task.ts): a literal private address in an image URL.
  imageUrlRefusal: (url: string) => string | undefined;
  // BullMQ addBulk of a chunk's first jobs, with the account's fair batch priorities. Throws an
  // AppError 503 when Redis cannot take them: that chunk is then not written.
  enqueueBatchJobs: (accountId: string, jobs: BatchJob[]) => Promise<void>;
  withdrawBatchJobs: (jobs: BatchJob[]) => Promise<void>;
  // Prices, cap and capacity (credits/credit-terms.ts).
  credits: CreditTerms;
  chunkItems: number;
  // How long a streamed upload's batch stays `receiving` without a sign of life from the process
  // reading it (BATCH_UPLOAD_LEASE_MS); renewed every third of it.
  uploadLeaseMs: number;
};

export type BatchSource = "json" | "ndjson" | "csv";
export type BatchLineError = { line: number; field: string; message: string };

export type BatchIntakeResult = {
  batchId: string | undefined;
  accepted: number;
  rejected: number;
  credits: number;
  errors: BatchLineError[];
  errorsTruncated: boolean;
  spendCapReached: boolean;
  images: number;
};

// Errors kept for the answer; the count of every rejected line is kept in any case.
const MAX_REPORTED_ERRORS = 1_000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

type Prepared = { id: string; line: number; request: ExpandRequest; inputName: string | undefined; inline?: { key: string; width: number; height: number } };

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
  const room = cap ?? Infinity;
  const capBase = balance.spent + balance.reserved;
  if (cap !== undefined && !input.dryRun && input.plannedCredits !== undefined && capBase + input.plannedCredits > cap) {
    throw new AppError(
      "spend_cap_exceeded",
      `the batch costs ${input.plannedCredits} credits; with ${capBase} spent or reserved the account would pass its spend cap of ${cap} credits; nothing was created`,
    );
  }

  const result: BatchIntakeResult = {
    batchId: undefined,
    accepted: 0,
    rejected: 0,
    credits: 0,
    errors: [],
    errorsTruncated: false,
    spendCapReached: false,
    images: 0,
  };
  const reject = (line: number, violations: FieldViolation[]) => {
    result.rejected++;
    for (const v of violations) {
      if (result.errors.length < MAX_REPORTED_ERRORS) result.errors.push({ line, field: v.field, message: v.message });
      else result.errorsTruncated = true;
    }
  };
  const callbackChecks = new Map<string, string | undefined>();

  const prepare = async (raw: RawItem): Promise<Prepared | undefined> => {
    if ("error" in raw) return void reject(raw.line, [{ field: "item", message: raw.error }]);
    const checked = parseBatchItem(fields.defaults, raw.value);
    if (!checked.ok) return void reject(raw.line, checked.violations);
    const request = checked.request;
    const imageRefusal = request.image.kind === "url" ? deps.imageUrlRefusal(request.image.url) : undefined;
    if (imageRefusal) return void reject(raw.line, [{ field: "image", message: imageRefusal }]);
    if (request.callbackUrl) {
      const refusal = await callbackRefusal(deps, callbackChecks, request.callbackUrl);
      if (refusal) return void reject(raw.line, [{ field: "callback_url", message: refusal }]);
    }
    if (request.n > deps.credits.maxRouteCapacity) return void reject(raw.line, [{ field: "n", message: aboveCapacityMessage(request.n, deps.credits.maxRouteCapacity) }]);
    const credits = itemCredits(request.n, deps.credits.perImage);
    // An early refusal from the first look; each chunk's hold decides for good (holdChunk). A dry
    // run reports the whole batch against the cap instead (the route's spend_cap.would_exceed).
    if (!input.dryRun && capBase + result.credits + credits > room) {
      result.spendCapReached = true;
      return void reject(raw.line, [capViolation(cap!, capBase + result.credits)]);
    }
    const id = uuidv7();
    let inline: Prepared["inline"];
    if (request.image.kind === "base64") {
      const bytes = Buffer.from(request.image.data, "base64");
      const check = await inspectSourceImage(bytes);
      if (!check.ok) return void reject(raw.line, [{ field: "image", message: check.reason }]);
      inline = { key: sourceImageKey(id, check.info.format), width: check.info.width, height: check.info.height };
      if (!input.dryRun) await deps.storage.put(inline.key, bytes);
      // The Base64 text is not kept past this point: only the stored key travels in the chunk.
      request.image = { kind: "base64", data: "" };
    }
    result.credits += credits;
    result.images += request.n;
    return { id, line: raw.line, request, inputName: checked.inputName, ...(inline ? { inline } : {}) };
  };

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

  await deps.db.insertInto("batch").values({ ...batchRow, uploadLeaseUntil: leaseUntil(deps.uploadLeaseMs) }).execute();
  const lease = holdUploadLease(deps.db, batchId, deps.uploadLeaseMs);
  let chunk: Prepared[] = [];
  let rejectedBefore = result.rejected;
  let lastLine = 0;
  const flush = async () => {
    await refuseUuidExternalIds(deps.db, accountId, chunk, reject);
    const rejectedNow = result.rejected - rejectedBefore;
    const jobs = chunk.map(jobOf);
    if (jobs.length > 0) await deps.enqueueBatchJobs(accountId, jobs);
    try {
      // Written only into a batch still receiving, under its renewed lease (batch.repository.ts). The
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

const emptyUpload = () => new AppError("validation_failed", "the upload has no items", { violations: [{ field: "body", message: "has no items (an empty file, or only a header row)" }] });

const jobOf = (p: Prepared): BatchJob => ({ id: p.id, stage: p.request.image.kind === "url" ? "source" : "submit" });

const cleanUp = async (deps: AcceptBatchDeps, items: Prepared[]) => {
  await Promise.all([
    deps.withdrawBatchJobs(items.map(jobOf)).catch(() => undefined),
    ...items.filter((p) => p.inline).map((p) => deps.storage.remove(p.inline!.key).catch(() => undefined)),
  ]);
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

// The same rule as a single create (accept-task.ts): an external_task_id equal to one of the
// account's task ids would make lookups by either ambiguous. One query per chunk.
const refuseUuidExternalIds = async (db: Db | Tx, accountId: string, chunk: Prepared[], reject: (line: number, v: FieldViolation[]) => void) => {
  const uuids = chunk.filter((p) => p.request.externalTaskId && UUID.test(p.request.externalTaskId));
  if (uuids.length === 0) return;
  const clashes = await db
    .selectFrom("task")
    .select("id")
    .where("accountId", "=", accountId)
    .where("id", "in", uuids.map((p) => p.request.externalTaskId!.toLowerCase()))
    .execute();
  const taken = new Set(clashes.map((c) => c.id));
  for (let i = chunk.length - 1; i >= 0; i--) {
    const p = chunk[i]!;
    if (p.request.externalTaskId && taken.has(p.request.externalTaskId.toLowerCase())) {
      chunk.splice(i, 1);
      reject(p.line, [{ field: "external_task_id", message: "equals the task_id of another task of this account; choose an id that is not one of ours" }]);
    }
  }
};

const capViolation = (cap: number, used: number): FieldViolation => ({
  field: "n",
  message: `would take the account past its spend cap of ${cap} credits (${used} spent or reserved)`,
});

// Which of a chunk's items fit under the cap given the balance, in line order. The hold in the
// chunk's statement (holdCreditsCte) is what binds: it refuses the chunk if the balance moved.
const fitUnderCap = (balance: AccountBalance, deps: AcceptBatchDeps, chunk: Prepared[]) => {
  const overCap: { item: Prepared; violation: FieldViolation }[] = [];
  if (balance.cap === undefined) return { fit: chunk, overCap };
  let used = balance.spent + balance.reserved;
  const fit: Prepared[] = [];
  for (const p of chunk) {
    const credits = itemCredits(p.request.n, deps.credits.perImage);
    if (used + credits <= balance.cap) {
      used += credits;
      fit.push(p);
    } else {
      overCap.push({ item: p, violation: capViolation(balance.cap, used) });
    }
  }
  return { fit, overCap };
};

// One statement per chunk: the tasks, their first events, their credit entries, and the batch's
// counts; with `holdOnBalance`, their hold on the balance too, after the tasks (holdCreditsCte:
// refused past the cap, the statement fails, isCapRefusal). An atomic batch adds its holds to the
// balance once, at its end, so as not to lock the balance row for the whole upload.
const writeChunk = async (
  db: Db | Tx,
  batchId: string,
  accountId: string,
  chunk: Prepared[],
  rejected: number,
  lastLine: number,
  nextCheckAt: Date,
  credits: CreditTerms,
  holdOnBalance: boolean,
) => {
  const perImage = credits.perImage;
  if (chunk.length === 0) {
    await db
      .updateTable("batch")
      .set((eb) => ({ rejectedItems: eb("rejectedItems", "+", rejected), linesRead: Math.max(lastLine, 0) }))
      .where("id", "=", batchId)
      .execute();
    return [];
  }
  const rows = chunk.map((p) => ({
    id: p.id,
    accountId,
    batchId,
    batchLine: p.line,
    inputName: p.inputName ?? null,
    externalTaskId: p.request.externalTaskId ?? null,
    callbackUrl: p.request.callbackUrl ?? null,
    imageUrl: p.request.image.kind === "url" ? p.request.image.url : null,
    sourceKey: p.inline?.key ?? null,
    upRatio: p.request.ratios.up,
    downRatio: p.request.ratios.down,
    leftRatio: p.request.ratios.left,
    rightRatio: p.request.ratios.right,
    prompt: p.request.prompt ?? null,
    n: p.request.n,
    watermark: p.request.watermark ?? null,
    sourceWidth: p.inline?.width ?? null,
    sourceHeight: p.inline?.height ?? null,
    callbackToken: randomBytes(24).toString("base64url"),
    nextCheckAt,
  }));
  const inserted = await db
    .with("inserted", (q) =>
      q
        .insertInto("task")
        .values(rows)
        .onConflict((oc) => oc.columns(["accountId", "externalTaskId"]).doNothing())
        .returning(["id", "accountId", "batchId", "n"]),
    )
    .with("event", (q) =>
      q
        .insertInto("taskEvent")
        .columns(["taskId", "toStatus", "source", "detail"])
        .expression((eb) =>
          eb
            .selectFrom("inserted")
            .select((s) => ["inserted.id", s.val("queued").as("toStatus"), s.val("api").as("source"), sql`${asJson({ batch_id: batchId })}::jsonb`.as("detail")]),
        ),
    )
    .with("counted", (q) =>
      q
        .updateTable("batch")
        .set({
          acceptedItems: sql`accepted_items + (select count(*) from inserted)`,
          rejectedItems: sql`rejected_items + ${rejected + rows.length}::int - (select count(*) from inserted)`,
          linesRead: lastLine,
        })
        .where("id", "=", batchId)
        .returning("id"),
    )
    .with("held", () => (holdOnBalance ? holdCreditsCte("inserted", accountId, perImage, credits.defaultCap) : sql<{ accountId: string }>`(select null::uuid as account_id where false)`))
    .with("entry", (q) =>
      q
        .insertInto("creditEntry")
        .columns(["accountId", "taskId", "batchId", "reserved"])
        .expression((eb) =>
          eb
            .selectFrom("inserted")
            .select([(holdOnBalance ? heldAccountSql("held") : sql<string>`inserted.account_id`).as("accountId"), "inserted.id", "inserted.batchId", sql<string>`inserted.n * ${perImage}::numeric`.as("reserved")]),
        ),
    )
    .selectFrom("inserted")
    .select("id")
    .execute();
  return inserted.map((r) => r.id);
};

const acceptAtomically = async (
  deps: AcceptBatchDeps,
  input: { accountId: string; items: AsyncIterable<RawItem> },
  result: BatchIntakeResult,
  batchRow: { id: string; accountId: string; name: string | null; source: string; defaults: string | null; callbackUrl: string | null },
  prepare: (raw: RawItem) => Promise<Prepared | undefined>,
  stallAt: () => Date,
): Promise<BatchIntakeResult> => {
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

export const spendCapError = (result: BatchIntakeResult) =>
  new AppError("spend_cap_exceeded", `the batch would take the account past its spend cap; nothing was created (${result.errors.find((e) => e.message.includes("spend cap"))?.message ?? ""})`);

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
      await deps.enqueueBatchJobs(
        accountId,
        page.map((t) => ({ id: t.id, stage: t.imageUrl && t.sourceWidth === null ? "source" : "submit" })),
      );
      after = page[page.length - 1]!.id;
    }
  } catch {
    // Re-driven by the sweeper (next_check_at was set at intake).
  }
};

const refuseUnreachable = async (deps: AcceptBatchDeps, url: string, field: string) => {
  try {
    await deps.checkCallbackUrl(url);
  } catch (error) {
    if (error instanceof SafeFetchError && !error.retryable) throw validationError([{ field, message: error.publicReason }]);
  }
};

// Items' callback URLs are checked as a single create's are, once per distinct URL in a batch.
const callbackRefusal = async (deps: AcceptBatchDeps, seen: Map<string, string | undefined>, url: string) => {
  if (seen.has(url)) return seen.get(url);
  let refusal: string | undefined;
  try {
    await deps.checkCallbackUrl(url);
  } catch (error) {
    if (error instanceof SafeFetchError && !error.retryable) refusal = error.publicReason;
  }
  if (seen.size < 1_000) seen.set(url, refusal);
  return refusal;
};
