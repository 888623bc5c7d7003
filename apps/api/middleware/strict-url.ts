import type { RequestHandler } from "express";
import { validationError, type FieldViolation } from "../../domain/errors/app-error.ts";

// Runs before routing. Refuses a URL whose path or query does not decode as UTF-8 (bad or
// truncated escapes, overlong forms, encoded surrogates) or decodes to a NUL: the router would
// throw on the first kind (a URIError), Node's query parser would silently turn it into U+FFFD,
// and Postgres refuses U+0000 in text, so a NUL in an id or filter was a 500 once it got there.
const problemWith = (raw: string): string | undefined => {
  if (!raw.includes("%")) return undefined;
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    return "is not valid percent-encoded UTF-8";
  }
  return decoded.includes("\u0000") ? "must not contain NUL (%00)" : undefined;
};

// Echoed in the answer so the caller sees which part is wrong; kept short.
const quote = (raw: string) => `'${raw.length > 80 ? `${raw.slice(0, 80)}...` : raw}'`;

export const strictUrl: RequestHandler = (req, _res, next) => {
  const violations: FieldViolation[] = [];
  const queryAt = req.url.indexOf("?");
  const path = queryAt === -1 ? req.url : req.url.slice(0, queryAt);
  const query = queryAt === -1 ? "" : req.url.slice(queryAt + 1);
  for (const segment of path.split("/")) {
    const problem = problemWith(segment);
    if (problem) violations.push({ field: "path", message: `segment ${quote(segment)} ${problem}` });
  }
  for (const pair of query.split("&")) {
    const equals = pair.indexOf("=");
    const rawName = equals === -1 ? pair : pair.slice(0, equals);
    const nameProblem = problemWith(rawName);
    if (nameProblem) {
      violations.push({ field: "query", message: `parameter name ${quote(rawName)} ${nameProblem}` });
      continue;
    }
    const valueProblem = equals === -1 ? undefined : problemWith(pair.slice(equals + 1));
    // The name decoded cleanly above, so naming the field cannot throw.
    if (valueProblem) violations.push({ field: `query.${decodeURIComponent(rawName.replaceAll("+", " "))}`, message: valueProblem });
  }
  next(violations.length > 0 ? validationError(violations.slice(0, 10)) : undefined);
};
