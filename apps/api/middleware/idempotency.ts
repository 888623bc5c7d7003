import { createHash, type Hash } from "node:crypto";
import type { NextFunction, Request, Response } from "express";
import { AppError } from "../../domain/errors/app-error.ts";
import {
  claimIdempotencyKey,
  completeIdempotencyKey,
  releaseIdempotencyKey,
  type IdempotencyClaim,
  type IdempotencyOptions,
  type StoredAnswer,
} from "../../domain/idempotency/idempotency-key.ts";
import type { Db } from "../../domain/db/database.ts";
import { canonical } from "../../domain/idempotency/request-hash.ts";

// `writeBody` writes the canonical body's JSON into the hash (a JSON batch does it item by item).
export const jsonRequestHash = (req: Request, writeBody: (hash: Hash) => void = (hash) => void hash.update(JSON.stringify(canonical(req.body) ?? null))) => {
  const hash = createHash("sha256").update(`${req.method} ${req.baseUrl}${req.path}?${new URL(req.originalUrl, "http://x").search}\n`);
  writeBody(hash);
  return hash.digest("hex");
};

// A streamed body's hash starts the same way, with its media type (the same bytes as CSV and as
// NDJSON are two requests); the body is written into it as it is read (request-hash.ts hashing).
export const streamRequestHash = (req: Request, mediaType: string) =>
  createHash("sha256").update(`${scopeOf(req)}?${new URL(req.originalUrl, "http://x").search}\n${mediaType}\n`);

export const idempotencyKeyOf = (req: Request) => {
  const key = req.headers["idempotency-key"];
  return typeof key === "string" ? key : undefined;
};

export const scopeOf = (req: Request) => `${req.method} ${req.baseUrl}${req.path}`;

// A create's answer points at what it created (<collection>/<id>, as the routes set it): a replay
// carries the same Location, derived from the stored body rather than stored a second time.
const createdLocation = (res: Response, answer: StoredAnswer): string | undefined => {
  if (answer.status !== 201 && answer.status !== 202) return undefined;
  const id = (answer.body as { id?: unknown } | null)?.id;
  return typeof id === "string" ? `${res.req.baseUrl}/${encodeURIComponent(id)}` : undefined;
};

export const replay = (res: Response, answer: StoredAnswer) => {
  res.setHeader("idempotent-replayed", "true");
  const location = createdLocation(res, answer);
  if (location) res.location(location);
  res.status(answer.status);
  if (answer.status >= 400) res.type("application/problem+json");
  res.json(answer.body);
};

export const refusal = (claim: Exclude<IdempotencyClaim, { kind: "claimed" | "replay" }>) =>
  claim.kind === "in_flight"
    ? new AppError("conflict", "a request with this Idempotency-Key is still in progress; retry once it has answered")
    : new AppError("unprocessable", "this Idempotency-Key was used with another request; use a new key for a new request");

// Stores the answer before it is sent (so a retry right after it sees it); a 5xx gives the key back
// (nothing is known to be created), so the caller can retry with the same key.
export const recordAnswer = (db: Db, res: Response, ids: { accountId: string; key: string; requestHash: () => string | null }) => {
  const json = res.json.bind(res);
  let settled = false;
  res.json = ((body: unknown) => {
    if (settled) return json(body);
    settled = true;
    const status = res.statusCode;
    const store =
      status >= 500
        ? releaseIdempotencyKey(db, ids.accountId, ids.key)
        : completeIdempotencyKey(db, { accountId: ids.accountId, key: ids.key, requestHash: ids.requestHash() }, { status, body });
    store.then(
      () => json(body),
      () => json(body),
    );
    return res;
  }) as Response["json"];
  // No answer at all (the caller went away first): the key goes back.
  res.once("close", () => {
    if (!settled) {
      settled = true;
      releaseIdempotencyKey(db, ids.accountId, ids.key).catch(() => undefined);
    }
  });
};

// For routes whose body is JSON and already read: claim, replay, or refuse before the route runs.
export const idempotentJson = (db: Db, options: IdempotencyOptions) => async (req: Request, res: Response, next: NextFunction) => {
  const key = idempotencyKeyOf(req);
  if (key === undefined) return next();
  const accountId = res.locals.accountId;
  const requestHash = jsonRequestHash(req);
  const claim = await claimIdempotencyKey(db, { accountId, key, scope: scopeOf(req), requestHash }, options);
  if (claim.kind === "replay") return replay(res, claim.answer);
  if (claim.kind !== "claimed") throw refusal(claim);
  recordAnswer(db, res, { accountId, key, requestHash: () => requestHash });
  next();
};

// For a body read as it streams (a batch upload): the key is claimed before the body is read, so
// the request's hash is known only at its end (`body.digest`, set by the caller once read). A key
// answered already is a replay only if the body is the same one: then it is read through the hash
// and dropped. True when the request was answered here (replayed).
export const claimStreamedKey = async (
  db: Db,
  options: IdempotencyOptions,
  req: Request,
  res: Response,
  ids: { accountId: string; key: string },
  body: { hash: Hash; digest: string | undefined },
): Promise<boolean> => {
  const claim = await claimIdempotencyKey(db, { ...ids, scope: scopeOf(req), requestHash: undefined }, options);
  if (claim.kind === "in_flight") throw refusal(claim);
  if (claim.kind === "mismatch") throw refusal(claim);
  if (claim.kind === "replay") {
    if (claim.requestHash === null) return (replay(res, claim.answer), true);
    // The body decides between a replay and a mismatch: read it through the hash, keep nothing.
    if (/100-continue/i.test(req.headers.expect ?? "")) res.writeContinue();
    for await (const chunk of req as AsyncIterable<Buffer>) body.hash.update(chunk);
    if (body.hash.digest("hex") === claim.requestHash) return (replay(res, claim.answer), true);
    throw refusal({ kind: "mismatch" });
  }
  recordAnswer(db, res, { ...ids, requestHash: () => body.digest ?? null });
  return false;
};
