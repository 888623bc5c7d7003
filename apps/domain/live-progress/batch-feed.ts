import type { BatchProgress } from "../batch/batch-progress.ts";
import { batchProgress, findAccountBatch } from "../batch/batch.repository.ts";
import { openFeed, type Feed, type FeedStep, type LiveDeps } from "./live-feed.ts";

// One batch of one account: its progress on connect, then whenever one of its tasks changes (or the
// resync timer fires) and the counts moved. Task changes of a batch are not ordered by one event id
// the way a task's are, so a client that resumes gets a fresh snapshot, never a replay.
export const openBatchFeed = async (deps: LiveDeps, query: { accountId: string; batchId: string }): Promise<Feed<BatchProgress>> => {
  // Unknown or another account's: the same 404 as GET /v1/batches/{id}, before anything is opened.
  await findAccountBatch(deps.db, query.accountId, query.batchId);
  let lastSeen = "";
  const read = async (): Promise<FeedStep<BatchProgress>> => {
    const batch = await findAccountBatch(deps.db, query.accountId, query.batchId).catch(() => undefined);
    if (!batch) return { messages: [], terminal: true };
    const progress = await batchProgress(deps.db, batch);
    const seen = JSON.stringify([progress.status, progress.counts, progress.batch.acceptedItems]);
    const messages = seen === lastSeen ? [] : [progress];
    lastSeen = seen;
    return { messages, terminal: progress.batch.endStatus !== null };
  };
  return openFeed(deps, { accountId: query.accountId, topic: { batchId: query.batchId } }, read);
};
