import { Router } from "express";
import { metrics } from "../../domain/metrics/metrics.ts";
import { inTaskSpan } from "../../domain/telemetry/tracing.ts";
import { receiveProviderCallback } from "../../domain/task/receive-provider-callback.ts";
import type { ApiDeps } from "../api-deps.ts";
import { readRawBody } from "../middleware/body-intake.ts";
import { methodNotAllowed } from "../middleware/method-not-allowed.ts";

// A task object of the provider's is a few KB even with nine images; nothing larger is read.
const MAX_CALLBACK_BYTES = 64 * 1024;

// The provider's callbacks: the raw bytes go to the domain, which verifies before it stores. A
// failure to apply or store answers 503, so that a provider that retries sends it again (and
// reconciliation polls the task either way).
export const providerCallbackRouter = (deps: ApiDeps): Router => {
  const router = Router();
  // The inbox and the task keep text: a body with NUL or a lone surrogate is refused before either.
  const readCallback = readRawBody(deps.bodyBudget, { limit: MAX_CALLBACK_BYTES, refuseUnstorableText: true });
  router.post("/:taskId/:token", readCallback, async (req, res) => {
    const rawBody = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    try {
      const receipt = await inTaskSpan(req.params.taskId, "provider.callback", () =>
        receiveProviderCallback(deps.callbacks, { taskId: req.params.taskId, token: req.params.token, headers: req.headers, rawBody }),
      );
      metrics.callbacksReceived.inc({ outcome: receipt.outcome });
      if (!receipt.stored) deps.logger.info({ outcome: receipt.outcome, detail: receipt.detail }, "callback refused");
      res.status(receipt.httpStatus).json({ outcome: receipt.outcome, ...(receipt.detail ? { detail: receipt.detail } : {}) });
    } catch (error) {
      metrics.callbacksReceived.inc({ outcome: "error" });
      deps.logger.warn({ err: error, taskId: req.params.taskId }, "callback not applied; answered 503 so that it is sent again");
      res.status(503).setHeader("retry-after", "5").json({ error: "callback not applied; retry" });
    }
  });
  router.all("/:taskId/:token", methodNotAllowed("POST"));
  return router;
};
