import { z } from "zod";
import { areaFactor, codePointsAtMost, expandLimits } from "./expand-limits.ts";

const L = expandLimits;

// A field's type error says what the field wants, never zod's own wording; a field left out (or
// null, which provider clients send for "not given") says it is required.
const wants = (description: string) => (issue: { input?: unknown }) =>
  issue.input === undefined || issue.input === null ? `is required: ${description}` : `must be ${description}`;

const ratioWanted = `a number from ${L.minRatio} to ${L.maxRatio}`;
const ratio = () =>
  z
    .number({ error: wants(ratioWanted) })
    .min(L.minRatio, { error: `must be between ${L.minRatio} and ${L.maxRatio}` })
    .max(L.maxRatio, { error: `must be between ${L.minRatio} and ${L.maxRatio}` });

// The seed documents `n` as a string; both "3" and 3 are taken.
const imageCount = z
  .union([z.number(), z.string().regex(/^\s*\d+\s*$/, { error: "must be a whole number" }).transform(Number)], {
    error: `must be a whole number from ${L.minImages} to ${L.maxImages}`,
  })
  .pipe(
    z
      .number()
      .int({ error: "must be a whole number" })
      .min(L.minImages, { error: `must be from ${L.minImages} to ${L.maxImages}` })
      .max(L.maxImages, { error: `must be from ${L.minImages} to ${L.maxImages}` }),
  );

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

// Postgres text cannot hold U+0000, and a lone surrogate is not valid UTF-8: refused here with the
// field's name rather than failing later as a server error.
const storable = (s: string) => !s.includes("\u0000") && s.isWellFormed();
const storableMessage = "must not contain NUL characters or unpaired UTF-16 surrogates";

export type ImageReference = { kind: "url"; url: string } | { kind: "base64"; data: string };

const imageReference = z
  .string({ error: (issue) => (issue.input === undefined || issue.input === null ? "is required: an http(s) URL or raw Base64" : "must be a string: an http(s) URL or raw Base64") })
  .min(1, { error: "is required: an http(s) URL or raw Base64" })
  .transform((value, ctx): ImageReference => {
    const trimmed = value.trim();
    if (/^data:/i.test(trimmed)) {
      ctx.addIssue({ code: "custom", message: "must be raw Base64 without a data: prefix (remove 'data:...;base64,')" });
      return z.NEVER;
    }
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed)) {
      if (!storable(trimmed)) {
        ctx.addIssue({ code: "custom", message: storableMessage });
        return z.NEVER;
      }
      let url: URL;
      try {
        url = new URL(trimmed);
      } catch {
        ctx.addIssue({ code: "custom", message: "is not a valid URL" });
        return z.NEVER;
      }
      if (url.protocol !== "http:" && url.protocol !== "https:") {
        ctx.addIssue({ code: "custom", message: "URL must use http or https" });
        return z.NEVER;
      }
      return { kind: "url", url: url.toString() };
    }
    const compact = trimmed.replace(/\s+/g, "");
    if (compact.length % 4 !== 0 || !BASE64.test(compact)) {
      ctx.addIssue({ code: "custom", message: "must be an http(s) URL or raw Base64 (invalid Base64 characters or length)" });
      return z.NEVER;
    }
    // Checked before decoding, so a huge body is refused without allocating the image.
    const decodedBytes = (compact.length / 4) * 3 - (compact.endsWith("==") ? 2 : compact.endsWith("=") ? 1 : 0);
    if (decodedBytes > L.maxImageBytes) {
      ctx.addIssue({ code: "custom", message: `image is ${decodedBytes} bytes; the limit is ${L.maxImageBytes} bytes (10 MB)` });
      return z.NEVER;
    }
    return { kind: "base64", data: compact };
  });

// Longer URLs are refused by many servers and proxies; a callback address has no need for more.
export const CALLBACK_URL_MAX_CHARS = 2048;

const callbackUrl = z
  .string({ error: "must be a string: an http(s) URL" })
  .max(CALLBACK_URL_MAX_CHARS, { error: `must be at most ${CALLBACK_URL_MAX_CHARS} characters` })
  .refine(storable, { error: storableMessage })
  .refine(
    (v) => {
      try {
        const u = new URL(v);
        return u.protocol === "http:" || u.protocol === "https:";
      } catch {
        return false;
      }
    },
    { error: "must be an http(s) URL" },
  );

// The provider's create body; both spellings of the downward ratio are accepted (KLING.md).
// Optional fields take null as "not given" (.nullish): the provider's clients send it.
export const expandRequestBodySchema = z
  .object(
    {
      image: imageReference,
      up_expansion_ratio: ratio(),
      down_expansion_ratio: ratio().nullish(),
      bottom_expansion_ratio: ratio().nullish(),
      left_expansion_ratio: ratio(),
      right_expansion_ratio: ratio(),
      prompt: z
        .string({ error: "must be a string" })
        .refine(storable, { error: storableMessage })
        .refine((p) => codePointsAtMost(p, L.maxPromptChars), { error: `must be at most ${L.maxPromptChars} characters` })
        .nullish(),
      n: imageCount.nullish(),
      watermark_info: z
        .object({ enabled: z.boolean({ error: "must be true or false" }) }, { error: "must be an object {enabled: true or false}" })
        .nullish(),
      callback_url: callbackUrl.nullish(),
      external_task_id: z
        .string({ error: "must be a string" })
        .refine(storable, { error: storableMessage })
        .min(1, { error: "must not be empty" })
        .max(L.maxExternalTaskIdChars, { error: `must be at most ${L.maxExternalTaskIdChars} characters` })
        .nullish(),
    },
    { error: "must be a JSON object" },
  )
  // The down ratio has two spellings, one of them required: what the check below enforces, as
  // JSON Schema can say it (OpenAPI readers and generated clients see it).
  .meta({ anyOf: [{ required: ["down_expansion_ratio"] }, { required: ["bottom_expansion_ratio"] }] })
  .superRefine((body, ctx) => {
    const down = body.down_expansion_ratio ?? undefined;
    const bottom = body.bottom_expansion_ratio ?? undefined;
    if (down === undefined && bottom === undefined) {
      ctx.addIssue({ code: "custom", path: ["down_expansion_ratio"], message: `is required: ${ratioWanted} (bottom_expansion_ratio is accepted too)` });
      return;
    }
    if (down !== undefined && bottom !== undefined && down !== bottom) {
      ctx.addIssue({ code: "custom", path: ["bottom_expansion_ratio"], message: "differs from down_expansion_ratio; give one of them" });
      return;
    }
    const factor = areaFactor({
      up: body.up_expansion_ratio,
      down: (down ?? bottom) as number,
      left: body.left_expansion_ratio,
      right: body.right_expansion_ratio,
    });
    // A hair of tolerance so that decimal inputs such as 0.1 land on the side the caller meant.
    if (factor > L.maxAreaFactor + 1e-9) {
      ctx.addIssue({
        code: "custom",
        path: ["expansion"],
        message: `(1+up+down)*(1+left+right) is ${Number(factor.toPrecision(12))}; the expanded area may be at most ${L.maxAreaFactor}x the original`,
      });
    }
  })
  .transform((body) => ({
    image: body.image,
    ratios: {
      up: body.up_expansion_ratio,
      down: (body.down_expansion_ratio ?? body.bottom_expansion_ratio) as number,
      left: body.left_expansion_ratio,
      right: body.right_expansion_ratio,
    },
    prompt: body.prompt ?? undefined,
    n: body.n ?? 1,
    watermark: body.watermark_info?.enabled,
    callbackUrl: body.callback_url ?? undefined,
    externalTaskId: body.external_task_id ?? undefined,
  }));

// A batch item's null is a field left out too, so the batch's default applies to it.
export const withoutNulls = (item: Record<string, unknown>): Record<string, unknown> =>
  Object.fromEntries(Object.entries(item).filter(([, value]) => value !== null));

export type ExpandRequest = z.output<typeof expandRequestBodySchema>;

// zod issues -> "field: reason" pairs that both the problem-details and the provider-shaped errors use.
// `whole`: what an issue about the whole input names (a body, or a query string).
export const toFieldViolations = (error: z.ZodError, whole: "body" | "query" = "body") =>
  error.issues.map((issue) => ({
    field: issue.path.length > 0 ? issue.path.join(".") : whole,
    message: issue.message,
  }));
