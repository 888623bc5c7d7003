import type { RequestHandler } from "express";
import { findAccountIdByApiKey } from "../../domain/account/api-key.ts";
import type { Db } from "../../domain/db/prisma-client.ts";
import { AppError } from "../../domain/errors/app-error.ts";
import { databaseUnavailable, isDatabaseUnavailable } from "../../domain/errors/dependency-errors.ts";

export class AuthError extends AppError {
  constructor(readonly reason: "missing" | "invalid") {
    super(
      "unauthenticated",
      reason === "missing" ? "Authorization header is empty: send 'Authorization: Bearer <api key>'" : "API key is invalid",
    );
  }
}

// No header, an empty one or `Bearer` with nothing after it is a missing key (the provider's 1001);
// anything else that is not `Bearer <one token>` is an invalid one (1002).
export const parseBearer = (header: string | undefined): string | AuthError => {
  const value = header?.trim() ?? "";
  if (value === "" || /^bearer$/i.test(value)) return new AuthError("missing");
  const match = /^Bearer\s+(\S+)$/i.exec(value);
  return match?.[1] ?? new AuthError("invalid");
};

// `Authorization: Bearer <api key>`; the account it names scopes everything the request touches.
// Mounted before any body parser: an unauthenticated request is answered before its body is read.
export const authenticate =
  (db: Db): RequestHandler =>
  async (req, res, next) => {
    const key = parseBearer(req.get("authorization"));
    if (key instanceof AuthError) return next(key);
    try {
      const accountId = await findAccountIdByApiKey(db, key);
      if (!accountId) return next(new AuthError("invalid"));
      res.locals.accountId = accountId;
      next();
    } catch (error) {
      next(isDatabaseUnavailable(error) ? databaseUnavailable(error) : error);
    }
  };
