import type { Queue } from "bullmq";
import type { RedisClient } from "../../domain/queues/redis-connection.ts";
import { AggregatorRegistry, Gauge, Registry } from "prom-client";
import { withTimeout } from "../../domain/async/with-timeout.ts";
import type { Db } from "../../domain/db/database.ts";
import { readPushedMetrics } from "../../domain/metrics/metrics-push.ts";
import { processRegistry } from "../../domain/metrics/metrics.ts";
import type { ProviderRouteSet } from "../../domain/provider-capacity/provider-route-set.ts";
import { jobCatalog, type JobKind } from "../../domain/queues/job-catalog.ts";
import { nonTerminalStatuses } from "../../domain/task/task-status.ts";
import { routeCredits } from "../../domain/credits/credit-totals.ts";

export type MetricsScrapeDeps = {
  db: Db;
  redis: RedisClient;
  prefix: string;
  queue: (kind: JobKind) => Queue;
  // One set of gauges per provider route (PROVIDER_ROUTES: a bounded, configured list).
  providerRoutes: ProviderRouteSet;
  // A worker's pushed entry older than this is dropped (a few push intervals).
  staleAfterMs: number;
  timeoutMs: number;
};

const jobStates = ["waiting", "prioritized", "active", "delayed", "failed", "completed"] as const;
const gateModes = ["closed", "open", "paused"] as const;

// Gauges read at scrape time: a bounded handful of reads (one grouped count over the active tasks,
// which an index on status serves; a few Redis commands per queue), each with a deadline. A source
// that does not answer is reported as kling_scrape_source_up 0 and its gauges are left out, so a
// scrape never fails as a whole.
const scrapeGauges = async (deps: MetricsScrapeDeps): Promise<Registry> => {
  const registry = new Registry();
  const gauge = (name: string, help: string, labelNames: string[] = []) => new Gauge({ name, help, labelNames, registers: [registry] });
  const up = gauge("kling_scrape_source_up", "Whether a source read at scrape time answered (postgres, redis, provider)", ["source"]);
  const read = async <T>(source: string, work: () => Promise<T>): Promise<T | undefined> => {
    try {
      const value = await withTimeout(work(), deps.timeoutMs, `metrics ${source}`);
      up.set({ source }, 1);
      return value;
    } catch {
      up.set({ source }, 0);
      return undefined;
    }
  };
  const [active, queueCounts, provider, credits] = await Promise.all([
    read("postgres", () =>
      deps.db
        .selectFrom("task")
        .select((eb) => ["status", eb.fn.countAll<string>().as("count")])
        .where("status", "in", nonTerminalStatuses)
        .groupBy("status")
        .execute(),
    ),
    read("redis", () => Promise.all((Object.keys(jobCatalog) as JobKind[]).map(async (kind) => ({ kind, counts: await deps.queue(kind).getJobCounts(...jobStates) })))),
    read("provider", () =>
      Promise.all(deps.providerRoutes.all.map(async (r) => ({ route: r.route.name, gate: await r.gate.state(), slots: await r.slots.snapshot() }))),
    ),
    read("ledger", () => routeCredits(deps.db)),
  ]);
  if (active) {
    const tasks = gauge("kling_tasks_active", "Tasks not yet final, by status (final ones: kling_tasks_finished_total)", ["status"]);
    for (const status of nonTerminalStatuses) tasks.set({ status }, Number(active.find((r) => r.status === status)?.count ?? 0));
  }
  if (queueCounts) {
    const depth = gauge("kling_queue_jobs", "BullMQ jobs per queue and state", ["queue", "state"]);
    for (const { kind, counts } of queueCounts) for (const state of jobStates) depth.set({ queue: jobCatalog[kind].queue, state }, counts[state] ?? 0);
  }
  if (provider) {
    const mode = gauge("kling_provider_gate", "Each provider route's gate: 1 for the current mode (closed = normal, open = circuit open, paused = account paused)", ["route", "mode"]);
    const capacity = gauge("kling_provider_slots_capacity", "Provider slots configured per route (PROVIDER_CAPACITY or PROVIDER_ROUTES)", ["route"]);
    const effective = gauge("kling_provider_slots_effective", "Provider slots usable now per route (lowered after 1303s, recovering over time)", ["route"]);
    const inUse = gauge("kling_provider_slots_in_use", "Provider slots held by tasks at the provider, per route", ["route"]);
    for (const { route, gate, slots } of provider) {
      for (const m of gateModes) mode.set({ route, mode: m }, gate.mode === m ? 1 : 0);
      capacity.set({ route }, slots.capacity);
      effective.set({ route }, slots.effective);
      inUse.set({ route }, slots.used);
    }
  }
  if (credits) {
    // From the credit ledger, every account: held by unfinished tasks, and charged so far (all time).
    const reserved = gauge("kling_credits_reserved", "Credits held by unfinished tasks, by the route running them (none: not yet taken by a route)", ["route"]);
    const settled = gauge("kling_credits_settled", "Credits charged by the provider (settled in the ledger), by route, all time", ["route"]);
    for (const r of credits) {
      reserved.set({ route: r.route ?? "none" }, r.reserved);
      settled.set({ route: r.route ?? "none" }, r.spent);
    }
  }
  return registry;
};

// /metrics: this process's counters and histograms, every worker's pushed ones (summed), and the
// scrape-time gauges.
export const createMetricsScrape = (deps: MetricsScrapeDeps) => {
  return async (): Promise<{ contentType: string; body: string }> => {
    const [own, pushed, gauges] = await Promise.all([
      processRegistry.getMetricsAsJSON(),
      withTimeout(readPushedMetrics(deps.redis, deps.prefix, deps.staleAfterMs), deps.timeoutMs, "metrics push").catch(() => []),
      scrapeGauges(deps),
    ]);
    const summed = AggregatorRegistry.aggregate<typeof gauges.contentType>([own, ...pushed]);
    const merged = Registry.merge([summed, gauges]);
    return { contentType: merged.contentType, body: await merged.metrics() };
  };
};
