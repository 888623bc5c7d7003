import { z } from "zod";
import { expandRequestBodySchema } from "../../../domain/expand-request/expand-request.schema.ts";
import { nativeTaskEventListSchema, nativeTaskPageSchema, nativeTaskSchema } from "../../../domain/task/task-response.schema.ts";
import { nativeListQuerySchema } from "../../routes/native-tasks.route.ts";
import { accountAuth, bytes, json, problemResponses, type RouteDoc } from "../route-doc.ts";

const taskPath = z.object({ taskId: z.string().meta({ description: "Our task id (a UUID)" }) });
const common = problemResponses("unauthenticated", "dependency_unavailable");

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
      requestBody: { required: true, content: { "application/json": { schema: expandRequestBodySchema } } },
      responses: {
        "202": { ...json(nativeTaskSchema, "Accepted; Location names the task"), headers: { location: { schema: { type: "string" } } } },
        ...problemResponses("validation_failed", "conflict", "payload_too_large", "server_busy"),
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
      summary: "One task",
      security: accountAuth,
      requestParams: { path: taskPath },
      responses: { "200": json(nativeTaskSchema, "The task"), ...problemResponses("not_found"), ...common },
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
      summary: "The source image as stored (inline Base64 sources; a URL source answers 404)",
      security: accountAuth,
      requestParams: { path: taskPath },
      responses: { "200": bytes("image/*", "The stored source image"), ...problemResponses("not_found"), ...common },
    },
  },
];
