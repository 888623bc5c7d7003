import { decodeJwt, errors as joseErrors, jwtVerify, type JWTPayload } from "jose";
import type { Db } from "../db/database.ts";
import type { ServerKey } from "../crypto/server-key.ts";
import type { Logger } from "../logging/logger.ts";
import { findAccessKey, SealedSecretUnreadable } from "./access-key.ts";
import { findAccountIdByApiKey } from "./api-key.ts";

export type AuthFailure = "invalid" | "expired" | "not_yet_valid";
export type AuthResult = { ok: true; accountId: string } | { ok: false; reason: AuthFailure; detail: string };

export type Authenticator = { authenticate(bearer: string): Promise<AuthResult> };

export type AuthenticatorOptions = {
  db: Db;
  serverKey: ServerKey;
  // How long a key's lookup is reused in this process: a revoked key stops working within it.
  cacheMs: number;
  // Leeway for exp and nbf: clients' clocks drift (Kling's own clients sign nbf = now - 5 s).
  clockToleranceSeconds: number;
  // The furthest a JWT's exp may lie in the future.
  maxLifetimeSeconds: number;
  logger: Pick<Logger, "error">;
};

// A small bounded map: lookups of keys that do not exist are cached too (briefly), so a flood of
// random keys costs neither queries nor unbounded memory.
const MAX_CACHED = 10_000;
const createCache = <V>(ttlMs: number) => {
  const entries = new Map<string, { value: V; until: number }>();
  return {
    get: (key: string): V | undefined => {
      const hit = entries.get(key);
      if (!hit) return undefined;
      if (hit.until < Date.now()) {
        entries.delete(key);
        return undefined;
      }
      return hit.value;
    },
    set: (key: string, value: V) => {
      if (entries.size >= MAX_CACHED) entries.delete(entries.keys().next().value!);
      entries.set(key, { value, until: Date.now() + ttlMs });
    },
  };
};

// The claims of a token shaped and encoded like a JWT (not yet verified); undefined otherwise.
const jwtClaims = (token: string) => {
  if (!/^[\w-]+\.[\w-]+\.[\w-]*$/.test(token)) return undefined;
  try {
    return decodeJwt(token);
  } catch {
    return undefined;
  }
};

// `Authorization: Bearer <api key>`, or Kling's scheme: `Bearer <JWT>` signed HS256 with an access
// key's secret (iss = access key). Both resolve to one account. Lookups are cached for cacheMs, so a
// status poll costs no query for its key.
export const createAuthenticator = (options: AuthenticatorOptions): Authenticator => {
  const apiKeys = createCache<string | null>(options.cacheMs);
  const accessKeys = createCache<{ accountId: string; secret: Uint8Array } | "unknown" | "unreadable">(options.cacheMs);

  // Cached by the key as sent (this process has it anyway): a hit costs no hashing either.
  const accountOfApiKey = async (key: string) => {
    let accountId = apiKeys.get(key);
    if (accountId === undefined) {
      accountId = (await findAccountIdByApiKey(options.db, key)) ?? null;
      apiKeys.set(key, accountId);
    }
    return accountId;
  };

  const accessKeyOf = async (accessKey: string) => {
    let entry = accessKeys.get(accessKey);
    if (entry === undefined) {
      try {
        const found = await findAccessKey(options.db, options.serverKey, accessKey);
        entry = found ? { accountId: found.accountId, secret: new TextEncoder().encode(found.secretKey) } : "unknown";
      } catch (error) {
        if (!(error instanceof SealedSecretUnreadable)) throw error;
        // The client cannot fix this, so it is refused like a bad key (not a 5xx it would retry
        // forever); the operator learns from the log, once per cache lifetime per key.
        options.logger.error({ err: error }, "an access key's secret does not decrypt: check SERVER_KEY");
        entry = "unreadable";
      }
      accessKeys.set(accessKey, entry);
    }
    return entry;
  };

  const verifyJwt = async (token: string, claims: JWTPayload): Promise<AuthResult> => {
    const issuer: unknown = claims.iss;
    if (typeof issuer !== "string" || issuer.length === 0 || issuer.length > 200) {
      return { ok: false, reason: "invalid", detail: "the JWT has no iss (access key)" };
    }
    const key = await accessKeyOf(issuer);
    if (key === "unknown") return { ok: false, reason: "invalid", detail: "unknown or revoked access key" };
    if (key === "unreadable") return { ok: false, reason: "invalid", detail: "this server cannot verify this access key now; contact its operator" };
    try {
      await jwtVerify(token, key.secret, {
        algorithms: ["HS256"],
        issuer,
        requiredClaims: ["exp"],
        clockTolerance: options.clockToleranceSeconds,
      });
      // Kling's clients sign for 30 minutes; a token minted for years would work until revoked.
      const exp = (claims as { exp?: unknown }).exp;
      if (typeof exp === "number" && exp - Date.now() / 1000 > options.maxLifetimeSeconds + options.clockToleranceSeconds) {
        return { ok: false, reason: "invalid", detail: `the JWT's exp is more than ${options.maxLifetimeSeconds} s away; sign short-lived tokens` };
      }
      return { ok: true, accountId: key.accountId };
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) return { ok: false, reason: "expired", detail: "the JWT has expired (exp)" };
      if (error instanceof joseErrors.JWTClaimValidationFailed && error.claim === "nbf") {
        return { ok: false, reason: "not_yet_valid", detail: "the JWT is not valid yet (nbf)" };
      }
      if (error instanceof joseErrors.JOSEAlgNotAllowed) return { ok: false, reason: "invalid", detail: "the JWT must be signed with HS256" };
      if (error instanceof joseErrors.JWTClaimValidationFailed) return { ok: false, reason: "invalid", detail: `the JWT's ${error.claim} claim is invalid` };
      return { ok: false, reason: "invalid", detail: "the JWT signature does not verify" };
    }
  };

  return {
    authenticate: async (bearer) => {
      // Anything that does not decode as a JWT is an API key: a chosen BOOTSTRAP_API_KEY may have dots.
      const claims = jwtClaims(bearer);
      if (claims) return verifyJwt(bearer, claims);
      const accountId = await accountOfApiKey(bearer);
      return accountId ? { ok: true, accountId } : { ok: false, reason: "invalid", detail: "API key is invalid" };
    },
  };
};
