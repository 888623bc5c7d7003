import { z } from "zod";
import { providerSummarySchema } from "../../presenters/provider-routes.schema.ts";
import { bytes, json, problemResponses, type RouteDoc } from "../route-doc.ts";

const probe = z.object({ ok: z.boolean(), latency_ms: z.number().optional(), error: z.string().optional() });

export const readinessSchema = z
  .object({
    status: z.enum(["ready", "not_ready"]),
    checks: z.object({ postgres: probe, redis: probe, storage: probe.meta({ description: "A small object written to the image store: a read-only or full disk, or S3 refusing, fails it" }) }),
    provider: z
      .union([providerSummarySchema, z.object({ error: z.string() })])
      .optional()
      .meta({ description: "Absent when Redis is down; {error} when the routes' state could not be read in time" }),
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
      summary: "Readiness: Postgres, Redis and image storage (a write), and the provider's state (circuit, pause, slots) in sum and per route",
      responses: { "200": json(readinessSchema, "Ready"), "503": json(readinessSchema, "Postgres or Redis unreachable, or storage not writable") },
    },
  },
  {
    method: "get",
    path: "/metrics",
    operation: {
      operationId: "metrics",
      tags: ["operations"],
      summary: "Prometheus metrics (text exposition format); README lists them",
      description: "Open to anyone who reaches the port unless METRICS_TOKEN is set; then `Authorization: Bearer <METRICS_TOKEN>` is required.",
      // `{}`: no credential at all when METRICS_TOKEN is unset.
      security: [{}, { metricsToken: [] }],
      responses: { "200": bytes("text/plain", "Prometheus text format 0.0.4"), "401": bytes("text/plain", "METRICS_TOKEN is set and the request did not carry it") },
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
