import type { Response } from "express";
import { pipeline } from "node:stream/promises";
import type { TaskImage } from "../../domain/db/database.ts";
import { AppError } from "../../domain/errors/app-error.ts";
import { contentTypeOfKey, type ObjectStorage } from "../../domain/storage/local-storage.ts";

// How pipeline reports a response whose socket closed or reset under it; a failing read of the
// stored file has other codes and is still an error.
const clientGone = new Set(["ERR_STREAM_PREMATURE_CLOSE", "ECONNRESET", "EPIPE"]);

export const sendStoredImage = async (res: Response, storage: ObjectStorage, image: Pick<TaskImage, "storageKey" | "sha256"> | undefined) => {
  if (!image?.storageKey) throw new AppError("not_found", "image not found");
  const stored = await storage.open(image.storageKey);
  if (!stored) throw new AppError("not_found", "image not found in storage");
  res.status(200);
  res.setHeader("content-type", contentTypeOfKey(image.storageKey));
  res.setHeader("content-length", String(stored.size));
  res.setHeader("cache-control", "private, max-age=3600");
  if (image.sha256) res.setHeader("etag", `"${image.sha256}"`);
  try {
    await pipeline(stored.stream, res);
  } catch (error) {
    // The client went away mid-download (a closed tab, a cancelled fetch): there is nobody to answer
    // and nothing broken; pipeline has closed the file. The request log records it (debug, aborted).
    if (clientGone.has((error as NodeJS.ErrnoException).code ?? "")) return;
    throw error;
  }
};
