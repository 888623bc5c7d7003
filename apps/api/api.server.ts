import type { AddressInfo } from "node:net";
import { createServer } from "node:http";
import { ensureBootstrapAccount } from "../domain/account/api-key.ts";
import { withTimeout } from "../domain/async/with-timeout.ts";
import { lifecycleTimingFrom } from "../domain/config/lifecycle-env.schema.ts";
import { createDb } from "../domain/db/prisma-client.ts";
import { queueUnavailable } from "../domain/errors/dependency-errors.ts";
import { createLogger, type LogDestination } from "../domain/logging/logger.ts";
import { createProducerRedis } from "../domain/queues/redis-connection.ts";
import { createTaskQueues } from "../domain/queues/task-queues.ts";
import { createProviderControls } from "../domain/provider-capacity/provider-controls.ts";
import { createLocalStorage } from "../domain/storage/local-storage.ts";
import type { ApiConfig } from "./api.config.ts";
import type { ApiDeps } from "./api-deps.ts";
import { buildApp } from "./app.ts";
import { createBodyBudget } from "./middleware/body-intake.ts";
import { createLinkSigner } from "./presenters/task.presenter.ts";

export type RunningApi = { url: string; port: number; publicBaseUrl: string; stop: () => Promise<void> };

// Starts one API process. Several may run side by side: all state is in Postgres and Redis.
// `logDestination` (tests only) receives the log lines instead of stdout.
export const startApi = async (config: ApiConfig, options: { logDestination?: LogDestination } = {}): Promise<RunningApi> => {
  const logger = createLogger("api", config.LOG_LEVEL, options.logDestination);
  const db = createDb(config.DATABASE_URL);
  const redis = createProducerRedis(config.REDIS_URL, logger);
  const queues = createTaskQueues(redis, config.QUEUE_PREFIX);
  const timing = lifecycleTimingFrom(config);

  // Redis down must be a fast 503 with nothing written, never a request that hangs.
  const enqueue = async (kind: "submit" | "archive", taskId: string, priority?: number) => {
    if (redis.status !== "ready") throw queueUnavailable();
    try {
      await withTimeout(queues.enqueue(kind, { taskId }, { priority }), config.ENQUEUE_TIMEOUT_MS, "Redis");
    } catch (error) {
      throw queueUnavailable(error);
    }
  };

  if (config.BOOTSTRAP_API_KEY) await ensureBootstrapAccount(db, config.BOOTSTRAP_API_KEY);

  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.PORT, "0.0.0.0", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  const publicBaseUrl = (config.PUBLIC_BASE_URL ?? url).replace(/\/$/, "");

  // Callbacks end provider tasks too, so the API releases slots and reports the gate's state.
  const provider = createProviderControls(redis, config.QUEUE_PREFIX, config);
  const reports = {
    db,
    logger,
    releaseSlots: (taskId: string) => provider.slots.release(taskId),
    runTime: provider.runTime,
    enqueueArchive: (taskId: string) => enqueue("archive", taskId),
    callbackGraceMs: timing.callbackGraceMs,
    pollAtExpectedEnd: timing.pollAtExpectedEnd,
    stallRecheckMs: timing.stallRecheckMs,
  };
  const deps: ApiDeps = {
    db,
    redis,
    logger,
    storage: createLocalStorage(config.STORAGE_DIR),
    signLink: createLinkSigner(publicBaseUrl, config.SIGNING_SECRET, config.IMAGE_LINK_TTL_SECONDS),
    signingSecret: config.SIGNING_SECRET,
    providerWebhookSecrets: config.PROVIDER_WEBHOOK_SECRET ?? [],
    intake: {
      db,
      enqueueSubmit: (taskId, priority) => enqueue("submit", taskId, priority),
      stallRecheckMs: timing.stallRecheckMs,
    },
    reports,
    providerControls: provider,
    bodyBudget: createBodyBudget(config.INTAKE_BODY_BUDGET_BYTES),
  };
  const app = buildApp(deps);
  server.on("request", app);
  // Expect: 100-continue reaches the app unanswered; the body readers send the 100 only once the
  // request is authenticated and within budget, so a refused client never sends its body.
  server.on("checkContinue", app);
  logger.info({ url, publicBaseUrl }, "api listening");

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await queues.close().catch(() => undefined);
      redis.disconnect();
      await db.$disconnect();
    })());
  return { url, port, publicBaseUrl, stop };
};
