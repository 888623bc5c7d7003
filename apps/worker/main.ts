import { runService } from "../domain/process/run-service.ts";
import { parseWorkerConfig } from "./worker.config.ts";
import { startWorker } from "./worker.server.ts";

await runService("worker", parseWorkerConfig, startWorker, (worker) => `worker started (provider: ${worker.providerKind})`);
