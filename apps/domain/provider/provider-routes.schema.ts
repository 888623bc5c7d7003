import { z } from "zod";
import { ConfigError } from "../config/parse-env.ts";
import { standardWebhookSecretListSchema } from "../webhooks/standard-webhooks.ts";
import type { ProviderAuth, ProviderConfig } from "./provider-adapter.ts";
import { resolveProviderConfig } from "./provider-config.schema.ts";
import { providerFamilies } from "./provider-families.ts";

// Several ways to the provider, each with its own credentials and capacity (PROVIDER_ROUTES, a JSON
// list). Without it, today's single-provider variables mean a list of one route named "default".

// The name appears in callback URLs and Redis keys.
const routeName = z
  .string({ error: "must be a string" })
  .regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, { error: "must be 1-32 characters of a-z, 0-9, _ and -, starting with a letter or digit" });

const routeEntrySchema = z
  .object({
    name: routeName,
    kind: z.enum(["cometapi", "kling", "simulator"], { error: "must be cometapi, kling or simulator" }),
    baseUrl: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }),
    apiKey: z.string().min(1).optional(),
    accessKey: z.string().min(1).optional(),
    secretKey: z.string().min(1).optional(),
    capacity: z.number({ error: "must be a whole number from 1 to 10000" }).int({ error: "must be a whole number from 1 to 10000" }).min(1, { error: "must be a whole number from 1 to 10000" }).max(10_000, { error: "must be a whole number from 1 to 10000" }),
    // Lower goes first; routes without one keep their place in the list, after those with one.
    priority: z.number({ error: "must be a whole number" }).int({ error: "must be a whole number" }).optional(),
    // What one slot-task (n = 1) costs on this route, in the operator's unit; reported per route.
    unitPrice: z.number({ error: "must be a number >= 0" }).min(0, { error: "must be a number >= 0" }).optional(),
    downField: z.enum(["down", "bottom"]).optional(),
    // This route's callback signing secret(s) (whsec_...); defaults to PROVIDER_WEBHOOK_SECRET.
    webhookSecret: standardWebhookSecretListSchema.optional(),
  })
  .strict()
  .superRefine((route, ctx) => {
    const pair = route.accessKey !== undefined || route.secretKey !== undefined;
    if (route.apiKey !== undefined && pair) {
      ctx.addIssue({ code: "custom", path: ["apiKey"], message: "give apiKey or accessKey + secretKey, not both" });
    } else if (pair && (route.accessKey === undefined || route.secretKey === undefined)) {
      ctx.addIssue({ code: "custom", path: [route.accessKey === undefined ? "accessKey" : "secretKey"], message: "accessKey and secretKey go together" });
    } else if (route.apiKey === undefined && !pair) {
      ctx.addIssue({ code: "custom", path: ["apiKey"], message: "a route needs apiKey, or accessKey + secretKey" });
    } else if (pair && !providerFamilies[route.kind].acceptsAccessKeyPair) {
      ctx.addIssue({ code: "custom", path: ["accessKey"], message: `${providerFamilies[route.kind].title} takes an apiKey, not an access-key pair` });
    }
  });

const parseJson = (text: string, ctx: z.RefinementCtx) => {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    ctx.addIssue({ code: "custom", message: `must be a JSON list of routes: ${(error as Error).message}` });
    return z.NEVER;
  }
};

export const providerRoutesEnv = {
  PROVIDER_ROUTES: z
    .string()
    .transform(parseJson)
    .pipe(
      z
        .array(routeEntrySchema, { error: "must be a JSON list of routes" })
        .min(1, { error: "must list at least one route" })
        .superRefine((routes, ctx) => {
          const seen = new Set<string>();
          routes.forEach((route, index) => {
            if (seen.has(route.name)) ctx.addIssue({ code: "custom", path: [index, "name"], message: `'${route.name}' names two routes` });
            seen.add(route.name);
          });
        }),
    )
    .optional(),
};

export type ProviderRouteEntry = z.output<typeof routeEntrySchema>;

export type ProviderRoute = ProviderConfig & {
  name: string;
  capacity: number;
  priority: number;
  unitPrice: number | null;
  // Undefined: the installation's PROVIDER_WEBHOOK_SECRET applies.
  webhookSecrets?: string[];
  // The route of a single-provider setup keeps the Redis keys it had before routes existed.
  legacyKeys: boolean;
};

export const DEFAULT_ROUTE = "default";

type RoutesEnv = Parameters<typeof resolveProviderConfig>[0] & {
  PROVIDER_ROUTES?: ProviderRouteEntry[] | undefined;
  PROVIDER_CAPACITY: number;
};

const legacyVariables = ["PROVIDER", "PROVIDER_BASE_URL", "COMETAPI_API_KEY", "KLING_API_KEY", "KLING_ACCESS_KEY", "KLING_SECRET_KEY"] as const;

const authOf = (entry: ProviderRouteEntry): ProviderAuth =>
  entry.apiKey !== undefined ? { type: "bearer", token: entry.apiKey } : { type: "jwt", accessKey: entry.accessKey!, secretKey: entry.secretKey! };

// Preferred first. Throws ConfigError (the boot stops naming the variable).
export const resolveProviderRoutes = (env: RoutesEnv): ProviderRoute[] => {
  if (env.PROVIDER_ROUTES === undefined) {
    let single: ProviderConfig;
    try {
      single = resolveProviderConfig(env);
    } catch (error) {
      throw new ConfigError([(error as Error).message]);
    }
    return [{ ...single, name: DEFAULT_ROUTE, capacity: env.PROVIDER_CAPACITY, priority: 0, unitPrice: null, legacyKeys: true }];
  }
  const mixed = legacyVariables.filter((name) => env[name] !== undefined);
  if (mixed.length > 0) {
    throw new ConfigError([`PROVIDER_ROUTES: replaces ${mixed.join(", ")}; set one or the other`]);
  }
  const routes = env.PROVIDER_ROUTES.map((entry, index): ProviderRoute => ({
    kind: entry.kind,
    baseUrl: entry.baseUrl,
    pathPrefix: providerFamilies[entry.kind].pathPrefix,
    auth: authOf(entry),
    downField: entry.downField ?? providerFamilies[entry.kind].defaultDownField,
    timeoutMs: env.PROVIDER_TIMEOUT_MS,
    externalIdLookup: env.PROVIDER_EXTERNAL_ID_LOOKUP,
    name: entry.name,
    capacity: entry.capacity,
    priority: entry.priority ?? Number.MAX_SAFE_INTEGER - env.PROVIDER_ROUTES!.length + index,
    unitPrice: entry.unitPrice ?? null,
    ...(entry.webhookSecret ? { webhookSecrets: entry.webhookSecret } : {}),
    legacyKeys: false,
  }));
  // Array.prototype.sort is stable: equal priorities keep their order in the list.
  return routes.sort((a, b) => a.priority - b.priority);
};
