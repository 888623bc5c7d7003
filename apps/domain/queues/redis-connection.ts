import { Redis, type RedisOptions } from "ioredis";
import type { Logger } from "../logging/logger.ts";

// Producers (the API) fail fast so that an unreachable Redis is a quick 503; workers wait for Redis
// to come back (BullMQ's production guide).
export const createProducerRedis = (url: string, logger: Logger): Redis =>
  withErrorLog(
    new Redis(url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2_000,
      retryStrategy: (times) => Math.min(times * 200, 2_000),
    } satisfies RedisOptions),
    logger,
  );

export const createWorkerRedis = (url: string, logger: Logger): Redis =>
  withErrorLog(
    new Redis(url, {
      maxRetriesPerRequest: null,
      retryStrategy: (times) => Math.min(times * 200, 5_000),
    } satisfies RedisOptions),
    logger,
  );

// The API's one pub/sub subscriber (live progress): it waits for Redis to come back and re-subscribes
// by itself; live views meanwhile resync from Postgres on a timer.
export const createSubscriberRedis = (url: string, logger: Logger): Redis =>
  withErrorLog(
    new Redis(url, {
      maxRetriesPerRequest: null,
      connectTimeout: 2_000,
      retryStrategy: (times) => Math.min(times * 200, 2_000),
    } satisfies RedisOptions),
    logger,
  );

const withErrorLog = (redis: Redis, logger: Logger): Redis => {
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
