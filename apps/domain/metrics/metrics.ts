import { randomUUID } from "node:crypto";
import { Counter, Histogram, Registry } from "prom-client";

// The counters and histograms a process keeps in memory (one registry per process). The API serves
// them at /metrics beside what each worker pushes to Redis (metrics-push.ts) and the gauges read at
// scrape time (apps/api/metrics/scrape-metrics.ts). Labels are bounded sets, never task ids.
export const processRegistry = new Registry();

// Tells this process's own pushed copy apart from other processes' (tests run an API and workers in
// one process, which must not be counted twice).
export const processInstanceId = randomUUID();

const durationBuckets = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

export const metrics = {
  tasksAccepted: new Counter({
    name: "kling_tasks_accepted_total",
    help: "Tasks accepted at intake (a replayed create is not counted), by image kind",
    labelNames: ["image"] as const,
    registers: [processRegistry],
  }),
  tasksFinished: new Counter({
    name: "kling_tasks_finished_total",
    help: "Tasks that reached a final status, by status",
    labelNames: ["status"] as const,
    registers: [processRegistry],
  }),
  taskDuration: new Histogram({
    name: "kling_task_duration_seconds",
    help: "From intake to a final status, by final status",
    labelNames: ["status"] as const,
    buckets: durationBuckets,
    registers: [processRegistry],
  }),
  stageDuration: new Histogram({
    name: "kling_task_stage_duration_seconds",
    help: "Time spent per stage: queued (intake to accepted by the provider), provider (accepted to results reported), archiving (results reported to stored)",
    labelNames: ["stage"] as const,
    buckets: durationBuckets,
    registers: [processRegistry],
  }),
  providerCalls: new Counter({
    name: "kling_provider_calls_total",
    help: "Calls to the provider by operation and outcome code (0 success, the provider's code, http_<status> without one, network)",
    labelNames: ["operation", "code"] as const,
    registers: [processRegistry],
  }),
  providerParallelLimit: new Counter({
    name: "kling_provider_parallel_limit_total",
    help: "Provider answers 1303 (parallel task limit reached)",
    registers: [processRegistry],
  }),
  jobWait: new Histogram({
    name: "kling_queue_wait_seconds",
    help: "From a job being due to a worker taking it (first run), by queue",
    labelNames: ["queue"] as const,
    buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900],
    registers: [processRegistry],
  }),
  callbacksReceived: new Counter({
    name: "kling_callbacks_received_total",
    help: "Provider callbacks by outcome (applied, duplicate, stale, unknown_task, rejected, unauthenticated, error)",
    labelNames: ["outcome"] as const,
    registers: [processRegistry],
  }),
  // Incremented by the outbound-webhook sender.
  webhookDeliveries: new Counter({
    name: "kling_webhook_deliveries_total",
    help: "Outbound callback delivery attempts by result (succeeded, failed_attempt: tried again later, gave_up: schedule spent, disabled: 410, refused: destination blocked or invalid)",
    labelNames: ["result"] as const,
    registers: [processRegistry],
  }),
  // The API's intake body budget (apps/api/middleware/body-intake.ts): a body refused before it was
  // read (busy: the budget or the account's share is held), or cut off arriving too slowly (408).
  intakeBodiesRefused: new Counter({
    name: "kling_intake_bodies_refused_total",
    help: "Request bodies refused by the intake budget, by reason (busy: 503/429 before reading, the budget or the account's share being full; too_slow: 408, slower than the minimum rate)",
    labelNames: ["reason"] as const,
    registers: [processRegistry],
  }),
  databaseConflictRetries: new Counter({
    name: "kling_database_conflict_retries_total",
    help: "Statements or transactions run again because Postgres undid them for a conflict with a concurrent one (deadlock 40P01, serialization failure 40001)",
    registers: [processRegistry],
  }),
  creditsSpent: new Counter({
    name: "kling_credits_spent_total",
    help: "Provider credits (final_unit_deduction) of tasks that reached a final status",
    registers: [processRegistry],
  }),
};

// Provider codes are integers the provider chooses: anything outside its documented ranges is
// folded into "other" so a misbehaving provider cannot grow the label set.
export const providerCodeLabel = (code: number | undefined, httpStatus: number | undefined): string => {
  if (code !== undefined) return Number.isInteger(code) && code >= 0 && code <= 9999 ? String(code) : "other";
  if (httpStatus === undefined) return "network";
  return httpStatus >= 100 && httpStatus <= 599 ? `http_${httpStatus}` : "other";
};
