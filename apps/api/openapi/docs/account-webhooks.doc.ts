import { z } from "zod";
import {
  redeliveredSchema,
  signingSecretSchema,
  webhookDeliveryDetailSchema,
  webhookDeliveryPageSchema,
} from "../../presenters/webhook-delivery.schema.ts";
import { bulkRedeliverSchema, deliveriesQuerySchema } from "../../routes/webhooks.route.ts";
import { accountAuth, json, problemResponses, type RouteDoc } from "../route-doc.ts";

const deliveryPath = z.object({ id: z.string().meta({ description: "The delivery's id (also its webhook-id)" }) });
const common = problemResponses("unauthenticated", "dependency_unavailable");

// The account's outbound callbacks: the secret they are signed with, and every delivery with its
// attempts, and ways to send again.
export const accountWebhookDocs: RouteDoc[] = [
  {
    method: "get",
    path: "/v1/webhooks/secret",
    operation: {
      operationId: "getWebhookSecret",
      tags: ["webhooks"],
      summary: "The account's signing secret (created on first read)",
      security: accountAuth,
      responses: { "200": json(signingSecretSchema, "The secret, and the previous one while it still signs"), ...common },
    },
  },
  {
    method: "post",
    path: "/v1/webhooks/secret/rotate",
    operation: {
      operationId: "rotateWebhookSecret",
      tags: ["webhooks"],
      summary: "A new signing secret; the old one keeps signing (a second signature) for the grace period",
      security: accountAuth,
      responses: { "200": json(signingSecretSchema, "The new secret and the previous one"), ...common },
    },
  },
  {
    method: "get",
    path: "/v1/webhooks/deliveries",
    operation: {
      operationId: "listWebhookDeliveries",
      tags: ["webhooks"],
      summary: "The account's callback deliveries, newest first, by task, batch, status, event type and time",
      security: accountAuth,
      requestParams: { query: deliveriesQuerySchema },
      responses: { "200": json(webhookDeliveryPageSchema, "One page; pass next_cursor as cursor for the next"), ...problemResponses("validation_failed"), ...common },
    },
  },
  {
    method: "post",
    path: "/v1/webhooks/deliveries/redeliver",
    operation: {
      operationId: "redeliverWebhooks",
      tags: ["webhooks"],
      summary: "Send again every delivery that failed (or was disabled) in a time range",
      security: accountAuth,
      requestBody: { required: true, content: { "application/json": { schema: bulkRedeliverSchema } } },
      responses: {
        "202": json(redeliveredSchema, "Queued again"),
        ...problemResponses("validation_failed", "payload_too_large", "server_busy"),
        ...common,
      },
    },
  },
  {
    method: "get",
    path: "/v1/webhooks/deliveries/{id}",
    operation: {
      operationId: "getWebhookDelivery",
      tags: ["webhooks"],
      summary: "One delivery with its attempt log",
      security: accountAuth,
      requestParams: { path: deliveryPath },
      responses: { "200": json(webhookDeliveryDetailSchema, "The delivery"), ...problemResponses("not_found"), ...common },
    },
  },
  {
    method: "post",
    path: "/v1/webhooks/deliveries/{id}/redeliver",
    operation: {
      operationId: "redeliverWebhook",
      tags: ["webhooks"],
      summary: "Send one delivery again (same webhook-id)",
      security: accountAuth,
      requestParams: { path: deliveryPath },
      responses: { "202": json(redeliveredSchema, "Queued again"), ...problemResponses("not_found"), ...common },
    },
  },
];
