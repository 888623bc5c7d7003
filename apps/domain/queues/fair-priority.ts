import type { Redis } from "ioredis";

// Fairness between accounts without serialising intake: an account's k-th waiting task is enqueued
// with BullMQ priority k (lower runs sooner), so a single interactive task overtakes a bulk backlog
// and accounts sharing the provider take turns. The count per account lives in one Redis hash and
// only grows at intake; the sweeper sets it back to the true number of queued tasks from Postgres
// every few seconds (resync), so tasks that left the queue are forgotten without bookkeeping on
// every path that moves a task on.
export type FairPriority = {
  next(accountId: string): Promise<number>;
  resync(queuedByAccount: ReadonlyMap<string, number>): Promise<void>;
};

export const createFairPriority = (redis: Redis, prefix: string): FairPriority => {
  const key = `${prefix}:fair:queued-by-account`;
  return {
    next: (accountId) => redis.hincrby(key, accountId, 1),
    resync: async (queuedByAccount) => {
      const multi = redis.multi().del(key);
      if (queuedByAccount.size > 0) multi.hset(key, Object.fromEntries(queuedByAccount));
      await multi.exec();
    },
  };
};
