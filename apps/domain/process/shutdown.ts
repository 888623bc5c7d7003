import type { Logger } from "../logging/logger.ts";

export type ShutdownOptions = {
  // A requested stop (signal, parent gone) drains this long before the exit is forced.
  graceMs?: number;
  // After a crash the process state is suspect: a short drain, then out, so a supervisor restarts it.
  crashGraceMs?: number;
};

export type Shutdown = ReturnType<typeof createShutdown>;

// One guarded stop per process. The first request runs the service's stop() raced against a
// deadline, then exits; a second request (a second Ctrl-C) or a crash while stopping exits at once.
// Until attach() is called there is nothing to drain, and a request exits straight away.
export const createShutdown = (logger: Logger, { graceMs = 15_000, crashGraceMs = 3_000 }: ShutdownOptions = {}) => {
  let stop: (() => Promise<void>) | undefined;
  let started = false;

  const exit = (code: number) => process.exit(code);

  const begin = (reason: string, code: number, deadlineMs: number) => {
    if (started) {
      logger.warn({ reason }, "already stopping; exiting now");
      return exit(code || 1);
    }
    started = true;
    logger.info({ reason, deadlineMs }, "stopping");
    if (!stop) return exit(code);
    // Not unref'd: if stop() hangs with nothing else pending, the process must still exit non-zero
    // at the deadline rather than drift out with code 0.
    setTimeout(() => {
      logger.error({ reason, deadlineMs }, "stop did not finish in time; forcing exit");
      exit(code || 1);
    }, deadlineMs);
    stop().then(
      () => exit(code),
      (error: unknown) => {
        logger.error({ err: error }, "error while stopping");
        exit(1);
      },
    );
  };

  return {
    attach: (serviceStop: () => Promise<void>) => {
      stop = serviceStop;
    },
    request: (reason: string) => begin(reason, 0, graceMs),
    crash: (kind: string, error: unknown) => {
      logger.fatal({ err: error, kind }, `${kind}; exiting`);
      if (started) return exit(1);
      begin(kind, 1, crashGraceMs);
    },
  };
};
