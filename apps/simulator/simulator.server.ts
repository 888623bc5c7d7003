import { once } from "node:events";
import type { AddressInfo } from "node:net";
import express, { type NextFunction, type Request, type Response } from "express";
import { createLogger } from "../domain/logging/logger.ts";
import { localUrlFor } from "../domain/process/listen-url.ts";
import { adminRoutes } from "./admin.routes.ts";
import { createCallbackSender } from "./callback.sender.ts";
import { createHangingCalls } from "./fault-injection.ts";
import { seededRandom } from "./seeded-random.ts";
import { sendProviderError, sendRouteUnavailable } from "./provider-reply.ts";
import { providerRoutes } from "./provider.routes.ts";
import { createResultImageCache } from "./result-image.cache.ts";
import type { SimSettings } from "./sim-settings.schema.ts";
import { createSimTaskStore } from "./sim-task.store.ts";
import { createTimerSet } from "./sim-timers.ts";
import { settingsFromConfig, type SimulatorConfig } from "./simulator.config.ts";
import { createTaskLifecycle } from "./task-lifecycle.ts";

export type RunningSimulator = { url: string; port: number; stop(): Promise<void> };

type BodyParserError = Error & { type?: string; status?: number };

// Starts the simulated provider on config.SIMULATOR_PORT (0 = any free port). stop() clears every
// timer, aborts pending callbacks and closes all connections, hanging ones included.
export const startSimulator = async (config: SimulatorConfig): Promise<RunningSimulator> => {
  const logger = createLogger("simulator", config.LOG_LEVEL, config.LOG_FORMAT);
  let settings: SimSettings = settingsFromConfig(config);
  let publicUrl = config.SIM_PUBLIC_URL?.replace(/\/$/, "") ?? "";
  const getSettings = () => settings;
  const getPublicUrl = () => publicUrl;

  const store = createSimTaskStore();
  const timers = createTimerSet();
  const hanging = createHangingCalls(timers);
  const results = createResultImageCache(config.SIM_RESULT_MEMORY_MB * 1024 * 1024);
  // One stream per kind of decision, so that the faults calls meet depend on their order of arrival
  // alone, not on how creates and callbacks interleave with them.
  const dice = (stream: number) => (config.SIM_SEED === undefined ? Math.random : seededRandom(config.SIM_SEED + stream));
  const callbacks = createCallbackSender({ settings: getSettings, stats: store.stats, logger, random: dice(3) });
  const lifecycle = createTaskLifecycle({ store, clock: () => settings.clock, timers, callbacks, results, publicUrl: getPublicUrl, logger });

  const app = express();
  app.disable("x-powered-by");
  app.use((req, res, next) => {
    const started = Date.now();
    res.on("finish", () => logger.debug({ method: req.method, path: req.path, status: res.statusCode, ms: Date.now() - started }, "request"));
    next();
  });
  app.use("/_sim", adminRoutes({ store, lifecycle, results, hanging, settings: getSettings, updateSettings: (next) => (settings = next), taskControl: config.SIM_TASK_CONTROL, logger }));
  const jwtPair = config.SIM_ACCESS_KEY && config.SIM_SECRET_KEY ? { accessKey: config.SIM_ACCESS_KEY, secretKey: config.SIM_SECRET_KEY } : undefined;
  const routeDeps = { store, lifecycle, hanging, settings: getSettings, publicUrl: getPublicUrl, logger, faultRandom: dice(1), random: dice(2) };
  // Kling's own path family checks JWT signatures when given the pair; CometAPI's does not.
  app.use("/v1/images/editing/expand", providerRoutes({ ...routeDeps, jwtPair }));
  app.use("/kling/v1/images/editing/expand", providerRoutes(routeDeps));
  app.use((req: Request, res: Response) => {
    if (settings.route_unavailable && !req.path.startsWith("/_sim")) return sendRouteUnavailable(res);
    sendProviderError(res, 1202, `no such route: ${req.method} ${req.path}`);
  });
  app.use((error: BodyParserError, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(error);
    if (req.path.startsWith("/_sim")) return res.status(error.status ?? 500).json({ error: "bad_request", message: error.message });
    if (error.type === "entity.too.large") return sendProviderError(res, 1201, "image: the request body is too large; the image limit is 10 MB");
    if (error.type === "entity.parse.failed") return sendProviderError(res, 1200, "request body is not valid JSON");
    logger.error({ err: error }, "unhandled error");
    sendProviderError(res, 5000, "internal server error");
  });

  const host = config.SIM_HOST ?? config.HOST;
  const server = app.listen(config.SIMULATOR_PORT, host);
  await Promise.race([once(server, "listening"), once(server, "error").then(([error]) => Promise.reject(error as Error))]);
  const port = (server.address() as AddressInfo).port;
  const url = localUrlFor(host, port);
  if (!publicUrl) publicUrl = url;
  logger.info({ url, publicUrl, listen: `${host}:${port}` }, "provider simulator listening");

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= new Promise<void>((resolve) => {
      lifecycle.cancelAll();
      server.close(() => resolve());
      server.closeAllConnections();
    }));

  return { url, port, stop };
};
