import type { Processor, Worker } from "bullmq";
import { lifecycleTimingFrom } from "../domain/config/lifecycle-env.schema.ts";
import { dbOptionsFrom } from "../domain/config/shared-env.schema.ts";
import { createDb } from "../domain/db/database.ts";
import { createLogger, type Logger } from "../domain/logging/logger.ts";
import { claimQueuePrefix } from "../domain/process/stack-identity.ts";
import { resolveProviderRoutes } from "../domain/provider/provider-routes.schema.ts";
import { startMetricsPush } from "../domain/metrics/metrics-push.ts";
import { bullmqTelemetry, flushTracing, startTracing } from "../domain/telemetry/tracing.ts";
import { metrics } from "../domain/metrics/metrics.ts";
import { jobCatalog, type JobKind } from "../domain/queues/job-catalog.ts";
import { startQueueWorker, type QueueWorkerOptions } from "../domain/queues/queue-worker.ts";
import { createWorkerRedis, redisTargetFrom } from "../domain/queues/redis-connection.ts";
import { createFairPriority } from "../domain/queues/fair-priority.ts";
import { createTaskQueues, probeQueueWritable, type TaskQueues } from "../domain/queues/task-queues.ts";
import { createProviderRouteSet, type ProviderRouteSet } from "../domain/provider-capacity/provider-route-set.ts";
import { createTaskChangeNotifier } from "../domain/live-progress/task-change.ts";
import { createObjectStorage } from "../domain/storage/object-storage.ts";
import { storageConfigFrom } from "../domain/storage/storage-config.ts";
import { isSourceImageKey } from "../domain/storage/local-storage.ts";
import { withRecentWrites } from "../domain/storage/recent-writes.ts";
import { archiveTaskProcessor } from "./processors/archive-task.processor.ts";
import { checkSourceProcessor, createDownloadShares } from "./processors/check-source.processor.ts";
import { createJobDrain } from "../domain/process/job-drain.ts";
import { retentionSettingsFrom } from "../domain/retention/retention.config.ts";
import { reconcileProcessor } from "./processors/reconcile.processor.ts";
import { submitTaskProcessor } from "./processors/submit-task.processor.ts";
import { startRedisWatchdog } from "./redis-watchdog.ts";
import { failTask } from "../domain/task/fail-task.ts";
import { publicBaseUrlOf, type WorkerConfig } from "./worker.config.ts";
import { resolveServerKey } from "../domain/config/secrets-env.schema.ts";
import { startOutboundWebhooks } from "./outbound-webhooks.ts";
import { signImageLink } from "../domain/storage/signed-link.ts";
import { sql } from "kysely";
import { startWorkerHealth, type WorkerHealth } from "./worker-health.ts";

type StageKind = "source" | "submit" | "archive";
type JobDrain = ReturnType<typeof createJobDrain>;

export type RunningWorker = { providerKind: string; stop: () => Promise<void> };

// A stateless worker process: run as many as needed; they share work through Redis and state
// through Postgres.
export const startWorker = async (config: WorkerConfig): Promise<RunningWorker> => {
  const publicBaseUrl = publicBaseUrlOf(config);
  const logger = createLogger("worker", config.LOG_LEVEL, config.LOG_FORMAT);
  // First, so that a start stuck on Redis or Postgres is seen as such (503, naming the step).
  const health: WorkerHealth | undefined =
    config.WORKER_HEALTH_PORT === undefined ? undefined : await startWorkerHealth({ host: config.HOST, port: config.WORKER_HEALTH_PORT, logger });
  const base = await openConnections(config, logger, health);
  const { db, redis, queues, storage } = base;
  const routes = createProviderRouteSet(redis, config.QUEUE_PREFIX, base.providerRoutes, config);
  const reports = workerReports(config, base, routes, logger);
  const drain = createJobDrain(logger);
  const workers = startProcessors(config, base, { reports, routes, drain, publicBaseUrl });
  const webhooks = await startOutboundWebhooks({ config, db, queues, workerOptions: base.workerOptions, logger, serverKey: base.serverKey, publicBaseUrl });
  const ensureSchedules = async () => {
    await queues.queue("reconcile").upsertJobScheduler(
      "reconcile-sweep",
      { every: config.RECONCILE_EVERY_MS },
      { name: jobCatalog.reconcile.name, data: {}, opts: jobCatalog.reconcile.options },
    );
    await webhooks.ensureSchedule();
  };
  health?.starting("waiting for Redis (first check of our state) and for every processor's connection");
  const watchdog = startRedisWatchdog({ db, routes, redis, prefix: config.QUEUE_PREFIX, logger, ensureSchedules, everyMs: config.REDIS_WATCHDOG_MS });
  const metricsPush = startMetricsPush({ redis, prefix: config.QUEUE_PREFIX, everyMs: config.METRICS_PUSH_MS, logger });
  await watchdog.firstCheck;
  await ensureSchedules();
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  health?.running({
    postgres: () => sql`select 1`.execute(db),
    // Every queue this worker takes jobs from, written: on a cluster each lives on its own node.
    redis: () => Promise.all(workers.map((w) => probeQueueWritable(redis, w))),
    stoppedProcessors: () => workers.filter((w) => !w.isRunning()).map((w) => w.name),
  });
  logger.info(
    { routes: base.providerRoutes.map((r) => ({ name: r.name, provider: r.kind, url: r.baseUrl, capacity: r.capacity })), storage: storage.describe },
    "worker started",
  );

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      // Active jobs finish or are handed back (job-drain.ts); only a kill leaves one to BullMQ's
      // stall check. The slot lines close after the jobs waiting in them have left.
      health?.draining();
      await watchdog.stop();
      await Promise.all([drain.drain(workers, config.WORKER_DRAIN_MS), webhooks.stop()]);
      await routes.close();
      await metricsPush.stop();
      await flushTracing();
      await closeConnections(base);
      await health?.close();
    })());
  return { providerKind: base.providerRoutes[0]!.kind, stop };
};

// Sources kept in memory from their check to their submission: a minute, 32 MB at most.
const RECENT_SOURCES = { maxBytes: 32 * 1024 * 1024, maxAgeMs: 60_000 };

// Redis, Postgres, queues and storage, each step named on the health endpoint while it waits.
const openConnections = async (config: WorkerConfig, logger: Logger, health: WorkerHealth | undefined) => {
  health?.starting("checking the queue prefix in Redis");
  const identity = await claimQueuePrefix({ redis: redisTargetFrom(config), prefix: config.QUEUE_PREFIX, routes: resolveProviderRoutes(config), app: "worker", shared: config.QUEUE_PREFIX_SHARED, logger });
  health?.starting("connecting to Redis and Postgres and starting the processors");
  const db = createDb(config.DATABASE_URL, { ...dbOptionsFrom(config), applicationName: "kling-worker" });
  await startTracing({ serviceName: "kling-worker", endpoint: config.OTEL_EXPORTER_OTLP_ENDPOINT });
  const telemetry = bullmqTelemetry();
  const redis = createWorkerRedis(redisTargetFrom(config), logger);
  const queues = createTaskQueues(redis, config.QUEUE_PREFIX, telemetry, config.QUEUE_KEEP_COMPLETED);
  const providerRoutes = resolveProviderRoutes(config);
  const timing = lifecycleTimingFrom(config);
  // A source's check and its submission mostly run in the same process a moment apart (recent-writes.ts).
  const storage = withRecentWrites(await createObjectStorage(storageConfigFrom(config)), { ...RECENT_SOURCES, keys: isSourceImageKey });
  const serverKey = await resolveServerKey(config);
  const workerOptions: QueueWorkerOptions = { connection: redis, prefix: config.QUEUE_PREFIX, logger, lock: config, ...(telemetry ? { telemetry } : {}) };
  return { identity, db, redis, queues, providerRoutes, timing, storage, serverKey, workerOptions };
};
type WorkerConnections = Awaited<ReturnType<typeof openConnections>>;

const closeConnections = async (base: WorkerConnections) => {
  await base.queues.close().catch(() => undefined);
  base.redis.disconnect();
  base.storage.close();
  await base.db.destroy();
  await base.identity.stop();
};

// What every task transition of the worker's is given (fail-task.ts, task-transition.ts).
const workerReports = (config: WorkerConfig, { db, redis, queues, timing }: WorkerConnections, routes: ProviderRouteSet, logger: Logger) => ({
  db,
  taskChanged: createTaskChangeNotifier(redis, config.QUEUE_PREFIX, logger),
  logger,
  releaseSlots: (taskId: string) => routes.releaseSlots(taskId),
  runTimeOf: (route: string | null) => (routes.of(route) ?? routes.all[0]!).runTime,
  enqueueArchive: (taskId: string) => queues.enqueue("archive", { taskId }),
  callbackGraceMs: timing.callbackGraceMs,
  pollAtExpectedEnd: timing.pollAtExpectedEnd,
  stallRecheckMs: timing.stallRecheckMs,
});
type WorkerReports = ReturnType<typeof workerReports>;

// A job that ended (failed for good, or completed while its task still waits) is re-run; one that
// is waiting, delayed or active is left alone. One that BullMQ failed because it kept taking its
// worker down (stalled past JOB_MAX_CRASHES) is a poison message: its task fails instead.
// `priority` may be a function: asked only when a job is really added, so that a sweep that finds
// the job in place takes no place in line (fair-priority.ts counts every number handed out).
const redriver = (config: WorkerConfig, queues: TaskQueues, reports: WorkerReports) => {
  const { logger } = reports;
  return async (kind: StageKind, taskId: string, priority?: number | (() => Promise<number>)) => {
    const job = await queues.queue(kind).getJob(taskId);
    const state = job ? await job.getState() : "missing";
    if (job && state === "failed" && /stalled more than allowable limit/i.test(job.failedReason ?? "")) {
      logger.error({ taskId, queue: kind, crashes: config.JOB_MAX_CRASHES }, "poison job: its task is failed, not run again");
      await failTask(reports, taskId, "sweeper", {
        class: "worker_crashed",
        message: `working on this task stopped a worker process ${config.JOB_MAX_CRASHES} times; it was not tried again`,
      });
      return;
    }
    if (job && state === "failed") return job.retry();
    if (job && state === "completed") await job.remove();
    if (!job || state === "completed" || state === "unknown") {
      await queues.enqueue(kind, { taskId }, { priority: typeof priority === "function" ? await priority() : priority });
    }
  };
};

// The task stages' processors, each on its queue with its concurrency.
const startProcessors = (
  config: WorkerConfig,
  base: WorkerConnections,
  { reports, routes, drain, publicBaseUrl }: { reports: WorkerReports; routes: ProviderRouteSet; drain: JobDrain; publicBaseUrl: string },
): Worker[] => {
  const { db, storage, timing } = base;
  const { taskChanged, logger } = reports;
  // Links to a task's stored source, for PROVIDER_IMAGE_DELIVERY=link (the API's files route checks them).
  const sourceLinkKey = base.serverKey.derive("image-links");
  const redriveJob = redriver(config, base.queues, reports);
  const fairPriority = createFairPriority(base.redis, config.QUEUE_PREFIX);
  const workers: Worker[] = [];
  const run = (kind: JobKind, processor: Processor, concurrency: number) => {
    const queueName = jobCatalog[kind].queue;
    // Time from being due (added, or its delay over) to being taken, on a job's first run (a retry's
    // timestamps no longer say when it became due).
    const timed: Processor = drain.track((job, token) => {
      if (job.attemptsStarted <= 1) metrics.jobWait.observe({ queue: queueName }, Math.max(0, Date.now() - job.timestamp - (job.opts.delay ?? 0)) / 1000);
      return processor(job, token);
    });
    workers.push(startQueueWorker(kind, timed, concurrency, base.workerOptions));
  };

  run(
    "submit",
    submitTaskProcessor({
      ...reports,
      routes,
      stopping: drain.stopping,
      storage,
      imageDelivery: config.PROVIDER_IMAGE_DELIVERY,
      sourceLinkFor: (taskId) => signImageLink(publicBaseUrl, sourceLinkKey, taskId, "source", config.IMAGE_LINK_TTL_SECONDS),
      slotWaitMs: config.SLOT_WAIT_MS,
      attemptLeaseMs: config.SUBMIT_ATTEMPT_LEASE_MS,
      // A route's callbacks name it, so that its own webhook secret verifies them; the single route
      // of a setup without PROVIDER_ROUTES keeps the URLs it always had.
      callbackUrlFor: (taskId, token, route) =>
        `${publicBaseUrl}/webhooks/kling/${taskId}/${token}${route.legacyKeys ? "" : `/${route.name}`}`,
      maxAttempts: config.SUBMIT_MAX_ATTEMPTS,
      retryBaseMs: config.SUBMIT_RETRY_BASE_MS,
      retryMaxMs: config.SUBMIT_RETRY_MAX_MS,
      enqueueSourceCheck: (taskId, priority) => redriveJob("source", taskId, priority),
    }),
    config.SUBMIT_CONCURRENCY,
  );
  run(
    "source",
    checkSourceProcessor({
      db,
      taskChanged,
      logger,
      storage,
      releaseSlots: reports.releaseSlots,
      imageFetch: {
        timeoutMs: config.IMAGE_FETCH_TIMEOUT_MS,
        totalTimeoutMs: config.IMAGE_FETCH_TOTAL_TIMEOUT_MS,
        allowedPrivateHosts: config.ALLOWED_PRIVATE_HOSTS,
      },
      maxAttempts: config.SUBMIT_MAX_ATTEMPTS,
      retryBaseMs: config.SUBMIT_RETRY_BASE_MS,
      retryMaxMs: config.SUBMIT_RETRY_MAX_MS,
      startDownload: createDownloadShares(config.SOURCE_ACCOUNT_CONCURRENCY, config.SOURCE_CONCURRENCY, drain.stopping),
      // The submit job keeps the place in line the task got at intake.
      enqueueSubmit: async (task, priority) => redriveJob("submit", task.id, priority ?? (await fairPriority.next(task.accountId))),
    }),
    config.SOURCE_CONCURRENCY,
  );
  run(
    "archive",
    archiveTaskProcessor({
      db,
      taskChanged,
      logger,
      releaseSlots: reports.releaseSlots,
      storage,
      fetch: {
        timeoutMs: config.IMAGE_FETCH_TIMEOUT_MS,
        totalTimeoutMs: config.IMAGE_FETCH_TOTAL_TIMEOUT_MS,
        maxBytes: config.RESULT_MAX_BYTES,
        allowedPrivateHosts: config.ALLOWED_PRIVATE_HOSTS,
      },
      dimensionCheck: config.ARCHIVE_DIMENSION_CHECK,
    }),
    config.ARCHIVE_CONCURRENCY,
  );
  run(
    "reconcile",
    reconcileProcessor({
      ...reports,
      routes,
      pollMaxIntervalMs: timing.pollMaxIntervalMs,
      taskDeadlineMs: config.TASK_DEADLINE_MS,
      redriveJob,
      batchSize: 200,
      fairPriority,
      retention: retentionSettingsFrom(config),
      storage,
      batchProgressEveryMs: config.BATCH_PROGRESS_EVERY_MS,
      followChecksForMs: config.RECONCILE_EVERY_MS,
    }),
    1,
  );
  return workers;
};
