import type { Db, Task } from "../db/database.ts";
import { expandLimits } from "../expand-request/expand-limits.ts";
import { inspectSourceImage } from "../expand-request/source-image.ts";
import { SafeFetchError, safeFetch, type SafeFetchOptions } from "../http/safe-fetch.ts";
import type { Logger } from "../logging/logger.ts";
import { sourceImageKey, type ObjectStorage } from "../storage/local-storage.ts";
import { failTask, type TaskEndDeps } from "./fail-task.ts";
import { backoffWithJitter } from "./retry-policy.ts";
import { findTask } from "./task.repository.ts";
import { markWaiting, recordCheckedSource, spendTransientFailure } from "./task.store.ts";

export type CheckSourceDeps = TaskEndDeps & {
  db: Db;
  logger: Logger;
  // The checked bytes are kept: the provider is given these (submit-task.ts), never the URL again.
  storage: ObjectStorage;
  imageFetch: Pick<SafeFetchOptions, "timeoutMs" | "totalTimeoutMs" | "allowedPrivateHosts" | "agents">;
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  // A download slot for the account (perhaps after waiting for one), or how long to step back when
  // it already has its share running and enough jobs waiting: one account's slow image hosts must
  // not hold every download of every account (check-source.processor.ts).
  startDownload: (accountId: string) => Promise<{ release: () => void } | { busyForMs: number }>;
  // The task's next step once its image is known good, keeping its place in line.
  enqueueSubmit: (task: Task, priority: number | undefined) => Promise<void>;
};

export type SourceCheckOutcome =
  | { kind: "checked" | "failed" | "already_done" | "task_missing" }
  | { kind: "retry_later"; delayMs: number; reason: string };

// A URL image is fetched and checked before it costs a provider task, in a stage of its own: a
// slow or broken image host holds a download, never the submit path. Checked once (its size is then
// recorded); a failure that will not pass on a retry fails the task at once with a reason the
// caller may read, a passing one is retried with backoff and said in the task's status.
export const checkSourceImage = async (
  deps: CheckSourceDeps,
  taskId: string,
  options: { priority?: number } = {},
): Promise<SourceCheckOutcome> => {
  const task = await findTask(deps.db, taskId);
  if (!task) return { kind: "task_missing" };
  if (task.status !== "queued") return { kind: "already_done" };
  if (!task.imageUrl || task.sourceWidth !== null) {
    await deps.enqueueSubmit(task, options.priority);
    return { kind: "checked" };
  }
  const share = await deps.startDownload(task.accountId);
  if ("busyForMs" in share) return { kind: "retry_later", delayMs: share.busyForMs, reason: "the account's downloads are busy" };
  let checked: Awaited<ReturnType<typeof fetchAndInspect>>;
  try {
    checked = await fetchAndInspect(deps, task.imageUrl);
  } finally {
    share.release();
  }
  switch (checked.kind) {
    case "invalid":
      await failTask(deps, taskId, "worker", { class: "invalid_image", message: `image: ${checked.reason}` });
      return { kind: "failed" };
    case "transient": {
      const tries = await spendTransientFailure(deps.db, taskId);
      if (tries >= deps.maxAttempts) {
        await failTask(deps, taskId, "worker", {
          class: "retries_exhausted",
          message: `image: could not be downloaded after ${tries} tries: ${checked.reason}`,
        });
        return { kind: "failed" };
      }
      const reason = `retrying the image download (try ${tries + 1} of ${deps.maxAttempts}): ${checked.reason}`;
      await markWaiting(deps.db, taskId, ["queued"], reason);
      const delayMs = Math.max(checked.retryAfterMs ?? 0, backoffWithJitter(tries, deps.retryBaseMs, deps.retryMaxMs));
      return { kind: "retry_later", delayMs, reason };
    }
    case "ok": {
      // Stored before the task says it is checked: a task with a size always has its bytes.
      const sourceKey = sourceImageKey(taskId, checked.format);
      await deps.storage.put(sourceKey, checked.bytes);
      await recordCheckedSource(deps.db, taskId, { width: checked.width, height: checked.height, sourceKey });
      await deps.enqueueSubmit(task, options.priority);
      return { kind: "checked" };
    }
  }
};

const fetchAndInspect = async (deps: CheckSourceDeps, url: string) => {
  try {
    const fetched = await safeFetch(url, { ...deps.imageFetch, maxBytes: expandLimits.maxImageBytes });
    const check = await inspectSourceImage(fetched.body);
    return check.ok
      ? { kind: "ok" as const, width: check.info.width, height: check.info.height, format: check.info.format, bytes: fetched.body }
      : { kind: "invalid" as const, reason: check.reason };
  } catch (error) {
    if (!(error instanceof SafeFetchError)) throw error;
    // The task (which the caller reads) gets the public reason; the detail is for the logs only.
    deps.logger.warn({ err: error, retryable: error.retryable }, "source image fetch failed");
    return error.retryable
      ? { kind: "transient" as const, reason: error.publicReason, retryAfterMs: error.retryAfterMs }
      : { kind: "invalid" as const, reason: error.publicReason };
  }
};
