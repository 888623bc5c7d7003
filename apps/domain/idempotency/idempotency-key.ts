import { sql } from "kysely";
import { asJson, type Db } from "../db/database.ts";
import { AppError } from "../errors/app-error.ts";

export type StoredAnswer = { status: number; body: unknown };

export type IdempotencyClaim =
  | { kind: "claimed" }
  | { kind: "replay"; answer: StoredAnswer; requestHash: string | null }
  // Same key, another body: the caller reused a key by mistake.
  | { kind: "mismatch" }
  | { kind: "in_flight" };

export type IdempotencyOptions = { ttlMs: number; inFlightMs: number };

// Keys are the caller's: any printable ASCII, bounded (Stripe's rule is the same).
export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

// Claims (account, key) for this request, or tells what the first request with that key left. An
// expired key, or an in-flight one whose request died long ago (its process crashed), is taken over.
// `requestHash` undefined: the body is still streaming, its hash is known only at the end.
export const claimIdempotencyKey = async (
  db: Db,
  request: { accountId: string; key: string; scope: string; requestHash: string | undefined },
  options: IdempotencyOptions,
): Promise<IdempotencyClaim> => {
  if (!IDEMPOTENCY_KEY.test(request.key)) {
    throw new AppError("validation_failed", "Idempotency-Key must be 1 to 255 printable ASCII characters", {
      violations: [{ field: "Idempotency-Key", message: "must be 1 to 255 printable ASCII characters" }],
    });
  }
  const now = Date.now();
  const claimed = await db
    .insertInto("idempotencyKey")
    .values({
      accountId: request.accountId,
      key: request.key,
      scope: request.scope,
      requestHash: request.requestHash ?? null,
      state: "in_flight",
      expiresAt: new Date(now + options.ttlMs),
      createdAt: new Date(now),
    })
    .onConflict((oc) =>
      oc.columns(["accountId", "key"]).doUpdateSet({
        scope: request.scope,
        requestHash: request.requestHash ?? null,
        state: "in_flight",
        responseStatus: null,
        responseBody: null,
        createdAt: new Date(now),
        expiresAt: new Date(now + options.ttlMs),
      }).where((eb) =>
        eb.or([
          eb("idempotencyKey.expiresAt", "<", new Date(now)),
          eb.and([eb("idempotencyKey.state", "=", "in_flight"), eb("idempotencyKey.createdAt", "<", new Date(now - options.inFlightMs))]),
        ]),
      ),
    )
    .returning("key")
    .executeTakeFirst();
  if (claimed) return { kind: "claimed" };
  const existing = await db
    .selectFrom("idempotencyKey")
    .selectAll()
    .where("accountId", "=", request.accountId)
    .where("key", "=", request.key)
    .executeTakeFirst();
  // Gone between the two statements (pruned): a second try claims it.
  if (!existing) return claimIdempotencyKey(db, request, options);
  if (existing.state === "in_flight") return { kind: "in_flight" };
  const answer = { status: existing.responseStatus ?? 500, body: existing.responseBody };
  // A request that broke off stored an answer that says so, for any body.
  if (existing.requestHash === null) return { kind: "replay", answer, requestHash: null };
  if (existing.scope !== request.scope) return { kind: "mismatch" };
  if (request.requestHash !== undefined && existing.requestHash !== request.requestHash) return { kind: "mismatch" };
  return { kind: "replay", answer, requestHash: existing.requestHash };
};

// For a streamed body: whether the finished request matches the first one (called once the hash is known).
export const storedHashOf = async (db: Db, accountId: string, key: string) =>
  (await db.selectFrom("idempotencyKey").select("requestHash").where("accountId", "=", accountId).where("key", "=", key).executeTakeFirst())?.requestHash;

export const completeIdempotencyKey = async (
  db: Db,
  request: { accountId: string; key: string; requestHash: string | null },
  answer: StoredAnswer,
) => {
  await db
    .updateTable("idempotencyKey")
    .set({ state: "done", requestHash: request.requestHash, responseStatus: answer.status, responseBody: sql`${asJson(answer.body)}::jsonb` })
    .where("accountId", "=", request.accountId)
    .where("key", "=", request.key)
    .where("state", "=", "in_flight")
    .execute();
};

// A request that created nothing (refused, or failed before writing) gives its key back, so that
// the caller may retry with the same key.
export const releaseIdempotencyKey = async (db: Db, accountId: string, key: string) => {
  await db.deleteFrom("idempotencyKey").where("accountId", "=", accountId).where("key", "=", key).where("state", "=", "in_flight").execute();
};

export const pruneIdempotencyKeys = async (db: Db, limit = 10_000) => {
  const result = await db
    .deleteFrom("idempotencyKey")
    .where("key", "in", (eb) => eb.selectFrom("idempotencyKey").select("key").where("expiresAt", "<", new Date()).limit(limit))
    .where("expiresAt", "<", new Date())
    .executeTakeFirst();
  return Number(result.numDeletedRows);
};
