import { timingSafeEqual } from "node:crypto";
import { Router } from "express";
import { z } from "zod";
import type { CallbackOutcome } from "../../domain/db/generated/client.ts";
import { providerTaskSchema } from "../../domain/provider/provider-wire.schema.ts";
import { applyProviderReport } from "../../domain/task/apply-provider-report.ts";
import { verifyStandardWebhook } from "../../domain/webhooks/standard-webhooks.ts";
import type { ApiDeps } from "../api-deps.ts";
import { readRawBody } from "../middleware/body-intake.ts";
import { methodNotAllowed } from "../middleware/method-not-allowed.ts";

const sameSecret = (a: string, b: string) => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

// The provider's callbacks are unsigned (or signed with a secret we may not have), so each task's
// callback URL carries a secret token of its own. When PROVIDER_WEBHOOK_SECRET is set, the Standard
// Webhooks signature is checked as well, on the raw bytes and before any parsing. Every callback is
// kept in the inbox first, raw, then applied; one we could not persist is answered 5xx so that the
// provider retries.
export const providerCallbackRouter = (deps: ApiDeps): Router => {
  const router = Router();
  // The inbox and the task keep text: a body with NUL or a lone surrogate is refused before either.
  const readCallback = readRawBody(deps.bodyBudget, { limit: 1024 * 1024, refuseUnstorableText: true });
  router.post("/:taskId/:token", readCallback, async (req, res) => {
    const rawBytes = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const rawBody = rawBytes.toString("utf8");
    const { taskId, token } = req.params;
    let inboxId: bigint;
    let task: { id: string; callbackToken: string } | null;
    try {
      task = z.uuid().safeParse(taskId).success
        ? await deps.db.task.findUnique({ where: { id: taskId }, select: { id: true, callbackToken: true } })
        : null;
      inboxId = (await deps.db.providerCallback.create({ data: { taskId: task?.id, rawBody }, select: { id: true } })).id;
    } catch (error) {
      deps.logger.error({ err: (error as Error).message, taskId }, "callback not persisted");
      return res.status(503).json({ error: "callback not persisted; retry" });
    }
    const settle = async (outcome: CallbackOutcome, status: number, detail?: string, providerStatus?: string) => {
      await deps.db.providerCallback
        .update({ where: { id: inboxId }, data: { outcome, detail, providerStatus } })
        .catch((error: Error) => deps.logger.warn({ err: error.message }, "callback outcome not recorded"));
      res.status(status).json({ outcome, ...(detail ? { detail } : {}) });
    };
    // Before the task lookup's answer, so an unsigned sender cannot probe which task ids exist.
    if (deps.providerWebhookSecrets.length > 0) {
      const signature = verifyStandardWebhook({ secrets: deps.providerWebhookSecrets, headers: req.headers, rawBody: rawBytes });
      if (!signature.ok) return settle("rejected", 401, `bad webhook signature: ${signature.reason}`);
    }
    if (!task) return settle("unknown_task", 404, "no such task");
    if (!sameSecret(task.callbackToken, token)) return settle("rejected", 401, "bad callback token");
    let json: unknown;
    try {
      json = JSON.parse(rawBody);
    } catch {
      return settle("rejected", 400, "body is not JSON");
    }
    const report = providerTaskSchema.safeParse(json);
    if (!report.success) return settle("rejected", 400, `not a task object: ${report.error.issues[0]?.message}`);
    const external = report.data.task_info?.external_task_id;
    if (external && external !== task.id) return settle("rejected", 400, "external_task_id does not match the task");
    try {
      const { outcome } = await applyProviderReport(deps.reports, task.id, report.data, "callback");
      return settle(outcome, 200, undefined, report.data.task_status);
    } catch (error) {
      deps.logger.error({ err: (error as Error).message, taskId }, "callback stored but not applied");
      // Stored in the inbox; a 503 makes the provider send it again, and polling covers it anyway.
      return res.status(503).json({ error: "callback stored but not applied; retry" });
    }
  });
  router.all("/:taskId/:token", methodNotAllowed("POST"));
  return router;
};
