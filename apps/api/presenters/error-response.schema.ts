import { z } from "zod";
import { errorStatus } from "../../domain/errors/app-error.ts";

// The two error shapes (middleware/error-handlers.ts), as zod for the OpenAPI document.

export const problemSchema = z
  .object({
    type: z.string().meta({ description: "https://kling-orchestrator.dev/problems/<code>, one per error code" }),
    title: z.string(),
    status: z.int(),
    detail: z.string(),
    instance: z.string(),
    request_id: z.string(),
    errors: z.array(z.object({ field: z.string(), message: z.string() })).optional().meta({ description: "On a 400: each field that is wrong and why" }),
  })
  .meta({
    id: "Problem",
    description: `RFC 9457 problem details. Codes: ${Object.entries(errorStatus)
      .map(([code, status]) => `${code} (${status})`)
      .join(", ")}`,
  });

export const providerErrorSchema = z
  .object({ code: z.int().min(1), message: z.string(), request_id: z.string() })
  .meta({
    id: "ProviderError",
    description:
      "The provider's error shape (KLING.md): 1001-1004 authentication, 1201 invalid request, 1202 method, 1203 not found, 1302 busy (429), 5000/5001 server",
  });
