import { createHmac } from "node:crypto";
import { z } from "zod";
import { safeEqual } from "../crypto/constant-time.ts";

// Standard Webhooks (KLING.md "Callbacks"): headers webhook-id, webhook-timestamp (seconds) and
// webhook-signature ("v1,<base64>", several space-separated while the sender rotates its secret).
// The signed content is "{id}.{timestamp}.{raw body}", HMAC-SHA256 keyed with the base64-decoded
// part of the secret after "whsec_".

const SECRET_PREFIX = "whsec_";
const BASE64_CHARS = /^[A-Za-z0-9+/]+$/;

// Padded or unpadded base64; a length of 4n+1 cannot be base64 at all.
const isBase64 = (value: string): boolean => {
  const unpadded = value.replace(/={1,2}$/, "");
  if (!BASE64_CHARS.test(unpadded) || unpadded.length % 4 === 1) return false;
  return unpadded.length === value.length || value.length % 4 === 0;
};

// The key bytes of a secret given with or without its "whsec_" prefix; null when it is not base64.
export const decodeWebhookSecret = (secret: string): Buffer | null => {
  const encoded = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret;
  return isBase64(encoded) ? Buffer.from(encoded, "base64") : null;
};

// One configured secret: the prefix is required here so that a pasted plain string, which may
// well happen to be valid base64, is caught at boot instead of failing every callback.
export const standardWebhookSecretSchema = z
  .string()
  .refine((v) => v.startsWith(SECRET_PREFIX) && decodeWebhookSecret(v) !== null, {
    error: "must be whsec_ followed by Base64",
  });

// Comma-separated, so that a new secret can be added before the old one is retired.
export const standardWebhookSecretListSchema = z
  .string()
  .transform((v) => v.split(",").map((s) => s.trim()).filter(Boolean))
  .pipe(z.array(standardWebhookSecretSchema).min(1, { error: "must list at least one whsec_ secret" }));

// Why node:crypto here and not the `standardwebhooks` package (which the simulator signs with, and
// test/webhooks/standard-webhooks.test.ts checks us against both ways): both hot paths run this,
// an outbound delivery signs once per attempt and live secret, and a provider callback is verified
// before anything else looks at it, over up to the route's 64 KB of bytes nobody has vouched for
// yet. The package hashes in JavaScript (fast-sha256) and reads a Buffer body as UTF-8 text. In
// the same run (test/bench/webhook-signing.ts, 2026-12-07, two runs at load average 17-23 on 2
// cores) it cost x2.5-3.6 (sign) and x4.3-5.9 (verify) ours at 300 B, x6.3-7.3 / x5.2-8.8 at 2 KB
// and x12-15 / x15-26 at 64 KB, where one verify held the event loop ~2.6 ms against ours 0.1-0.2.
const signWithKey = (key: Buffer, id: string, timestamp: string, rawBody: string | Buffer): string =>
  createHmac("sha256", key).update(`${id}.${timestamp}.`).update(rawBody).digest("base64");

export const signStandardWebhook = (secret: string, id: string, timestampSeconds: number, rawBody: string | Buffer): string => {
  const key = decodeWebhookSecret(secret);
  if (!key) throw new TypeError("webhook secret must be Base64, optionally prefixed with whsec_");
  return `v1,${signWithKey(key, id, String(timestampSeconds), rawBody)}`;
};

export type StandardWebhookHeaders = {
  "webhook-id": string;
  "webhook-timestamp": string;
  "webhook-signature": string;
};

export const standardWebhookHeaders = (
  secret: string,
  id: string,
  timestampSeconds: number,
  rawBody: string | Buffer,
): StandardWebhookHeaders => ({
  "webhook-id": id,
  "webhook-timestamp": String(timestampSeconds),
  "webhook-signature": signStandardWebhook(secret, id, timestampSeconds, rawBody),
});

export type StandardWebhookFailure =
  | "no_secrets"
  | "malformed_secret"
  | "missing_headers"
  | "invalid_timestamp"
  | "timestamp_too_old"
  | "timestamp_too_new"
  | "no_matching_signature";

export type StandardWebhookVerification = { ok: true } | { ok: false; reason: StandardWebhookFailure };

// Node's IncomingHttpHeaders (lower-case names) or a fetch Headers object.
export type WebhookRequestHeaders = Headers | Record<string, string | string[] | undefined>;

export type VerifyStandardWebhookInput = {
  secrets: readonly string[];
  headers: WebhookRequestHeaders;
  // The bytes as received: re-serialised JSON would not match the sender's signature.
  rawBody: string | Buffer;
  nowSeconds?: number;
  toleranceSeconds?: number;
};

const headerValue = (headers: WebhookRequestHeaders, name: string): string | undefined => {
  if (headers instanceof Headers) return headers.get(name) ?? undefined;
  const value = headers[name];
  return Array.isArray(value) ? value.join(" ") : value;
};

// "v1,<sig> v1,<sig> v2,..." -> the v1 signatures. Node joins a repeated header with ", ", hence
// the trailing comma that is trimmed; versions we do not know are ignored, not failed.
const v1Signatures = (header: string): string[] =>
  header
    .split(/\s+/)
    .map((entry) => entry.replace(/,$/, ""))
    .filter((entry) => entry.startsWith("v1,"))
    .map((entry) => entry.slice(3))
    .filter(Boolean);

const fail = (reason: StandardWebhookFailure): StandardWebhookVerification => ({ ok: false, reason });

// Several secrets (our rotation) times several signatures (theirs): any pair that matches passes.
// The timestamp window bounds replays of a captured callback.
export const verifyStandardWebhook = ({
  secrets,
  headers,
  rawBody,
  nowSeconds = Math.floor(Date.now() / 1000),
  toleranceSeconds = 300,
}: VerifyStandardWebhookInput): StandardWebhookVerification => {
  if (secrets.length === 0) return fail("no_secrets");
  const keys = secrets.map(decodeWebhookSecret);
  if (keys.some((key) => key === null || key.length === 0)) return fail("malformed_secret");

  const id = headerValue(headers, "webhook-id");
  const timestamp = headerValue(headers, "webhook-timestamp");
  const signature = headerValue(headers, "webhook-signature");
  if (!id || !timestamp || !signature) return fail("missing_headers");
  if (!/^\d{1,15}$/.test(timestamp)) return fail("invalid_timestamp");
  const seconds = Number(timestamp);
  if (seconds < nowSeconds - toleranceSeconds) return fail("timestamp_too_old");
  if (seconds > nowSeconds + toleranceSeconds) return fail("timestamp_too_new");

  const offered = v1Signatures(signature);
  for (const key of keys as Buffer[]) {
    // Signed over the timestamp exactly as sent, not as re-printed from a number.
    const expected = signWithKey(key, id, timestamp, rawBody);
    if (offered.some((candidate) => safeEqual(candidate, expected))) return { ok: true };
  }
  return fail("no_matching_signature");
};
