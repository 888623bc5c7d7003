import { z } from "zod";
import { defaultApiPort } from "../domain/config/defaults.ts";
import { envPort, parseEnv } from "../domain/config/parse-env.ts";
import { databaseEnv, loggingEnv } from "../domain/config/shared-env.schema.ts";
import { listenHostEnv } from "../domain/process/listen-url.ts";
import { providerEnv } from "../domain/provider/provider-config.schema.ts";
import { providerControlEnv } from "../domain/provider-capacity/provider-controls.ts";

export const LOCAL_KEY = "local-dev-key-0123456789";

// What `npm start` itself needs to know; each app still parses its full schema from the same env.
export const stackEnvSchema = z.object({
  ...databaseEnv,
  ...providerEnv,
  ...listenHostEnv,
  LOG_FORMAT: loggingEnv.LOG_FORMAT,
  PORT: envPort.default(defaultApiPort),
  PUBLIC_BASE_URL: z.url({ protocol: /^https?$/ }).optional(),
  BOOTSTRAP_API_KEY: z.string().default(LOCAL_KEY),
  ALLOWED_PRIVATE_HOSTS: z.string().optional(),
  // 2: two simulators side by side as two provider routes (PROVIDER_ROUTES), a CometAPI-shaped one
  // on SIMULATOR_PORT+1 that answers 404 (as CometAPI's route did) and a Kling-shaped one with an
  // access-key pair, to show failover locally. Only when no provider is configured.
  PROVIDER_CAPACITY: providerControlEnv.PROVIDER_CAPACITY,
  LOCAL_ROUTES: z.coerce.number().int().min(1).max(2).default(1),
  PROVIDER_ROUTES: z.string().optional(),
  // Only whether it is set (the banner names the queue board); the API checks its length.
  ADMIN_TOKEN: z.string().optional(),
  // Likewise: the banner says whether /metrics needs a token.
  METRICS_TOKEN: z.string().optional(),
});

export type StackConfig = z.output<typeof stackEnvSchema>;

export const parseStackConfig = (env: NodeJS.ProcessEnv): StackConfig => parseEnv(stackEnvSchema, env);
