import { randomBytes } from "node:crypto";
import { sql } from "kysely";
import type { Db, Tx } from "../db/database.ts";
import { asJson } from "../db/database.ts";
import type { FieldViolation } from "../errors/app-error.ts";
import { heldAccountSql, holdCreditsCtes, type AccountBalance } from "../credits/credit-ledger.ts";
import type { CreditTerms } from "../credits/credit-terms.ts";
import { itemCredits } from "./batch-request.schema.ts";
import { capViolation, type AcceptBatchDeps, type BatchJob, type Prepared } from "./batch-intake.ts";

// The chunk writer: what a batch intake does with each chunk of prepared items, in either mode.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const jobOf = (p: Prepared): BatchJob => ({ id: p.id, stage: p.request.image.kind === "url" ? "source" : "submit" });

export const cleanUp = async (deps: AcceptBatchDeps, items: Prepared[]) => {
  await Promise.all([
    deps.withdrawBatchJobs(items.map(jobOf)).catch(() => undefined),
    ...items.filter((p) => p.inline).map((p) => deps.storage.remove(p.inline!.key).catch(() => undefined)),
  ]);
};

export // The same rule as a single create (accept-task.ts): an external_task_id equal to one of the
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

export // Which of a chunk's items fit under the cap given the balance, in line order. The hold in the
// chunk's statement (holdCreditsCtes) is what binds: it refuses the chunk if the balance moved.
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

export // One statement per chunk: the tasks, their first events, their credit entries, and the batch's
// counts; with `holdOnBalance`, their hold on the balance too, after the tasks (holdCreditsCtes:
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
  const hold = holdOnBalance ? holdCreditsCtes("inserted", accountId, perImage, credits.defaultCap) : undefined;
  const noHold = sql<{ accountId: string }>`(select null::uuid as account_id where false)`;
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
    .with("held_capped", () => (hold ? hold.held_capped : noHold))
    .with("held_open", () => (hold ? hold.held_open : noHold))
    .with("held", () => (hold ? hold.held : noHold))
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
