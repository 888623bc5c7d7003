import { z } from "zod";
import type { ZodOpenApiOperationObject, ZodOpenApiResponseObject } from "zod-openapi";
import { errorStatus, type ErrorCode } from "../../domain/errors/app-error.ts";
import { problemSchema, providerErrorSchema } from "../presenters/error-response.schema.ts";

// One documented operation. `path` is OpenAPI-style (`/v1/tasks/{taskId}`); the coverage test
// (in test/api/openapi-contract.test.ts) maps every Express route onto these and fails on any route
// without one, and on any entry without a route.
export type HttpMethod = "get" | "post" | "put" | "patch" | "delete";
export type RouteDoc = { method: HttpMethod; path: string; operation: ZodOpenApiOperationObject };

// Either credential, in the same header: an account API key, or a JWT signed with the account's
// access-key/secret-key pair the way Kling's own clients sign.
export const accountAuth: Record<string, string[]>[] = [{ apiKey: [] }, { klingJwt: [] }];

const problemResponse = (description: string): ZodOpenApiResponseObject => ({
  description,
  content: { "application/problem+json": { schema: problemSchema } },
});

const problemDescriptions: Partial<Record<ErrorCode, string>> = {
  validation_failed: "The request is invalid: `errors` names each field and why",
  unauthenticated: "No API key or JWT, or one that is not valid",
  not_found: "No such resource for this account",
  conflict: "external_task_id already names a different request",
  payload_too_large: "Body too large",
  dependency_unavailable: "Postgres, Redis or image storage unavailable: nothing was stored (Retry-After)",
  server_busy: "Too many request bodies in flight (Retry-After)",
  body_too_slow: "The body arrived slower than the intake's minimum rate; nothing was stored",
};

// The problem-details answers a native route can give, by error code (one status may carry several).
export const problemResponses = (...codes: ErrorCode[]): Record<string, ZodOpenApiResponseObject> => {
  const byStatus = new Map<number, string[]>();
  for (const code of codes) {
    const status = errorStatus[code];
    byStatus.set(status, [...(byStatus.get(status) ?? []), problemDescriptions[code] ?? code]);
  }
  return Object.fromEntries([...byStatus].map(([status, texts]) => [String(status), problemResponse(texts.join("; "))]));
};

// The drop-in routes answer errors like the provider (middleware/error-handlers.ts, providerCode).
export const providerErrorResponses = (...statuses: (400 | 401 | 404 | 429 | 500 | 503)[]): Record<string, ZodOpenApiResponseObject> => {
  const text: Record<number, string> = {
    400: "1201: the request is invalid",
    401: "1001 no key, 1002 invalid, 1003 JWT not yet valid, 1004 JWT expired",
    404: "1203 not found; 1202 method not allowed",
    429: "1302: too many request bodies in flight; retry after Retry-After",
    500: "5000: internal error",
    503: "5001: Postgres or Redis unavailable",
  };
  return Object.fromEntries(
    statuses.map((s) => [String(s), { description: text[s] ?? String(s), content: { "application/json": { schema: providerErrorSchema } } }]),
  );
};

export const json = (schema: z.ZodType, description: string): ZodOpenApiResponseObject => ({
  description,
  content: { "application/json": { schema } },
});

// Raw bytes (images, the docs page's files): described by media type, not by a JSON schema.
export const bytes = (mediaType: string, description: string): ZodOpenApiResponseObject => ({
  description,
  content: { [mediaType]: { schema: { type: "string", contentMediaType: mediaType } } },
});
