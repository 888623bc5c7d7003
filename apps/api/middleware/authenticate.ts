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

// `Authorization: Bearer <api key>`; the account it names scopes everything the request touches.
export const authenticate =
  (db: Db): RequestHandler =>
  async (req, res, next) => {
    const header = req.get("authorization");
    const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!header) return next(new AuthError("missing"));
    if (!match?.[1]) return next(new AuthError("invalid"));
    try {
      const accountId = await findAccountIdByApiKey(db, match[1]);
      if (!accountId) return next(new AuthError("invalid"));
      res.locals.accountId = accountId;
      next();
    } catch (error) {
      next(isDatabaseUnavailable(error) ? databaseUnavailable(error) : error);
    }
  };
