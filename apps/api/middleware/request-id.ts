import { randomUUID } from "node:crypto";
import type { RequestHandler } from "express";
import { withLogContext } from "../../domain/logging/logger.ts";

// Every answer carries a request id (the drop-in shape has a `request_id` field too) and every log
// line written while handling it does as well.
export const requestId: RequestHandler = (req, res, next) => {
  const incoming = req.get("x-request-id");
  const id = incoming && /^[\w.-]{1,128}$/.test(incoming) ? incoming : randomUUID();
  res.locals.requestId = id;
  res.setHeader("x-request-id", id);
  withLogContext({ requestId: id }, next);
};
