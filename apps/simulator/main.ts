import { runService } from "../domain/process/run-service.ts";
import { parseSimulatorConfig } from "./simulator.config.ts";
import { startSimulator } from "./simulator.server.ts";

await runService("simulator", parseSimulatorConfig, startSimulator, (sim) => `Kling provider simulator: ${sim.url}  (admin: ${sim.url}/_sim/config)`);
