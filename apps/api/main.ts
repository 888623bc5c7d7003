import { ConfigError } from "../domain/config/parse-env.ts";
import { runUntilSignal } from "../domain/process/run-until-signal.ts";
import { parseApiConfig } from "./api.config.ts";
import { startApi } from "./api.server.ts";

try {
  const config = parseApiConfig(process.env);
  const api = await startApi(config);
  console.log(`api listening on ${api.url} (provider callbacks to ${api.publicBaseUrl}/webhooks/kling)`);
  runUntilSignal("api", api.stop);
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(error.message);
    process.exit(78);
  }
  throw error;
}
