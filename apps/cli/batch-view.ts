import { z } from "zod";

// The parts of GET /v1/batches/{id} the CLI shows. Lenient on purpose: a newer API may add fields,
// and a field the CLI does not know is ignored rather than fatal.
export const batchViewSchema = z.looseObject({
  id: z.string(),
  name: z.string().nullish(),
  status: z.string(),
  counts: z.record(z.string(), z.number()).default({}),
  total: z.number().optional(),
  percent: z.number().nullish(),
  eta_seconds: z.number().nullish(),
  throughput_per_second: z.number().nullish(),
  credits_spent: z.number().nullish(),
  created_at: z.string().nullish(),
  finished_at: z.string().nullish(),
  items: z.looseObject({ accepted: z.number().nullish(), rejected: z.number().nullish() }).nullish(),
});

export type BatchView = z.output<typeof batchViewSchema>;

export const endStatuses = new Set(["completed", "completed_with_errors", "canceled"]);

export const isFinished = (batch: BatchView) => endStatuses.has(batch.status);

// Task statuses grouped the way a person follows a batch.
export const statusGroups = [
  { label: "queued", statuses: ["queued"], color: 90 },
  { label: "in flight", statuses: ["submitting", "submitted", "processing", "archiving"], color: 36 },
  { label: "succeeded", statuses: ["succeeded"], color: 32 },
  { label: "failed", statuses: ["failed"], color: 31 },
  { label: "canceled", statuses: ["canceled"], color: 33 },
] as const;

export const totalOf = (batch: BatchView) => batch.total ?? Object.values(batch.counts).reduce((a, b) => a + b, 0);

export const groupCount = (batch: BatchView, statuses: readonly string[]) => statuses.reduce((sum, s) => sum + (batch.counts[s] ?? 0), 0);

export const batchHadFailures = (batch: BatchView) =>
  batch.status !== "completed" || (batch.counts.failed ?? 0) > 0 || (batch.counts.canceled ?? 0) > 0 || (batch.items?.rejected ?? 0) > 0;

// From creation to the end, as the API recorded it (not how long this process watched).
export const runSeconds = (batch: BatchView, nowMs = Date.now()) => {
  const start = batch.created_at ? Date.parse(batch.created_at) : NaN;
  const end = batch.finished_at ? Date.parse(batch.finished_at) : nowMs;
  return Number.isFinite(start) ? Math.max(0, (end - start) / 1000) : undefined;
};
