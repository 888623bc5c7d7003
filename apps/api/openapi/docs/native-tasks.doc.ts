import { z } from "zod";
import { expandRequestBodySchema } from "../../../domain/expand-request/expand-request.schema.ts";
import { nativeTaskEventListSchema, nativeTaskPageSchema, nativeTaskSchema } from "../../../domain/task/task-response.schema.ts";
import { nativeListQuerySchema } from "../../routes/native-tasks.route.ts";
import { lastEventIdSchema, waitSchema } from "../../routes/task-live.route.ts";
import { accountAuth, bytes, json, problemResponses, type RouteDoc } from "../route-doc.ts";
import { idempotencyHeaders, idempotencyReplayHeader, sse } from "./shared-params.ts";

const taskPath = z.object({ taskId: z.string().meta({ description: "Our task id (a UUID)" }) });
const common = problemResponses("unauthenticated", "dependency_unavailable");

// `?wait=<seconds>` long-polls a status read (the bound is LIVE_MAX_WAIT_SECONDS, 60 by default).
export const waitQuery = z.object({
  wait: waitSchema(60).shape.wait.meta({
    description: "Long-poll up to this many whole seconds (0 to LIVE_MAX_WAIT_SECONDS, 60 by default) for the status to change; a task that has ended answers at once",
  }),
});

export const nativeTaskDocs: RouteDoc[] = [
  {
    method: "post",
    path: "/v1/tasks",
    operation: {
      operationId: "createTask",
      tags: ["tasks"],
      summary: "Submit an expansion",
      description:
        "Validated, stored and queued before the answer. A retried create with the same external_task_id and the same request answers the first task again (header Idempotent-Replayed: true).",
      security: accountAuth,
      requestParams: { header: idempotencyHeaders },
      requestBody: { required: true, content: { "application/json": { schema: expandRequestBodySchema } } },
      responses: {
        "202": {
          ...json(nativeTaskSchema, "Accepted; Location names the task"),
          headers: { location: { schema: { type: "string" } }, ...idempotencyReplayHeader },
        },
        ...problemResponses("validation_failed", "conflict", "payload_too_large", "unprocessable", "server_busy"),
        ...common,
      },
    },
  },
  {
    method: "get",
    path: "/v1/tasks",
    operation: {
      operationId: "listTasks",
      tags: ["tasks"],
      summary: "The account's tasks, newest first",
      security: accountAuth,
      requestParams: { query: nativeListQuerySchema },
      responses: { "200": json(nativeTaskPageSchema, "One page; pass next_cursor as cursor for the next"), ...problemResponses("validation_failed"), ...common },
    },
  },
  {
    method: "get",
    path: "/v1/tasks/{taskId}",
    operation: {
      operationId: "getTask",
      tags: ["tasks"],
      summary: "One task; with ?wait, once its status changes",
      security: accountAuth,
      requestParams: { path: taskPath, query: waitQuery },
      responses: {
        "200": json(nativeTaskSchema, "The task"),
        ...problemResponses("validation_failed", "not_found", "too_many_requests"),
        ...common,
      },
    },
  },
  {
    method: "get",
    path: "/v1/tasks/{taskId}/stream",
    operation: {
      operationId: "streamTask",
      tags: ["tasks"],
      summary: "Server-Sent Events: `task` (as GET shows it) on connect and after each change, `transition` for each state change, `end` once the task has ended",
      description:
        "Each `task` and `transition` frame carries an `id:` (a task event id). A client that reconnects with Last-Event-ID first gets every `transition` it missed, then the task as it is now. A comment line every LIVE_HEARTBEAT_MS keeps the stream open; on shutdown a stream closes without `end`.",
      security: accountAuth,
      requestParams: {
        path: taskPath,
        header: z.object({ "last-event-id": lastEventIdSchema.optional().meta({ description: "The last id this stream sent" }) }),
      },
      responses: {
        "200": sse("event: task (data: NativeTask), event: transition (data: NativeTaskEvent), event: end (data: {reason})"),
        ...problemResponses("validation_failed", "not_found", "too_many_requests"),
        ...common,
      },
    },
  },
  {
    method: "get",
    path: "/v1/tasks/{taskId}/events",
    operation: {
      operationId: "listTaskEvents",
      tags: ["tasks"],
      summary: "A task's history of transitions",
      security: accountAuth,
      requestParams: { path: taskPath },
      responses: { "200": json(nativeTaskEventListSchema, "Oldest first"), ...problemResponses("not_found"), ...common },
    },
  },
  {
    method: "get",
    path: "/v1/tasks/{taskId}/images/{index}",
    operation: {
      operationId: "getTaskImage",
      tags: ["tasks"],
      summary: "A result image, from our storage",
      security: accountAuth,
      requestParams: { path: taskPath.extend({ index: z.int().min(0).max(8) }) },
      responses: {
        "200": bytes("image/*", "The stored image (PNG or JPEG)"),
        ...problemResponses("validation_failed", "not_found"),
        ...common,
      },
    },
  },
  {
    method: "get",
    path: "/v1/tasks/{taskId}/source",
    operation: {
      operationId: "getTaskSource",
      tags: ["tasks"],
      summary: "The source image as stored: an inline (Base64) one, or a URL source once we downloaded and checked it (404 until then)",
      security: accountAuth,
      requestParams: { path: taskPath },
      responses: { "200": bytes("image/*", "The stored source image"), ...problemResponses("not_found"), ...common },
    },
  },
];
