import { ConfigError } from "../domain/config/parse-env.ts";
import { createLogger } from "../domain/logging/logger.ts";
import { parseSimulatorConfig, type SimulatorConfig } from "./simulator.config.ts";
import { startSimulator, type RunningSimulator } from "./simulator.server.ts";

const SHUTDOWN_TIMEOUT_MS = 10_000;

let config: SimulatorConfig;
try {
  config = parseSimulatorConfig(process.env);
} catch (error) {
  // A bad variable stops the boot, naming it.
  console.error(error instanceof ConfigError ? error.message : error);
  process.exit(1);
}

const logger = createLogger("simulator", config.LOG_LEVEL);
let simulator: RunningSimulator;
try {
  simulator = await startSimulator(config);
} catch (error) {
  // Port in use, address not available: say so plainly rather than with an unhandled rejection.
  logger.fatal({ err: error }, `simulator could not start on ${config.SIM_HOST}:${config.SIMULATOR_PORT}`);
  process.exit(1);
}
console.log(`Kling provider simulator: ${simulator.url}  (admin: ${simulator.url}/_sim/config)`);

let shuttingDown = false;
const shutdown = async (signal: string) => {
  if (shuttingDown) return;
  shuttingDown = true;
  logger.info({ signal }, "stopping simulator");
  const timeout = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), SHUTDOWN_TIMEOUT_MS).unref());
  const outcome = await Promise.race([simulator.stop().then(() => "stopped" as const), timeout]);
  if (outcome === "timeout") logger.error("simulator did not stop in time; exiting anyway");
  process.exit(outcome === "stopped" ? 0 : 1);
};

process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));
