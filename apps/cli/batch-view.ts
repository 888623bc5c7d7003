import type { components } from "../client/openapi-types.ts";

// GET /v1/batches/{id} as the API documents it (generated from /openapi.json), narrowed to the parts
// the CLI shows, so the cancel and retry answers (the same batch plus a count) fit too.
export type BatchView = Pick<
  components["schemas"]["BatchOutput"],
  "id" | "name" | "status" | "counts" | "total" | "percent" | "eta_seconds" | "throughput_per_second" | "credits_spent" | "credits_reserved" | "created_at" | "finished_at" | "items"
>;

export const endStatuses = new Set<BatchView["status"]>(["completed", "completed_with_errors", "canceled"]);

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
