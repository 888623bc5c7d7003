import { redactNullableUrl, redactUrl } from "../http/redact-url.ts";
import type { BatchProgress } from "./batch-progress.ts";
import type { BatchIntakeResult } from "./batch-intake.ts";
import type { BatchIntakeView, BatchView } from "./batch-response.schema.ts";
import type { BatchPlan } from "./plan-batch.ts";

const iso = (d: Date | null) => (d ? d.toISOString() : null);

// The query layer's camel-casing reaches into jsonb values too: the defaults go back to the
// provider's field names.
const snakeKeys = (value: unknown): unknown =>
  typeof value === "object" && value !== null && !Array.isArray(value)
    ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), snakeKeys(v)]))
    : value;

// The items' callback_url among the defaults: its credentials are not shown back either.
const withRedactedCallback = (defaults: unknown): unknown =>
  typeof defaults === "object" && defaults !== null && typeof (defaults as { callback_url?: unknown }).callback_url === "string"
    ? { ...defaults, callback_url: redactUrl((defaults as { callback_url: string }).callback_url) }
    : defaults;

export const toBatchView = (p: BatchProgress): BatchView => ({
  id: p.batch.id,
  name: p.batch.name,
  status: p.status,
  source: p.batch.source,
  upload: p.batch.upload,
  callback_url: redactNullableUrl(p.batch.callbackUrl),
  defaults: withRedactedCallback(snakeKeys(p.batch.defaults)),
  items: { accepted: p.batch.acceptedItems, rejected: p.batch.rejectedItems, lines_read: p.batch.linesRead },
  counts: p.counts,
  total: p.total,
  finished: p.finished,
  percent: p.percent,
  credits_spent: p.creditsSpent,
  credits_reserved: p.creditsReserved,
  throughput_per_second: p.throughputPerSecond,
  eta_seconds: p.etaSeconds,
  created_at: iso(p.batch.createdAt),
  received_at: iso(p.batch.receivedAt),
  first_submitted_at: iso(p.firstSubmittedAt),
  last_finished_at: iso(p.lastFinishedAt),
  canceled_at: iso(p.batch.canceledAt),
  finished_at: iso(p.batch.finishedAt),
});

export const toIntakeView = (r: BatchIntakeResult): BatchIntakeView => ({
  accepted: r.accepted,
  rejected: r.rejected,
  credits: r.credits,
  errors: r.errors,
  errors_truncated: r.errorsTruncated,
  spend_cap_reached: r.spendCapReached,
});

// As batchDryRunSchema, but for estimated_duration_seconds: null when no route has a slot.
export const toDryRunView = (r: BatchIntakeResult, plan: BatchPlan) => ({
  dry_run: true as const,
  items: r.accepted,
  ...toIntakeView(r),
  images: r.images,
  estimated_duration_seconds: plan.estimatedDurationSeconds,
  capacity: { provider_slots: plan.providerSlots, run_time_ms: plan.runTimeMs, run_time_observed: plan.runTimeObserved, backlog_images: plan.backlogImages },
  spend_cap: plan.spendCap === undefined ? null : { cap: plan.spendCap.cap, spent: plan.spendCap.spent, committed: plan.spendCap.committed, would_exceed: plan.spendCap.wouldExceed },
});
