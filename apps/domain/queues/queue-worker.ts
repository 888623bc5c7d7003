import { Worker, type Processor, type Telemetry } from "bullmq";
import type { Logger } from "../logging/logger.ts";
import { bullQueueName, jobCatalog, workerLockOptions, type JobKind } from "./job-catalog.ts";
import type { RedisClient } from "./redis-connection.ts";

export type QueueWorkerOptions = {
  connection: RedisClient;
  prefix: string;
  logger: Logger;
  telemetry?: Telemetry;
  // JOB_LOCK_MS and JOB_MAX_CRASHES (workerLockOptions): how soon a dead worker's job is taken
  // over, and after how many such deaths it is a poison job.
  lock: { JOB_LOCK_MS: number; JOB_MAX_CRASHES: number };
};

// Every BullMQ worker of ours is built here, so that each gets the same lock and stall options,
// telemetry and logs whichever processor it runs.
export const startQueueWorker = (kind: JobKind, processor: Processor, concurrency: number, options: QueueWorkerOptions): Worker => {
  const queue = jobCatalog[kind].queue;
  const worker = new Worker(bullQueueName(kind), processor, {
    connection: options.connection,
    prefix: options.prefix,
    concurrency,
    ...workerLockOptions(options.lock),
    ...(options.telemetry ? { telemetry: options.telemetry } : {}),
  });
  worker.on("error", (error) => options.logger.error({ err: error, queue }, "worker error"));
  worker.on("failed", (job, error) => options.logger.warn({ jobId: job?.id, queue, attempts: job?.attemptsMade, err: error }, "job failed"));
  return worker;
};
