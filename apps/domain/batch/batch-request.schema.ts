import { z } from "zod";
import { codePointsAtMost } from "../expand-request/expand-limits.ts";
import { expandRequestBodySchema, toFieldViolations, withoutNulls, type ExpandRequest } from "../expand-request/expand-request.schema.ts";
import type { FieldViolation } from "../errors/app-error.ts";

// The largest JSON-form batch; longer ones stream (NDJSON or CSV).
export const MAX_JSON_ITEMS = 10_000;

const storable = (s: string) => !s.includes("\u0000") && s.isWellFormed();

// What a batch may set for all of its items (each item may override any of them): the provider's
// field names, as in a single create, without the image and the caller's own id.
export const batchDefaultsSchema = z.strictObject(
  {
    up_expansion_ratio: z.unknown().optional(),
    down_expansion_ratio: z.unknown().optional(),
    bottom_expansion_ratio: z.unknown().optional(),
    left_expansion_ratio: z.unknown().optional(),
    right_expansion_ratio: z.unknown().optional(),
    prompt: z.unknown().optional(),
    n: z.unknown().optional(),
    watermark_info: z.unknown().optional(),
    callback_url: z.unknown().optional(),
  },
  { error: (issue) => (issue.code === "unrecognized_keys" ? "names a field that is not a batch default (ratios, prompt, n, watermark_info, callback_url)" : undefined) },
);

export type BatchDefaults = z.output<typeof batchDefaultsSchema>;

const httpUrl = z
  .string({ error: "must be an http(s) URL" })
  .refine(storable, { error: "must not contain NUL characters or unpaired UTF-16 surrogates" })
  .refine((v) => URL.canParse(v) && ["http:", "https:"].includes(new URL(v).protocol), { error: "must be an http(s) URL" });

const batchName = z
  .string({ error: "must be a string" })
  .max(200, { error: "must be at most 200 characters" })
  .refine(storable, { error: "must not contain NUL characters or unpaired UTF-16 surrogates" });

export const batchFieldsSchema = z.object({
  name: batchName.optional(),
  callback_url: httpUrl.optional(),
  defaults: batchDefaultsSchema.default({}),
});

export type BatchFields = z.output<typeof batchFieldsSchema>;

export const jsonBatchBodySchema = batchFieldsSchema.extend({
  items: z
    .array(z.unknown(), { error: "must be an array of items" })
    .min(1, { error: "must hold at least one item" })
    .max(MAX_JSON_ITEMS, { error: `may hold at most ${MAX_JSON_ITEMS} items; stream longer batches as NDJSON or CSV` }),
});

const flag = z.enum(["true", "false", "1", "0"], { error: "must be true or false" }).transform((v) => v === "true" || v === "1");
const queryNumber = z.string().transform((v, ctx) => {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) {
    ctx.addIssue({ code: "custom", message: "must be a number" });
    return z.NEVER;
  }
  return n;
});

// The streamed forms carry the batch's own fields in the query string: name, callback_url and the
// defaults by their provider names (watermark=true for watermark_info.enabled).
export const streamedBatchQueryFieldsSchema = z.strictObject(
  {
    name: batchName.optional(),
    callback_url: httpUrl.optional(),
    atomic: flag.optional(),
    dry_run: flag.optional(),
    up_expansion_ratio: queryNumber.optional(),
    down_expansion_ratio: queryNumber.optional(),
    bottom_expansion_ratio: queryNumber.optional(),
    left_expansion_ratio: queryNumber.optional(),
    right_expansion_ratio: queryNumber.optional(),
    prompt: z.string().optional(),
    n: z.string().optional(),
    watermark: flag.optional(),
    item_callback_url: httpUrl.optional(),
  },
  { error: (issue) => (issue.code === "unrecognized_keys" ? "names a query parameter that batches do not take" : undefined) },
);

export const streamedBatchQuerySchema = streamedBatchQueryFieldsSchema.transform((q) => {
  const { name, callback_url, atomic, dry_run, watermark, item_callback_url, ...rest } = q;
  const defaults: BatchDefaults = Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
  if (watermark !== undefined) defaults.watermark_info = { enabled: watermark };
  if (item_callback_url !== undefined) defaults.callback_url = item_callback_url;
  return { fields: { name, callback_url, defaults } satisfies BatchFields, atomic: atomic ?? false, dryRun: dry_run ?? false };
});

export const MAX_INPUT_NAME_CHARS = 255;

// A batch item's own name for its image (the CLI sends a local file's name): shown as the results
// manifest's `input` for an image that is not a URL, and written into file names by the CLI, so
// it is plain text of one line.
export const inputNameSchema = z
  .string({ error: "must be a string: the image's file name" })
  .min(1, { error: "must not be empty" })
  .refine((v) => codePointsAtMost(v, MAX_INPUT_NAME_CHARS), { error: `must be at most ${MAX_INPUT_NAME_CHARS} characters` })
  .refine((v) => !/[\u0000-\u001f\u007f-\u009f]/.test(v), { error: "must not contain control characters (line breaks, tabs, NUL)" })
  .refine((v) => v.isWellFormed(), { error: "must not contain unpaired UTF-16 surrogates" });

export type ItemCheck = { ok: true; request: ExpandRequest; inputName: string | undefined } | { ok: false; violations: FieldViolation[] };

// An item is validated exactly as a single create is (the same schema), over the batch's defaults.
// An item that names the downward ratio in either spelling replaces both of the defaults'.
export const parseBatchItem = (defaults: BatchDefaults, given: Record<string, unknown>): ItemCheck => {
  const { input_name: inputName, ...item } = withoutNulls(given);
  const name = inputName === undefined ? undefined : inputNameSchema.safeParse(inputName);
  const base: Record<string, unknown> = { ...defaults };
  if ("down_expansion_ratio" in item || "bottom_expansion_ratio" in item) {
    delete base.down_expansion_ratio;
    delete base.bottom_expansion_ratio;
  }
  const parsed = expandRequestBodySchema.safeParse({ ...base, ...item });
  const violations = [
    ...(parsed.success ? [] : toFieldViolations(parsed.error)),
    ...(name && !name.success ? toFieldViolations(name.error).map((v) => ({ ...v, field: v.field === "body" ? "input_name" : `input_name.${v.field}` })) : []),
  ];
  if (!parsed.success || violations.length > 0) return { ok: false, violations };
  return { ok: true, request: parsed.data, inputName: name?.data };
};

// What an item will cost before it runs, in provider credits: the provider charges per image (the
// simulator's final_unit_deduction is n); CREDITS_PER_IMAGE scales it if a contract says otherwise.
export const itemCredits = (n: number, creditsPerImage: number) => n * creditsPerImage;
