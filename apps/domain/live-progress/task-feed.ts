import { z } from "zod";
import type { Db, TaskEvent } from "../db/database.ts";
import { AppError } from "../errors/app-error.ts";
import type { TaskWithImages } from "../task/task.repository.ts";
import { isTerminal } from "../task/task-status.ts";
import type { ChangeHub } from "./change-hub.ts";
import { readTaskProgress, type TaskProgress } from "./task-progress.repository.ts";
import { createWakeup } from "./wakeup.ts";

export type LiveDeps = {
  db: Db;
  hub: ChangeHub;
  // How often a follower re-reads Postgres even without a notification: the bound on how late the
  // final state can be when a pub/sub message is lost.
  resyncMs: number;
};

// A transition carries the id of its task_event row; a task snapshot carries the id of the newest
// event it reflects, so a client that resumes from either id misses nothing.
export type FeedMessage = { kind: "transition"; id: string; event: TaskEvent } | { kind: "task"; id: string; task: TaskWithImages };

export type FeedStep = { messages: FeedMessage[]; terminal: boolean };

export type TaskFeed = {
  // Sent first: the transitions after the client's last event id (none without one), then the task.
  first: FeedStep;
  // The next change; undefined once the signal aborted or the process is shutting down.
  next(signal: AbortSignal): Promise<FeedStep | undefined>;
  // Releases the subscription; safe to call more than once.
  close(): void;
};

const notFound = (taskId: string) => new AppError("not_found", `task '${taskId}' not found`);

// Follows one task of one account: notifications are hints to re-read Postgres, which is the truth,
// and a timer re-reads anyway, so a lost message delays an update by at most resyncMs.
export const openTaskFeed = async (deps: LiveDeps, query: { accountId: string; taskId: string; lastEventId: string | null }): Promise<TaskFeed> => {
  // Not a task id at all: the same 404 as an unknown one (and no query with a malformed uuid).
  if (!z.uuid().safeParse(query.taskId).success) throw notFound(query.taskId);
  const wakeup = createWakeup();
  // Listening starts before the first read: a change committed in between is seen by the read or
  // pokes the wakeup, never neither.
  const unwatch = deps.hub.watch(query.accountId, { taskId: query.taskId }, () => wakeup.poke());
  let lastEventId = query.lastEventId;
  let lastUpdatedAt = -1;

  const stepFrom = (progress: TaskProgress, resumed: boolean): FeedStep => {
    const messages: FeedMessage[] = [];
    // Without a last event id the snapshot is the whole story; with one, the missed transitions come first.
    if (resumed) for (const event of progress.events) messages.push({ kind: "transition", id: event.id, event });
    const updatedAt = progress.task.updatedAt.getTime();
    if (messages.length > 0 || updatedAt !== lastUpdatedAt || lastEventId !== progress.lastEventId) {
      messages.push({ kind: "task", id: progress.lastEventId, task: progress.task });
    }
    lastEventId = progress.lastEventId;
    lastUpdatedAt = updatedAt;
    return { messages, terminal: isTerminal(progress.task.status) };
  };

  let first: FeedStep;
  try {
    const progress = await readTaskProgress(deps.db, query.accountId, query.taskId, lastEventId);
    if (!progress) throw notFound(query.taskId);
    first = stepFrom(progress, lastEventId !== null);
  } catch (error) {
    unwatch();
    throw error;
  }

  return {
    first,
    async next(signal) {
      for (;;) {
        await wakeup.wait(deps.resyncMs, signal);
        if (signal.aborted || deps.hub.closed) return undefined;
        const progress = await readTaskProgress(deps.db, query.accountId, query.taskId, lastEventId);
        // Deleted meanwhile (its account was removed): nothing more will come.
        if (!progress) return { messages: [], terminal: true };
        const step = stepFrom(progress, true);
        if (step.messages.length > 0 || step.terminal) return step;
      }
    },
    close: unwatch,
  };
};
