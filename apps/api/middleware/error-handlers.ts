import type { ErrorRequestHandler, Request, Response } from "express";
import { z } from "zod";
import { databaseTrouble, databaseUnavailable, isDatabaseRefusal, isDatabaseUnavailable } from "../../domain/errors/dependency-errors.ts";
import { AppError, validationError } from "../../domain/errors/app-error.ts";
import { toFieldViolations } from "../../domain/expand-request/expand-request.schema.ts";
import type { Logger } from "../../domain/logging/logger.ts";
import { answerShapeOf, type AnswerShape } from "./answer-shape.ts";
import { AuthError } from "./authenticate.ts";
import { payloadTooLarge, settleUnreadBody } from "./body-intake.ts";
import { MethodNotAllowedError, NoRouteError } from "./method-not-allowed.ts";

// Where an error came from decides how loudly it is logged: a caller's mistake or a caller that
// went away is routine (debug, no stack); only an error nobody expected is logged as an error.
type Origin = "app" | "client" | "gone" | "bug";
type Normalised = { app: AppError; origin: Origin };

// What Express, the router (URIError "Failed to decode param"), body-parser and raw-body throw:
// http-errors objects carrying a 4xx `status` and a `type`.
type TransportError = { status?: unknown; statusCode?: unknown; type?: unknown; limit?: unknown; message?: unknown; expose?: unknown; code?: unknown; body?: unknown };

// body-parser's strict mode refuses JSON whose top level is not an object or array as a parse
// failure; such a body is valid JSON of the wrong kind, and is told so.
const parseFailure = (body: unknown): string => {
  if (typeof body !== "string") return "is not valid JSON";
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return "is not valid JSON";
  }
  const kind = value === null ? "null" : typeof value;
  return `must be a JSON object; got ${kind === "string" ? "a string" : kind === "number" ? "a number" : kind === "boolean" ? "a boolean" : kind}`;
};

const goneCodes = new Set(["ECONNABORTED", "ECONNRESET", "EPIPE", "ERR_STREAM_PREMATURE_CLOSE"]);

const fromTransport = (error: unknown): Normalised | undefined => {
  if (typeof error !== "object" || error === null) return undefined;
  const e = error as TransportError;
  const client = (app: AppError): Normalised => ({ app, origin: "client" });
  const body = (message: string) => client(validationError([{ field: "body", message }]));
  switch (e.type) {
    case "entity.too.large":
      return client(payloadTooLarge(Number(e.limit)));
    case "entity.parse.failed":
      return body(parseFailure(e.body));
    case "encoding.unsupported":
      return body("has an unsupported Content-Encoding (send it uncompressed, or gzip, deflate or br)");
    case "charset.unsupported":
      return body("has an unsupported charset (send UTF-8)");
    case "request.size.invalid":
      return body("is not as long as its Content-Length says");
    // The caller closed the connection mid-body: nobody is left to answer.
    case "request.aborted":
    case "stream.not.readable":
      return { app: validationError([{ field: "body", message: "the request was aborted" }]), origin: "gone" };
  }
  if (typeof e.code === "string" && goneCodes.has(e.code)) {
    return { app: new AppError("validation_failed", "the connection was closed"), origin: "gone" };
  }
  if (error instanceof URIError) return client(validationError([{ field: "path", message: "is not valid percent-encoded UTF-8" }]));
  const status = [e.status, e.statusCode].find((v): v is number => typeof v === "number");
  if (status === undefined || status < 400 || status > 499) return undefined;
  const message = typeof e.message === "string" && e.expose !== false ? e.message : "the request is malformed";
  switch (status) {
    case 401:
      return client(new AppError("unauthenticated", message));
    case 404:
      return client(new AppError("not_found", message));
    case 405:
      return client(new AppError("method_not_allowed", message));
    case 413:
      return client(new AppError("payload_too_large", message));
    default:
      return client(validationError([{ field: "request", message }]));
  }
};

// Everything thrown in a route becomes an AppError here, once, for both answer shapes.
const normalise = (error: unknown): Normalised => {
  if (error instanceof AppError) return { app: error, origin: "app" };
  if (error instanceof z.ZodError) return { app: validationError(toFieldViolations(error)), origin: "app" };
  // A read or write that met an unreachable, busy or hung database: a 503 that says which.
  if (isDatabaseUnavailable(error)) return { app: databaseUnavailable(error), origin: "app" };
  return fromTransport(error) ?? { app: new AppError("internal", "internal error"), origin: "bug" };
};

// A Postgres out of connections (pool wait past DB_CONNECT_TIMEOUT_MS, or the server's "too many
// clients") or unreachable refuses every request at once: one line a minute per process says so and
// how many were refused since the last, instead of a line per request. Keyed by logger, so the
// routers' handlers share one clock.
const DATABASE_LOG_EVERY_MS = 60_000;
const databaseLog = new WeakMap<Logger, { lastAt: number; refused: number }>();

const logDatabaseTrouble = (logger: Logger, error: unknown) => {
  const state = databaseLog.get(logger) ?? { lastAt: -Infinity, refused: 0 };
  databaseLog.set(logger, state);
  state.refused++;
  const now = Date.now();
  if (now - state.lastAt < DATABASE_LOG_EVERY_MS) return;
  const cause = error instanceof Error ? error.message : String(error);
  logger.warn(
    { trouble: databaseTrouble(error), cause, refused: state.refused, code: (error as { code?: unknown }).code },
    "database unavailable: answering 503 with Retry-After (logged at most once a minute)",
  );
  state.lastAt = now;
  state.refused = 0;
};

const logError = (logger: Logger, error: unknown, { app, origin }: Normalised) => {
  if (isDatabaseRefusal(app)) logDatabaseTrouble(logger, app.cause ?? error);
  if (origin === "bug") logger.error({ err: error }, "unhandled error");
  else if (origin === "gone") logger.debug({ reason: app.message }, "caller went away");
  else if (origin === "client") {
    logger.debug({ status: app.httpStatus, type: (error as TransportError).type, reason: app.message }, "request refused");
  }
};

const titles: Record<AppError["code"], string> = {
  validation_failed: "The request is invalid",
  payload_too_large: "The request body is too large",
  unauthenticated: "Authentication required",
  not_found: "Not found",
  method_not_allowed: "Method not allowed",
  conflict: "Conflict",
  unsupported_media_type: "Unsupported media type",
  unprocessable: "Unprocessable request",
  spend_cap_exceeded: "Spend cap exceeded",
  dependency_unavailable: "Service temporarily unavailable",
  server_busy: "Server busy",
  body_too_slow: "Request body too slow",
  too_many_requests: "Too many requests",
  internal: "Internal error",
};

// Native routes: RFC 9457 problem details, with the fields that are wrong and why.
const sendProblem = (req: Request, res: Response, app: AppError) => {
  if (app.code === "unauthenticated") res.setHeader("www-authenticate", 'Bearer realm="api"');
  res
    .status(app.httpStatus)
    .type("application/problem+json")
    .json({
      type: `https://kling-orchestrator.dev/problems/${app.code.replaceAll("_", "-")}`,
      title: titles[app.code],
      status: app.httpStatus,
      detail: app.message,
      instance: req.originalUrl,
      request_id: res.locals.requestId,
      ...(app.violations.length > 0 ? { errors: app.violations } : {}),
    });
};

// Kling's own codes: 1001 empty, 1002 invalid, 1003 not yet valid, 1004 expired.
const authCodes: Record<AuthError["reason"], number> = { missing: 1001, invalid: 1002, not_yet_valid: 1003, expired: 1004 };

// Drop-in routes answer like the provider (KLING.md "Errors"), so a CometAPI client needs no change.
const providerCode = (app: AppError): { http: number; code: number } => {
  switch (app.code) {
    case "validation_failed":
    case "payload_too_large":
    case "conflict":
    case "unsupported_media_type":
    case "unprocessable":
    case "spend_cap_exceeded":
      return { http: 400, code: 1201 };
    case "unauthenticated":
      return { http: 401, code: app instanceof AuthError ? authCodes[app.reason] : 1002 };
    case "not_found":
      return { http: 404, code: app instanceof NoRouteError ? 1202 : 1203 };
    case "method_not_allowed":
      return { http: 404, code: 1202 };
    // 1302 ("requests too fast: back off, retry") rather than a 5xx: provider clients (ours
    // included) count 5xx toward opening their circuit breaker and spend retry attempts on it,
    // while a busy intake is a reason to wait, not a sign that the service is down.
    case "server_busy":
    case "too_many_requests":
      return { http: 429, code: 1302 };
    case "dependency_unavailable":
      return { http: 503, code: 5001 };
    // No provider code says "too slow"; 1201 with the 408 and its message is the nearest.
    case "body_too_slow":
      return { http: 408, code: 1201 };
    case "internal":
      return { http: 500, code: 5000 };
  }
};

export const sendProviderError = (res: Response, app: AppError) => {
  const { http, code } = providerCode(app);
  res.status(http).json({ code, message: app.message, request_id: res.locals.requestId });
};

const retryAfterSeconds: Partial<Record<AppError["code"], string>> = { dependency_unavailable: "5", server_busy: "2", too_many_requests: "5" };

const handleErrors =
  (logger: Logger, shapeOf: (req: Request) => AnswerShape): ErrorRequestHandler =>
  (error, req, res, _next) => {
    const normalised = normalise(error);
    logError(logger, error, normalised);
    // Mid-answer (an image stream that broke) or the caller is gone: there is nothing left to say,
    // and a half-sent answer must not look complete.
    if (res.headersSent || res.destroyed) {
      if (!res.writableEnded) res.destroy();
      return;
    }
    const { app } = normalised;
    const retryAfter = retryAfterSeconds[app.code];
    if (retryAfter) res.setHeader("retry-after", retryAfter);
    if (app instanceof MethodNotAllowedError) res.setHeader("allow", app.allow.join(", "));
    settleUnreadBody(req, res, app);
    if (shapeOf(req) === "provider") sendProviderError(res, app);
    else sendProblem(req, res, app);
  };

export const problemDetailsHandler = (logger: Logger): ErrorRequestHandler => handleErrors(logger, () => "problem");

export const providerErrorHandler = (logger: Logger): ErrorRequestHandler => handleErrors(logger, () => "provider");

// The app's last handler: picks the shape by path, for refusals made before any router ran.
export const errorHandlerByPath = (logger: Logger): ErrorRequestHandler => handleErrors(logger, (req) => answerShapeOf(req.originalUrl));
