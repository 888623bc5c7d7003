import { limitHeapGrowth } from "../domain/process/heap-growth.ts";
import { runService } from "../domain/process/run-service.ts";
import { parseApiConfig } from "./api.config.ts";
import { startApi } from "./api.server.ts";

// The heap setting is the process's, so it is applied here and not by startApi (tests run that in
// their own process).
await runService(
  "api",
  parseApiConfig,
  (config) => {
    limitHeapGrowth(config.API_HEAP_GROWING_PERCENT);
    return startApi(config);
  },
  (api) => `api listening on ${api.url} (provider callbacks to ${api.publicBaseUrl}/webhooks/kling)`,
);
