import { z } from "zod";
import { lifecycleEnv } from "../domain/config/lifecycle-env.schema.ts";
import { ConfigError, envPort, envPositiveMs, parseEnv } from "../domain/config/parse-env.ts";
import { listenHostEnv } from "../domain/process/listen-url.ts";
import { tracingEnv } from "../domain/telemetry/tracing.ts";
import { databaseEnv, dbPoolSizeEnv, loggingEnv, outboundFetchEnv, redisEnv, storageEnv } from "../domain/config/shared-env.schema.ts";
import { providerControlEnv } from "../domain/provider-capacity/provider-controls.ts";
import { checkStorageEnv } from "../domain/storage/storage-config.ts";
import { providerEnv } from "../domain/provider/provider-config.schema.ts";
import { providerRoutesEnv } from "../domain/provider/provider-routes.schema.ts";
import { requireServerKeyInProduction, secretsEnv, serverKeyRequiredIssue } from "../domain/config/secrets-env.schema.ts";
import { retentionEnv } from "../domain/retention/retention.config.ts";
import { outboundWebhooksWorkerEnv } from "../domain/webhooks/outbound-webhooks.config.ts";
import { providerImageDeliveryEnv } from "../domain/task/provider-image.ts";

export const WORKER_DB_POOL_SIZE = 10;

export const workerEnvSchema = z.object({
  ...databaseEnv,
  // Connections this process's pool may hold; its LISTEN connection is one more, outside the pool
  // (docs/scale-postgres.md has the measure behind the default).
  DB_POOL_SIZE: dbPoolSizeEnv(WORKER_DB_POOL_SIZE),
  // Outbound callbacks: signed with secrets sealed under SERVER_KEY, image links signed with it.
  ...secretsEnv,
  ...outboundWebhooksWorkerEnv,
  ...redisEnv,
  ...storageEnv,
  ...loggingEnv,
  ...lifecycleEnv,
  ...outboundFetchEnv,
  ...providerEnv,
  ...providerControlEnv,
  ...providerRoutesEnv,
  ...tracingEnv,
  ...providerImageDeliveryEnv,
  ...retentionEnv,
  // The API's address as the provider sees it: callback URLs (with per-task tokens) and signed image
  // links are built on it. No default: a worker cannot know the API's PORT or proxy, and a guess
  // sends those tokens to whatever listens there (publicBaseUrlOf refuses to start without it).
  PUBLIC_BASE_URL: z.url({ protocol: /^https?$/ }).optional(),
  // An HTTP server for /healthz and /readyz (worker-health.ts), on HOST; off unless set (0: any free
  // port, logged). A worker has no other port.
  WORKER_HEALTH_PORT: envPort.optional(),
  ...listenHostEnv,
  SUBMIT_CONCURRENCY: z.coerce.number().int().min(1).max(500).default(20),
  // Source image downloads run in their own stage, so slow image hosts never hold submissions; one
  // account may use at most SOURCE_ACCOUNT_CONCURRENCY of a process's downloads at once.
  SOURCE_CONCURRENCY: z.coerce.number().int().min(1).max(500).default(32),
  SOURCE_ACCOUNT_CONCURRENCY: z.coerce.number().int().min(1).max(500).default(8),
  ARCHIVE_CONCURRENCY: z.coerce.number().int().min(1).max(100).default(4),
  SUBMIT_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(8),
  SUBMIT_RETRY_BASE_MS: envPositiveMs.default(1_000),
  // One submission attempt at a time per task: an attempt holds a lease this long, renewed while it
  // runs; a crashed worker's attempt is taken over once its lease runs out.
  SUBMIT_ATTEMPT_LEASE_MS: envPositiveMs.default(15_000),
  SUBMIT_RETRY_MAX_MS: envPositiveMs.default(60_000),
  // Each sweep is a BullMQ job plus its queries, run whether or not there is work: at 500 ms it was
  // about half an idle worker's CPU (docs/scale-redis.md). Polls at a task's expected end do not
  // wait for it (a sweep follows the checks falling due until the next one); what waits up to an
  // interval is the repair of a crashed step (a lost job re-added, slots of an ended task freed).
  RECONCILE_EVERY_MS: envPositiveMs.default(1_000),
  // batch.progress events: at most one per batch this often (batch.completed is not throttled).
  BATCH_PROGRESS_EVERY_MS: envPositiveMs.default(5_000),
  // A submit job waits this long in place for a free slot before going back to the queue.
  SLOT_WAIT_MS: envPositiveMs.default(20_000),
  // A task in flight longer than this since submission fails with a timeout reason.
  TASK_DEADLINE_MS: envPositiveMs.default(3_600_000),
  // A stopped worker (SIGTERM) lets its active jobs finish this long, then hands the rest back to the
  // queue for another worker (below the 15 s after which a stop is forced, and Docker's grace).
  WORKER_DRAIN_MS: envPositiveMs.default(10_000),
  // BullMQ job lock: a worker killed mid-job has its job re-run once the lock lapses.
  JOB_LOCK_MS: envPositiveMs.default(30_000),
  // A job whose run took its worker down this many times (a poison message) is not run again: its
  // task fails with the reason instead.
  JOB_MAX_CRASHES: z.coerce.number().int().min(1).max(20).default(3),
  // How often each worker checks that Redis still holds our state (a restart empties it).
  REDIS_WATCHDOG_MS: envPositiveMs.default(2_000),
  // How often this worker pushes its counters and histograms to Redis for the API's /metrics.
  METRICS_PUSH_MS: envPositiveMs.default(5_000),
  // Image downloads (callers' sources, provider results): no byte for IMAGE_FETCH_TIMEOUT_MS, or
  // the whole download (redirects included) past IMAGE_FETCH_TOTAL_TIMEOUT_MS, ends the try.
  IMAGE_FETCH_TIMEOUT_MS: envPositiveMs.default(10_000),
  IMAGE_FETCH_TOTAL_TIMEOUT_MS: envPositiveMs.default(30_000),
  RESULT_MAX_BYTES: z.coerce.number().int().positive().default(64 * 1024 * 1024),
  ARCHIVE_DIMENSION_CHECK: z.enum(["exact", "aspect"]).default("exact"),
}).refine(requireServerKeyInProduction, serverKeyRequiredIssue).superRefine(checkStorageEnv);

export type WorkerConfig = z.output<typeof workerEnvSchema>;

export const parseWorkerConfig = (env: Record<string, string | undefined>): WorkerConfig => parseEnv(workerEnvSchema, env);

// Checked at start rather than in the schema, so that tests of other settings can parse a partial env.
export const publicBaseUrlOf = (config: Pick<WorkerConfig, "PUBLIC_BASE_URL">): string => {
  if (!config.PUBLIC_BASE_URL) {
    throw new ConfigError([
      "PUBLIC_BASE_URL: must be set for a worker: the API's address as the provider reaches it (e.g. http://127.0.0.1:3000, or your HTTPS proxy); provider callbacks and signed image links are built on it, and it is never guessed (npm start sets it to its own API)",
    ]);
  }
  return config.PUBLIC_BASE_URL.replace(/\/$/, "");
};

// For the worker's process: a missing PUBLIC_BASE_URL exits 78 (EX_CONFIG) like any bad variable.
export const parseWorkerProcessConfig = (env: Record<string, string | undefined>): WorkerConfig => {
  const config = parseWorkerConfig(env);
  publicBaseUrlOf(config);
  return config;
};
