import { z } from "zod";
import type { Db, TaskStatus } from "../db/prisma-client.ts";
import { AppError } from "../errors/app-error.ts";

const isUuid = (value: string) => z.uuid().safeParse(value).success;

const notFound = (id: string) => new AppError("not_found", `task '${id}' not found`);

// A task of another account is indistinguishable from one that does not exist.
export const getAccountTask = async (db: Db, accountId: string, id: string, options: { byExternalId?: boolean } = {}) => {
  const task = isUuid(id)
    ? await db.task.findFirst({ where: { id, accountId }, include: { images: true } })
    : null;
  if (task) return task;
  if (options.byExternalId) {
    const byExternal = await db.task.findUnique({
      where: { accountId_externalTaskId: { accountId, externalTaskId: id } },
      include: { images: true },
    });
    if (byExternal) return byExternal;
  }
  throw notFound(id);
};

export type TaskListQuery = { externalTaskId?: string; status?: TaskStatus; cursor?: string; limit: number };

// Ids are UUIDv7 (time-ordered), so "newest first, after this id" is a stable cursor.
export const listAccountTasks = async (db: Db, accountId: string, query: TaskListQuery) => {
  const rows = await db.task.findMany({
    where: {
      accountId,
      ...(query.externalTaskId ? { externalTaskId: query.externalTaskId } : {}),
      ...(query.status ? { status: query.status } : {}),
      ...(query.cursor ? { id: { lt: query.cursor } } : {}),
    },
    include: { images: true },
    orderBy: { id: "desc" },
    take: query.limit + 1,
  });
  const page = rows.slice(0, query.limit);
  return { tasks: page, nextCursor: rows.length > query.limit ? page.at(-1)?.id : undefined };
};

export const listTaskEvents = async (db: Db, accountId: string, taskId: string) => {
  await getAccountTask(db, accountId, taskId);
  return db.taskEvent.findMany({ where: { taskId }, orderBy: { id: "asc" } });
};
