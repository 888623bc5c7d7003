import { setMaxListeners } from "node:events";
import type { Job, Processor, Worker } from "bullmq";
import type { Logger } from "../logging/logger.ts";

// A worker stopped on purpose (SIGTERM in a rolling restart) must not leave a job for BullMQ's stall
// check, which only takes it over once its lock lapses (JOB_LOCK_MS, then up to one stall interval
// more). So: `stopping` is raised first (a submit job waiting for a provider slot leaves the line and
// goes back to the queue at once), then every BullMQ worker closes (no new jobs; the active ones
// finish), and a job still running at the drain deadline is handed back to the wait list for
// another worker to take at once. Its processor may still be running; whatever it writes is guarded
// (the submit lease, task transitions that only move forward), and its own finish is then refused
// by BullMQ for want of the lock.
export const createJobDrain = (logger: Logger) => {
  const stopping = new AbortController();
  // Every submit job waiting for a slot listens (one each, up to SUBMIT_CONCURRENCY): not a leak.
  setMaxListeners(0, stopping.signal);
  const active = new Set<{ job: Job; token: string | undefined }>();
  return {
    stopping: stopping.signal,
    // Wraps a processor so that its running jobs are known.
    track:
      (processor: Processor): Processor =>
      async (job, token, signal) => {
        const entry = { job, token };
        active.add(entry);
        try {
          return await processor(job, token, signal);
        } finally {
          active.delete(entry);
        }
      },
    drain: async (workers: readonly Worker[], deadlineMs: number) => {
      stopping.abort();
      const closing = Promise.all(workers.map((w) => w.close()));
      let timer: NodeJS.Timeout | undefined;
      const late = await Promise.race([
        closing.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), deadlineMs);
        }),
      ]);
      clearTimeout(timer);
      if (!late) return { handedBack: 0 };
      const left = [...active];
      const handedBack = await Promise.all(
        left.map(({ job, token }) =>
          job.moveToWait(token).then(
            () => 1,
            (error: unknown) => {
              logger.warn({ err: error, jobId: job.id, queue: job.queueName }, "job not handed back; BullMQ's stall check will take it over");
              return 0;
            },
          ),
        ),
      );
      const count = handedBack.reduce<number>((a, b) => a + b, 0);
      logger.warn({ handedBack: count, deadlineMs }, "jobs still running at the drain deadline were handed back to the queue");
      // Not waited for: close() already began and would still wait for those processors (a later
      // close(true) only returns the same promise); the process exits without them.
      void closing.catch(() => undefined);
      return { handedBack: count };
    },
  };
};
