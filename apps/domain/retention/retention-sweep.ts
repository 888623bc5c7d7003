import type { Db } from "../db/database.ts";
import type { Logger } from "../logging/logger.ts";
import type { ObjectStorage } from "../storage/local-storage.ts";
import type { RetentionSettings } from "./retention.config.ts";
import { pruneCallbackInbox, pruneExpiredImages, pruneFinishedDeliveries, pruneFinishedTasks } from "./prune.ts";

export type RetentionSummary = {
  callbacks: number;
  deliveries: number;
  imageTasks: number;
  files: number;
  fileErrors: number;
  tasks: number;
  batches: number;
};

// One pass of every retention rule, each a bounded batch (RETENTION_BATCH_SIZE). Runs from the
// worker's reconcile sweep once a minute, so one pass at a time however many workers there are.
// Files go before rows: a task row is what names its files.
export const runRetention = async (deps: { db: Db; storage: Pick<ObjectStorage, "remove">; logger: Logger }, settings: RetentionSettings, now = Date.now()): Promise<RetentionSummary> => {
  const summary: RetentionSummary = { callbacks: 0, deliveries: 0, imageTasks: 0, files: 0, fileErrors: 0, tasks: 0, batches: 0 };
  summary.callbacks = await pruneCallbackInbox(deps.db, settings.callbackDays, settings.batchSize, now);
  summary.deliveries = await pruneFinishedDeliveries(deps.db, settings.deliveryDays, settings.batchSize, now);
  if (settings.imageDays !== null) {
    const images = await pruneExpiredImages(deps, { retentionDays: settings.imageDays, by: settings.imagesBy, batch: settings.batchSize, now });
    summary.imageTasks = images.tasks;
    summary.files = images.files;
    summary.fileErrors = images.errors;
    if (images.errors > 0) deps.logger.warn({ tasks: images.errors }, "stored files of some expired tasks could not be deleted; the next sweep tries again");
  }
  if (settings.taskDays !== null) {
    const pruned = await pruneFinishedTasks(deps.db, { retentionDays: settings.taskDays, filesFirst: settings.imageDays !== null, batch: settings.batchSize, now });
    summary.tasks = pruned.tasks;
    summary.batches = pruned.batches;
  }
  return summary;
};
