import { Queue, type Telemetry } from "bullmq";
import type { Redis } from "ioredis";
import { jobCatalog, type JobKind, type JobPayload } from "./job-catalog.ts";

export type TaskQueues = {
  enqueue<K extends Exclude<JobKind, "reconcile">>(kind: K, payload: JobPayload<K>, options?: { priority?: number }): Promise<void>;
  queue(kind: JobKind): Queue;
  // Takes back a job that was added for a task that was then not written.
  withdraw(kind: Exclude<JobKind, "reconcile">, taskId: string): Promise<void>;
  close(): Promise<void>;
};

// BullMQ's largest priority (lower runs sooner).
const MAX_PRIORITY = 2_097_152;

// `jobId` = task id, so enqueueing the same task twice (a retry, the sweeper) is a no-op.
export const createTaskQueues = (connection: Redis, prefix: string, telemetry?: Telemetry): TaskQueues => {
  const queues = new Map<JobKind, Queue>();
  const queue = (kind: JobKind): Queue => {
    let q = queues.get(kind);
    if (!q) {
      q = new Queue(jobCatalog[kind].queue, { connection, prefix, ...(telemetry ? { telemetry } : {}) });
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
      await queue(kind).add(entry.name, data, { ...entry.options, jobId: data.taskId, ...(priority ? { priority } : {}) });
    },
    withdraw: async (kind, taskId) => {
      await queue(kind).remove(taskId);
    },
    close: async () => {
      await Promise.all([...queues.values()].map((q) => q.close()));
    },
  };
};
