import { createHmac } from "node:crypto";
import { safeEqual } from "../crypto/constant-time.ts";

// Result links work without an Authorization header, as the provider's own URLs do, so they carry
// an expiring HMAC instead.
const signature = (secret: Buffer, taskId: string, index: number, expires: number) =>
  createHmac("sha256", secret).update(`${taskId}.${index}.${expires}`).digest("base64url");

export const signImageLink = (
  baseUrl: string,
  secret: Buffer,
  taskId: string,
  index: number,
  ttlSeconds: number,
  nowMs = Date.now(),
) => {
  const expires = Math.floor(nowMs / 1000) + ttlSeconds;
  // Appended, not resolved: a PUBLIC_BASE_URL with a path (a proxy's prefix) keeps it.
  const url = new URL(`${baseUrl.replace(/\/+$/, "")}/files/tasks/${taskId}/images/${index}`);
  url.searchParams.set("expires", String(expires));
  url.searchParams.set("signature", signature(secret, taskId, index, expires));
  return url.toString();
};

export const verifyImageLink = (
  secret: Buffer,
  taskId: string,
  index: number,
  expires: string | undefined,
  given: string | undefined,
  nowMs = Date.now(),
): "ok" | "expired" | "invalid" => {
  if (!expires || !given || !/^\d+$/.test(expires)) return "invalid";
  if (!safeEqual(signature(secret, taskId, index, Number(expires)), given)) return "invalid";
  return Number(expires) * 1000 < nowMs ? "expired" : "ok";
};
