import { createHash } from "node:crypto";
import type { components } from "../client/openapi-types.ts";
import { answerOf, apiClient, type ApiTarget } from "./api-client.ts";
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

// What POST /v1/batches answers: a created batch (201), or what a dry run found (200).
export type BatchAnswer = components["schemas"]["BatchCreated"] | components["schemas"]["BatchDryRun"];

type Intake = Pick<components["schemas"]["BatchIntake"], "rejected" | "errors">;

export type Rejection = { line: number; label: string | undefined; reason: string };

// The API lists refused items as {line, field, message} (one entry per problem), under `intake` for a
// created batch and at the top for a dry run; shown once per line with the input's own name for it.
export const rejectionsIn = (answer: { intake: Intake } | Intake, labels: string[]): Rejection[] => {
  const errors = "intake" in answer ? answer.intake.errors : answer.errors;
  const byLine = new Map<number, string[]>();
  for (const e of errors) byLine.set(e.line, [...(byLine.get(e.line) ?? []), e.field ? `${e.field}: ${e.message}` : e.message]);
  return [...byLine].map(([line, reasons]) => ({ line, label: labels[line - 1], reason: reasons.join("; ") }));
};

export const rejectedCountIn = (answer: { intake: Intake } | Intake): number => ("intake" in answer ? answer.intake.rejected : answer.rejected);

export const postBatch = async (target: ApiTarget, source: InputSource, query: URLSearchParams, idempotencyKey: string | undefined) => {
  let replayed = false;
  const body: BatchAnswer = await answerOf(
    apiClient(target)
      .POST("/v1/batches", {
        params: { header: idempotencyKey ? { "idempotency-key": idempotencyKey } : {} },
        // The query was hashed into the idempotency key as this exact string: send it unchanged.
        querySerializer: () => query.toString(),
        headers: { "content-type": "application/x-ndjson" },
        // openapi-fetch serialises only a defined body; the serialiser ignores it and streams the
        // items as they are read (a request body stream needs duplex: "half").
        body: "",
        bodySerializer: () => uploadStream(source),
        duplex: "half",
      })
      .then((result) => {
        replayed = /^true$/i.test(result.response.headers.get("idempotent-replayed") ?? "");
        return result;
      }),
  );
  return { body, replayed };
};
