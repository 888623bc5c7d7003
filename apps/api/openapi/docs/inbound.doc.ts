import { z } from "zod";
import { klingTaskSchema } from "../../../domain/provider/kling-protocol/kling-wire.schema.ts";
import { problemSchema } from "../../presenters/error-response.schema.ts";
import { bytes, json, problemResponses, type RouteDoc } from "../route-doc.ts";

const callbackReceipt = z.object({ outcome: z.string(), detail: z.string().optional() }).meta({ id: "CallbackReceipt" });

// Routes called without an account credential: the provider's callbacks (a per-task token in the
// path, and a Standard Webhooks signature when PROVIDER_WEBHOOK_SECRET is set) and signed image links.
const providerCallback = (withRoute: boolean): RouteDoc => ({
  method: "post",
  path: withRoute ? "/webhooks/kling/{taskId}/{token}/{route}" : "/webhooks/kling/{taskId}/{token}",
  operation: {
    operationId: withRoute ? "receiveProviderCallbackForRoute" : "receiveProviderCallback",
    tags: ["provider callbacks"],
    summary: withRoute ? "The provider's task callback, for a task submitted through a named provider route" : "The provider's task callback",
    description:
      "Authenticated by the per-task token (and the webhook-id/-timestamp/-signature headers when signing is configured: the route's own secrets, else PROVIDER_WEBHOOK_SECRET) before anything is stored; duplicates and stale reports are acknowledged and ignored." +
      (withRoute ? " An unknown route is refused like a bad token (401)." : ""),
    requestParams: {
      path: withRoute
        ? z.object({ taskId: z.string(), token: z.string(), route: z.string().meta({ description: "The PROVIDER_ROUTES name the task was submitted through" }) })
        : z.object({ taskId: z.string(), token: z.string() }),
    },
    requestBody: { required: true, content: { "application/json": { schema: klingTaskSchema } } },
    responses: {
      "200": json(callbackReceipt, "Applied, duplicate or stale (outcome says which)"),
      "400": json(callbackReceipt, "Stored but not a task report the receiver can apply (outcome: rejected)"),
      "401": json(callbackReceipt, "Token or signature refused; nothing stored"),
      ...problemResponses("payload_too_large"),
      "503": {
        description: "Not applied, or too many bodies in flight: send it again (Retry-After)",
        content: { "application/json": { schema: z.object({ error: z.string() }) }, "application/problem+json": { schema: problemSchema } },
      },
    },
  },
});

export const inboundDocs: RouteDoc[] = [
  providerCallback(false),
  providerCallback(true),
  {
    method: "get",
    path: "/files/tasks/{taskId}/images/{index}",
    operation: {
      operationId: "getSignedImage",
      tags: ["tasks"],
      summary: "A result image through a signed, expiring link (the url in a task's images)",
      requestParams: {
        path: z.object({ taskId: z.uuid(), index: z.int().min(0).max(8) }),
        query: z.object({ expires: z.string(), signature: z.string() }),
      },
      responses: { "200": bytes("image/*", "The stored image"), ...problemResponses("unauthenticated", "not_found") },
    },
  },
  {
    method: "get",
    path: "/files/tasks/{taskId}/source",
    operation: {
      operationId: "getSignedSource",
      tags: ["tasks"],
      summary: "A task's source as we checked and stored it, through a signed, expiring link",
      description: "What the provider downloads when PROVIDER_IMAGE_DELIVERY sends it a link instead of the bytes (docs/intake.md).",
      requestParams: {
        path: z.object({ taskId: z.uuid() }),
        query: z.object({ expires: z.string(), signature: z.string() }),
      },
      responses: { "200": bytes("image/*", "The stored source image"), ...problemResponses("unauthenticated", "not_found") },
    },
  },
];
