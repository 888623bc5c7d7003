import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import type { Logger } from "../domain/logging/logger.ts";
import { recheckUnfinishedTasksNow, recoverLostRedisState, type RecoveryDeps } from "../domain/task/recover-redis-state.ts";

export type RedisWatchdogDeps = RecoveryDeps & {
  redis: Redis;
  prefix: string;
  logger: Logger;
  // Registers the BullMQ job schedulers (idempotent): they live in Redis and vanish with it.
  ensureSchedules: () => Promise<void>;
  everyMs: number;
};

// Notices, without relying on anything kept in Redis (the reconcile sweep itself runs on a Redis
// schedule), that Redis restarted empty or was away, and rebuilds what it held from Postgres. A
// marker key says "this Redis has our state": when it is gone, the data went with it.
export const startRedisWatchdog = (deps: RedisWatchdogDeps) => {
  const marker = `${deps.prefix}:state-epoch`;
  let sawOutage = false;
  let running: Promise<void> | undefined;
  const onOutage = () => {
    sawOutage = true;
  };
  deps.redis.on("close", onOutage);

  const check = async () => {
    // Workers' connections wait for Redis instead of failing: this resolves once it answers again.
    const epoch = await deps.redis.get(marker);
    if (epoch === null) {
      // Only the worker that sets the marker rebuilds; the others find it set.
      const won = await deps.redis.set(marker, randomUUID(), "NX");
      await deps.ensureSchedules();
      if (won === "OK") {
        const summary = await recoverLostRedisState(deps);
        deps.logger.warn(summary, "Redis had none of our state (first start, or restarted empty): rebuilt it from Postgres");
      }
      sawOutage = false;
      return;
    }
    if (sawOutage) {
      sawOutage = false;
      await deps.ensureSchedules();
      const rechecked = await recheckUnfinishedTasksNow(deps.db);
      deps.logger.warn({ rechecked }, "Redis is back: every unfinished task is looked at now");
    }
  };

  const tick = () => {
    running ??= check()
      .catch((error: unknown) => deps.logger.warn({ err: error }, "Redis watchdog check failed; retrying"))
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const timer = setInterval(() => void tick(), deps.everyMs);
  timer.unref();
  return {
    // The first check runs at start: a Redis emptied while no worker ran is rebuilt too.
    firstCheck: tick(),
    stop: async () => {
      clearInterval(timer);
      deps.redis.off("close", onOutage);
      // A check that waits for an absent Redis must not hold up the shutdown.
      await Promise.race([running, new Promise((resolve) => setTimeout(resolve, 1_000).unref())]);
    },
  };
};
