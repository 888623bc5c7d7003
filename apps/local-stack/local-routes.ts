import { localUrlFor } from "../domain/process/listen-url.ts";
import type { StackConfig } from "./stack.config.ts";

// LOCAL_ROUTES=2: two simulators as two provider routes. The CometAPI-shaped one is preferred and
// answers 404 on its route from the start (as CometAPI's did in March 2026), so every task fails
// over to the Kling-shaped one; `PATCH /_sim/config {"route_unavailable": false}` on the first
// brings it back and traffic returns to it.
const accessKey = "local-access-key";
const secretKey = "local-secret-key-0123456789";

export const localTwoRoutes = (config: StackConfig, klingUrl: string) => {
  const cometPort = config.SIMULATOR_PORT + 1;
  const cometUrl = localUrlFor(config.HOST, cometPort);
  const capacity = config.PROVIDER_CAPACITY;
  const routes = [
    { name: "comet", kind: "cometapi", baseUrl: cometUrl, apiKey: "local-comet-key", capacity, priority: 1, unitPrice: 0.2 },
    { name: "kling", kind: "kling", baseUrl: klingUrl, accessKey, secretKey, capacity, priority: 2, unitPrice: 0.14 },
  ];
  return {
    routesJson: JSON.stringify(routes),
    simulators: [
      { name: "simulator-kling", url: klingUrl, env: { SIM_CAPACITY: String(capacity), SIM_ACCESS_KEY: accessKey, SIM_SECRET_KEY: secretKey } },
      { name: "simulator-comet", url: cometUrl, env: { SIM_CAPACITY: String(capacity), SIMULATOR_PORT: String(cometPort), SIM_ROUTE_UNAVAILABLE: "true" } },
    ],
    banner: `  routes     comet (CometAPI-shaped, answers 404) at ${cometUrl}, preferred; kling (Kling-shaped, JWT) at ${klingUrl}
             per route: ${localUrlFor(config.HOST, config.PORT)}/readyz; bring comet back:
             curl -X PATCH -H 'content-type: application/json' -d '{"route_unavailable":false}' ${cometUrl}/_sim/config
`,
  };
};

// What `npm start` adds to ALLOWED_PRIVATE_HOSTS when it runs the simulator(s): each simulator's
// host:port, so that the worker may fetch their result images, and nothing else on this machine
// (the API itself, other local services stay refused). .env.example states the default.
export const stackPrivateHosts = (config: StackConfig, simulatorUrl: string): string => {
  const simulators = config.LOCAL_ROUTES === 2 ? localTwoRoutes(config, simulatorUrl).simulators.map((s) => s.url) : [simulatorUrl];
  return [config.ALLOWED_PRIVATE_HOSTS, ...simulators.map((url) => new URL(url).host)].filter(Boolean).join(",");
};
