import { AsyncLocalStorage } from "node:async_hooks";
import { pino, type Logger } from "pino";

type LogContext = { requestId?: string; jobId?: string; taskId?: string; providerTaskId?: string };

const context = new AsyncLocalStorage<LogContext>();

// Request id, job id and task ids ride along on every line without being passed by hand.
export const withLogContext = <T>(values: LogContext, fn: () => T): T =>
  context.run({ ...context.getStore(), ...values }, fn);

export const createLogger = (name: string, level = "info"): Logger =>
  pino({
    name,
    level,
    mixin: () => context.getStore() ?? {},
    redact: {
      paths: [
        "req.headers.authorization",
        "headers.authorization",
        'req.headers["webhook-signature"]',
        "*.apiKey",
        "*.secretKey",
        "*.callbackToken",
      ],
      censor: "[redacted]",
    },
  });

export type { Logger };
