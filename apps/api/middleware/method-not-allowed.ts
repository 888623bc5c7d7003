import type { RequestHandler } from "express";
import { AppError } from "../../domain/errors/app-error.ts";

export class MethodNotAllowedError extends AppError {
  constructor(
    readonly allow: string[],
    method: string,
  ) {
    super("method_not_allowed", `${method} is not supported here; use ${allow.join(" or ")}`);
  }
}

// No route at this path at all: 404 (1202 in the provider's shape, like a wrong method; 1203 is
// kept for "no such task").
export class NoRouteError extends AppError {
  constructor(method: string, path: string) {
    super("not_found", `no route for ${method} ${path}`);
  }
}

// Mounted with `router.all(path, ...)` after a path's real handlers: the path exists, the method
// does not (405 with Allow; 404/1202 in the provider's shape).
export const methodNotAllowed =
  (...allow: string[]): RequestHandler =>
  (req, _res, next) =>
    next(new MethodNotAllowedError(allow, req.method));
