import { z } from "zod";
import type { ZodOpenApiHeadersObject, ZodOpenApiResponseObject } from "zod-openapi";

// Pieces several areas' docs share.

export const idempotencyHeaders = z.object({
  "idempotency-key": z
    .string()
    .min(1)
    .max(255)
    .optional()
    .meta({ description: "The same key and body answers the first answer again (Idempotent-Replayed: true); another body is a 422; a key still in flight a 409" }),
});

export const idempotencyReplayHeader: ZodOpenApiHeadersObject = {
  "idempotent-replayed": { schema: { type: "string", enum: ["true"] }, description: "Present when this is a replay of the key's first answer" },
  "replayed-by": {
    schema: { type: "string", enum: ["window"] },
    description: "window: an identical create without external_task_id within the account's replay window answered the first task (a heuristic, off by default; docs/money.md)",
  },
};

// Server-Sent Events: frames as `id:`/`event:`/`data:` lines; described in words, the data by schema name.
export const sse = (description: string): ZodOpenApiResponseObject => ({
  description,
  content: { "text/event-stream": { schema: { type: "string" } } },
});
