import type { Logger } from "../logging/logger.ts";
import { onParentGone } from "./parent-watch.ts";
import { createShutdown, type Shutdown, type ShutdownOptions } from "./shutdown.ts";

const stopSignals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

// Every way a service process ends goes through one Shutdown: a stop signal (a terminal, a process
// manager, `npm start`), the parent that started it going away, or a failure nobody caught. A
// crash is logged with its stack and exits non-zero within a short deadline, so whatever supervises
// the process (`npm start`, Docker, systemd) restarts it rather than keeping a half-broken one.
export const installProcessHooks = (logger: Logger, options?: ShutdownOptions): Shutdown => {
  const shutdown = createShutdown(logger, options);
  for (const signal of stopSignals) process.on(signal, () => shutdown.request(signal));
  process.on("uncaughtException", (error) => shutdown.crash("uncaught exception", error));
  process.on("unhandledRejection", (reason) => shutdown.crash("unhandled rejection", reason));
  onParentGone(() => shutdown.request("parent process gone"));
  // Once the reader of our output is gone (a SIGKILLed `npm start`), writes fail with EPIPE; that
  // is no reason to crash while we stop. pino's own streams already go quiet on EPIPE.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code !== "EPIPE") shutdown.crash("stdout/stderr error", error);
    });
  }
  return shutdown;
};
