import type { SimSettings } from "./sim-settings.schema.ts";

export type AuthResult = { ok: true; account: string } | { ok: false; code: number; message: string };

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

const decodeJwtClaims = (token: string): Record<string, unknown> | undefined => {
  try {
    const payload = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8")) as unknown;
    return payload && typeof payload === "object" && !Array.isArray(payload) ? (payload as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
};

// The bearer token names the account: tasks, external_task_id uniqueness and capacity are per
// account. A JWT (Kling's access-key/secret-key scheme) names it by `iss`; its signature is not
// checked, since the simulator knows no secret keys, but exp/nbf are, so re-signing paths get tested.
export const resolveAccount = (header: string | undefined, settings: SimSettings, nowMs = Date.now()): AuthResult => {
  if (header === undefined || header.trim() === "") return { ok: false, code: 1001, message: "Authorization header is empty" };
  const match = /^Bearer(?:\s+(\S*))?$/i.exec(header.trim());
  if (!match) return { ok: false, code: 1002, message: "Authorization must be 'Bearer <token>'" };
  const token = match[1] ?? "";
  if (token === "") return { ok: false, code: 1001, message: "Authorization token is empty" };
  let account = token;
  if (JWT_SHAPE.test(token)) {
    const claims = decodeJwtClaims(token);
    if (!claims || typeof claims.iss !== "string" || claims.iss === "") {
      return { ok: false, code: 1002, message: "Authorization token is invalid: a JWT needs an iss claim" };
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
