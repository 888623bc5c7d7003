import type { RedisClient } from "./redis-connection.ts";

// Fairness between accounts without serialising intake: an account's k-th waiting task is enqueued
// with BullMQ priority k (lower runs sooner), so a single interactive task overtakes a bulk backlog
// and accounts sharing the provider take turns. The count per account lives in one Redis hash and
// only grows at intake; the sweeper sets it back to the true number of queued tasks from Postgres
// every few seconds (resync), so tasks that left the queue are forgotten without bookkeeping on
// every path that moves a task on.
//
// Batch items count in a hash of their own and queue behind single tasks: an account's k-th waiting
// batch item has priority BATCH_PRIORITY_BASE + k. A single task (of any account) overtakes every
// batch, and two accounts' batches take turns item by item. A chunk of items takes its range of
// priorities with one HINCRBY, not one per item.
export const BATCH_PRIORITY_BASE = 10_000;

export const FAIR_TAG = "{fair}";

export type FairPriority = {
  next(accountId: string): Promise<number>;
  // The first of `count` consecutive priorities for an account's batch items.
  nextBatchRange(accountId: string, count: number): Promise<number>;
  resync(queuedByAccount: ReadonlyMap<string, number>, batchQueuedByAccount?: ReadonlyMap<string, number>): Promise<void>;
};

export const createFairPriority = (redis: RedisClient, prefix: string): FairPriority => {
  // One hash tag for both: resync's MULTI writes them together, which a cluster allows in one slot.
  const key = `${prefix}:${FAIR_TAG}:queued-by-account`;
  const batchKey = `${prefix}:${FAIR_TAG}:batch-queued-by-account`;
  return {
    next: (accountId) => redis.hincrby(key, accountId, 1),
    nextBatchRange: async (accountId, count) => BATCH_PRIORITY_BASE + (await redis.hincrby(batchKey, accountId, count)) - count + 1,
    resync: async (queuedByAccount, batchQueuedByAccount = new Map()) => {
      const multi = redis.multi().del(key).del(batchKey);
      if (queuedByAccount.size > 0) multi.hset(key, Object.fromEntries(queuedByAccount));
      if (batchQueuedByAccount.size > 0) multi.hset(batchKey, Object.fromEntries(batchQueuedByAccount));
      await multi.exec();
    },
  };
};
