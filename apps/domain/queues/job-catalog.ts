import type { JobsOptions } from "bullmq";
import { z } from "zod";

const taskRef = z.object({ taskId: z.uuid() });

// A task's own attempt budget is kept in Postgres; BullMQ's attempts only cover crashes and
// infrastructure errors (Postgres down mid-job) that escape a processor's own handling.
// A finished job is a Redis hash (with its data and result) that nothing needs once its task moved
// on: the sweeper re-adds a job it finds missing just as one it finds completed. So they are kept
// by count (QUEUE_KEEP_COMPLETED, for the queue board) and by age, and Redis does not grow with the
// tasks that passed. BullMQ prunes a queue's finished jobs as its next job finishes. Failed jobs are
// kept longer: a poison job's failure is what the sweeper reads to fail its task (worker.server.ts).
export const KEEP_COMPLETED_S = 3_600;
const KEEP_FAILED_S = 7 * 86_400;
const stageOptions = {
  attempts: 8,
  backoff: { type: "exponential", delay: 1_000 },
  removeOnComplete: { age: KEEP_COMPLETED_S, count: 1_000 },
  removeOnFail: { age: KEEP_FAILED_S, count: 10_000 },
} satisfies JobsOptions;

// The options a producer adds a task stage's job with, under its QUEUE_KEEP_COMPLETED.
export const stageJobOptions = <K extends "source" | "submit" | "archive">(kind: K, keepCompleted: number): JobsOptions => ({
  ...jobCatalog[kind].options,
  removeOnComplete: { age: KEEP_COMPLETED_S, count: keepCompleted },
});

// Every queue's job name, payload schema and options in one place: producers and processors import
// the same entry, so a payload can't drift between them. Jobs carry ids; Postgres holds the state.
export const jobCatalog = {
  // A URL image is downloaded and checked before its task is submitted (check-source-image.ts).
  source: {
    queue: "source",
    name: "check-source-image",
    payload: taskRef,
    options: stageOptions,
  },
  submit: {
    queue: "submit",
    name: "submit-task",
    payload: taskRef,
    options: stageOptions,
  },
  archive: {
    queue: "archive",
    name: "archive-task",
    payload: taskRef,
    options: { ...stageOptions, attempts: 6, backoff: { type: "exponential", delay: 2_000 } } satisfies JobsOptions,
  },
  reconcile: {
    queue: "reconcile",
    name: "reconcile-sweep",
    payload: z.object({}),
    options: { removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } } satisfies JobsOptions,
  },
  // Outbound callbacks: one job per attempt of a delivery (jobId: webhook-delivery.store.ts
  // deliveryJobId); the delivery's state and retry schedule live in Postgres, so a failed job is
  // dropped and the sweep finds the delivery again.
  webhook: {
    queue: "webhook",
    name: "deliver-webhook",
    payload: z.object({ deliveryId: z.uuid() }),
    options: { removeOnComplete: true, removeOnFail: true } satisfies JobsOptions,
  },
  webhookSweep: {
    queue: "webhook-sweep",
    name: "webhook-sweep",
    payload: z.object({}),
    options: { removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } } satisfies JobsOptions,
  },
} as const;

export type WebhookJobKind = "webhook" | "webhookSweep";

// The name BullMQ knows a queue by: its own hash tag in braces, so that every key of one queue sits
// in one cluster slot (BullMQ's rule) and the queues spread over a cluster's nodes (a tag in the
// shared prefix would put them all on one). `queue` stays the plain name for metrics and logs.
export const bullQueueName = (kind: JobKind) => `{${jobCatalog[kind].queue}}`;

// A job whose worker died is taken over soon after its lock lapses: BullMQ moves an active job
// without a lock back to wait on the second stall check that finds it (the first marks it), so the
// checks run every few seconds rather than once per lock duration (up to two lock durations of a
// dead worker's job sitting "active"). A check is one script call per queue, taken by one worker.
export const workerLockOptions = (env: { JOB_LOCK_MS: number; JOB_MAX_CRASHES: number }) => ({
  lockDuration: env.JOB_LOCK_MS,
  stalledInterval: Math.max(500, Math.min(5_000, Math.round(env.JOB_LOCK_MS / 6))),
  // BullMQ fails a job once it has stalled more than this many times.
  maxStalledCount: env.JOB_MAX_CRASHES - 1,
});

export type JobKind = keyof typeof jobCatalog;
export type JobPayload<K extends JobKind> = z.output<(typeof jobCatalog)[K]["payload"]>;
