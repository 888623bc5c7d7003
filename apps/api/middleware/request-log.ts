import type { RequestHandler } from "express";
import type { Logger } from "../../domain/logging/logger.ts";

const healthPaths = new Set(["/healthz", "/readyz"]);

// The path as logged: never the query string (signed image links carry their signature there) and
// never a provider callback's per-task token (/webhooks/kling/{task}/{token}).
export const loggablePath = (originalUrl: string) => {
  const queryAt = originalUrl.search(/[?#]/);
  const path = queryAt === -1 ? originalUrl : originalUrl.slice(0, queryAt);
  return path.replace(/^(\/webhooks\/kling\/[^/]+\/)[^/]+/, "$1[redacted]");
};

// One line per request once it is over: id, method, path, status, duration. Health checks are
// debug (a load balancer polls them every few seconds), and so is a request the client abandoned
// before its answer was complete (a cancelled image download): the client's choice, nothing for
// an operator to act on.
export const requestLog =
  (logger: Logger): RequestHandler =>
  (req, res, next) => {
    const started = process.hrtime.bigint();
    res.once("close", () => {
      const path = loggablePath(req.originalUrl);
      const aborted = !res.writableFinished;
      const level = aborted || healthPaths.has(path) ? "debug" : res.statusCode >= 500 ? "warn" : "info";
      if (!logger.isLevelEnabled(level)) return;
      const fields = {
        requestId: res.locals.requestId,
        method: req.method,
        path,
        status: res.statusCode,
        ms: Math.round(Number(process.hrtime.bigint() - started) / 1e4) / 100,
        ...(aborted ? { aborted: true } : {}),
      };
      logger[level](fields, aborted ? "request abandoned by the client" : "request");
    });
    next();
  };
