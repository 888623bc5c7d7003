import { createHmac } from "node:crypto";
import { safeEqual } from "./constant-time.ts";

// HS256 JSON Web Tokens by hand, synchronously: Kling's access-key scheme is signed here for our
// provider adapters (kling-protocol/kling-jwt.ts) and checked here by the simulator, so both speak
// the same bytes. (The API's own callers' JWTs go through jose in account/authenticator.ts, which
// also validates claims.)

const base64urlJson = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

const hs256 = (signingInput: string, secret: string) => createHmac("sha256", secret).update(signingInput).digest("base64url");

export const signHs256Jwt = (claims: Record<string, unknown>, secret: string): string => {
  const signingInput = `${base64urlJson({ alg: "HS256", typ: "JWT" })}.${base64urlJson(claims)}`;
  return `${signingInput}.${hs256(signingInput, secret)}`;
};

// A JSON object, or undefined for anything else (bad base64, bad JSON, an array, a scalar).
const decodePart = (part: string | undefined): Record<string, unknown> | undefined => {
  try {
    const value = JSON.parse(Buffer.from(part ?? "", "base64url").toString("utf8")) as unknown;
    return value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
};

// The claims, unverified: who the token says it is, before its signature is checked (or when no
// secret is known to check it with).
export const decodeJwtClaims = (token: string): Record<string, unknown> | undefined => decodePart(token.split(".")[1]);

// Only HS256: a token saying "none" or another algorithm is never taken on its word.
export const hs256SignatureValid = (token: string, secret: string): boolean => {
  const [header, payload, signature] = token.split(".");
  if (decodePart(header)?.alg !== "HS256") return false;
  return safeEqual(hs256(`${header}.${payload}`, secret), signature ?? "");
};
