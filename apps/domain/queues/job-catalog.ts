import type { JobsOptions } from "bullmq";
import { z } from "zod";

const taskRef = z.object({ taskId: z.uuid() });

// A task's own attempt budget is kept in Postgres; BullMQ's attempts only cover crashes and
// infrastructure errors (Postgres down mid-job) that escape a processor's own handling.
const stageOptions = {
  attempts: 8,
  backoff: { type: "exponential", delay: 1_000 },
  removeOnComplete: { count: 1_000 },
  removeOnFail: { count: 10_000 },
} satisfies JobsOptions;

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

export type JobKind = keyof typeof jobCatalog;
export type JobPayload<K extends JobKind> = z.output<(typeof jobCatalog)[K]["payload"]>;
