import { z } from "zod";
import { expandRequestBodySchema } from "../../../domain/expand-request/expand-request.schema.ts";
import { dropinPrefixes } from "../../middleware/answer-shape.ts";
import { dropinCreatedSchema, dropinTaskAnswerSchema, dropinTaskListAnswerSchema } from "../../../domain/task/task-response.schema.ts";
import { dropinListQuerySchema } from "../../routes/dropin-expand.route.ts";
import { accountAuth, json, providerErrorResponses, type RouteDoc } from "../route-doc.ts";
import { waitQuery } from "./native-tasks.doc.ts";

// The provider's own routes and shapes, under both path families: CometAPI mounts Kling's API under
// /kling (`/kling/v1/...`), Kling itself serves `/v1/...`.
const family = (prefix: string): RouteDoc[] => {
  const comet = prefix.startsWith("/kling");
  const tag = comet ? "drop-in (CometAPI paths)" : "drop-in (Kling paths)";
  const suffix = comet ? "Comet" : "Kling";
  return [
    {
      method: "post",
      path: prefix,
      operation: {
        operationId: `dropinCreate${suffix}`,
        tags: [tag],
        summary: "Create an expand task (the provider's request and answer)",
        security: accountAuth,
        requestBody: { required: true, content: { "application/json": { schema: expandRequestBodySchema } } },
        responses: { "200": json(dropinCreatedSchema, "Accepted"), ...providerErrorResponses(400, 401, 429, 503) },
      },
    },
    {
      method: "get",
      path: prefix,
      operation: {
        operationId: `dropinList${suffix}`,
        tags: [tag],
        summary: "List tasks, newest first",
        security: accountAuth,
        requestParams: { query: dropinListQuerySchema },
        responses: { "200": json(dropinTaskListAnswerSchema, "One page"), ...providerErrorResponses(400, 401, 503) },
      },
    },
    {
      method: "get",
      path: `${prefix}/{taskId}`,
      operation: {
        operationId: `dropinGet${suffix}`,
        tags: [tag],
        summary: "One task, by task_id or external_task_id; with ?wait, once its provider-shaped status changes",
        security: accountAuth,
        requestParams: { path: z.object({ taskId: z.string().meta({ description: "task_id or external_task_id" }) }), query: waitQuery },
        responses: { "200": json(dropinTaskAnswerSchema, "The task in the provider's shape"), ...providerErrorResponses(400, 401, 404, 429, 503) },
      },
    },
  ];
};

export const dropinDocs: RouteDoc[] = dropinPrefixes.flatMap(family);
