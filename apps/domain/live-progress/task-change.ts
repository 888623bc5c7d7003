import type { RedisClient } from "../queues/redis-connection.ts";
import { z } from "zod";
import type { Task } from "../db/database.ts";
import type { Logger } from "../logging/logger.ts";
import { taskStatuses } from "../task/task-status.ts";

// What crosses Redis when a task changes: only enough to route it (account channel, task, batch) and
// to let a listener skip what it does not follow. Listeners re-read Postgres for the state itself,
// so a lost or duplicated message costs a delay, never a wrong answer.
export const taskChangeSchema = z.object({
  taskId: z.uuid(),
  accountId: z.uuid(),
  status: z.enum(taskStatuses),
  // A batch stream follows the tasks carrying its id; null for a task outside any batch.
  batchId: z.string().nullable(),
});

export type TaskChange = z.output<typeof taskChangeSchema>;

// Called after the change is committed; never awaited on the state-change path and never throws:
// Redis being away delays live views (they resync from Postgres on a timer), it must not fail a
// transition.
export type TaskChangeNotifier = (task: Task) => void;

// One channel per account: a task stream and a batch stream of the same account share one
// subscription, and a process subscribes only to the accounts someone is watching.
export const accountChannel = (prefix: string, accountId: string) => `${prefix}:live:account:${accountId}`;

export const taskChangeOf = (task: Task): TaskChange => ({
  taskId: task.id,
  accountId: task.accountId,
  status: task.status,
  batchId: task.batchId,
});

export const createTaskChangeNotifier =
  (redis: RedisClient, prefix: string, logger: Logger): TaskChangeNotifier =>
  (task) => {
    const change = taskChangeOf(task);
    redis.publish(accountChannel(prefix, change.accountId), JSON.stringify(change)).catch((error: unknown) => {
      logger.debug({ err: error, taskId: task.id }, "task change not published; live views resync from Postgres");
    });
  };

export const parseTaskChange = (message: string): TaskChange | undefined => {
  try {
    const parsed = taskChangeSchema.safeParse(JSON.parse(message));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
};
