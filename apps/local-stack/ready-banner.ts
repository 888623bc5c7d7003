import type { ProviderConfig } from "../domain/provider/provider-adapter.ts";
import { LOCAL_KEY, type StackConfig } from "./stack.config.ts";

type BannerFacts = {
  config: StackConfig;
  apiUrl: string;
  publicBaseUrl: string;
  provider: ProviderConfig;
  simulator: boolean;
  pids: string;
};

const wildcard = (host: string) => host === "0.0.0.0" || host === "::";
const listening = (host: string, port: number) =>
  `listening on ${host.includes(":") ? `[${host}]` : host}:${port}${wildcard(host) ? " (every interface)" : ""}`;

// What a person needs after `npm start`: where things listen, the key, a first command, how to stop.
export const readyBanner = ({ config, apiUrl, publicBaseUrl, provider, simulator, pids }: BannerFacts) => {
  const key = config.BOOTSTRAP_API_KEY === LOCAL_KEY ? LOCAL_KEY : "$BOOTSTRAP_API_KEY";
  const loopbackOnly = config.HOST === "127.0.0.1" || config.HOST === "localhost" || config.HOST === "::1";
  return `
[stack] ready
  api        ${apiUrl}   ${listening(config.HOST, config.PORT)}${loopbackOnly ? "; HOST=0.0.0.0 to accept other machines" : ""}
             drop-in: ${apiUrl}/kling/v1/images/editing/expand, native: ${apiUrl}/v1/tasks
  docs       ${apiUrl}/docs (OpenAPI: ${apiUrl}/openapi.json)
  dashboard  ${apiUrl}/ (sign in with the api key)
  metrics    ${apiUrl}/metrics ${config.METRICS_TOKEN ? "(Authorization: Bearer $METRICS_TOKEN)" : "(open to anyone who reaches the port; set METRICS_TOKEN to require a Bearer token)"}
  queues     ${config.ADMIN_TOKEN ? `${apiUrl}/admin/queues (ADMIN_TOKEN: as a Bearer token, or as the password the browser asks for)` : `off: set ADMIN_TOKEN (16+ characters) and restart to open BullMQ's board at ${apiUrl}/admin/queues`}
  callbacks  ${publicBaseUrl}/webhooks/kling/...
  provider   ${simulator ? `simulator at ${provider.baseUrl}   ${listening(config.HOST, config.SIMULATOR_PORT)} (admin: ${provider.baseUrl}/_sim/config)` : `${provider.kind} at ${provider.baseUrl}`}
  api key    ${config.BOOTSTRAP_API_KEY === LOCAL_KEY ? `${LOCAL_KEY} (local default; set BOOTSTRAP_API_KEY to change)` : "BOOTSTRAP_API_KEY"}
  try        curl -s -H 'Authorization: Bearer ${key}' ${apiUrl}/v1/tasks
  processes  ${pids} (a crashed one is restarted)
  stop       Ctrl-C, or SIGTERM/SIGINT/SIGHUP to npm or to this process
`;
};
