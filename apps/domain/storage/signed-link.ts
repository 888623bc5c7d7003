import { createHmac } from "node:crypto";
import { safeEqual } from "../crypto/constant-time.ts";

// Result links work without an Authorization header, as the provider's own URLs do, so they carry
// an expiring HMAC instead. What a link names ("<index>" for a result image, "source" for the
// task's stored source) is part of the signed text, so one link's signature opens nothing else.
export type LinkedFile = number | "source";

const signature = (secret: Buffer, taskId: string, file: LinkedFile, expires: number) =>
  createHmac("sha256", secret).update(`${taskId}.${file}.${expires}`).digest("base64url");

const pathOf = (taskId: string, file: LinkedFile) => (file === "source" ? `/files/tasks/${taskId}/source` : `/files/tasks/${taskId}/images/${file}`);

export const signImageLink = (
  baseUrl: string,
  secret: Buffer,
  taskId: string,
  file: LinkedFile,
  ttlSeconds: number,
  nowMs = Date.now(),
) => {
  const expires = Math.floor(nowMs / 1000) + ttlSeconds;
  // Appended, not resolved: a PUBLIC_BASE_URL with a path (a proxy's prefix) keeps it.
  const url = new URL(`${baseUrl.replace(/\/+$/, "")}${pathOf(taskId, file)}`);
  url.searchParams.set("expires", String(expires));
  url.searchParams.set("signature", signature(secret, taskId, file, expires));
  return url.toString();
};

export const verifyImageLink = (
  secret: Buffer,
  taskId: string,
  file: LinkedFile,
  expires: string | undefined,
  given: string | undefined,
  nowMs = Date.now(),
): "ok" | "expired" | "invalid" => {
  if (!expires || !given || !/^\d+$/.test(expires)) return "invalid";
  if (!safeEqual(signature(secret, taskId, file, Number(expires)), given)) return "invalid";
  return Number(expires) * 1000 < nowMs ? "expired" : "ok";
};
