import { Cluster, Redis, type ClusterOptions, type RedisOptions } from "ioredis";
import { z } from "zod";
import type { Logger } from "../logging/logger.ts";

// One code path for a single Redis and a Redis Cluster: everything of ours is typed against this
// union (the commands both share), and the factory below picks the client from the settings.
export type RedisClient = Redis | Cluster;

export type RedisTarget = { kind: "single"; url: string } | { kind: "cluster"; nodes: { host: string; port: number }[] };

const clusterNode = z
  .string()
  .trim()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, "each entry must be host:port")
  .transform((entry) => {
    const at = entry.lastIndexOf(":");
    return { host: entry.slice(0, at).replace(/^\[|\]$/g, ""), port: Number(entry.slice(at + 1)) };
  });

// `REDIS_CLUSTER_NODES`: a comma list of host:port, a few of the cluster's masters (the client
// learns the rest from CLUSTER SLOTS). When it is set REDIS_URL is not used.
export const redisClusterNodesEnv = z
  .string()
  .optional()
  .transform((raw, ctx) => {
    const entries = (raw ?? "").split(",").map((e) => e.trim()).filter((e) => e.length > 0);
    const nodes = [];
    for (const entry of entries) {
      const parsed = clusterNode.safeParse(entry);
      if (!parsed.success) {
        ctx.addIssue({ code: "custom", message: `'${entry}' is not host:port` });
        return z.NEVER;
      }
      nodes.push(parsed.data);
    }
    return nodes;
  });

export const redisTargetFrom = (env: { REDIS_URL: string; REDIS_CLUSTER_NODES?: { host: string; port: number }[] }): RedisTarget =>
  env.REDIS_CLUSTER_NODES && env.REDIS_CLUSTER_NODES.length > 0 ? { kind: "cluster", nodes: env.REDIS_CLUSTER_NODES } : { kind: "single", url: env.REDIS_URL };

export const isCluster = (redis: RedisClient): redis is Cluster => redis instanceof Cluster;

// A cluster follows MOVED and ASK by itself (redirections), waits and retries on TRYAGAIN (a key
// mid-migration) and CLUSTERDOWN, and re-reads the slot map after a redirection: a slot moved
// between nodes or a failover needs no restart.
const clusterOptions = (redisOptions: RedisOptions, offlineQueue: boolean): ClusterOptions => ({
  redisOptions,
  enableOfflineQueue: offlineQueue,
  maxRedirections: 32,
  retryDelayOnTryAgain: 100,
  retryDelayOnClusterDown: 200,
  retryDelayOnFailover: 200,
  slotsRefreshTimeout: 2_000,
  clusterRetryStrategy: (times) => Math.min(times * 200, 2_000),
});

const connect = (target: RedisTarget, options: RedisOptions, offlineQueue: boolean): RedisClient =>
  target.kind === "single"
    ? new Redis(target.url, { ...options, enableOfflineQueue: offlineQueue })
    : new Cluster(target.nodes, clusterOptions(options, offlineQueue));

// A short-lived connection for checks made before the app's own connections exist (the queue
// prefix's other users): connected on demand, failing fast.
export const createCheckRedis = (target: RedisTarget): RedisClient => {
  const options: RedisOptions = { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 2_000, retryStrategy: (times) => Math.min(times * 500, 5_000) };
  return target.kind === "single" ? new Redis(target.url, options) : new Cluster(target.nodes, { ...clusterOptions(options, true), lazyConnect: true });
};

// Producers (the API) fail fast so that an unreachable Redis is a quick 503; workers wait for Redis
// to come back (BullMQ's production guide).
export const createProducerRedis = (target: RedisTarget, logger: Logger): RedisClient =>
  withErrorLog(
    connect(
      target,
      { maxRetriesPerRequest: 1, connectTimeout: 2_000, retryStrategy: (times) => Math.min(times * 200, 2_000) },
      // A cluster client learns the slot map before its first command: without an offline queue
      // those would fail while it does (and after each topology change).
      target.kind === "cluster",
    ),
    logger,
  );

// BullMQ needs maxRetriesPerRequest: null on the connections it blocks on (in redisOptions for a
// Cluster, which passes them to every node connection).
export const createWorkerRedis = (target: RedisTarget, logger: Logger): RedisClient =>
  withErrorLog(connect(target, { maxRetriesPerRequest: null, retryStrategy: (times) => Math.min(times * 200, 5_000) }, true), logger);

// The API's one pub/sub subscriber (live progress): it waits for Redis to come back and re-subscribes
// by itself; live views meanwhile resync from Postgres on a timer.
export const createSubscriberRedis = (target: RedisTarget, logger: Logger): RedisClient =>
  withErrorLog(
    connect(target, { maxRetriesPerRequest: null, connectTimeout: 2_000, retryStrategy: (times) => Math.min(times * 200, 2_000) }, true),
    logger,
  );

const withErrorLog = (redis: RedisClient, logger: Logger): RedisClient => {
  let lastLogged = 0;
  // Without a listener ioredis prints every reconnect failure; one line per 10 s is enough.
  redis.on("error", (error: Error) => {
    if (Date.now() - lastLogged > 10_000) {
      lastLogged = Date.now();
      logger.warn({ err: error }, "redis connection error");
    }
  });
  return redis;
};
