import express, { type Express } from "express";
import { AppError } from "../domain/errors/app-error.ts";
import type { ApiDeps } from "./api-deps.ts";
import { problemDetailsHandler } from "./middleware/error-handlers.ts";
import { requestId } from "./middleware/request-id.ts";
import { requestLog } from "./middleware/request-log.ts";
import { dropinExpandRouter } from "./routes/dropin-expand.route.ts";
import { filesRouter } from "./routes/files.route.ts";
import { healthRouter } from "./routes/health.route.ts";
import { nativeTasksRouter } from "./routes/native-tasks.route.ts";
import { providerCallbackRouter } from "./routes/provider-callback.route.ts";

export const buildApp = (deps: ApiDeps): Express => {
  const app = express();
  app.disable("x-powered-by");
  app.set("trust proxy", true);
  app.use(requestId);
  app.use(requestLog(deps.logger));
  app.use(healthRouter(deps));
  // The provider's receiver reads the raw body itself, so no JSON parser runs before it.
  app.use("/webhooks/kling", providerCallbackRouter(deps));
  const dropin = dropinExpandRouter(deps);
  app.use("/kling/v1/images/editing/expand", dropin);
  app.use("/v1/images/editing/expand", dropin);
  app.use("/v1/tasks", nativeTasksRouter(deps));
  app.use("/files", filesRouter(deps));
  app.use((req, _res, next) => next(new AppError("not_found", `no route for ${req.method} ${req.path}`)));
  app.use(problemDetailsHandler(deps.logger));
  return app;
};
