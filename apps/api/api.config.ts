import { z } from "zod";
import { defaultApiPort } from "../domain/config/defaults.ts";
import { lifecycleEnv } from "../domain/config/lifecycle-env.schema.ts";
import { providerControlEnv } from "../domain/provider-capacity/provider-controls.ts";
import { providerEnv } from "../domain/provider/provider-config.schema.ts";
import { providerRoutesEnv } from "../domain/provider/provider-routes.schema.ts";
import { envPort, envPositiveMs, parseEnv } from "../domain/config/parse-env.ts";
import { databaseEnv, dbPoolSizeEnv, loggingEnv, outboundFetchEnv, redisEnv, storageEnv } from "../domain/config/shared-env.schema.ts";
import { requireServerKeyInProduction, secretsEnv, serverKeyRequiredIssue } from "../domain/config/secrets-env.schema.ts";
import { standardWebhookSecretListSchema } from "../domain/webhooks/standard-webhooks.ts";
import { checkStorageEnv } from "../domain/storage/storage-config.ts";
import { listenHostEnv } from "../domain/process/listen-url.ts";
import { liveProgressEnv } from "../domain/live-progress/live-env.schema.ts";
import { outboundWebhooksApiEnv } from "../domain/webhooks/outbound-webhooks.config.ts";
import { batchEnv } from "../domain/batch/batch-env.schema.ts";
import { tracingEnv } from "../domain/telemetry/tracing.ts";
import { creditsEnv } from "../domain/credits/credit-terms.ts";

export const API_DB_POOL_SIZE = 10;

export const apiEnvSchema = z
  .object({
    ...databaseEnv,
    // Connections this process may hold (docs/scale-postgres.md has the measure behind the default).
    DB_POOL_SIZE: dbPoolSizeEnv(API_DB_POOL_SIZE),
    ...redisEnv,
    ...storageEnv,
    ...loggingEnv,
    ...lifecycleEnv,
    ...providerControlEnv,
    // The API reads the routes too: callbacks name their route (its webhook secret), /readyz shows each.
    ...providerEnv,
    ...providerRoutesEnv,
    ...secretsEnv,
    // callback_url destinations follow the same address rules as image URLs.
    ...outboundFetchEnv,
    ...listenHostEnv,
    ...liveProgressEnv,
    ...outboundWebhooksApiEnv,
    ...batchEnv,
    ...creditsEnv,
    ...tracingEnv,
    PORT: envPort.default(defaultApiPort),
    // Where the provider calls back and where image links point; defaults to this process.
    PUBLIC_BASE_URL: z.url({ protocol: /^https?$/ }).optional(),
    BOOTSTRAP_API_KEY: z.string().min(16, { error: "must be at least 16 characters" }).optional(),
    // Makes sure this access-key/secret-key pair (Kling's JWT scheme) exists for the bootstrap account.
    BOOTSTRAP_ACCESS_KEY: z.string().min(8, { error: "must be at least 8 characters" }).optional(),
    BOOTSTRAP_SECRET_KEY: z.string().min(16, { error: "must be at least 16 characters" }).optional(),
    // How long an API key's or access key's lookup is reused in one process: a revoked key stops
    // working within this time everywhere.
    AUTH_CACHE_MS: z.coerce.number().int().min(0).max(60_000).default(5_000),
    // Leeway for a JWT's exp and nbf (clients' clocks drift).
    JWT_CLOCK_TOLERANCE_SECONDS: z.coerce.number().int().min(0).max(300).default(10),
    // A JWT whose exp lies further ahead is refused (Kling's own clients sign for 1800 s).
    JWT_MAX_LIFETIME_SECONDS: z.coerce.number().int().min(60).max(31 * 86_400).default(86_400),
    IMAGE_LINK_TTL_SECONDS: z.coerce.number().int().min(60).default(3_600),
    // Intake answers 503 rather than wait longer than this for Redis.
    ENQUEUE_TIMEOUT_MS: envPositiveMs.default(2_000),
    // Request-body bytes this process reads at once across all routes; past it a request is
    // answered 503 (429/1302 on the drop-in routes) with Retry-After before its body is read.
    INTAKE_BODY_BUDGET_BYTES: z.coerce.number().int().min(1_048_576, { error: "must be at least 1048576 (1 MB)" }).default(64 * 1_048_576),
    // One account holds at most this fraction of that budget at once (its first body is always
    // taken); the rest stays for the other accounts.
    INTAKE_BODY_ACCOUNT_SHARE: z.coerce.number().gt(0, { error: "must be a fraction above 0, at most 1" }).max(1, { error: "must be a fraction above 0, at most 1" }).default(0.25),
    // A body bringing fewer bytes per second than this, over a window, is answered 408 and its
    // reservation reclaimed: 4 KiB/s is below any usable uplink, far above a trickle that holds budget.
    INTAKE_BODY_MIN_BYTES_PER_SECOND: z.coerce.number().int().min(1).default(4_096),
    INTAKE_BODY_RATE_WINDOW_MS: envPositiveMs.default(10_000),
    // What runs the webhook receiver's statements: Kysely on the pg pool, or the same SQL through
    // Prisma Client over @prisma/adapter-pg on that pool. Kysely: measured (`npm run bench:api`,
    // callback phase), Prisma Client served ~half the callbacks per core (docs/benchmarks.md).
    CALLBACK_DB_CLIENT: z.enum(["kysely", "prisma"]).default("kysely"),
    // Provider callback signing secrets (whsec_..., comma-separated while rotating); when set, an
    // unsigned or badly signed callback is refused. Unset: the per-task URL token is the only check.
    PROVIDER_WEBHOOK_SECRET: standardWebhookSecretListSchema.optional(),
    // Opens BullMQ's board at /admin/queues (Bearer, or Basic with this as the password); unset: 404.
    ADMIN_TOKEN: z.string().min(16, { error: "must be at least 16 characters" }).optional(),
    // /metrics then needs `Authorization: Bearer <METRICS_TOKEN>`; unset: anyone who reaches the port reads it.
    METRICS_TOKEN: z.string().min(16, { error: "must be at least 16 characters" }).optional(),
    // A worker's pushed metrics older than this leave /metrics (workers push every METRICS_PUSH_MS).
    METRICS_STALE_MS: envPositiveMs.default(30_000),
  })
  .refine(requireServerKeyInProduction, serverKeyRequiredIssue)
  .superRefine(checkStorageEnv)
  .refine((env) => (env.BOOTSTRAP_ACCESS_KEY === undefined) === (env.BOOTSTRAP_SECRET_KEY === undefined), {
    path: ["BOOTSTRAP_SECRET_KEY"],
    error: "BOOTSTRAP_ACCESS_KEY and BOOTSTRAP_SECRET_KEY go together",
  });

export type ApiConfig = z.output<typeof apiEnvSchema>;

export const parseApiConfig = (env: Record<string, string | undefined>): ApiConfig => parseEnv(apiEnvSchema, env);
