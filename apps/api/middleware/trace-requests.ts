import type { RequestHandler } from "express";
import { inServerSpan } from "../../domain/telemetry/tracing.ts";

// A server span per request when tracing is on (continuing a caller's traceparent), named by the
// matched route, not the raw path, so task ids stay out of span names. Off: one boolean check.
export const traceRequests: RequestHandler = (req, res, next) =>
  inServerSpan({ method: req.method, route: req.path, headers: req.headers }, (span) => {
    if (span) {
      res.once("close", () => {
        const route = req.route?.path;
        span.updateName(typeof route === "string" ? `${req.method} ${req.baseUrl}${route}` : req.method);
        span.setAttribute("http.response.status_code", res.statusCode);
        span.end();
      });
    }
    next();
  });
