import { createHash } from "node:crypto";
import type { Db } from "../db/database.ts";
import { expandedSize, expandLimits } from "../expand-request/expand-limits.ts";
import { decodesInFull, readImageHeader } from "../expand-request/source-image.ts";
import { SafeFetchError, safeFetch, type SafeFetchOptions } from "../http/safe-fetch.ts";
import type { Logger } from "../logging/logger.ts";
import { taskImageKey, type ObjectStorage } from "../storage/local-storage.ts";
import { failTask, type TaskEndDeps } from "./fail-task.ts";
import { findTaskWithImages } from "./task.repository.ts";
import { recordStoredImage, type StoredImage } from "./task.store.ts";
import { transitionTask } from "./task-transition.ts";

export type ArchiveTaskDeps = TaskEndDeps & {
  db: Db;
  logger: Logger;
  storage: ObjectStorage;
  fetch: SafeFetchOptions;
  // `exact`: each side within 1 px of the requested expansion. `aspect`: the provider may rescale
  // (UNCONFIRMED for Kling), so only the aspect ratio must match, within 1%.
  dimensionCheck: "exact" | "aspect";
};

// Copies every result image into our storage and checks it. Only then is the task `succeeded`:
// the provider deletes results after 30 days, and its "succeed" is not proof of a usable image.
// Transient download errors are thrown for the job to retry; images already stored are kept.
export const archiveTask = async (deps: ArchiveTaskDeps, taskId: string): Promise<"succeeded" | "failed" | "skipped"> => {
  const task = await findTaskWithImages(deps.db, taskId);
  if (!task || task.status !== "archiving") return "skipped";
  const fail = async (message: string) => {
    await failTask(deps, taskId, "worker", { class: "archive_failed", message });
    return "failed" as const;
  };
  if (task.images.length === 0) return fail("the provider reported success without result images");
  const expected =
    task.sourceWidth && task.sourceHeight
      ? expandedSize(
          { width: task.sourceWidth, height: task.sourceHeight },
          { up: task.upRatio, down: task.downRatio, left: task.leftRatio, right: task.rightRatio },
        )
      : undefined;

  const toStore = task.images.filter((image) => !image.storageKey);
  // The last image's record goes with the success (one statement); the others are recorded as they
  // are stored, so a retry after a transient failure keeps them.
  let last: ({ index: number } & StoredImage) | undefined;
  for (const image of toStore) {
    const fetched = await safeFetch(image.providerUrl, deps.fetch).catch((error: unknown) => {
      // A download that cannot pass on a retry fails the task now; the others go back to the job.
      if (!(error instanceof SafeFetchError) || error.retryable) throw error;
      deps.logger.warn({ err: error, taskId }, "result image fetch failed");
      return error;
    });
    if (fetched instanceof SafeFetchError) return fail(`result image ${image.index}: ${fetched.publicReason}`);
    let width: number | undefined;
    let height: number | undefined;
    let format: string | undefined;
    try {
      ({ width, height, format } = await readImageHeader(fetched.body));
    } catch {
      return fail(`result image ${image.index} could not be decoded`);
    }
    if (!width || !height) return fail(`result image ${image.index} has no readable dimensions`);
    // The provider's "succeed" is no proof: a result cut off in transit has a whole header.
    if (!(await decodesInFull(fetched.body, { width, height }, expandLimits.maxSourcePixels * expandLimits.maxAreaFactor))) {
      return fail(`result image ${image.index} is truncated or corrupt`);
    }
    if (expected) {
      const mismatch =
        deps.dimensionCheck === "exact"
          ? Math.abs(width - expected.width) > 1 || Math.abs(height - expected.height) > 1
          : Math.abs(width / height / (expected.width / expected.height) - 1) > 0.01;
      if (mismatch) {
        return fail(
          `result image ${image.index} is ${width}x${height}; the requested expansion gives ${expected.width}x${expected.height}`,
        );
      }
    }
    const key = taskImageKey(taskId, image.index, format ?? "png");
    await deps.storage.put(key, fetched.body);
    const stored = { storageKey: key, width, height, bytes: fetched.body.length, sha256: createHash("sha256").update(fetched.body).digest("hex") };
    if (image === toStore.at(-1)) last = { index: image.index, ...stored };
    else await recordStoredImage(deps.db, taskId, image.index, stored);
  }
  const done = await transitionTask(deps, {
    taskId,
    to: "succeeded",
    from: ["archiving"],
    source: "worker",
    detail: { images: task.images.length },
    ...(last ? { storedImage: last } : {}),
  });
  // Moved on meanwhile (canceled, failed by a sweep): the stored file still gets its record, which
  // is how retention finds it to delete.
  if (!done.applied && last) {
    const { index, ...stored } = last;
    await recordStoredImage(deps.db, taskId, index, stored);
  }
  return done.applied ? "succeeded" : "skipped";
};
