import express, { type Express } from "express";
import { NoRouteError } from "./middleware/method-not-allowed.ts";
import type { ApiDeps } from "./api-deps.ts";
import { dropinPrefixes } from "./middleware/answer-shape.ts";
import { errorHandlerByPath } from "./middleware/error-handlers.ts";
import { requestId } from "./middleware/request-id.ts";
import { requestLog } from "./middleware/request-log.ts";
import { strictUrl } from "./middleware/strict-url.ts";
import { traceRequests } from "./middleware/trace-requests.ts";
import { apiDocsRouter } from "./routes/api-docs.route.ts";
import { dashboardRouter } from "./routes/dashboard.route.ts";
import { metricsRouter } from "./routes/metrics.route.ts";
import { queueBoardRouter } from "./routes/queue-board.route.ts";
import { dropinExpandRouter } from "./routes/dropin-expand.route.ts";
import { filesRouter } from "./routes/files.route.ts";
import { healthRouter } from "./routes/health.route.ts";
import { nativeTasksRouter } from "./routes/native-tasks.route.ts";
import { batchesRouter } from "./routes/batches.route.ts";
import { providerCallbackRouter } from "./routes/provider-callback.route.ts";
import { providerRoutesRouter } from "./routes/provider-routes.route.ts";
import { webhooksRouter } from "./routes/webhooks.route.ts";
import { accountCostsRouter, accountUsageRouter } from "./routes/account-usage.route.ts";

// Bodies are read by each route that takes one (routes/*, after authentication where there is
// any), never here: an app-wide parser would buffer bodies that are about to be refused.
export const buildApp = (deps: ApiDeps): Express => {
  const app = express();
  app.disable("x-powered-by");
  app.set("trust proxy", true);
  app.use(requestId);
  app.use(traceRequests);
  app.use(requestLog(deps.logger));
  app.use(strictUrl);
  app.use(healthRouter(deps));
  app.use("/webhooks/kling", providerCallbackRouter(deps));
  const dropin = dropinExpandRouter(deps);
  for (const prefix of dropinPrefixes) app.use(prefix, dropin);
  app.use("/v1/tasks", nativeTasksRouter(deps));
  app.use("/v1/provider/routes", providerRoutesRouter(deps));
  app.use("/v1/webhooks", webhooksRouter(deps));
  app.use("/v1/batches", batchesRouter(deps));
  app.use("/v1/account", accountUsageRouter(deps));
  app.use("/account", accountCostsRouter(deps));
  app.use("/files", filesRouter(deps));
  // Operator and first-time-user pages (described in openapi/route-catalog.ts like every route).
  app.use(metricsRouter(deps.operations.scrapeMetrics, deps.operations.metricsToken));
  app.use(apiDocsRouter());
  app.use(dashboardRouter());
  app.use(queueBoardRouter({ adminToken: deps.operations.adminToken, queue: deps.operations.queue }));
  app.use((req, _res, next) => next(new NoRouteError(req.method, req.path)));
  // Problem details, or the provider's shape under the drop-in prefixes (unknown paths included).
  app.use(errorHandlerByPath(deps.logger));
  return app;
};
