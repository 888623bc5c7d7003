import { ConfigError } from "../config/parse-env.ts";
import { createLogger, type LogFormat } from "../logging/logger.ts";
import { installProcessHooks } from "./process-hooks.ts";

// Exit status for a configuration that cannot work (sysexits' EX_CONFIG): `npm start` does not
// restart a process that exits with it, since the same environment would fail the same way.
export const EX_CONFIG = 78;
// Exit status for "my port is taken" (98 is Linux's errno for EADDRINUSE): `npm start` does not
// restart a process that exits with it either; another process holds the port until it is stopped.
export const EX_PORT_IN_USE = 98;

type LoggingConfig = { LOG_LEVEL: string; LOG_FORMAT: LogFormat };

// The shape of every app's main.ts: parse config once (a bad variable exits 78 with its name),
// hook signals and failures, start, log one line a person can read, then run until stopped.
export const runService = async <C extends LoggingConfig, S extends { stop: () => Promise<void> }>(
  name: string,
  parseConfig: (env: NodeJS.ProcessEnv) => C,
  start: (config: C) => Promise<S>,
  describe: (service: S) => string,
) => {
  let config: C;
  try {
    config = parseConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`${name}: ${error.message}`);
      process.exit(EX_CONFIG);
    }
    throw error;
  }
  const logger = createLogger(name, config.LOG_LEVEL, config.LOG_FORMAT);
  const shutdown = installProcessHooks(logger);
  let service: S;
  try {
    service = await start(config);
  } catch (error) {
    // A refusal found at start (the queue prefix in use by another configuration) is a
    // configuration problem too: the same environment would be refused the same way.
    if (error instanceof ConfigError) {
      logger.fatal({ err: error }, `${name} refused to start: ${error.problems.join("; ")}`);
      process.exit(EX_CONFIG);
    }
    const taken = error as NodeJS.ErrnoException & { address?: string; port?: number };
    if (taken.code === "EADDRINUSE") {
      logger.fatal({ err: error }, `${name} could not start: ${taken.address}:${taken.port} is in use (another process listens there)`);
      process.exit(EX_PORT_IN_USE);
    }
    // A dependency refusing at boot: said once, with the stack, then a non-zero exit.
    logger.fatal({ err: error }, `${name} could not start`);
    process.exit(1);
  }
  shutdown.attach(service.stop);
  logger.info(describe(service));
};
