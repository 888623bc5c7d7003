import type { AddressInfo } from "node:net";
import { createServer, type Server } from "node:http";
import { ensureBootstrapAccessKey } from "../domain/account/access-key.ts";
import { ensureBootstrapAccount } from "../domain/account/api-key.ts";
import { createAuthenticator } from "../domain/account/authenticator.ts";
import { withTimeout } from "../domain/async/with-timeout.ts";
import { lifecycleTimingFrom } from "../domain/config/lifecycle-env.schema.ts";
import { resolveServerKey } from "../domain/config/secrets-env.schema.ts";
import { dbOptionsFrom } from "../domain/config/shared-env.schema.ts";
import { createDb, type Db } from "../domain/db/database.ts";
import { queueUnavailable } from "../domain/errors/dependency-errors.ts";
import { checkCallbackDestination, literalAddressRefusal } from "../domain/http/safe-fetch.ts";
import { createLogger, type LogDestination, type Logger } from "../domain/logging/logger.ts";
import { localUrlFor } from "../domain/process/listen-url.ts";
import { claimQueuePrefix } from "../domain/process/stack-identity.ts";
import { createProducerRedis, createSubscriberRedis, redisTargetFrom, type RedisClient } from "../domain/queues/redis-connection.ts";
import { createFairPriority } from "../domain/queues/fair-priority.ts";
import { createTaskQueues } from "../domain/queues/task-queues.ts";
import { createDirectSender } from "../domain/webhooks/direct-delivery.ts";
import { addDeliveryJob, createConsumerAgents, webhookSenderDeps } from "../domain/webhooks/webhook-sender.ts";
import { createProviderRouteSet } from "../domain/provider-capacity/provider-route-set.ts";
import { resolveProviderRoutes } from "../domain/provider/provider-routes.schema.ts";
import type { CreditTerms } from "../domain/credits/credit-terms.ts";
import { createChangeHub } from "../domain/live-progress/change-hub.ts";
import { createLiveLimits } from "../domain/live-progress/live-limits.ts";
import { createTaskChangeNotifier, type TaskChangeNotifier } from "../domain/live-progress/task-change.ts";
import { createObjectStorage } from "../domain/storage/object-storage.ts";
import { storageConfigFrom } from "../domain/storage/storage-config.ts";
import { pruneIdempotencyKeys } from "../domain/idempotency/idempotency-key.ts";
import { bullmqTelemetry, flushTracing, inTaskSpan, startTracing } from "../domain/telemetry/tracing.ts";
import type { ApiConfig } from "./api.config.ts";
import type { ApiDeps } from "./api-deps.ts";
import { buildApp } from "./app.ts";
import { createMetricsScrape } from "./metrics/scrape-metrics.ts";
import { createBodyBudget } from "./middleware/body-intake.ts";
import { sweepBodySpool } from "./middleware/body-spool.ts";
import { createLinkSigner } from "./presenters/task.presenter.ts";

export type RunningApi = {
  url: string;
  port: number;
  publicBaseUrl: string;
  // What live progress holds right now (listeners, subscribed channels, open streams and long-polls).
  liveStats: () => { listeners: number; channels: number; open: number };
  stop: () => Promise<void>;
};

// Starts one API process. Several may run side by side: all state is in Postgres and Redis.
// `logDestination` (tests only) receives the log lines instead of stdout.
export const startApi = async (config: ApiConfig, options: { logDestination?: LogDestination } = {}): Promise<RunningApi> => {
  const logger = createLogger("api", config.LOG_LEVEL, config.LOG_FORMAT, options.logDestination);
  // JSON batch bodies a crashed process left on disk (body-spool.ts).
  const swept = sweepBodySpool();
  if (swept > 0) logger.warn({ removed: swept }, "removed JSON batch bodies left on disk by a process that is gone");
  const base = await openConnections(config, logger);
  const server = createServer();
  await bootstrapAndListen(config, base, server);
  const port = (server.address() as AddressInfo).port;
  const url = localUrlFor(config.HOST, port);
  const publicBaseUrl = (config.PUBLIC_BASE_URL ?? url).replace(/\/$/, "");

  const { deps, routes, hub, liveLimits, direct } = buildApiDeps(config, base, logger, publicBaseUrl);
  const pruning = pruneIdempotencyKeysEvery(config, base.db, logger);
  const app = buildApp(deps);
  server.on("request", app);
  // Expect: 100-continue reaches the app unanswered; the body readers send the 100 only once the
  // request is authenticated and within budget, so a refused client never sends its body.
  server.on("checkContinue", app);
  logger.info({ url, publicBaseUrl, listen: `${config.HOST}:${port}`, storage: base.storage.describe }, "api listening");

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      clearInterval(pruning);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        // Open streams and long-polls end now (a stream without its `end` event, so the client
        // reconnects, to another process, with its Last-Event-ID); otherwise close() waits for them.
        void hub.close();
      });
      await direct?.close();
      await base.queues.close().catch(() => undefined);
      await routes.close();
      await closeConnections(base);
      await flushTracing();
    })());
  return { url, port, publicBaseUrl, liveStats: () => ({ ...hub.stats(), open: liveLimits.inUse() }), stop };
};

// Postgres, Redis, queues and storage, in the order a start reports what it waits on.
const openConnections = async (config: ApiConfig, logger: Logger) => {
  const identity = await claimQueuePrefix({ redis: redisTargetFrom(config), prefix: config.QUEUE_PREFIX, routes: resolveProviderRoutes(config), app: "api", shared: config.QUEUE_PREFIX_SHARED, logger });
  const db = createDb(config.DATABASE_URL, { ...dbOptionsFrom(config), applicationName: "kling-api" });
  // The webhook receiver's executor: its statements run on pg through Kysely, or the same statements
  // through Prisma Client (CALLBACK_DB_CLIENT). Kysely by measurement (issue 19, `npm run bench:api`,
  // docs/benchmarks.md): through Prisma Client 6.19 the API served 0.46-0.60 (median 0.52, seven
  // runs) of the callbacks per core it serves on pg, and 0.50-1.01 (median 0.65) of the ok/s on a
  // machine at load average 13-27; the rule was Prisma if it cost under 10%.
  // Prisma Client is loaded only when chosen: ~1.5 s and ~20 MB more at start.
  const callbackDb = config.CALLBACK_DB_CLIENT === "prisma" ? (await import("../domain/db/prisma-kysely.ts")).prismaDbOver(db) : db;
  await startTracing({ serviceName: "kling-api", endpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT });
  const redis = createProducerRedis(redisTargetFrom(config), logger);
  const queues = createTaskQueues(redis, config.QUEUE_PREFIX, bullmqTelemetry(), config.QUEUE_KEEP_COMPLETED);
  const fairPriority = createFairPriority(redis, config.QUEUE_PREFIX);
  const timing = lifecycleTimingFrom(config);
  const serverKey = await resolveServerKey(config);
  const storage = await createObjectStorage(storageConfigFrom(config));
  // Before anything connects: a bad PROVIDER_ROUTES stops the boot like any other bad variable.
  const providerRoutes = resolveProviderRoutes(config);
  return { identity, db, callbackDb, redis, queues, fairPriority, timing, serverKey, storage, providerRoutes };
};
type ApiConnections = Awaited<ReturnType<typeof openConnections>>;

const closeConnections = async (base: ApiConnections) => {
  base.redis.disconnect();
  base.storage.close();
  if (base.callbackDb !== base.db) await base.callbackDb.destroy();
  await base.db.destroy();
  await base.identity.stop();
};

const bootstrapAndListen = async (config: ApiConfig, base: ApiConnections, server: Server) => {
  try {
    if (config.BOOTSTRAP_API_KEY) {
      const accountId = await ensureBootstrapAccount(base.db, config.BOOTSTRAP_API_KEY);
      if (config.BOOTSTRAP_ACCESS_KEY && config.BOOTSTRAP_SECRET_KEY) {
        await ensureBootstrapAccessKey(base.db, base.serverKey, accountId, { accessKey: config.BOOTSTRAP_ACCESS_KEY, secretKey: config.BOOTSTRAP_SECRET_KEY });
      }
    }
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.PORT, config.HOST, () => resolve());
    });
  } catch (error) {
    // A start that fails (bootstrap refused, port taken) leaves no connection open behind it.
    await closeConnections(base);
    throw error;
  }
};

// Expired Idempotency-Keys go; every API process prunes (a delete of nothing costs little).
const pruneIdempotencyKeysEvery = (config: ApiConfig, db: Db, logger: Logger) => {
  const pruning = setInterval(() => {
    pruneIdempotencyKeys(db).catch((error: unknown) => logger.warn({ err: error }, "idempotency keys not pruned"));
  }, config.IDEMPOTENCY_PRUNE_EVERY_MS);
  pruning.unref();
  return pruning;
};

// What the routes are given (api-deps.ts), built from the process's connections.
const buildApiDeps = (config: ApiConfig, base: ApiConnections, logger: Logger, publicBaseUrl: string) => {
  const { db, callbackDb, redis, queues, fairPriority, timing, serverKey, storage, providerRoutes } = base;
  const viaRedis = redisGuard(redis, config.ENQUEUE_TIMEOUT_MS);
  // Callbacks end provider tasks too, so the API releases slots and reports each route's state.
  const routes = createProviderRouteSet(redis, config.QUEUE_PREFIX, providerRoutes, config);
  // One subscriber connection per process, shared by every stream and long-poll it serves.
  const hub = createChangeHub(createSubscriberRedis(redisTargetFrom(config), logger), config.QUEUE_PREFIX, logger);
  const liveLimits = createLiveLimits(config.LIVE_MAX_STREAMS_PER_ACCOUNT);
  const reports = {
    db,
    taskChanged: createTaskChangeNotifier(redis, config.QUEUE_PREFIX, logger),
    logger,
    releaseSlots: (taskId: string) => routes.releaseSlots(taskId),
    runTimeOf: (route: string | null) => (routes.of(route) ?? routes.all[0]!).runTime,
    adapterOf: (route: string | null) => (routes.of(route) ?? routes.all[0]!).adapter,
    enqueueArchive: (taskId: string) => viaRedis(() => queues.enqueue("archive", { taskId })),
    callbackGraceMs: timing.callbackGraceMs,
    pollAtExpectedEnd: timing.pollAtExpectedEnd,
    stallRecheckMs: timing.stallRecheckMs,
  };
  const callbackReports = { ...reports, db: callbackDb };
  // The outbound callback a provider callback causes is sent from here, after the move's one commit;
  // the workers take what this process fails to send (a retry is a job on their queue).
  const direct = config.WEBHOOK_SEND_FROM_RECEIVER
    ? createDirectSender(
        webhookSenderDeps(config, {
          db,
          logger,
          serverKey,
          publicBaseUrl,
          agents: createConsumerAgents(),
          enqueue: (delivery, delayMs) => addDeliveryJob(queues.queue("webhook"), delivery, delayMs),
        }),
        config.WEBHOOK_RECEIVER_CONCURRENCY,
      )
    : undefined;
  const sendOutbound = direct ? { sendOutbound: direct.sender } : {};
  const linkKey = serverKey.derive("image-links");
  const credits: CreditTerms = {
    perImage: config.CREDITS_PER_IMAGE,
    defaultCap: config.BATCH_SPEND_CAP_CREDITS,
    maxRouteCapacity: Math.max(...providerRoutes.map((r) => r.capacity)),
    replayWindowSeconds: config.REPLAY_WINDOW_SECONDS,
  };
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
          viaRedis(async () => {
            const { priority, settle } = await fairPriority.take(task.accountId);
            await queues.enqueue(task.stage, { taskId: task.id }, { priority }).catch(async (error: unknown) => {
              await settle().catch(() => undefined);
              throw error;
            });
            return settle;
          }),
        ),
      withdrawFirstJob: (task) => queues.withdraw(task.stage, task.id),
      stallRecheckMs: timing.stallRecheckMs,
      checkCallbackUrl: (url) => checkCallbackDestination(url, config.ALLOWED_PRIVATE_HOSTS),
      imageUrlRefusal: (url) => literalAddressRefusal(url, config.ALLOWED_PRIVATE_HOSTS),
      credits,
    },
    // Callback URLs without a route name (a single-provider setup, or tasks sent before routes
    // were configured) are verified with every secret configured: a route's own secret cannot be
    // bypassed by dropping the route from the URL.
    callbacks: {
      ...callbackReports,
      ...sendOutbound,
      webhookSecrets: [...new Set([...(config.PROVIDER_WEBHOOK_SECRET ?? []), ...providerRoutes.flatMap((r) => r.webhookSecrets ?? [])])],
    },
    // A route's callbacks are verified with its own secret, or the installation's.
    callbacksForRoute: (name) => {
      const route = routes.all.find((r) => r.route.name === name);
      if (!route) return undefined;
      return { ...callbackReports, ...sendOutbound, webhookSecrets: route.route.webhookSecrets ?? config.PROVIDER_WEBHOOK_SECRET ?? [] };
    },
    providerRoutes: routes,
    bodyBudget: createBodyBudget({
      capacityBytes: config.INTAKE_BODY_BUDGET_BYTES,
      accountShare: config.INTAKE_BODY_ACCOUNT_SHARE,
      minBytesPerSecond: config.INTAKE_BODY_MIN_BYTES_PER_SECOND,
      rateWindowMs: config.INTAKE_BODY_RATE_WINDOW_MS,
    }),
    live: {
      db,
      hub,
      resyncMs: config.LIVE_RESYNC_MS,
      limits: liveLimits,
      heartbeatMs: config.LIVE_HEARTBEAT_MS,
      maxWaitSeconds: config.LIVE_MAX_WAIT_SECONDS,
    },
    webhooks: { serverKey, secretGraceSeconds: config.WEBHOOK_SECRET_GRACE_SECONDS },
    batches: batchIntakeDeps(config, base, viaRedis, credits, reports.taskChanged),
    idempotency: { ttlMs: config.IDEMPOTENCY_KEY_TTL_SECONDS * 1000, inFlightMs: config.IDEMPOTENCY_IN_FLIGHT_SECONDS * 1000 },
    operations: {
      scrapeMetrics: createMetricsScrape({
        db,
        redis,
        prefix: config.QUEUE_PREFIX,
        queue: queues.queue,
        providerRoutes: routes,
        staleAfterMs: config.METRICS_STALE_MS,
        timeoutMs: 2_000,
      }),
      metricsToken: config.METRICS_TOKEN,
      adminToken: config.ADMIN_TOKEN,
      queue: queues.queue,
    },
  };
  return { deps, routes, hub, liveLimits, direct };
};

// Redis down must be a fast 503 with nothing written, never a request that hangs.
const redisGuard =
  (redis: RedisClient, timeoutMs: number) =>
  async <T>(work: () => Promise<T>): Promise<T> => {
    if (redis.status !== "ready") throw queueUnavailable();
    try {
      return await withTimeout(work(), timeoutMs, "Redis");
    } catch (error) {
      throw queueUnavailable(error);
    }
  };

const batchIntakeDeps = (
  config: ApiConfig,
  { db, storage, timing, queues, fairPriority }: ApiConnections,
  viaRedis: ReturnType<typeof redisGuard>,
  credits: CreditTerms,
  taskChanged: TaskChangeNotifier,
): ApiDeps["batches"] => ({
  db,
  storage,
  stallRecheckMs: timing.stallRecheckMs,
  checkCallbackUrl: (url) => checkCallbackDestination(url, config.ALLOWED_PRIVATE_HOSTS),
  imageUrlRefusal: (url) => literalAddressRefusal(url, config.ALLOWED_PRIVATE_HOSTS),
  // One script call for the chunk's priorities, one addBulk per stage.
  enqueueBatchJobs: (accountId, jobs) =>
    viaRedis(async () => {
      const { priority: first, settle } = await fairPriority.takeBatchRange(accountId, jobs.length);
      const byStage = { source: [] as { taskId: string; priority: number }[], submit: [] as { taskId: string; priority: number }[] };
      jobs.forEach((job, i) => byStage[job.stage].push({ taskId: job.id, priority: first + i }));
      await Promise.all([queues.enqueueBulk("source", byStage.source), queues.enqueueBulk("submit", byStage.submit)]).catch(async (error: unknown) => {
        await settle().catch(() => undefined);
        throw error;
      });
      return settle;
    }),
  withdrawBatchJobs: async (jobs) => {
    await Promise.all(jobs.map((job) => queues.withdraw(job.stage, job.id)));
  },
  credits,
  chunkItems: config.BATCH_CHUNK_ITEMS,
  uploadLeaseMs: config.BATCH_UPLOAD_LEASE_MS,
  taskChanged,
  estimateRunMs: config.BATCH_ESTIMATE_RUN_MS,
  maxStreams: config.BATCH_STREAMS_MAX,
});
