import { runService } from "../domain/process/run-service.ts";
import { parseWorkerProcessConfig } from "./worker.config.ts";
import { startWorker } from "./worker.server.ts";

await runService("worker", parseWorkerProcessConfig, startWorker, (worker) => `worker started (provider: ${worker.providerKind})`);
