import { validationError } from "../../domain/errors/app-error.ts";
import { expandRequestBodySchema, toFieldViolations, type ExpandRequest } from "../../domain/expand-request/expand-request.schema.ts";

export const parseExpandRequest = (body: unknown): ExpandRequest => {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    const got = Array.isArray(body) ? "an array" : body === null || body === undefined ? "nothing" : `a ${typeof body}`;
    throw validationError([{ field: "body", message: `must be a JSON object; got ${got} (send Content-Type: application/json)` }]);
  }
  const parsed = expandRequestBodySchema.safeParse(body);
  if (!parsed.success) throw validationError(toFieldViolations(parsed.error));
  return parsed.data;
};
