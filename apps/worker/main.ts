import { ConfigError } from "../domain/config/parse-env.ts";
import { runUntilSignal } from "../domain/process/run-until-signal.ts";
import { parseWorkerConfig } from "./worker.config.ts";
import { startWorker } from "./worker.server.ts";

try {
  const config = parseWorkerConfig(process.env);
  const worker = await startWorker(config);
  console.log(`worker started (provider: ${worker.providerKind})`);
  runUntilSignal("worker", worker.stop);
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(error.message);
    process.exit(78);
  }
  throw error;
}
