import { createHash } from "node:crypto";
import { z } from "zod";
import { apiFetch, type ApiTarget } from "./api-client.ts";
import { readItems, type InputSource } from "./input-items.ts";

// Batch-level defaults and fields, sent as query parameters of the streamed upload (the provider's
// field names); every item may override a default.
export type BatchOptions = {
  up?: number;
  down?: number;
  left?: number;
  right?: number;
  prompt?: string;
  n?: number;
  name?: string;
  callbackUrl?: string;
};

export const batchQuery = (options: BatchOptions, extra: Record<string, string> = {}) => {
  const query = new URLSearchParams();
  const set = (key: string, value: string | number | undefined) => value !== undefined && query.set(key, String(value));
  set("name", options.name);
  set("callback_url", options.callbackUrl);
  set("up_expansion_ratio", options.up);
  set("down_expansion_ratio", options.down);
  set("left_expansion_ratio", options.left);
  set("right_expansion_ratio", options.right);
  set("prompt", options.prompt);
  set("n", options.n);
  for (const [k, v] of Object.entries(extra)) query.set(k, v);
  return query;
};

const lineOf = (item: Record<string, unknown>) => `${JSON.stringify(item)}\n`;

// The key is the hash of exactly what would be uploaded (the options and every line, images
// included), so running the same submit again replays the first batch instead of creating another.
export const scanInput = async (source: InputSource, query: URLSearchParams) => {
  const hash = createHash("sha256").update(`v1\n${query.toString()}\n`);
  const labels: string[] = [];
  for await (const { item, label } of readItems(source)) {
    hash.update(lineOf(item));
    labels.push(label);
  }
  return { idempotencyKey: `kling-expand-${hash.digest("hex")}`, labels };
};

const uploadStream = (source: InputSource) => {
  const items = readItems(source);
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await items.next();
      if (next.done) controller.close();
      else controller.enqueue(Buffer.from(lineOf(next.value.item)));
    },
    async cancel() {
      await items.return(undefined);
    },
  });
};

const rejectedSchema = z.array(
  z.looseObject({
    line: z.number(),
    errors: z.array(z.looseObject({ field: z.string().optional(), message: z.string() })).optional(),
    message: z.string().optional(),
    reason: z.string().optional(),
  }),
);

export const submittedSchema = z.looseObject({ id: z.string().optional(), batch_id: z.string().optional() });

export type Rejection = { line: number; label: string | undefined; reason: string };

// Rejected items, wherever the answer lists them, with the input's own name for each line.
export const rejectionsIn = (answer: Record<string, unknown>, labels: string[]): Rejection[] => {
  const list = [answer.rejected, answer.rejected_items, answer.errors, answer.invalid_items].find((v) => Array.isArray(v));
  const parsed = rejectedSchema.safeParse(list ?? []);
  if (!parsed.success) return [];
  return parsed.data.map((r) => ({
    line: r.line,
    label: labels[r.line - 1],
    reason: r.errors?.map((e) => (e.field ? `${e.field}: ${e.message}` : e.message)).join("; ") ?? r.message ?? r.reason ?? "refused",
  }));
};

export const postBatch = async (target: ApiTarget, source: InputSource, query: URLSearchParams, idempotencyKey: string | undefined) => {
  const headers: Record<string, string> = { "content-type": "application/x-ndjson" };
  if (idempotencyKey) headers["idempotency-key"] = idempotencyKey;
  const response = await apiFetch(target, `/v1/batches?${query.toString()}`, {
    method: "POST",
    headers,
    body: uploadStream(source),
    duplex: "half",
  });
  const body = (await response.json()) as Record<string, unknown>;
  return { body, replayed: /^true$/i.test(response.headers.get("idempotent-replayed") ?? "") };
};
