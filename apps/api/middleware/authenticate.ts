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

// No header, an empty one or `Bearer` with nothing after it is a missing key (the provider's 1001);
// anything else that is not `Bearer <one token>` is an invalid one (1002).
export const parseBearer = (header: string | undefined): string | AuthError => {
  const value = header?.trim() ?? "";
  if (value === "" || /^bearer$/i.test(value)) return new AuthError("missing");
  const match = /^Bearer\s+(\S+)$/i.exec(value);
  return match?.[1] ?? new AuthError("invalid", "Authorization must be 'Bearer <api key or JWT>'");
};

// `Authorization: Bearer <api key | JWT>`; the account it names scopes everything the request
// touches. Mounted before any body parser: an unauthenticated request is answered before its body
// is read.
export const authenticate =
  (authenticator: Authenticator): RequestHandler =>
  async (req, res, next) => {
    const token = parseBearer(req.get("authorization"));
    if (token instanceof AuthError) return next(token);
    try {
      const result = await authenticator.authenticate(token);
      if (!result.ok) return next(new AuthError(result.reason, result.detail));
      res.locals.accountId = result.accountId;
      next();
    } catch (error) {
      next(isDatabaseUnavailable(error) ? databaseUnavailable(error) : error);
    }
  };
