import { decodeJwtClaims, hs256SignatureValid } from "../domain/crypto/hs256-jwt.ts";
import type { SimSettings } from "./sim-settings.schema.ts";

// Kling's access-key/secret-key pair (SIM_ACCESS_KEY, SIM_SECRET_KEY): when set, every request on
// Kling's own path family must carry a JWT with iss = the access key, signed HS256 with the secret.
export type JwtPair = { accessKey: string; secretKey: string };

export type AuthResult = { ok: true; account: string } | { ok: false; code: number; message: string };

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

// The bearer token names the account: tasks, external_task_id uniqueness and capacity are per
// account. A JWT (Kling's access-key/secret-key scheme) names it by `iss`; its signature is checked
// when the simulator is given the pair (`jwtPair`), and exp/nbf always, so re-signing paths get tested.
export const resolveAccount = (header: string | undefined, settings: SimSettings, nowMs = Date.now(), jwtPair?: JwtPair): AuthResult => {
  if (header === undefined || header.trim() === "") return { ok: false, code: 1001, message: "Authorization header is empty" };
  const match = /^Bearer(?:\s+(\S*))?$/i.exec(header.trim());
  if (!match) return { ok: false, code: 1002, message: "Authorization must be 'Bearer <token>'" };
  const token = match[1] ?? "";
  if (token === "") return { ok: false, code: 1001, message: "Authorization token is empty" };
  let account = token;
  if (jwtPair && !JWT_SHAPE.test(token)) return { ok: false, code: 1002, message: "Authorization token is invalid: a JWT signed with the access key's secret is required" };
  if (JWT_SHAPE.test(token)) {
    const claims = decodeJwtClaims(token);
    if (!claims || typeof claims.iss !== "string" || claims.iss === "") {
      return { ok: false, code: 1002, message: "Authorization token is invalid: a JWT needs an iss claim" };
    }
    if (jwtPair && (claims.iss !== jwtPair.accessKey || !hs256SignatureValid(token, jwtPair.secretKey))) {
      return { ok: false, code: 1002, message: "Authorization token is invalid: unknown access key or bad signature" };
    }
    const nowSeconds = nowMs / 1000;
    if (typeof claims.exp === "number" && claims.exp <= nowSeconds) return { ok: false, code: 1004, message: "Authorization token has expired" };
    if (typeof claims.nbf === "number" && claims.nbf > nowSeconds) return { ok: false, code: 1003, message: "Authorization token is not yet valid" };
    account = claims.iss;
  }
  if (settings.api_keys && !settings.api_keys.includes(account)) {
    return { ok: false, code: 1002, message: "Authorization token is invalid" };
  }
  return { ok: true, account };
};
