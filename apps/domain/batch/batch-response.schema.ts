import { z } from "zod";
import { nativeTaskSchema, nullableIso } from "../task/task-response.schema.ts";
import { taskStatuses } from "../task/task-status.ts";

// What the batch routes (and batch.* callbacks) answer, as zod: batch.presenter.ts is typed
// against these, and the OpenAPI document is generated from them (apps/api/openapi/).

export const batchStatuses = ["receiving", "running", "completed", "completed_with_errors", "canceled"] as const;

export const batchViewSchema = z
  .object({
    id: z.uuid(),
    name: z.string().nullable(),
    status: z.enum(batchStatuses),
    source: z.string().meta({ description: "json, ndjson or csv: the form the batch was sent in" }),
    upload: z.enum(["receiving", "complete", "broken_off"]).meta({ description: "broken_off: the upload stopped part-way (the client broke off, the batch was canceled while receiving, or the API reading it died and its lease lapsed); the batch holds exactly its committed lines" }),
    callback_url: z.string().nullable(),
    defaults: z.unknown().meta({ description: "The batch's defaults, by the provider's field names" }),
    items: z.object({ accepted: z.int(), rejected: z.int(), lines_read: z.int() }),
    counts: z.record(z.enum(taskStatuses), z.int()).meta({ description: "Tasks by status" }),
    total: z.int(),
    finished: z.int(),
    percent: z.number(),
    credits_spent: z.number().meta({ description: "Credits the provider charged for the batch's ended tasks (the credit ledger)" }),
    credits_reserved: z.number().meta({ description: "Credits held for the batch's unfinished tasks until they end" }),
    throughput_per_second: z.number().nullable(),
    eta_seconds: z.number().nullable(),
    created_at: nullableIso,
    received_at: nullableIso,
    first_submitted_at: nullableIso,
    last_finished_at: nullableIso,
    canceled_at: nullableIso,
    finished_at: nullableIso,
  })
  .meta({ id: "Batch" });

export type BatchView = z.infer<typeof batchViewSchema>;

export const batchLineErrorSchema = z.object({ line: z.int(), field: z.string(), message: z.string() });

export const batchIntakeSchema = z
  .object({
    accepted: z.int(),
    rejected: z.int(),
    credits: z.number(),
    errors: z.array(batchLineErrorSchema).meta({ description: "The first 1,000 field errors, by line" }),
    errors_truncated: z.boolean(),
    spend_cap_reached: z.boolean(),
  })
  .meta({ id: "BatchIntake" });

export type BatchIntakeView = z.infer<typeof batchIntakeSchema>;

export const batchCreatedSchema = batchViewSchema.extend({ intake: batchIntakeSchema }).meta({ id: "BatchCreated" });

export const batchDryRunSchema = batchIntakeSchema
  .extend({
    dry_run: z.literal(true),
    items: z.int(),
    images: z.int(),
    estimated_duration_seconds: z.number(),
    capacity: z.object({ provider_slots: z.int(), run_time_ms: z.number(), run_time_observed: z.boolean(), backlog_images: z.number() }),
    spend_cap: z.object({ cap: z.number(), spent: z.number(), committed: z.number(), would_exceed: z.boolean() }).nullable(),
  })
  .meta({ id: "BatchDryRun" });

export const batchPageSchema = z.object({ data: z.array(batchViewSchema), next_cursor: z.uuid().nullable() }).meta({ id: "BatchPage" });

export const batchTaskPageSchema = z
  .object({ data: z.array(nativeTaskSchema.extend({
        batch_line: z.int().nullable(),
        input_name: z.string().nullable().meta({ description: "The item's input_name as given (a local image's file name), or null" }),
      }),), next_cursor: z.uuid().nullable() })
  .meta({ id: "BatchTaskPage" });

export const batchCanceledSchema = batchViewSchema.extend({ canceled_now: z.int() }).meta({ id: "BatchCanceled" });
export const batchRetriedSchema = batchViewSchema.extend({ retried: z.int() }).meta({ id: "BatchRetried" });
