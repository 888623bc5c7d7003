import { createHmac } from "node:crypto";

// Standard Webhooks (KLING.md "Callbacks"): the signed content is "{id}.{timestamp}.{raw body}",
// HMAC-SHA256 keyed with the base64-decoded part of the secret after "whsec_".
const secretKey = (secret: string): Buffer => Buffer.from(secret.startsWith("whsec_") ? secret.slice(6) : secret, "base64");

export const signStandardWebhook = (secret: string, id: string, timestampSeconds: number, rawBody: string): string =>
  `v1,${createHmac("sha256", secretKey(secret)).update(`${id}.${timestampSeconds}.${rawBody}`).digest("base64")}`;

export type StandardWebhookHeaders = {
  "webhook-id": string;
  "webhook-timestamp": string;
  "webhook-signature": string;
};

export const standardWebhookHeaders = (
  secret: string,
  id: string,
  timestampSeconds: number,
  rawBody: string,
): StandardWebhookHeaders => ({
  "webhook-id": id,
  "webhook-timestamp": String(timestampSeconds),
  "webhook-signature": signStandardWebhook(secret, id, timestampSeconds, rawBody),
});
