import type { AddressInfo } from "node:net";
import { createServer } from "node:http";
import { ensureBootstrapAccessKey } from "../domain/account/access-key.ts";
import { ensureBootstrapAccount } from "../domain/account/api-key.ts";
import { createAuthenticator } from "../domain/account/authenticator.ts";
import { withTimeout } from "../domain/async/with-timeout.ts";
import { lifecycleTimingFrom } from "../domain/config/lifecycle-env.schema.ts";
import { resolveServerKey } from "../domain/config/secrets-env.schema.ts";
import { dbOptionsFrom } from "../domain/config/shared-env.schema.ts";
import { createDb } from "../domain/db/database.ts";
import { queueUnavailable } from "../domain/errors/dependency-errors.ts";
import { checkUrlAddress } from "../domain/http/safe-fetch.ts";
import { createLogger, type LogDestination } from "../domain/logging/logger.ts";
import { localUrlFor } from "../domain/process/listen-url.ts";
import { createProducerRedis } from "../domain/queues/redis-connection.ts";
import { createFairPriority } from "../domain/queues/fair-priority.ts";
import { createTaskQueues } from "../domain/queues/task-queues.ts";
import { createProviderControls } from "../domain/provider-capacity/provider-controls.ts";
import { createLocalStorage } from "../domain/storage/local-storage.ts";
import { bullmqTelemetry, flushTracing, inTaskSpan, startTracing } from "../domain/telemetry/tracing.ts";
import type { ApiConfig } from "./api.config.ts";
import type { ApiDeps } from "./api-deps.ts";
import { buildApp } from "./app.ts";
import { createMetricsScrape } from "./metrics/scrape-metrics.ts";
import { createBodyBudget } from "./middleware/body-intake.ts";
import { createLinkSigner } from "./presenters/task.presenter.ts";

export type RunningApi = { url: string; port: number; publicBaseUrl: string; stop: () => Promise<void> };

// Starts one API process. Several may run side by side: all state is in Postgres and Redis.
// `logDestination` (tests only) receives the log lines instead of stdout.
export const startApi = async (config: ApiConfig, options: { logDestination?: LogDestination } = {}): Promise<RunningApi> => {
  const logger = createLogger("api", config.LOG_LEVEL, config.LOG_FORMAT, options.logDestination);
  const db = createDb(config.DATABASE_URL, { ...dbOptionsFrom(config), applicationName: "kling-api" });
  startTracing({ serviceName: "kling-api", endpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT });
  const redis = createProducerRedis(config.REDIS_URL, logger);
  const queues = createTaskQueues(redis, config.QUEUE_PREFIX, bullmqTelemetry());
  const fairPriority = createFairPriority(redis, config.QUEUE_PREFIX);
  const timing = lifecycleTimingFrom(config);
  const serverKey = await resolveServerKey(config);
  const storage = createLocalStorage(config.STORAGE_DIR);

  // Redis down must be a fast 503 with nothing written, never a request that hangs.
  const viaRedis = async <T>(work: () => Promise<T>): Promise<T> => {
    if (redis.status !== "ready") throw queueUnavailable();
    try {
      return await withTimeout(work(), config.ENQUEUE_TIMEOUT_MS, "Redis");
    } catch (error) {
      throw queueUnavailable(error);
    }
  };

  const server = createServer();
  try {
    if (config.BOOTSTRAP_API_KEY) {
      const accountId = await ensureBootstrapAccount(db, config.BOOTSTRAP_API_KEY);
      if (config.BOOTSTRAP_ACCESS_KEY && config.BOOTSTRAP_SECRET_KEY) {
        await ensureBootstrapAccessKey(db, serverKey, accountId, { accessKey: config.BOOTSTRAP_ACCESS_KEY, secretKey: config.BOOTSTRAP_SECRET_KEY });
      }
    }
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.PORT, config.HOST, () => resolve());
    });
  } catch (error) {
    // A start that fails (bootstrap refused, port taken) leaves no connection open behind it.
    redis.disconnect();
    await db.destroy();
    throw error;
  }
  const port = (server.address() as AddressInfo).port;
  const url = localUrlFor(config.HOST, port);
  const publicBaseUrl = (config.PUBLIC_BASE_URL ?? url).replace(/\/$/, "");

  // Callbacks end provider tasks too, so the API releases slots and reports the gate's state.
  const provider = createProviderControls(redis, config.QUEUE_PREFIX, config);
  const reports = {
    db,
    logger,
    releaseSlots: (taskId: string) => provider.slots.release(taskId),
    runTime: provider.runTime,
    enqueueArchive: (taskId: string) => viaRedis(() => queues.enqueue("archive", { taskId })),
    callbackGraceMs: timing.callbackGraceMs,
    pollAtExpectedEnd: timing.pollAtExpectedEnd,
    stallRecheckMs: timing.stallRecheckMs,
  };
  const linkKey = serverKey.derive("image-links");
  const deps: ApiDeps = {
    db,
    redis,
    logger,
    storage,
    authenticator: createAuthenticator({
      db,
      serverKey,
      cacheMs: config.AUTH_CACHE_MS,
      clockToleranceSeconds: config.JWT_CLOCK_TOLERANCE_SECONDS,
      maxLifetimeSeconds: config.JWT_MAX_LIFETIME_SECONDS,
      logger,
    }),
    signLink: createLinkSigner(publicBaseUrl, linkKey, config.IMAGE_LINK_TTL_SECONDS),
    linkKey,
    intake: {
      db,
      storage,
      // The task's trace starts here; BullMQ carries it on to the worker.
      enqueueFirstJob: (task) =>
        inTaskSpan(task.id, "task.enqueue", () =>
          viaRedis(async () => queues.enqueue(task.stage, { taskId: task.id }, { priority: await fairPriority.next(task.accountId) })),
        ),
      withdrawFirstJob: (task) => queues.withdraw(task.stage, task.id),
      stallRecheckMs: timing.stallRecheckMs,
      checkCallbackUrl: (url) => checkUrlAddress(url, config.ALLOWED_PRIVATE_HOSTS),
    },
    callbacks: { ...reports, webhookSecrets: config.PROVIDER_WEBHOOK_SECRET ?? [] },
    providerControls: provider,
    bodyBudget: createBodyBudget(config.INTAKE_BODY_BUDGET_BYTES),
    operations: {
      scrapeMetrics: createMetricsScrape({
        db,
        redis,
        prefix: config.QUEUE_PREFIX,
        queue: queues.queue,
        providerControls: provider,
        staleAfterMs: config.METRICS_STALE_MS,
        timeoutMs: 2_000,
      }),
      adminToken: config.ADMIN_TOKEN,
      queue: queues.queue,
    },
  };
  const app = buildApp(deps);
  server.on("request", app);
  // Expect: 100-continue reaches the app unanswered; the body readers send the 100 only once the
  // request is authenticated and within budget, so a refused client never sends its body.
  server.on("checkContinue", app);
  logger.info({ url, publicBaseUrl, listen: `${config.HOST}:${port}` }, "api listening");

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await queues.close().catch(() => undefined);
      redis.disconnect();
      await db.destroy();
      await flushTracing();
    })());
  return { url, port, publicBaseUrl, stop };
};
