import type { RedisClient } from "../queues/redis-connection.ts";
import type { Logger } from "../logging/logger.ts";
import { processInstanceId, processRegistry } from "./metrics.ts";

// Workers have no HTTP port: each pushes its counters and histograms (prom-client's JSON form) to
// one Redis hash every few seconds, and the API merges the fresh entries into /metrics. One HSET
// per interval per worker; a scrape is one HGETALL. A worker that stops is dropped once its entry
// is older than `staleAfterMs`; its counters then leave the sums (Prometheus's rate() reads that
// as a counter reset, as it does for a restarted process).
export const metricsHashKey = (prefix: string) => `${prefix}:metrics:processes`;

type MetricsJson = Awaited<ReturnType<typeof processRegistry.getMetricsAsJSON>>;
type PushedEntry = { at: number; metrics: MetricsJson };

export type MetricsPush = { stop(): Promise<void> };

export const startMetricsPush = (options: { redis: RedisClient; prefix: string; everyMs: number; logger: Logger }): MetricsPush => {
  const key = metricsHashKey(options.prefix);
  const push = async () => {
    const entry: PushedEntry = { at: Date.now(), metrics: await processRegistry.getMetricsAsJSON() };
    await options.redis.hset(key, processInstanceId, JSON.stringify(entry));
  };
  const tick = () => push().catch((error: unknown) => options.logger.debug({ err: error }, "metrics push failed"));
  const timer = setInterval(tick, options.everyMs);
  timer.unref();
  void tick();
  return {
    stop: async () => {
      clearInterval(timer);
      await push().catch(() => undefined);
    },
  };
};

// Every other process's fresh entry; stale ones are removed on the way.
export const readPushedMetrics = async (redis: RedisClient, prefix: string, staleAfterMs: number): Promise<MetricsJson[]> => {
  const key = metricsHashKey(prefix);
  const entries = await redis.hgetall(key);
  const fresh: MetricsJson[] = [];
  const stale: string[] = [];
  for (const [instance, raw] of Object.entries(entries)) {
    if (instance === processInstanceId) continue;
    try {
      const entry = JSON.parse(raw) as PushedEntry;
      if (Date.now() - entry.at > staleAfterMs) stale.push(instance);
      else fresh.push(entry.metrics);
    } catch {
      stale.push(instance);
    }
  }
  if (stale.length > 0) await redis.hdel(key, ...stale);
  return fresh;
};
