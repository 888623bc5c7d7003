import { z } from "zod";

// Kling's wire shapes (KLING.md), which every family speaks (CometAPI wraps Kling's; the simulator
// imitates it). Read by the families' adapters; the simulator answers in them and the drop-in API
// (a drop-in for Kling) shows its statuses in Kling's words.

export const klingTaskStatuses = ["submitted", "processing", "succeed", "failed"] as const;
export const klingTaskStatusSchema = z.enum(klingTaskStatuses);
export type KlingTaskStatus = z.infer<typeof klingTaskStatusSchema>;

// Timestamps are Unix milliseconds; some wrappers send them as strings. Stored as a bigint, so a
// fraction is dropped and what no bigint column holds (negative, past 2^53) is refused here rather
// than failing the write (a callback that can never be applied was answered 503, retried forever).
const millis = z
  .union([z.number(), z.string().regex(/^\d+$/).transform(Number)])
  .transform(Math.trunc)
  .pipe(z.number().min(0).max(Number.MAX_SAFE_INTEGER));

// The provider's words end up in Postgres text, which holds no U+0000 and no lone surrogate: a
// message carrying either is cleaned, whether it came by callback or by poll, instead of failing
// every write of it (a task that could never be moved on). Identifiers with them are refused.
const providerText = z.string().transform((text) => text.replaceAll("\u0000", "").toWellFormed());
const providerId = z.string().min(1).refine((id) => !id.includes("\u0000") && id.isWellFormed(), { error: "must be storable text" });

// `index` goes to a 32-bit column; the provider's are 0..8.
export const klingImageSchema = z.object({ index: z.number().int().min(0).max(2_147_483_647), url: providerId }).loose();

export const klingTaskSchema = z
  .object({
    task_id: z.union([providerId, z.number().transform(String)]),
    task_status: klingTaskStatusSchema,
    task_status_msg: providerText.nullish(),
    task_info: z.object({ external_task_id: z.string().nullish() }).loose().nullish(),
    created_at: millis.optional(),
    updated_at: millis.optional(),
    final_unit_deduction: z.union([providerText, z.number().transform(String)]).nullish(),
    task_result: z.object({ images: z.array(klingImageSchema).nullish() }).loose().nullish(),
  })
  .loose();

export type KlingTask = z.infer<typeof klingTaskSchema>;

export const klingEnvelopeSchema = <T extends z.ZodType>(data: T) =>
  z.object({ code: z.number(), message: z.string().optional(), request_id: z.string().optional(), data }).loose();

export const klingErrorBodySchema = z
  .object({ code: z.number().nullable(), message: z.string().optional(), request_id: z.string().optional() })
  .loose();

export type KlingErrorBody = z.infer<typeof klingErrorBodySchema>;
