import { z } from "zod";
import { defaultDatabaseUrl, defaultRedisUrl } from "./defaults.ts";
import { allowedPrivateHostEntry } from "../http/private-host-allowlist.ts";
import { envBoolean, envCommaList, envPositiveMs } from "./parse-env.ts";
import { redisClusterNodesEnv } from "../queues/redis-connection.ts";

// Fragments that several apps' env schemas are built from; each app still parses its own schema once.
export const databaseEnv = {
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/ }).default(defaultDatabaseUrl),
  // A query that takes longer is abandoned (client) and cancelled (server): a hung Postgres makes
  // requests answer within a bound, and a statement that timed out is rolled back.
  DB_QUERY_TIMEOUT_MS: envPositiveMs.default(10_000),
  // Waiting for a free pool connection (or a new one) longer than this is a 503.
  DB_CONNECT_TIMEOUT_MS: envPositiveMs.default(3_000),
  // Straight to Postgres when DATABASE_URL goes through a pooler (PgBouncer in transaction mode):
  // LISTEN and migrations need a session of their own. Unset: DATABASE_URL.
  DATABASE_DIRECT_URL: z.url({ protocol: /^postgres(ql)?$/ }).optional(),
  // Named prepared statements (parsed once per connection); only behind no pooler, or PgBouncer
  // 1.21+ with max_prepared_statements set.
  DB_PREPARED_STATEMENTS: envBoolean.default(false),
};

// Each app's pool size (DB_POOL_SIZE) has its own default, sized from what that process uses
// (docs/scale-postgres.md): connections on a server are N x API pool + M x (worker pool + 1).
export const dbPoolSizeEnv = (defaultSize: number) => z.coerce.number().int().min(1).max(200).default(defaultSize);

export const dbOptionsFrom = (env: { DB_QUERY_TIMEOUT_MS: number; DB_CONNECT_TIMEOUT_MS: number; DB_PREPARED_STATEMENTS: boolean; DB_POOL_SIZE?: number }) => ({
  queryTimeoutMs: env.DB_QUERY_TIMEOUT_MS,
  connectTimeoutMs: env.DB_CONNECT_TIMEOUT_MS,
  preparedStatements: env.DB_PREPARED_STATEMENTS,
  poolSize: env.DB_POOL_SIZE,
});

// Where a session of its own goes (LISTEN, migrations): never through a transaction pooler.
export const directDatabaseUrl = (env: { DATABASE_URL: string; DATABASE_DIRECT_URL?: string | undefined }) => env.DATABASE_DIRECT_URL ?? env.DATABASE_URL;

export const redisEnv = {
  REDIS_URL: z.url({ protocol: /^rediss?$/ }).default(defaultRedisUrl),
  // host:port,host:port of a Redis Cluster's nodes; when set, REDIS_URL is not used (docs/scale-redis.md).
  REDIS_CLUSTER_NODES: redisClusterNodesEnv,
  // Keeps several deployments (and every test file) apart on one Redis.
  QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_{}-]+$/).default("kling"),
  // true: start even when live processes with another provider configuration use QUEUE_PREFIX
  // (process/stack-identity.ts); they then take each other's jobs, on purpose.
  QUEUE_PREFIX_SHARED: envBoolean.default(false),
  // Finished jobs BullMQ keeps per task queue (source, submit, archive), for the queue board: each
  // is a Redis hash, so this bounds Redis memory however many tasks pass (job-catalog.ts). Set the
  // same on the APIs and the workers: whoever adds a job gives its rule.
  QUEUE_KEEP_COMPLETED: z.coerce.number().int().min(0).max(100_000).default(1_000),
};

// Local directory or S3-compatible store; its fragment lives beside the stores.
export { storageEnv } from "../storage/storage-config.ts";

export const loggingEnv = {
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  // auto: readable lines when stdout is a terminal, JSON otherwise.
  LOG_FORMAT: z.enum(["auto", "pretty", "json"]).default("auto"),
};

export const outboundFetchEnv = {
  // Hosts that may resolve to private or loopback addresses (the local simulator, for one): `host`
  // allows every port on it, `host:port` or `[v6]:port` only that port. A bad entry stops the boot.
  ALLOWED_PRIVATE_HOSTS: envCommaList.pipe(z.array(allowedPrivateHostEntry)).default([]),
};
