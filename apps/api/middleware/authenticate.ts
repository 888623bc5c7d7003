import type { RequestHandler } from "express";
import type { AuthFailure, Authenticator } from "../../domain/account/authenticator.ts";
import { AppError } from "../../domain/errors/app-error.ts";
import { databaseUnavailable, isDatabaseUnavailable } from "../../domain/errors/dependency-errors.ts";

export type AuthErrorReason = "missing" | AuthFailure;

export class AuthError extends AppError {
  constructor(
    readonly reason: AuthErrorReason,
    detail?: string,
  ) {
    super(
      "unauthenticated",
      reason === "missing" ? "Authorization header is empty: send 'Authorization: Bearer <api key or JWT>'" : (detail ?? "API key is invalid"),
    );
  }
}

// `Authorization: Bearer <api key | JWT>`; the account it names scopes everything the request
// touches. Runs before any body is read, so an unauthenticated request never costs its body.
export const authenticate =
  (authenticator: Authenticator): RequestHandler =>
  async (req, res, next) => {
    const header = req.get("authorization")?.trim();
    if (!header) return next(new AuthError("missing"));
    const match = /^Bearer(?:\s+(\S*))?\s*$/i.exec(header);
    if (!match) return next(new AuthError("invalid", "Authorization must be 'Bearer <api key or JWT>'"));
    if (!match[1]) return next(new AuthError("missing"));
    try {
      const result = await authenticator.authenticate(match[1]);
      if (!result.ok) return next(new AuthError(result.reason, result.detail));
      res.locals.accountId = result.accountId;
      next();
    } catch (error) {
      next(isDatabaseUnavailable(error) ? databaseUnavailable(error) : error);
    }
  };
