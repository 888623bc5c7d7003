import { Queue, type Telemetry } from "bullmq";
import type { RedisClient } from "./redis-connection.ts";
import { bullQueueName, jobCatalog, stageJobOptions, type JobKind, type JobPayload, type WebhookJobKind } from "./job-catalog.ts";

export type TaskQueues = {
  enqueue<K extends Exclude<JobKind, "reconcile" | WebhookJobKind>>(kind: K, payload: JobPayload<K>, options?: { priority?: number }): Promise<void>;
  // One round trip for many tasks' jobs (a batch chunk); each job's priority given.
  enqueueBulk(kind: "source" | "submit", jobs: { taskId: string; priority: number }[]): Promise<void>;
  queue(kind: JobKind): Queue;
  // Takes back a job that was added for a task that was then not written.
  withdraw(kind: Exclude<JobKind, "reconcile" | WebhookJobKind>, taskId: string): Promise<void>;
  close(): Promise<void>;
};

// BullMQ's largest priority (lower runs sooner).
const MAX_PRIORITY = 2_097_152;

// `jobId` = task id, so enqueueing the same task twice (a retry, the sweeper) is a no-op.
// `keepCompleted`: QUEUE_KEEP_COMPLETED (finished jobs kept per queue).
export const createTaskQueues = (connection: RedisClient, prefix: string, telemetry?: Telemetry, keepCompleted = 1_000): TaskQueues => {
  const queues = new Map<JobKind, Queue>();
  const queue = (kind: JobKind): Queue => {
    let q = queues.get(kind);
    if (!q) {
      q = new Queue(bullQueueName(kind), { connection, prefix, ...(telemetry ? { telemetry } : {}) });
      queues.set(kind, q);
    }
    return q;
  };
  return {
    queue,
    enqueue: async (kind, payload, options = {}) => {
      const entry = jobCatalog[kind];
      const data = entry.payload.parse(payload);
      const priority = options.priority === undefined ? undefined : Math.min(MAX_PRIORITY, Math.max(1, Math.round(options.priority)));
      await queue(kind).add(entry.name, data, { ...stageJobOptions(kind, keepCompleted), jobId: data.taskId, ...(priority ? { priority } : {}) });
    },
    enqueueBulk: async (kind, jobs) => {
      if (jobs.length === 0) return;
      const entry = jobCatalog[kind];
      await queue(kind).addBulk(
        jobs.map((job) => ({
          name: entry.name,
          data: { taskId: job.taskId },
          opts: { ...stageJobOptions(kind, keepCompleted), jobId: job.taskId, priority: Math.min(MAX_PRIORITY, Math.max(1, Math.round(job.priority))) },
        })),
      );
    },
    withdraw: async (kind, taskId) => {
      await queue(kind).remove(taskId);
    },
    close: async () => {
      await Promise.all([...queues.values()].map((q) => q.close()));
    },
  };
};

// Whether work can be handed to this queue now: a short-lived write under the queue's own hash
// tag (on a cluster, on the node that serves the queue), which a PING to any one node would not show.
export const probeQueueWritable = async (redis: RedisClient, queue: Pick<Queue, "toKey">): Promise<void> => {
  await redis.set(queue.toKey("ready-probe"), String(Date.now()), "PX", 10_000);
};
