import { createHmac } from "node:crypto";

// Tokens a well-behaved client would never send: any header, any claims, signed with any HMAC (or
// not at all). The HMACs use the real secret on purpose, so a verifier that trusted the header's
// `alg` (HS512, RS256 used as HMAC, `none`) would accept them: only the algorithm allow-list stops them.
export type ForgeOptions = {
  header?: Record<string, unknown>;
  claims: Record<string, unknown>;
  secret?: string;
  // The HMAC to sign with; "none" leaves the signature empty.
  hmac?: "sha256" | "sha512" | "none";
};

const segment = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

export const forgeJwt = ({ header = { alg: "HS256", typ: "JWT" }, claims, secret = "", hmac = "sha256" }: ForgeOptions) => {
  const signingInput = `${segment(header)}.${segment(claims)}`;
  const signature = hmac === "none" ? "" : createHmac(hmac, secret).update(signingInput).digest("base64url");
  return `${signingInput}.${signature}`;
};

export const nowSeconds = () => Math.floor(Date.now() / 1000);

// Claims as Kling's clients send them, shifted or trimmed per case.
export const klingClaims = (accessKey: string, overrides: Record<string, unknown> = {}) => ({
  iss: accessKey,
  exp: nowSeconds() + 1800,
  nbf: nowSeconds() - 5,
  ...overrides,
});
