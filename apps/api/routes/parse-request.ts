import type { z } from "zod";
import { validationError } from "../../domain/errors/app-error.ts";
import { expandRequestBodySchema, toFieldViolations, type ExpandRequest } from "../../domain/expand-request/expand-request.schema.ts";

// A request's query, params or body through its schema, or a 400 naming each field that is wrong.
// `whole` names the field of a violation about the value as a whole.
export const parseInput = <S extends z.ZodType>(schema: S, value: unknown, whole: "body" | "query" = "body"): z.output<S> => {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw validationError(toFieldViolations(parsed.error, whole));
  return parsed.data;
};

export const parseExpandRequest = (body: unknown): ExpandRequest => {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    const got = Array.isArray(body) ? "an array" : body === null || body === undefined ? "nothing" : `a ${typeof body}`;
    throw validationError([{ field: "body", message: `must be a JSON object; got ${got} (send Content-Type: application/json)` }]);
  }
  return parseInput(expandRequestBodySchema, body);
};
