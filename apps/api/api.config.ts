import { z } from "zod";
import { defaultApiPort } from "../domain/config/defaults.ts";
import { lifecycleEnv } from "../domain/config/lifecycle-env.schema.ts";
import { providerControlEnv } from "../domain/provider-capacity/provider-controls.ts";
import { envPort, envPositiveMs, parseEnv } from "../domain/config/parse-env.ts";
import { databaseEnv, loggingEnv, redisEnv, storageEnv } from "../domain/config/shared-env.schema.ts";
import { standardWebhookSecretListSchema } from "../domain/webhooks/standard-webhooks.ts";

const DEV_SIGNING_SECRET = "dev-only-signing-secret-change-me";

export const apiEnvSchema = z
  .object({
    ...databaseEnv,
    ...redisEnv,
    ...storageEnv,
    ...loggingEnv,
    ...lifecycleEnv,
    ...providerControlEnv,
    NODE_ENV: z.string().default("development"),
    PORT: envPort.default(defaultApiPort),
    // Where the provider calls back and where image links point; defaults to this process.
    PUBLIC_BASE_URL: z.url({ protocol: /^https?$/ }).optional(),
    BOOTSTRAP_API_KEY: z.string().min(16, { error: "must be at least 16 characters" }).optional(),
    // Signs the expiring image links; every API process of a deployment must share it.
    SIGNING_SECRET: z.string().min(16, { error: "must be at least 16 characters" }).default(DEV_SIGNING_SECRET),
    IMAGE_LINK_TTL_SECONDS: z.coerce.number().int().min(60).default(3_600),
    // Intake answers 503 rather than wait longer than this for Redis.
    ENQUEUE_TIMEOUT_MS: envPositiveMs.default(2_000),
    // Request-body bytes this process reads at once across all routes; past it a request is
    // answered 503 (429/1302 on the drop-in routes) with Retry-After before its body is read.
    INTAKE_BODY_BUDGET_BYTES: z.coerce.number().int().min(1_048_576, { error: "must be at least 1048576 (1 MB)" }).default(64 * 1_048_576),
    // Provider callback signing secrets (whsec_..., comma-separated while rotating); when set, an
    // unsigned or badly signed callback is refused. Unset: the per-task URL token is the only check.
    PROVIDER_WEBHOOK_SECRET: standardWebhookSecretListSchema.optional(),
  })
  .refine((env) => env.NODE_ENV !== "production" || env.SIGNING_SECRET !== DEV_SIGNING_SECRET, {
    path: ["SIGNING_SECRET"],
    error: "must be set in production",
  });

export type ApiConfig = z.output<typeof apiEnvSchema>;

export const parseApiConfig = (env: Record<string, string | undefined>): ApiConfig => parseEnv(apiEnvSchema, env);
