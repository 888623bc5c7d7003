import { Router, type RequestHandler } from "express";
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
  // `/:route`: a route of PROVIDER_ROUTES, whose own webhook secret verifies the callback. An
  // unknown route answers like a bad token, before the body is read.
  const callbacksFor = (params: { route?: string | string[] }) =>
    params.route === undefined ? deps.callbacks : deps.callbacksForRoute(String(params.route));
  const knownRoute: RequestHandler = (req, res, next) => {
    if (callbacksFor(req.params)) return next();
    deps.logger.info({ outcome: "unauthenticated", detail: "unknown route" }, "callback refused");
    res.status(401).json({ outcome: "unauthenticated", detail: "unknown task or bad callback token" });
  };
  const receive: RequestHandler = async (req, res) => {
    const callbacks = callbacksFor(req.params)!;
    const rawBody = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    try {
      const taskId = String(req.params.taskId);
      const receipt = await inTaskSpan(taskId, "provider.callback", () =>
        receiveProviderCallback(callbacks, { taskId, token: String(req.params.token), headers: req.headers, rawBody }),
      );
      metrics.callbacksReceived.inc({ outcome: receipt.outcome });
      if (!receipt.stored) deps.logger.info({ outcome: receipt.outcome, detail: receipt.detail }, "callback refused");
      res.status(receipt.httpStatus).json({ outcome: receipt.outcome, ...(receipt.detail ? { detail: receipt.detail } : {}) });
    } catch (error) {
      metrics.callbacksReceived.inc({ outcome: "error" });
      deps.logger.warn({ err: error, taskId: req.params.taskId }, "callback not applied; answered 503 so that it is sent again");
      res.status(503).setHeader("retry-after", "5").json({ error: "callback not applied; retry" });
    }
  };
  router.post("/:taskId/:token", readCallback, receive);
  router.post("/:taskId/:token/:route", knownRoute, readCallback, receive);
  router.all(["/:taskId/:token", "/:taskId/:token/:route"], methodNotAllowed("POST"));
  return router;
};
