import { AsyncLocalStorage } from "node:async_hooks";
import { pino, type DestinationStream, type Logger } from "pino";

type LogContext = { requestId?: string; jobId?: string; taskId?: string; providerTaskId?: string };

const context = new AsyncLocalStorage<LogContext>();

// Request id, job id and task ids ride along on every line without being passed by hand.
export const withLogContext = <T>(values: LogContext, fn: () => T): T =>
  context.run({ ...context.getStore(), ...values }, fn);

// `destination` defaults to stdout; tests pass their own to read what was logged.
export const createLogger = (name: string, level = "info", destination?: DestinationStream): Logger => {
  const options = {
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
  };
  return destination ? pino(options, destination) : pino(options);
};

export type { DestinationStream as LogDestination, Logger };
