import { expandLimits } from "../domain/expand-request/expand-limits.ts";
import type { ImageReference } from "../domain/expand-request/expand-request.schema.ts";

export type LoadedImage = { ok: true; bytes: Buffer } | { ok: false; reason: string };

// Reads at most maxImageBytes + 1, so an oversized download is refused without holding all of it.
const readCapped = async (body: ReadableStream<Uint8Array>): Promise<Buffer | undefined> => {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > expandLimits.maxImageBytes) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
};

// The provider fetches URL images itself. This is a test double, so loopback URLs are allowed.
export const loadSourceImage = async (ref: ImageReference, timeoutMs: number): Promise<LoadedImage> => {
  if (ref.kind === "base64") return { ok: true, bytes: Buffer.from(ref.data, "base64") };
  try {
    const response = await fetch(ref.url, { signal: AbortSignal.timeout(timeoutMs), redirect: "follow" });
    if (!response.ok || !response.body) {
      await response.body?.cancel();
      return { ok: false, reason: `could not be downloaded: HTTP ${response.status}` };
    }
    const declared = Number(response.headers.get("content-length") ?? "0");
    if (declared > expandLimits.maxImageBytes) {
      await response.body.cancel();
      return { ok: false, reason: `image is ${declared} bytes; the limit is ${expandLimits.maxImageBytes} bytes (10 MB)` };
    }
    const bytes = await readCapped(response.body);
    if (!bytes) return { ok: false, reason: `image is larger than the limit of ${expandLimits.maxImageBytes} bytes (10 MB)` };
    return { ok: true, bytes };
  } catch (error) {
    return { ok: false, reason: `could not be downloaded: ${(error as Error).message}` };
  }
};
