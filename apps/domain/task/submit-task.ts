import type { Db } from "../db/prisma-client.ts";
import { inspectSourceImage } from "../expand-request/source-image.ts";
import { expandLimits } from "../expand-request/expand-limits.ts";
import { SafeFetchError, safeFetch } from "../http/safe-fetch.ts";
import type { Logger } from "../logging/logger.ts";
import type { ProviderClient } from "../provider/provider-client.ts";
import { ProviderError } from "../provider/provider-error.ts";
import { applyProviderReport, type ApplyReportDeps } from "./apply-provider-report.ts";
import { failTask } from "./fail-task.ts";
import { backoffWithJitter } from "./retry-policy.ts";
import { transitionTask } from "./task-transition.ts";

export type SubmitTaskDeps = ApplyReportDeps & {
  provider: ProviderClient;
  logger: Logger;
  callbackUrlFor: (taskId: string, token: string) => string;
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  imageFetch: { timeoutMs: number; allowedPrivateHosts: readonly string[] };
};

export type SubmitOutcome =
  | { kind: "submitted" | "adopted" | "already_done" | "failed" }
  | { kind: "retry_later"; delayMs: number; reason: string }
  | { kind: "task_missing" };

// One submission attempt for one task. Never creates a second provider task for the same task: a
// task found in `submitting` had an attempt whose outcome we never learned, so we ask first.
export const submitTask = async (deps: SubmitTaskDeps, taskId: string): Promise<SubmitOutcome> => {
  const task = await deps.db.task.findUnique({ where: { id: taskId }, include: { sourceImage: true } });
  if (!task) return { kind: "task_missing" };
  if (task.status !== "queued" && task.status !== "submitting") return { kind: "already_done" };

  let image: string;
  if (task.imageUrl) {
    const checked = await checkUrlImage(deps, task.imageUrl);
    if (checked.kind === "invalid") {
      await failTask(deps.db, taskId, "worker", { class: "invalid_image", message: `image: ${checked.reason}` });
      return { kind: "failed" };
    }
    if (checked.kind === "transient") return retryOrFail(deps, taskId, task.attempts, checked.reason);
    if (task.sourceWidth === null) {
      await deps.db.task.update({ where: { id: taskId }, data: { sourceWidth: checked.width, sourceHeight: checked.height } });
    }
    image = task.imageUrl;
  } else if (task.sourceImage) {
    image = Buffer.from(task.sourceImage.bytes).toString("base64");
  } else {
    await failTask(deps.db, taskId, "worker", { class: "invalid_image", message: "image: the task has no source image" });
    return { kind: "failed" };
  }

  const outcomeUnknown = task.status === "submitting";
  const attempts = task.attempts + 1;
  const marked = await transitionTask(deps.db, {
    taskId,
    to: "submitting",
    from: ["queued", "submitting"],
    source: "worker",
    detail: { attempt: attempts },
    data: { attempts, provider: deps.provider.kind, nextCheckAt: new Date(Date.now() + deps.stallRecheckMs) },
  });
  if (!marked.applied) return { kind: "already_done" };

  try {
    if (outcomeUnknown) {
      const existing = await deps.provider.findTaskByExternalId(taskId);
      if (existing) {
        deps.logger.info({ taskId, providerTaskId: existing.task_id }, "adopted the provider task of an earlier attempt");
        await applyProviderReport(deps, taskId, existing, "worker");
        return { kind: "adopted" };
      }
    }
    const created = await deps.provider.createTask({
      image,
      ratios: { up: task.upRatio, down: task.downRatio, left: task.leftRatio, right: task.rightRatio },
      prompt: task.prompt,
      n: task.n,
      watermark: task.watermark,
      externalTaskId: taskId,
      callbackUrl: deps.callbackUrlFor(taskId, task.callbackToken),
    });
    await applyProviderReport(deps, taskId, created, "worker");
    return { kind: "submitted" };
  } catch (error) {
    if (!(error instanceof ProviderError)) throw error;
    const { action, code } = error.details;
    if (action === "fail_task") {
      await failTask(deps.db, taskId, "worker", { class: "provider_rejected", message: error.message, code });
      return { kind: "failed" };
    }
    return retryOrFail(deps, taskId, attempts, error.message, error.details.retryAfterMs);
  }
};

const retryOrFail = async (
  deps: SubmitTaskDeps,
  taskId: string,
  attempts: number,
  reason: string,
  retryAfterMs?: number,
): Promise<SubmitOutcome> => {
  if (attempts >= deps.maxAttempts) {
    await failTask(deps.db, taskId, "worker", {
      class: "retries_exhausted",
      message: `gave up after ${attempts} attempts: ${reason}`,
    });
    return { kind: "failed" };
  }
  const delayMs = Math.max(retryAfterMs ?? 0, backoffWithJitter(Math.max(1, attempts), deps.retryBaseMs, deps.retryMaxMs));
  return { kind: "retry_later", delayMs, reason };
};

type UrlImageCheck =
  | { kind: "ok"; width: number; height: number }
  | { kind: "invalid"; reason: string }
  | { kind: "transient"; reason: string };

// URL images are checked before submission so that a bad one fails with our reason, for free.
const checkUrlImage = async (deps: SubmitTaskDeps, url: string): Promise<UrlImageCheck> => {
  try {
    const fetched = await safeFetch(url, {
      maxBytes: expandLimits.maxImageBytes,
      timeoutMs: deps.imageFetch.timeoutMs,
      allowedPrivateHosts: deps.imageFetch.allowedPrivateHosts,
    });
    const check = await inspectSourceImage(fetched.body);
    return check.ok ? { kind: "ok", width: check.info.width, height: check.info.height } : { kind: "invalid", reason: check.reason };
  } catch (error) {
    if (!(error instanceof SafeFetchError)) throw error;
    const transient = error.kind === "timeout" || error.kind === "network" || /HTTP (5\d\d|429)/.test(error.message);
    return transient ? { kind: "transient", reason: error.message } : { kind: "invalid", reason: error.message };
  }
};
