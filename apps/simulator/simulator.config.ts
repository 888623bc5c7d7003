import { z } from "zod";
import { defaultSimulatorPort } from "../domain/config/defaults.ts";
import { envBoolean, envPort, parseEnv } from "../domain/config/parse-env.ts";
import { loggingEnv } from "../domain/config/shared-env.schema.ts";
import { listenHostEnv } from "../domain/process/listen-url.ts";
import { createErrorCodeSchema, downFields, runMsSchema, webhookSecretSchema, type SimSettings } from "./sim-settings.schema.ts";

const envShare = z.coerce.number().min(0).max(1);
const envMillis = z.coerce.number().int().min(0);
// Not envCommaList: that one lower-cases, and API keys are case-sensitive.
const envKeyList = z.string().transform((v) => v.split(",").map((s) => s.trim()).filter(Boolean));

export const simulatorEnvSchema = z
  .object({
  ...loggingEnv,
  SIMULATOR_PORT: envPort.default(defaultSimulatorPort),
  // Loopback by default (HOST, shared with the API): the admin routes have no auth. 0.0.0.0 for a
  // container. SIM_HOST, when set, overrides HOST for the simulator alone.
  ...listenHostEnv,
  SIM_HOST: z.string().min(1).optional(),
  // Base of result image URLs; defaults to http://127.0.0.1:<actual port>.
  SIM_PUBLIC_URL: z.url({ protocol: /^https?$/ }).optional(),
  SIM_RESULT_MEMORY_MB: z.coerce.number().positive().default(512),
  SIM_CAPACITY: z.coerce.number().int().min(0).default(5),
  SIM_RUN_MS: runMsSchema.default({ min: 3000, max: 3000 }),
  SIM_FAIL_RATE: envShare.default(0),
  SIM_CONTENT_POLICY_SHARE: envShare.default(0.5),
  SIM_ERROR_RATE: envShare.default(0),
  SIM_TIMEOUT_RATE: envShare.default(0),
  SIM_DROP_CONNECTION_RATE: envShare.default(0),
  SIM_CONNECTION_FAULT_POINT: z.enum(["after_create", "before_create"]).default("after_create"),
  SIM_HANG_MS: envMillis.default(120_000),
  SIM_CALLBACK_LOSS: envShare.default(0),
  SIM_CALLBACK_DUPLICATE: envShare.default(0),
  SIM_CALLBACK_REORDER: envShare.default(0),
  SIM_CALLBACK_DELAY_MS: envMillis.default(0),
  SIM_CALLBACK_MODE: z.enum(["normal", "before_create_response"]).default("normal"),
  SIM_CALLBACK_TIMEOUT_MS: envMillis.default(10_000),
  SIM_ROUTE_UNAVAILABLE: envBoolean.default(false),
  SIM_CREATE_ERROR_CODE: z.coerce.number().pipe(createErrorCodeSchema).optional(),
  SIM_FOREIGN_SLOTS_IN_USE: z.coerce.number().int().min(0).default(0),
  SIM_DOWN_FIELD: z.enum(downFields).default("both"),
  SIM_WEBHOOK_SECRET: webhookSecretSchema.optional(),
  SIM_API_KEYS: envKeyList.optional(),
  SIM_IMAGE_FETCH_TIMEOUT_MS: envMillis.default(10_000),
  // Seeds the simulator's dice (errors, faults, run times, failures, callback loss): the n-th call
  // meets the same fault on every run. Unset: Math.random.
  SIM_SEED: z.coerce.number().int().min(0).max(4_294_967_295).optional(),
  // Kling's access-key/secret-key pair: when set, every request on Kling's path family
  // (/v1/images/editing/expand) must carry a JWT with iss = SIM_ACCESS_KEY signed HS256 with
  // SIM_SECRET_KEY (401/1002 otherwise). CometAPI's family (/kling/...) keeps bearer keys.
  SIM_ACCESS_KEY: z.string().min(1).optional(),
  SIM_SECRET_KEY: z.string().min(1).optional(),
  // Test control: POST /_sim/tasks/{id}/finish, /fail and /callback, and the manual clock. Off unless
  // asked for (the test harness turns it on), so a simulator someone runs keeps to its timers.
  SIM_TASK_CONTROL: envBoolean.default(false),
  SIM_CLOCK: z.enum(["auto", "manual"]).default("auto"),
  })
  .refine((env) => (env.SIM_ACCESS_KEY === undefined) === (env.SIM_SECRET_KEY === undefined), {
    path: ["SIM_SECRET_KEY"],
    error: "SIM_ACCESS_KEY and SIM_SECRET_KEY go together",
  })
  .refine((env) => env.SIM_CLOCK === "auto" || env.SIM_TASK_CONTROL, {
    path: ["SIM_CLOCK"],
    error: "manual needs SIM_TASK_CONTROL=true (else nothing could end a task)",
  });

export type SimulatorConfig = z.output<typeof simulatorEnvSchema>;

// Throws ConfigError naming every bad variable; main.ts turns that into an exit.
export const parseSimulatorConfig = (env: Record<string, string | undefined>): SimulatorConfig =>
  parseEnv(simulatorEnvSchema, env);

export const settingsFromConfig = (c: SimulatorConfig): SimSettings => ({
  capacity: c.SIM_CAPACITY,
  run_ms: c.SIM_RUN_MS,
  fail_rate: c.SIM_FAIL_RATE,
  content_policy_share: c.SIM_CONTENT_POLICY_SHARE,
  error_rate: c.SIM_ERROR_RATE,
  timeout_rate: c.SIM_TIMEOUT_RATE,
  drop_connection_rate: c.SIM_DROP_CONNECTION_RATE,
  connection_fault_point: c.SIM_CONNECTION_FAULT_POINT,
  hang_ms: c.SIM_HANG_MS,
  callback_loss: c.SIM_CALLBACK_LOSS,
  callback_duplicate: c.SIM_CALLBACK_DUPLICATE,
  callback_reorder: c.SIM_CALLBACK_REORDER,
  callback_delay_ms: c.SIM_CALLBACK_DELAY_MS,
  callback_mode: c.SIM_CALLBACK_MODE,
  callback_timeout_ms: c.SIM_CALLBACK_TIMEOUT_MS,
  route_unavailable: c.SIM_ROUTE_UNAVAILABLE,
  create_error_code: c.SIM_CREATE_ERROR_CODE ?? null,
  foreign_slots_in_use: c.SIM_FOREIGN_SLOTS_IN_USE,
  down_field: c.SIM_DOWN_FIELD,
  webhook_secret: c.SIM_WEBHOOK_SECRET ?? null,
  api_keys: c.SIM_API_KEYS && c.SIM_API_KEYS.length > 0 ? c.SIM_API_KEYS : null,
  image_fetch_timeout_ms: c.SIM_IMAGE_FETCH_TIMEOUT_MS,
  clock: c.SIM_CLOCK,
});
