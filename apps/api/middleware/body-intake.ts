import type { IncomingMessage, ServerResponse } from "node:http";
import express from "express";
import { AppError, validationError } from "../../domain/errors/app-error.ts";
import { payloadTooLarge } from "./error-handlers.ts";

// How many request-body bytes this process holds at once, across every route. A body is buffered
// whole (and then parsed, decoded, checked), so without a bound, 200 concurrent 9 MB creates took
// the API to 2.8 GB. A request reserves its declared Content-Length before a byte is read; one
// without a length (chunked) reserves as it arrives and is cut off when the budget runs out.
export type BodyBudget = {
  readonly capacityBytes: number;
  inFlightBytes(): number;
  // `heldByCaller`: what this request already holds. A request that is alone may exceed the
  // budget (up to its route's limit), so a budget set below the largest body refuses nothing forever.
  tryReserve(bytes: number, heldByCaller?: number): boolean;
  release(bytes: number): void;
};

export const createBodyBudget = (capacityBytes: number): BodyBudget => {
  let used = 0;
  return {
    capacityBytes,
    inFlightBytes: () => used,
    tryReserve: (bytes, heldByCaller = 0) => {
      if (used + bytes > capacityBytes && used > heldByCaller) return false;
      used += bytes;
      return true;
    },
    release: (bytes) => {
      used = Math.max(0, used - bytes);
    },
  };
};

const serverBusy = () =>
  new AppError("server_busy", "the server is busy receiving other request bodies; nothing was stored, retry in a few seconds");

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
  (budget: BodyBudget, limit: number, accepts: (req: IncomingMessage) => boolean, parser: BodyReader): BodyReader =>
  (req, res, next) => {
    if (!hasBody(req) || !accepts(req)) return parser(req, res, next);
    const chunked = req.headers["content-length"] === undefined;
    const declared = chunked ? 0 : Number(req.headers["content-length"]);
    if (declared > limit) return next(payloadTooLarge(limit));
    // An encoded body's inflated size is unknown until it is read; it may grow to the limit.
    const encoded = (req.headers["content-encoding"] ?? "identity").toLowerCase() !== "identity";
    let held = encoded ? limit : declared;
    if (!budget.tryReserve(held)) return next(serverBusy());
    res.once("close", () => budget.release(held));

    let cutOff = false;
    sendContinue(req, res);
    // The parser calls back once it has read (or given up on) the body; after a cut-off the answer
    // is already on its way and that late call is dropped.
    parser(req, res, (error?: unknown) => {
      if (!cutOff) next(error);
    });
    if (chunked && !encoded) {
      // Added after the parser's own listener (it attaches synchronously), so both see each chunk.
      req.on("data", (chunk: Buffer) => {
        if (cutOff) return;
        if (budget.tryReserve(chunk.length, held)) {
          held += chunk.length;
          return;
        }
        cutOff = true;
        req.pause();
        next(serverBusy());
      });
    }
  };

const mediaType = (req: IncomingMessage) => (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
const isJson = (type: string) => type === "application/json" || /^application\/[\w.-]+\+json$/.test(type);

// The provider reads a create body as JSON whatever it is labelled (the seed marks Content-Type
// optional), so drop-in clients that send none, text/plain, or curl -d's form type still work.
const lenientJsonTypes = new Set(["", "text/plain", "application/x-www-form-urlencoded"]);

export const readJsonBody = (budget: BodyBudget, options: { limit: number; lenientContentType?: boolean }): BodyReader => {
  const accepts = options.lenientContentType
    ? (req: IncomingMessage) => isJson(mediaType(req)) || lenientJsonTypes.has(mediaType(req))
    : (req: IncomingMessage) => isJson(mediaType(req));
  return budgeted(budget, options.limit, accepts, express.json({ limit: options.limit, type: accepts }));
};

// Postgres text cannot hold U+0000; a body stored as text (the callback inbox) refuses it up front.
const refuseNulBytes = (_req: unknown, _res: unknown, body: Buffer) => {
  if (body.includes(0)) throw validationError([{ field: "body", message: "contains a NUL byte; no JSON text does" }]);
};

export const readRawBody = (budget: BodyBudget, options: { limit: number; refuseNul?: boolean }): BodyReader => {
  const accepts = () => true;
  return budgeted(
    budget,
    options.limit,
    accepts,
    express.raw({ limit: options.limit, type: accepts, ...(options.refuseNul ? { verify: refuseNulBytes } : {}) }),
  );
};
