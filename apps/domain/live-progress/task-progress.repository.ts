import { sql } from "kysely";
import { jsonArrayFrom } from "kysely/helpers/postgres";
import { z } from "zod";
import type { Db, TaskEvent } from "../db/database.ts";
import { EventSource } from "../db/generated/enums.ts";
import { taskStatuses } from "../task/task-status.ts";
import { selectTaskWithImages, type TaskWithImages } from "../task/task.repository.ts";

export type TaskProgress = { task: TaskWithImages; events: TaskEvent[]; lastEventId: string };

// Events come back as JSON inside the row; timestamp(3) columns are UTC without a zone there.
const eventsSchema = z.array(
  z.object({
    id: z.string(),
    taskId: z.string(),
    fromStatus: z.enum(taskStatuses).nullable(),
    toStatus: z.enum(taskStatuses),
    source: z.enum(EventSource),
    detail: z.unknown(),
    createdAt: z.string().transform((s) => new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(s) ? s : `${s}Z`)),
  }),
);

// The task as GET shows it, the events after `afterEventId` and the newest event's id, in one
// statement: one snapshot of the database, so the task never runs ahead of or behind its events.
// A task's events get their ids under the task's row lock (task-transition.ts), so within one task
// ids grow in commit order and "after this id" misses nothing.
export const readTaskProgress = async (
  db: Db,
  accountId: string,
  taskId: string,
  afterEventId: string | null,
): Promise<TaskProgress | undefined> => {
  const row = await selectTaskWithImages(db)
    .select((eb) => [
      jsonArrayFrom(
        eb
          .selectFrom("taskEvent")
          .select([
            sql<string>`task_event.id::text`.as("id"),
            "taskEvent.taskId",
            "taskEvent.fromStatus",
            "taskEvent.toStatus",
            "taskEvent.source",
            "taskEvent.detail",
            "taskEvent.createdAt",
          ])
          .whereRef("taskEvent.taskId", "=", "task.id")
          .where(sql<boolean>`task_event.id > ${afterEventId ?? "0"}::bigint`)
          .orderBy("taskEvent.id"),
      ).as("newEvents"),
      eb
        .selectFrom("taskEvent")
        .select(sql<string>`coalesce(max(task_event.id), 0)::text`.as("m"))
        .whereRef("taskEvent.taskId", "=", "task.id")
        .as("lastEventId"),
    ])
    .where("task.id", "=", taskId)
    .where("task.accountId", "=", accountId)
    .executeTakeFirst();
  if (!row) return undefined;
  const { newEvents, lastEventId, ...task } = row;
  return { task, events: eventsSchema.parse(newEvents), lastEventId: lastEventId ?? "0" };
};
