import type { IncomingMessage, ServerResponse } from "node:http";
import express, { type Request, type Response } from "express";
import { AppError, validationError } from "../../domain/errors/app-error.ts";
import { metrics } from "../../domain/metrics/metrics.ts";
import { chunksSource, type BatchBodySource } from "../../domain/batch/json-batch-body.ts";
import { openBodySpool, type SpooledBody } from "./body-spool.ts";
import { collectYoung } from "../../domain/process/heap-growth.ts";

// How many request-body bytes this process holds at once, across every route. A body is buffered
// whole (and then parsed, decoded, checked), so without a bound, 200 concurrent 9 MB creates took
// the API to 2.8 GB. A request reserves its declared Content-Length before a byte is read; one
// without a length (chunked) reserves as it arrives and is cut off when the budget runs out.
//
// One account may hold at most its share of the budget, so that the rest stays for the others: 16
// uploads of one account declaring 4 MiB and sending 100 bytes every 5 s held all of it, and every
// other account was refused for minutes. A body that arrives slower than the minimum rate loses its
// reservation (408), so even its share is not held for long.
export type BodyBudgetOptions = {
  capacityBytes: number;
  // The fraction of the budget one account may hold at once (its first body is always taken).
  accountShare: number;
  // A body that brings fewer bytes than this per second, over any window of rateWindowMs, is cut off.
  minBytesPerSecond: number;
  rateWindowMs: number;
};

export type BodyHolder = { accountId?: string | undefined; held?: number };

export type BodyBudget = {
  readonly capacityBytes: number;
  readonly accountShareBytes: number;
  readonly minBytesPerSecond: number;
  readonly rateWindowMs: number;
  inFlightBytes(accountId?: string): number;
  // `holder.held`: what this request already holds. A request that is alone (in the process, or of
  // its account) may exceed the budget or the share (up to its route's limit), so a budget set below
  // the largest body refuses nothing forever.
  tryReserve(bytes: number, holder?: BodyHolder): boolean;
  release(bytes: number, accountId?: string): void;
};

export const createBodyBudget = (options: BodyBudgetOptions): BodyBudget => {
  const { capacityBytes } = options;
  const accountShareBytes = Math.floor(capacityBytes * options.accountShare);
  let used = 0;
  const byAccount = new Map<string, number>();
  return {
    capacityBytes,
    accountShareBytes,
    minBytesPerSecond: options.minBytesPerSecond,
    rateWindowMs: options.rateWindowMs,
    inFlightBytes: (accountId) => (accountId === undefined ? used : (byAccount.get(accountId) ?? 0)),
    tryReserve: (bytes, holder = {}) => {
      const held = holder.held ?? 0;
      if (used + bytes > capacityBytes && used > held) return false;
      if (holder.accountId !== undefined) {
        const account = byAccount.get(holder.accountId) ?? 0;
        if (account + bytes > accountShareBytes && account > held) return false;
        byAccount.set(holder.accountId, account + bytes);
      }
      used += bytes;
      return true;
    },
    release: (bytes, accountId) => {
      used = Math.max(0, used - bytes);
      if (accountId === undefined) return;
      const left = (byAccount.get(accountId) ?? 0) - bytes;
      if (left > 0) byAccount.set(accountId, left);
      else byAccount.delete(accountId);
    },
  };
};

// `instead`: where a larger upload goes (a JSON batch: the streamed forms, which have no size limit).
export const payloadTooLarge = (limit: number, instead?: string) =>
  new AppError("payload_too_large", `request body exceeds ${limit} bytes (the limit is ${Math.round(limit / 1024 / 1024)} MB)${instead ? `; ${instead}` : ""}`);

const serverBusy = () => {
  metrics.intakeBodiesRefused.inc({ reason: "busy" });
  return new AppError("server_busy", "the server is busy receiving other request bodies; nothing was stored, retry in a few seconds");
};

const bodyTooSlow = (budget: BodyBudget) => {
  metrics.intakeBodiesRefused.inc({ reason: "too_slow" });
  return new AppError(
    "body_too_slow",
    `the request body arrived slower than ${budget.minBytesPerSecond} bytes per second over ${budget.rateWindowMs / 1000} s; nothing was stored. Send it again over a faster link, or smaller`,
  );
};

// Typed like body-parser's own middleware (plain Node request and response), so a route keeps
// the parameter types Express infers from its path.
export type BodyReader = (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void;

const hasBody = (req: IncomingMessage) =>
  req.headers["transfer-encoding"] !== undefined || (req.headers["content-length"] !== undefined && req.headers["content-length"] !== "0");

// With Expect: 100-continue the client waits for our go-ahead before sending the body; the server
// hands such requests to the app without answering (api.server.ts), so this is the only place
// that says "send it", after authentication and the budget said yes. `_sent100` is Node's own flag.
const sendContinue = (req: IncomingMessage, res: ServerResponse) => {
  if (/100-continue/i.test(req.headers.expect ?? "") && !(res as { _sent100?: boolean })._sent100) res.writeContinue();
};

// Wraps a body-parser middleware: checks the limit and reserves budget before it reads, tracks an
// unmeasured body as it grows, and gives everything back when the answer is finished or abandoned.
const budgeted =
  (budget: BodyBudget, limit: number, accepts: (req: IncomingMessage) => boolean, parser: BodyReader, instead?: string): BodyReader =>
  (req, res, next) => {
    if (!hasBody(req) || !accepts(req)) return parser(req, res, next);
    const chunked = req.headers["content-length"] === undefined;
    const declared = chunked ? 0 : Number(req.headers["content-length"]);
    if (declared > limit) return next(payloadTooLarge(limit, instead));
    // An encoded body's inflated size is unknown until it is read; it may grow to the limit.
    const encoded = (req.headers["content-encoding"] ?? "identity").toLowerCase() !== "identity";
    let held = encoded ? limit : declared;
    // Set by authenticate() on every route that reads a body, except the provider's callbacks
    // (small, and the per-task URL token is their key): those count against the budget alone.
    const accountId = (res as { locals?: { accountId?: string } }).locals?.accountId;
    if (!budget.tryReserve(held, { accountId })) return next(serverBusy());
    let released = false;
    const releaseAll = () => {
      if (released) return;
      released = true;
      budget.release(held, accountId);
    };
    res.once("close", releaseAll);

    let cutOff = false;
    // The parser calls back once it has read (or given up on) the body; after a cut-off the answer
    // is already on its way and that late call is dropped.
    parser(req, res, (error?: unknown) => {
      if (cutOff) return;
      // An unmeasured body that grew past the limit: the same answer as a declared one.
      const tooLarge = (error as { type?: unknown } | undefined)?.type === "entity.too.large";
      next(tooLarge && instead ? payloadTooLarge(limit, instead) : error);
    });
    if (res.headersSent || req.listenerCount("data") === 0) return;
    // Only once the parser is listening (it may have refused at once, e.g. an unknown charset).
    sendContinue(req, res);
    const parserListeners = req.listeners("data") as ((chunk: Buffer) => void)[];
    // The parser would keep all it reads: it stops reading here, and the rest of the body is read
    // and dropped (settleUnreadBody) or the connection closed after the answer.
    const cutOffWith = (error: AppError) => {
      cutOff = true;
      for (const listener of parserListeners) req.removeListener("data", listener);
      next(error);
    };

    // The minimum rate, checked once per window from the go-ahead on: a body that brought too few
    // bytes in the last window gives its reservation back at once and is answered 408.
    let windowBytes = 0;
    const rateCheck = setInterval(() => {
      if (cutOff || req.complete) return clearInterval(rateCheck);
      if (windowBytes * 1000 < budget.minBytesPerSecond * budget.rateWindowMs) {
        clearInterval(rateCheck);
        releaseAll();
        cutOffWith(bodyTooSlow(budget));
        return;
      }
      windowBytes = 0;
    }, budget.rateWindowMs);
    rateCheck.unref();
    const stopRateCheck = () => clearInterval(rateCheck);
    req.once("end", stopRateCheck);
    res.once("close", stopRateCheck);

    let dropped = 0;
    // Added after the parser's own listener (it attaches synchronously), so both see each chunk.
    req.on("data", (chunk: Buffer) => {
      windowBytes += chunk.length;
      if (cutOff) {
        // A client that sends on past the route's limit would have been refused anyway.
        dropped += chunk.length;
        if (held + dropped > limit) req.socket.destroy();
        return;
      }
      if (!chunked || encoded) return;
      if (budget.tryReserve(chunk.length, { accountId, held })) {
        held += chunk.length;
        return;
      }
      // Closing the connection with the body unread reset it, and a client still sending (or slow
      // to read) could lose the answer to the reset: a busy refusal reads and drops the rest.
      cutOffWith(serverBusy());
    });
  };

const mediaType = (req: IncomingMessage) => (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
const isJson = (type: string) => type === "application/json" || /^application\/[\w.-]+\+json$/.test(type);

// The provider reads a create body as JSON whatever it is labelled (the seed marks Content-Type
// optional), so drop-in clients that send none, text/plain, or curl -d's form type still work.
const lenientJsonTypes = new Set(["", "text/plain", "application/x-www-form-urlencoded"]);

export const readJsonBody = (budget: BodyBudget, options: { limit: number; lenientContentType?: boolean; instead?: string }): BodyReader => {
  const accepts = options.lenientContentType
    ? (req: IncomingMessage) => isJson(mediaType(req)) || lenientJsonTypes.has(mediaType(req))
    : (req: IncomingMessage) => isJson(mediaType(req));
  return budgeted(budget, options.limit, accepts, express.json({ limit: options.limit, type: accepts }), options.instead);
};

// A JSON body spooled to disk as it arrives (a JSON batch: body-spool.ts says why, and
// json-batch-body.ts reads it item by item). body-parser would hold it whole, join it (a second
// copy), decode it (a third) and parse the whole. Only UTF-8 is read; an encoded body is inflated
// by express.raw, one Buffer (req.body is then its chunks). Whoever takes req.body closes it
// (closeSpooledBody); if nobody did, the answer's end does.
const spoolBody =
  (limit: number, accepts: (req: IncomingMessage) => boolean): BodyReader =>
  (req, res, next) => {
    if (!hasBody(req) || !accepts(req)) return next();
    const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers["content-type"] ?? "")?.[1]?.toLowerCase();
    if (charset !== undefined && charset !== "utf-8" && charset !== "utf8") {
      return next(Object.assign(new Error(`unsupported charset "${charset}"`), { status: 415, type: "charset.unsupported" }));
    }
    if ((req.headers["content-encoding"] ?? "identity").toLowerCase() !== "identity") {
      return express.raw({ limit, type: () => true })(req as Request, res as Response, (error?: unknown) => {
        const body = (req as { body?: unknown }).body;
        if (!error && Buffer.isBuffer(body)) (req as { body?: unknown }).body = chunksSource({ chunks: [body], length: body.length });
        next(error);
      });
    }
    const declared = req.headers["content-length"] === undefined ? undefined : Number(req.headers["content-length"]);
    let spool: SpooledBody;
    try {
      spool = openBodySpool();
    } catch (error) {
      return next(spoolUnavailable(error));
    }
    // The backstop: a body nobody took (a refusal before the route read it) goes with the answer.
    res.once("close", () => {
      if (!taken.has(spool)) spool.close();
    });
    let received = 0;
    let sinceCollection = 0;
    let done = false;
    const finish = (error?: unknown) => {
      if (done) return;
      done = true;
      req.removeListener("data", onData);
      req.removeListener("end", onEnd);
      req.removeListener("error", finish);
      req.removeListener("aborted", onAborted);
      if (error) {
        spool.close();
        req.unpipe();
        req.pause();
        return next(error);
      }
      (req as { body?: unknown }).body = spool;
      next();
    };
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received > limit) return finish(Object.assign(new Error("request entity too large"), { status: 413, type: "entity.too.large", limit }));
      try {
        spool.write(chunk);
      } catch (error) {
        return finish(spoolUnavailable(error));
      }
      sinceCollection += chunk.length;
      if (sinceCollection >= COLLECT_RECEIVED_EVERY_BYTES) {
        sinceCollection = 0;
        collectYoung();
      }
    };
    const onEnd = () =>
      finish(declared !== undefined && received !== declared ? Object.assign(new Error("request size did not match content length"), { status: 400, type: "request.size.invalid" }) : undefined);
    const onAborted = () => finish(Object.assign(new Error("request aborted"), { status: 400, type: "request.aborted", code: "ECONNABORTED" }));
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", finish);
    req.on("aborted", onAborted);
  };

// How many spooled bytes between two young collections (heap-growth.ts collectYoung says why).
const COLLECT_RECEIVED_EVERY_BYTES = 4 * 1024 * 1024;

// A full or unwritable temporary disk: the body cannot be held for reading; nothing was stored.
const spoolUnavailable = (cause: unknown) =>
  new AppError("server_busy", "the server cannot hold the request body for reading right now (its temporary disk); nothing was stored, retry in a few seconds", { cause });

// Spooled bodies a route has taken: it closes them itself once it has read them, which may be
// after the answer's end (a client that went away while its batch is accepted).
const taken = new WeakSet<SpooledBody>();

// A spooled body for the route to read and then close, or the body as it is (chunks, or nothing).
export const takeSpooledBody = (body: unknown): { source: BatchBodySource | undefined; close: () => void } => {
  if (body !== null && typeof body === "object" && "close" in body && "read" in body) {
    const spool = body as SpooledBody;
    taken.add(spool);
    return { source: spool, close: spool.close };
  }
  return { source: body as BatchBodySource | undefined, close: () => undefined };
};

// A JSON body spooled to disk (req.body: a BatchBodySource), under the same budget, limit and answers.
export const readJsonBodySpooled = (budget: BodyBudget, options: { limit: number; instead?: string }): BodyReader => {
  const accepts = (req: IncomingMessage) => isJson(mediaType(req));
  return budgeted(budget, options.limit, accepts, spoolBody(options.limit, accepts), options.instead);
};

// Text that Postgres or Prisma cannot store: U+0000 (Postgres text) and unpaired UTF-16 surrogates
// (Prisma's query engine refuses them). Raw bytes can only carry the first; JSON escapes can carry
// both, and reach the database once the receiver parses the body and applies it.
const unstorable = (value: string) => value.includes("\u0000") || !value.isWellFormed();
const suspiciousEscape = /\\u(0000|[dD][89a-fA-F])/;

const hasUnstorableText = (body: Buffer): boolean => {
  if (body.includes(0)) return true;
  if (!suspiciousEscape.test(body.toString("latin1"))) return false;
  let pending: unknown[];
  try {
    pending = [JSON.parse(body.toString("utf8"))];
  } catch {
    return false; // not JSON: the receiver refuses it on its own
  }
  // Iterative, so a deeply nested body cannot overflow the stack.
  while (pending.length > 0) {
    const value = pending.pop();
    if (typeof value === "string" && unstorable(value)) return true;
    if (typeof value === "object" && value !== null) {
      for (const [key, item] of Object.entries(value)) {
        if (unstorable(key)) return true;
        pending.push(item);
      }
    }
  }
  return false;
};

const refuseUnstorable = (_req: unknown, _res: unknown, body: Buffer) => {
  if (hasUnstorableText(body)) {
    throw validationError([{ field: "body", message: "contains NUL (U+0000) or an unpaired UTF-16 surrogate, which cannot be stored" }]);
  }
};

export const readRawBody = (budget: BodyBudget, options: { limit: number; refuseUnstorableText?: boolean }): BodyReader => {
  const accepts = () => true;
  return budgeted(
    budget,
    options.limit,
    accepts,
    express.raw({ limit: options.limit, type: accepts, ...(options.refuseUnstorableText ? { verify: refuseUnstorable } : {}) }),
  );
};

// A refused request whose body is still arriving. Small ones: Node drains (reads and discards) the
// rest after the answer. Large or unmeasured ones refused for want of a valid key or for their size
// are not worth reading: the connection closes after the answer (Connection: close), so a client
// still sending may see a reset rather than the answer unless it used Expect: 100-continue.
// A busy refusal goes to a caller with a valid key who must be able to read its Retry-After: the
// answer is sent at once, the body discarded as it arrives (no memory), and the response is ended
// only then, so that closing the connection cannot cut the client off mid-upload.
const drainableBodyBytes = 64 * 1024;

export const settleUnreadBody = (req: Request, res: Response, app: AppError) => {
  if (req.complete || res.getHeader("connection") === "close") return;
  // A body too slow to wait for is not drained either: the connection goes with the answer.
  if (app.code === "body_too_slow") {
    res.setHeader("connection", "close");
    return;
  }
  const declared = req.headers["content-length"];
  if (req.headers["transfer-encoding"] === undefined && (declared === undefined || Number(declared) <= drainableBodyBytes)) return;
  if (app.code !== "server_busy") {
    res.setHeader("connection", "close");
    return;
  }
  const end = res.end.bind(res) as (callback?: () => void) => Response;
  res.end = ((chunk?: unknown, encoding?: unknown, callback?: unknown) => {
    if (chunk !== undefined && typeof chunk !== "function") res.write(chunk as Buffer, (typeof encoding === "string" ? encoding : "utf8") as BufferEncoding);
    const done = typeof callback === "function" ? callback : typeof encoding === "function" ? encoding : chunk;
    let ended = false;
    const finish = () => {
      if (ended) return;
      ended = true;
      end(typeof done === "function" ? (done as () => void) : undefined);
    };
    req.once("end", finish);
    req.once("close", finish);
    req.resume();
    return res;
  }) as Response["end"];
};
