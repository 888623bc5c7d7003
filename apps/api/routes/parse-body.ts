import { validationError } from "../../domain/errors/app-error.ts";
import { expandRequestBodySchema, toFieldViolations, type ExpandRequest } from "../../domain/expand-request/expand-request.schema.ts";

export const parseExpandRequest = (body: unknown): ExpandRequest => {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw validationError([{ field: "body", message: "must be a JSON object (send Content-Type: application/json)" }]);
  }
  const parsed = expandRequestBodySchema.safeParse(body);
  if (!parsed.success) throw validationError(toFieldViolations(parsed.error));
  return parsed.data;
};
