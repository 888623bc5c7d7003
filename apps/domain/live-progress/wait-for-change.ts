import type { TaskStatus } from "../db/database.ts";
import { getAccountTask, type TaskWithImages } from "../task/task.repository.ts";
import { isTerminal } from "../task/task-status.ts";
import type { LiveDeps } from "./live-feed.ts";
import { createWakeup } from "./wakeup.ts";

export type WaitOptions = {
  accountId: string;
  waitMs: number;
  // What counts as a change for this caller: the native status, or the provider's coarser one.
  changed: (before: TaskStatus, after: TaskStatus) => boolean;
  // The caller went away: stop waiting (the answer is not sent).
  signal: AbortSignal;
};

// Long-poll: answers the task as soon as its status changes, or as it is when the wait is over.
// A task that has already ended is answered at once.
export const waitForTaskChange = async (deps: LiveDeps, seen: TaskWithImages, options: WaitOptions): Promise<TaskWithImages> => {
  if (options.waitMs <= 0 || isTerminal(seen.status)) return seen;
  const deadline = Date.now() + options.waitMs;
  const wakeup = createWakeup();
  const unwatch = deps.hub.watch(options.accountId, { taskId: seen.id }, () => wakeup.poke());
  // The task may have moved between the caller's read and the subscription: look once at once.
  wakeup.poke();
  try {
    let current = seen;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0 || options.signal.aborted || deps.hub.closed) return current;
      await wakeup.wait(Math.min(left, deps.resyncMs), options.signal);
      if (options.signal.aborted) return current;
      current = await getAccountTask(deps.db, options.accountId, seen.id);
      if (options.changed(seen.status, current.status)) return current;
    }
  } finally {
    unwatch();
  }
};
