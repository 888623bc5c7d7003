import type { ErrorRequestHandler, Response } from "express";
import { z } from "zod";
import { AppError, validationError } from "../../domain/errors/app-error.ts";
import { databaseUnavailable, isDatabaseUnavailable } from "../../domain/errors/dependency-errors.ts";
import { toFieldViolations } from "../../domain/expand-request/expand-request.schema.ts";
import type { Logger } from "../../domain/logging/logger.ts";
import { AuthError } from "./authenticate.ts";

// Everything thrown in a route becomes an AppError here, once, for both answer shapes.
const normalise = (error: unknown, logger: Logger): AppError => {
  if (error instanceof AppError) return error;
  if (error instanceof z.ZodError) return validationError(toFieldViolations(error));
  // A read or write that met an unreachable, busy or hung database: a 503 that says which.
  if (isDatabaseUnavailable(error)) return databaseUnavailable(error);
  const bodyError = error as { type?: string; status?: number; limit?: number };
  if (bodyError.type === "entity.too.large") {
    return new AppError("payload_too_large", `request body exceeds ${bodyError.limit} bytes`);
  }
  if (bodyError.type === "entity.parse.failed") {
    return validationError([{ field: "body", message: "is not valid JSON" }]);
  }
  if (bodyError.type === "encoding.unsupported" || bodyError.type === "charset.unsupported") {
    return validationError([{ field: "body", message: "has an unsupported encoding" }]);
  }
  logger.error({ err: error }, "unhandled error");
  return new AppError("internal", "internal error");
};

// Native routes: RFC 9457 problem details, with the fields that are wrong and why.
export const problemDetailsHandler =
  (logger: Logger): ErrorRequestHandler =>
  (error, req, res, _next) => {
    const app = normalise(error, logger);
    if (app.code === "dependency_unavailable") res.setHeader("retry-after", "5");
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

const titles: Record<AppError["code"], string> = {
  validation_failed: "The request is invalid",
  payload_too_large: "The request body is too large",
  unauthenticated: "Authentication required",
  not_found: "Not found",
  conflict: "Conflict",
  dependency_unavailable: "Service temporarily unavailable",
  internal: "Internal error",
};

// Kling's own codes: 1001 empty, 1002 invalid, 1003 not yet valid, 1004 expired.
const authCodes: Record<AuthError["reason"], number> = { missing: 1001, invalid: 1002, not_yet_valid: 1003, expired: 1004 };

// Drop-in routes answer like the provider (KLING.md "Errors"), so a CometAPI client needs no change.
const providerCode = (app: AppError): { http: number; code: number } => {
  switch (app.code) {
    case "validation_failed":
    case "payload_too_large":
    case "conflict":
      return { http: 400, code: 1201 };
    case "unauthenticated":
      return { http: 401, code: app instanceof AuthError ? authCodes[app.reason] : 1002 };
    case "not_found":
      return { http: 404, code: 1203 };
    case "dependency_unavailable":
      return { http: 503, code: 5001 };
    case "internal":
      return { http: 500, code: 5000 };
  }
};

export const sendProviderError = (res: Response, app: AppError) => {
  const { http, code } = providerCode(app);
  if (app.code === "dependency_unavailable") res.setHeader("retry-after", "5");
  res.status(http).json({ code, message: app.message, request_id: res.locals.requestId });
};

export const providerErrorHandler =
  (logger: Logger): ErrorRequestHandler =>
  (error, _req, res, _next) =>
    sendProviderError(res, normalise(error, logger));
