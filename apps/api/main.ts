import { runService } from "../domain/process/run-service.ts";
import { parseApiConfig } from "./api.config.ts";
import { startApi } from "./api.server.ts";

await runService("api", parseApiConfig, startApi, (api) => `api listening on ${api.url} (provider callbacks to ${api.publicBaseUrl}/webhooks/kling)`);
