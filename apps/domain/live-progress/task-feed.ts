import type { TaskEvent } from "../db/database.ts";
import { isUuid } from "../db/uuid.ts";
import { AppError } from "../errors/app-error.ts";
import type { TaskWithImages } from "../task/task.repository.ts";
import { isTerminal } from "../task/task-status.ts";
import { openFeed, type Feed, type FeedStep, type LiveDeps } from "./live-feed.ts";
import { readTaskProgress } from "./task-progress.repository.ts";

// A transition carries the id of its task_event row; a task snapshot carries the id of the newest
// event it reflects, so a client that resumes from either id misses nothing.
export type TaskFeedMessage = { kind: "transition"; id: string; event: TaskEvent } | { kind: "task"; id: string; task: TaskWithImages };

const notFound = (taskId: string) => new AppError("not_found", `task '${taskId}' not found`);

// One task of one account. First: the transitions after the client's last event id (none without
// one), then the task; after that, each change the same way.
export const openTaskFeed = async (
  deps: LiveDeps,
  query: { accountId: string; taskId: string; lastEventId: string | null },
): Promise<Feed<TaskFeedMessage>> => {
  // Not a task id at all: the same 404 as an unknown one (and no query with a malformed uuid).
  if (!isUuid(query.taskId)) throw notFound(query.taskId);
  let lastEventId = query.lastEventId;
  let lastUpdatedAt = -1;
  let resumed = lastEventId !== null;
  const read = async (): Promise<FeedStep<TaskFeedMessage>> => {
    const progress = await readTaskProgress(deps.db, query.accountId, query.taskId, lastEventId);
    if (!progress) {
      // Gone before the first read: a 404. Deleted later (its account removed): nothing more comes.
      if (lastUpdatedAt === -1) throw notFound(query.taskId);
      return { messages: [], terminal: true };
    }
    const messages: TaskFeedMessage[] = [];
    // Without a last event id the first snapshot is the whole story; later, transitions come first.
    if (resumed) for (const event of progress.events) messages.push({ kind: "transition", id: event.id, event });
    resumed = true;
    const updatedAt = progress.task.updatedAt.getTime();
    if (messages.length > 0 || updatedAt !== lastUpdatedAt || lastEventId !== progress.lastEventId) {
      messages.push({ kind: "task", id: progress.lastEventId, task: progress.task });
    }
    lastEventId = progress.lastEventId;
    lastUpdatedAt = updatedAt;
    return { messages, terminal: isTerminal(progress.task.status) };
  };
  return openFeed(deps, { accountId: query.accountId, topic: { taskId: query.taskId } }, read);
};
