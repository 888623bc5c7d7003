import { z } from "zod";
import { bytes, json, problemResponses, type RouteDoc } from "../route-doc.ts";

const probe = z.object({ ok: z.boolean(), latency_ms: z.number().optional(), error: z.string().optional() });

export const readinessSchema = z
  .object({
    status: z.enum(["ready", "not_ready"]),
    checks: z.object({ postgres: probe, redis: probe }),
    provider: z
      .union([
        z.object({
          state: z.string().meta({ description: "closed (normal), open (circuit open) or paused (account paused by the provider)" }),
          reason: z.string().optional(),
          since: z.string().optional(),
          next_probe_at: z.string().optional(),
          slots: z.object({ capacity: z.number(), effective: z.number(), in_use: z.number() }),
        }),
        z.object({ error: z.string() }),
      ])
      .optional(),
  })
  .meta({ id: "Readiness" });

const fileParam = z.object({ file: z.string().meta({ description: "One of the page's own files" }) });

// Probes, the operator's views and this document itself: no account credential.
export const operationsDocs: RouteDoc[] = [
  {
    method: "get",
    path: "/healthz",
    operation: { operationId: "health", tags: ["operations"], summary: "Liveness", responses: { "200": json(z.object({ status: z.literal("ok") }), "The process answers") } },
  },
  {
    method: "get",
    path: "/readyz",
    operation: {
      operationId: "readiness",
      tags: ["operations"],
      summary: "Readiness: Postgres and Redis, and the provider's state (circuit, pause, slots)",
      responses: { "200": json(readinessSchema, "Ready"), "503": json(readinessSchema, "Postgres or Redis unreachable") },
    },
  },
  {
    method: "get",
    path: "/metrics",
    operation: {
      operationId: "metrics",
      tags: ["operations"],
      summary: "Prometheus metrics (text exposition format); README lists them",
      responses: { "200": bytes("text/plain", "Prometheus text format 0.0.4") },
    },
  },
  {
    method: "get",
    path: "/openapi.json",
    operation: { operationId: "openapi", tags: ["operations"], summary: "This document", responses: { "200": bytes("application/json", "OpenAPI 3.1") } },
  },
  {
    method: "get",
    path: "/docs",
    operation: { operationId: "docsPage", tags: ["operations"], summary: "This document, rendered (Swagger UI, served locally)", responses: { "200": bytes("text/html", "HTML") } },
  },
  {
    method: "get",
    path: "/docs/assets/{file}",
    operation: {
      operationId: "docsAsset",
      tags: ["operations"],
      summary: "The docs page's scripts and styles",
      requestParams: { path: fileParam },
      responses: { "200": bytes("application/octet-stream", "The file"), ...problemResponses("not_found") },
    },
  },
  {
    method: "get",
    path: "/",
    operation: { operationId: "dashboard", tags: ["operations"], summary: "The account dashboard (sign in with the API key)", responses: { "200": bytes("text/html", "HTML") } },
  },
  {
    method: "get",
    path: "/dashboard/{file}",
    operation: {
      operationId: "dashboardAsset",
      tags: ["operations"],
      summary: "The dashboard's script and styles",
      requestParams: { path: fileParam },
      responses: { "200": bytes("application/octet-stream", "The file"), ...problemResponses("not_found") },
    },
  },
  {
    method: "get",
    path: "/admin/queues",
    operation: {
      operationId: "queueBoard",
      tags: ["operations"],
      summary: "BullMQ's board (bull-board) and everything under it; needs ADMIN_TOKEN (Bearer, or Basic with any user name); 404 when ADMIN_TOKEN is unset",
      responses: { "200": bytes("text/html", "The board"), "401": bytes("text/plain", "No or a wrong admin credential"), ...problemResponses("not_found") },
    },
  },
];
