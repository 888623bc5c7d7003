import { z } from "zod";
import { jsonBatchBodySchema, streamedBatchQueryFieldsSchema } from "../../../domain/batch/batch-request.schema.ts";
import {
  batchCanceledSchema,
  batchCreatedSchema,
  batchDryRunSchema,
  batchPageSchema,
  batchRetriedSchema,
  batchTaskPageSchema,
  batchViewSchema,
} from "../../../domain/batch/batch-response.schema.ts";
import { batchListQuerySchema, batchResultsQuerySchema, batchTasksQuerySchema } from "../../routes/batches.route.ts";
import { accountAuth, json, problemResponses, type RouteDoc } from "../route-doc.ts";
import { idempotencyHeaders, idempotencyReplayHeader, sse } from "./shared-params.ts";

const batchPath = z.object({ batchId: z.string().meta({ description: "The batch's id (a UUID)" }) });
const common = problemResponses("unauthenticated", "dependency_unavailable");
const streamedBody = (description: string) => ({ schema: z.string().meta({ description }) });

export const batchDocs: RouteDoc[] = [
  {
    method: "post",
    path: "/v1/batches",
    operation: {
      operationId: "createBatch",
      tags: ["batches"],
      summary: "Submit many expansions at once (JSON up to 10,000 items; NDJSON or CSV streamed, any length)",
      description:
        "Each item is validated as a single create is, over the batch's defaults; bad items are reported by line and the valid ones proceed (or none, with atomic=true). The JSON form takes only `atomic` and `dry_run` in the query (its fields go in the body); the streamed forms take the batch's fields and defaults in the query. An item may also carry `input_name` (at most 255 characters, one line, no control characters): its own name for an image that is not a URL (a local file's name), stored with the task and shown as the results manifest's `input` and in the batch's task list.",
      security: accountAuth,
      requestParams: { query: streamedBatchQueryFieldsSchema, header: idempotencyHeaders },
      requestBody: {
        required: true,
        content: {
          "application/json": { schema: jsonBatchBodySchema },
          "application/x-ndjson": streamedBody("One item (a JSON object with the provider's field names) per line"),
          "text/csv": streamedBody("A header row naming the fields (`watermark` for watermark_info.enabled), then one item per row; an empty cell takes the default"),
        },
      },
      responses: {
        "200": json(batchDryRunSchema, "dry_run=true: validated, nothing created"),
        "201": {
          ...json(batchCreatedSchema, "Created: the batch and how its items were taken; Location names it"),
          headers: { location: { schema: { type: "string" } }, ...idempotencyReplayHeader },
        },
        ...problemResponses(
          "validation_failed",
          "spend_cap_exceeded",
          "conflict",
          "payload_too_large",
          "unsupported_media_type",
          "unprocessable",
          "server_busy",
        ),
        ...common,
      },
    },
  },
  {
    method: "get",
    path: "/v1/batches",
    operation: {
      operationId: "listBatches",
      tags: ["batches"],
      summary: "The account's batches, newest first",
      security: accountAuth,
      requestParams: { query: batchListQuerySchema },
      responses: { "200": json(batchPageSchema, "One page; pass next_cursor as cursor for the next"), ...problemResponses("validation_failed"), ...common },
    },
  },
  {
    method: "get",
    path: "/v1/batches/{batchId}",
    operation: {
      operationId: "getBatch",
      tags: ["batches"],
      summary: "A batch's status, counts by task status, progress and ETA",
      security: accountAuth,
      requestParams: { path: batchPath },
      responses: { "200": json(batchViewSchema, "The batch"), ...problemResponses("not_found"), ...common },
    },
  },
  {
    method: "get",
    path: "/v1/batches/{batchId}/tasks",
    operation: {
      operationId: "listBatchTasks",
      tags: ["batches"],
      summary: "A batch's tasks in upload order (the native task plus batch_line)",
      security: accountAuth,
      requestParams: { path: batchPath, query: batchTasksQuerySchema },
      responses: { "200": json(batchTaskPageSchema, "One page"), ...problemResponses("validation_failed", "not_found"), ...common },
    },
  },
  {
    method: "get",
    path: "/v1/batches/{batchId}/results",
    operation: {
      operationId: "getBatchResults",
      tags: ["batches"],
      summary: "The manifest, streamed: one line per task (NDJSON by default; CSV with Accept: text/csv or format=csv)",
      security: accountAuth,
      requestParams: { path: batchPath, query: batchResultsQuerySchema },
      responses: {
        "200": {
          description: "line, task_id, external_task_id, input, status, images (location, url, width, height, sha256), credits, error",
          content: {
            "application/x-ndjson": { schema: { type: "string" } },
            "text/csv": { schema: { type: "string" } },
          },
        },
        ...problemResponses("validation_failed", "not_found"),
        ...common,
      },
    },
  },
  {
    method: "get",
    path: "/v1/batches/{batchId}/stream",
    operation: {
      operationId: "streamBatch",
      tags: ["batches"],
      summary: "Server-Sent Events: `batch` (as GET shows it) on connect and whenever its counts move; `end` once it has ended",
      description: "A comment line every LIVE_HEARTBEAT_MS keeps the stream open; a resumed stream starts with a fresh snapshot.",
      security: accountAuth,
      requestParams: { path: batchPath },
      responses: { "200": sse("event: batch (data: Batch), event: end (data: {reason})"), ...problemResponses("not_found", "too_many_requests"), ...common },
    },
  },
  {
    method: "post",
    path: "/v1/batches/{batchId}/cancel",
    operation: {
      operationId: "cancelBatch",
      tags: ["batches"],
      summary: "Cancel the queued tasks at once; tasks already at the provider run to their end",
      description:
        "Works in any state but an end other than `canceled` (409 then). Each canceled task gets its `task.canceled` callback (or `kling.failed` for a drop-in task) and its live update. A batch still `receiving` its upload is marked `broken_off` too: the upload stops at its next chunk with a 409.",
      security: accountAuth,
      requestParams: { path: batchPath },
      responses: { "200": json(batchCanceledSchema, "The batch, and how many tasks this call canceled"), ...problemResponses("not_found", "conflict"), ...common },
    },
  },
  {
    method: "post",
    path: "/v1/batches/{batchId}/retry",
    operation: {
      operationId: "retryBatch",
      tags: ["batches"],
      summary: "Re-run the failed tasks whose failure may pass on a retry",
      security: accountAuth,
      requestParams: { path: batchPath },
      responses: { "200": json(batchRetriedSchema, "The batch, and how many tasks were retried"), ...problemResponses("not_found", "conflict"), ...common },
    },
  },
];
