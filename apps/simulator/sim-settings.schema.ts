import { Webhook } from "standardwebhooks";
import { z } from "zod";

// The simulator's switchable behaviour. Env variables set the start values (simulator.config.ts);
// PATCH /_sim/config changes them at run time. Keys are the env names, lower-case, without SIM_.

export type RunMs = { min: number; max: number };

const share = z.number({ error: "must be a number from 0 to 1" }).min(0, { error: "must be from 0 to 1" }).max(1, { error: "must be from 0 to 1" });
const millis = z.number({ error: "must be a whole number of milliseconds" }).int({ error: "must be a whole number" }).min(0, { error: "must be >= 0" });

// "2000" or 2000 is a fixed run time; "500-1500" picks uniformly in the range for each task.
export const runMsSchema = z
  .union([z.number().int().min(0), z.string().trim().regex(/^\d+(\s*-\s*\d+)?$/)], {
    error: 'must be milliseconds (2000) or a range "min-max" (500-1500)',
  })
  .transform((v, ctx): RunMs => {
    const parts = typeof v === "number" ? [v] : v.split("-").map((p) => Number(p.trim()));
    const min = parts[0] ?? 0;
    const max = parts[1] ?? min;
    if (max < min) {
      ctx.addIssue({ code: "custom", message: "range must be min-max with min <= max" });
      return z.NEVER;
    }
    return { min, max };
  });

// The callbacks are signed with the public library (callback.sender.ts): a secret it cannot read
// (some unpadded lengths) is refused here, not on the first callback.
const readableByLibrary = (secret: string) => {
  try {
    new Webhook(secret);
    return true;
  } catch {
    return false;
  }
};

export const webhookSecretSchema = z
  .string()
  .regex(/^whsec_[A-Za-z0-9+/]+={0,2}$/, { error: "must be whsec_ followed by Base64" })
  .refine(readableByLibrary, { error: "must be whsec_ followed by Base64" });

export const downFields = ["down", "bottom", "both"] as const;

// The provider's documented error codes (KLING.md "Errors"), each answered with its HTTP status.
export const providerErrorCodes = [
  1000, 1001, 1002, 1003, 1004, 1100, 1101, 1102, 1103, 1200, 1201, 1202, 1203, 1300, 1301, 1302, 1303, 1304, 5000, 5001, 5002,
] as const;

export const createErrorCodeSchema = z
  .number({ error: "must be a provider error code" })
  .int({ error: "must be a provider error code" })
  .refine((code) => (providerErrorCodes as readonly number[]).includes(code), { error: `must be one of ${providerErrorCodes.join(", ")}` });

export const simSettingsSchema = z.object({
  // Slots per account; a task holds n slots from submitted until it ends.
  capacity: z.number().int().min(0).max(100_000),
  run_ms: runMsSchema,
  fail_rate: share,
  // Of the failed tasks, the share that fail as content-policy refusals.
  content_policy_share: share,
  error_rate: share,
  // Create/get calls that hang without an answer (past the client's timeout) or lose their socket.
  timeout_rate: share,
  drop_connection_rate: share,
  // Whether a create whose answer is lost still made the task (the dangerous case) or not.
  connection_fault_point: z.enum(["after_create", "before_create"]),
  hang_ms: millis,
  callback_loss: share,
  callback_duplicate: share,
  callback_reorder: share,
  callback_delay_ms: millis,
  // before_create_response: the "submitted" callback is delivered before the create is answered.
  callback_mode: z.enum(["normal", "before_create_response"]),
  callback_timeout_ms: millis,
  route_unavailable: z.boolean(),
  // Every create is answered with this error code (after it is counted): an account in arrears
  // (1101), a revoked key (1002), a policy refusal (1301)... null: creates are handled normally.
  create_error_code: createErrorCodeSchema.nullable(),
  // Slots of every account held by another client of the same account (a shared account): the
  // provider counts them against capacity, so creates see 1303 sooner than the caller's own count says.
  foreign_slots_in_use: z.number({ error: "must be a whole number" }).int({ error: "must be a whole number" }).min(0, { error: "must be >= 0" }).max(100_000),
  down_field: z.enum(downFields),
  webhook_secret: webhookSecretSchema.nullable(),
  // When set, only these bearer tokens (or JWTs whose iss is listed) are accepted.
  api_keys: z.array(z.string().min(1)).nullable(),
  image_fetch_timeout_ms: millis,
  // auto: tasks run on timers (run_ms). manual: a task stays running until a test ends it through
  // POST /_sim/tasks/{id}/finish or /fail (needs SIM_TASK_CONTROL), so tests order events without
  // waiting on the wall clock.
  clock: z.enum(["auto", "manual"]),
});

export type SimSettings = z.output<typeof simSettingsSchema>;

export const simSettingsPatchSchema = simSettingsSchema.partial().strict();

export const serializeSettings = (s: SimSettings) => ({
  ...s,
  run_ms: s.run_ms.min === s.run_ms.max ? s.run_ms.min : `${s.run_ms.min}-${s.run_ms.max}`,
});
