import { z } from "zod";
import { defaultSimulatorPort } from "../config/defaults.ts";
import { envPositiveMs } from "../config/parse-env.ts";
import { COMETAPI_BASE_URL } from "./cometapi/cometapi.family.ts";
import { KLING_OFFICIAL_BASE_URL } from "./kling-official/kling-official.family.ts";
import type { ProviderAuth, ProviderConfig } from "./provider-adapter.ts";
import { providerFamilies } from "./provider-families.ts";

// Provider choice by env. With no key configured the orchestrator talks to the bundled simulator.
export const providerEnv = {
  PROVIDER: z.enum(["simulator", "kling", "cometapi"]).optional(),
  PROVIDER_BASE_URL: z.url({ protocol: /^https?$/ }).optional(),
  PROVIDER_DOWN_FIELD: z.enum(["down", "bottom"]).optional(),
  PROVIDER_TIMEOUT_MS: envPositiveMs.default(30_000),
  // How to ask "does a task with this external_task_id exist?" (UNCONFIRMED for both providers):
  // `path` GET .../expand/{id} (Kling: "use either task_id or external_task_id"), `query`
  // GET .../expand?external_task_id=, `list` scan the newest pages of the list, `none` no lookup.
  PROVIDER_EXTERNAL_ID_LOOKUP: z.enum(["path", "query", "list", "none"]).default("path"),
  COMETAPI_API_KEY: z.string().optional(),
  KLING_API_KEY: z.string().optional(),
  KLING_ACCESS_KEY: z.string().optional(),
  KLING_SECRET_KEY: z.string().optional(),
  SIMULATOR_API_KEY: z.string().default("sim-local-key"),
  SIMULATOR_PORT: z.coerce.number().int().min(1).max(65535).default(defaultSimulatorPort),
  // Where the simulator is reached when it is the provider; defaults to loopback on SIMULATOR_PORT.
  SIMULATOR_URL: z.url({ protocol: /^https?$/ }).optional(),
};

const providerEnvSchema = z.object(providerEnv);
type ProviderEnv = z.output<typeof providerEnvSchema>;

export const resolveProviderConfig = (env: ProviderEnv): ProviderConfig => {
  const kind =
    env.PROVIDER ??
    (env.KLING_API_KEY || env.KLING_ACCESS_KEY ? "kling" : env.COMETAPI_API_KEY ? "cometapi" : "simulator");
  const { pathPrefix, defaultDownField } = providerFamilies[kind];
  const common = { pathPrefix, downField: env.PROVIDER_DOWN_FIELD ?? defaultDownField, timeoutMs: env.PROVIDER_TIMEOUT_MS, externalIdLookup: env.PROVIDER_EXTERNAL_ID_LOOKUP };
  switch (kind) {
    case "simulator":
      return {
        kind,
        baseUrl: env.PROVIDER_BASE_URL ?? env.SIMULATOR_URL ?? `http://127.0.0.1:${env.SIMULATOR_PORT}`,
        auth: { type: "bearer", token: env.SIMULATOR_API_KEY },
        ...common,
      };
    case "cometapi":
      if (!env.COMETAPI_API_KEY) throw new Error("COMETAPI_API_KEY: required when PROVIDER=cometapi");
      return {
        kind,
        baseUrl: env.PROVIDER_BASE_URL ?? COMETAPI_BASE_URL,
        auth: { type: "bearer", token: env.COMETAPI_API_KEY },
        ...common,
      };
    case "kling": {
      const auth: ProviderAuth | undefined = env.KLING_API_KEY
        ? { type: "bearer", token: env.KLING_API_KEY }
        : env.KLING_ACCESS_KEY && env.KLING_SECRET_KEY
          ? { type: "jwt", accessKey: env.KLING_ACCESS_KEY, secretKey: env.KLING_SECRET_KEY }
          : undefined;
      if (!auth) throw new Error("KLING_API_KEY, or KLING_ACCESS_KEY with KLING_SECRET_KEY: required when PROVIDER=kling");
      return {
        kind,
        baseUrl: env.PROVIDER_BASE_URL ?? KLING_OFFICIAL_BASE_URL,
        auth,
        ...common,
      };
    }
  }
};
