import type { Db } from "../../apps/domain/db/database.ts";

// What tests read straight from Postgres to check what the public API cannot show (attempt counts,
// the callback inbox, that nothing was written).
export const taskRow = (db: Db, id: string) => db.selectFrom("task").selectAll().where("id", "=", id).executeTakeFirstOrThrow();

export const taskRows = (db: Db, ids: readonly string[]) =>
  ids.length === 0 ? Promise.resolve([]) : db.selectFrom("task").selectAll().where("id", "in", ids).execute();

export const callbackRows = (db: Db, taskId: string) =>
  db.selectFrom("providerCallback").selectAll().where("taskId", "=", taskId).orderBy("id", "asc").execute();

export const countTasksOf = async (db: Db, accountId: string) =>
  Number((await db.selectFrom("task").select((eb) => eb.fn.countAll<string>().as("n")).where("accountId", "=", accountId).executeTakeFirstOrThrow()).n);

export const countEventsOf = async (db: Db, accountId: string) =>
  Number(
    (
      await db
        .selectFrom("taskEvent")
        .innerJoin("task", "task.id", "taskEvent.taskId")
        .select((eb) => eb.fn.countAll<string>().as("n"))
        .where("task.accountId", "=", accountId)
        .executeTakeFirstOrThrow()
    ).n,
  );

export const countCallbacksOf = async (db: Db, taskId: string) =>
  Number((await db.selectFrom("providerCallback").select((eb) => eb.fn.countAll<string>().as("n")).where("taskId", "=", taskId).executeTakeFirstOrThrow()).n);
