// One guarded shutdown per process: the first signal starts it, raced against a deadline; a second
// signal or the deadline forces the exit. Unhandled failures take the same path.
export const runUntilSignal = (name: string, stop: () => Promise<void>, deadlineMs = 15_000) => {
  let shuttingDown = false;
  const shutdown = (reason: string, code: number) => {
    if (shuttingDown) {
      process.exit(code || 1);
    }
    shuttingDown = true;
    console.error(`${name}: ${reason}, shutting down`);
    const force = setTimeout(() => {
      console.error(`${name}: shutdown exceeded ${deadlineMs} ms, forcing exit`);
      process.exit(1);
    }, deadlineMs);
    force.unref();
    stop().then(
      () => process.exit(code),
      (error: unknown) => {
        console.error(`${name}: error during shutdown`, error);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => shutdown("SIGINT", 0));
  process.on("SIGTERM", () => shutdown("SIGTERM", 0));
  process.on("unhandledRejection", (error) => {
    console.error(`${name}: unhandled rejection`, error);
    shutdown("unhandled rejection", 1);
  });
};
