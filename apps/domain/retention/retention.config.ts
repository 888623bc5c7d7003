import { z } from "zod";
import { envPositiveMs } from "../config/parse-env.ts";

const days = (what: string) => z.coerce.number({ error: `must be a whole number of days (${what})` }).int({ error: "must be a whole number of days" });

// How long finished work is kept. One home for every retention setting, read by the worker's sweep
// (apps/domain/retention/retention-sweep.ts).
export const retentionEnv = {
  // Finished tasks (succeeded, failed, canceled), with their events, images rows, provider callbacks
  // and outbound deliveries, are deleted this long after they finished; 0 keeps them for ever. A
  // batch goes with its last task.
  TASK_RETENTION_DAYS: days("0 keeps tasks for ever").min(0).max(36_500).default(90),
  // Stored files of a finished task (its result images and an uploaded source) are deleted this long
  // after it finished. Unset: TASK_RETENTION_DAYS. Longer than TASK_RETENTION_DAYS counts as that
  // (a file whose task row is gone could no longer be found to delete). 0 keeps them for ever, even
  // after their tasks' rows have gone.
  IMAGE_RETENTION_DAYS: days("0 keeps images for ever").min(0).max(36_500).optional(),
  // Who deletes stored files on S3: this sweep (default), or a lifecycle rule on the bucket (then
  // the sweep only stops handing out links to them; docs/retention.md gives the rule).
  IMAGE_RETENTION_BY: z.enum(["sweep", "bucket-rule"], { error: "must be sweep or bucket-rule" }).default("sweep"),
  // How often the worker's sweep runs the retention rules (one pass at a time across all workers).
  RETENTION_EVERY_MS: envPositiveMs.default(60_000),
  // Rows (tasks, batches, callbacks, deliveries) and files deleted per kind per pass: a large backlog drains over several minutes instead of one long transaction.
  RETENTION_BATCH_SIZE: z.coerce.number().int().min(1).max(100_000).default(1_000),
  // Provider callbacks are kept this long in the inbox (at most 50 per task), then pruned.
  PROVIDER_CALLBACK_RETENTION_DAYS: days("at least 1").min(1).max(3650).default(30),
  // Outbound deliveries that ended (with their attempt logs) are kept this long, then pruned; past
  // it they can no longer be read or redelivered. Longer than the retry schedule's three days.
  WEBHOOK_DELIVERY_RETENTION_DAYS: days("at least 1").min(1).max(3650).default(30),
};

type RetentionEnv = z.output<z.ZodObject<typeof retentionEnv>>;

export type RetentionSettings = {
  // null: kept for ever.
  taskDays: number | null;
  imageDays: number | null;
  imagesBy: "sweep" | "bucket-rule";
  batchSize: number;
  everyMs: number;
  callbackDays: number;
  deliveryDays: number;
};

export const retentionSettingsFrom = (env: RetentionEnv): RetentionSettings => {
  const taskDays = env.TASK_RETENTION_DAYS === 0 ? null : env.TASK_RETENTION_DAYS;
  const imageSetting = env.IMAGE_RETENTION_DAYS ?? env.TASK_RETENTION_DAYS;
  const imageDays = imageSetting === 0 ? null : taskDays === null ? imageSetting : Math.min(imageSetting, taskDays);
  return {
    taskDays,
    imageDays,
    imagesBy: env.IMAGE_RETENTION_BY,
    batchSize: env.RETENTION_BATCH_SIZE,
    everyMs: env.RETENTION_EVERY_MS,
    callbackDays: env.PROVIDER_CALLBACK_RETENTION_DAYS,
    deliveryDays: env.WEBHOOK_DELIVERY_RETENTION_DAYS,
  };
};
