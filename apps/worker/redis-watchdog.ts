import { randomUUID } from "node:crypto";
import type { RedisClient } from "../domain/queues/redis-connection.ts";
import type { Logger } from "../domain/logging/logger.ts";
import { FAIR_TAG } from "../domain/queues/fair-priority.ts";
import { bullQueueName, jobCatalog, type JobKind } from "../domain/queues/job-catalog.ts";
import { routeKeyPrefix } from "../domain/provider-capacity/provider-route-set.ts";
import { recheckUnfinishedTasksNow, recoverLostRedisState, type RecoveryDeps } from "../domain/task/recover-redis-state.ts";

export type RedisWatchdogDeps = RecoveryDeps & {
  redis: RedisClient;
  prefix: string;
  logger: Logger;
  // Registers the BullMQ job schedulers (idempotent): they live in Redis and vanish with it.
  ensureSchedules: () => Promise<void>;
  everyMs: number;
};

// Every hash tag our keys live under: each queue's, each route's and the fair-priority counters'.
// On a cluster each tag is one slot on one node; a marker under each notices any node that lost it.
export const stateTags = (prefix: string, routes: RecoveryDeps["routes"]) => [
  ...(Object.keys(jobCatalog) as JobKind[]).map((kind) => `${prefix}:${bullQueueName(kind)}`),
  ...routes.all.map((r) => routeKeyPrefix(prefix, r.route)),
  `${prefix}:${FAIR_TAG}`,
];

// Notices, without relying on anything kept in Redis (the reconcile sweep itself runs on a Redis
// schedule), that Redis restarted empty or was away, and rebuilds what it held from Postgres. A
// marker key per hash tag says "this part of Redis has our state": when one is gone, the data of
// its slot went with it (one Redis restarted empty, or one node of a cluster).
export const startRedisWatchdog = (deps: RedisWatchdogDeps) => {
  const markers = stateTags(deps.prefix, deps.routes).map((tagged) => `${tagged}:state-epoch`);
  let sawOutage = false;
  let running: Promise<void> | undefined;
  const onOutage = () => {
    sawOutage = true;
  };
  deps.redis.on("close", onOutage);

  const check = async () => {
    // Workers' connections wait for Redis instead of failing: this resolves once it answers again.
    // One GET per marker: on a cluster they live on different nodes (no multi-key command).
    const epochs = await Promise.all(markers.map((marker) => deps.redis.get(marker)));
    const lost = markers.filter((_, i) => epochs[i] === null);
    if (lost.length > 0) {
      // Only the worker that sets a marker rebuilds; the others find it set. The rebuild covers
      // everything (holding slots and re-adding jobs are idempotent), whichever part was lost.
      const won = await Promise.all(lost.map((marker) => deps.redis.set(marker, randomUUID(), "NX")));
      await deps.ensureSchedules();
      if (won.includes("OK")) {
        const summary = await recoverLostRedisState(deps);
        deps.logger.warn({ ...summary, lost: lost.length, of: markers.length }, "Redis had lost our state (first start, or a Redis or cluster node restarted empty): rebuilt it from Postgres");
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
