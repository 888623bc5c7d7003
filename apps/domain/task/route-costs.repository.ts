import { sql } from "kysely";
import type { Db } from "../db/database.ts";

export type RouteTaskCounts = { route: string | null; tasks: number; succeeded: number; failed: number; slotTasks: number };

// An account's tasks by the route that ran them: a task counts where the provider accepted it
// (it has a provider task id). Money by route comes from the ledger (credits/credit-totals.ts).
export const tasksByRoute = async (db: Db, accountId: string): Promise<RouteTaskCounts[]> => {
  const rows = await db
    .selectFrom("task")
    .select((eb) => [
      "route",
      eb.fn.countAll<string>().as("tasks"),
      sql<string>`count(*) filter (where status = 'succeeded')`.as("succeeded"),
      sql<string>`count(*) filter (where status = 'failed')`.as("failed"),
      sql<string>`coalesce(sum(n), 0)`.as("slotTasks"),
    ])
    .where("accountId", "=", accountId)
    .where("providerTaskId", "is not", null)
    .groupBy("route")
    .orderBy("route")
    .execute();
  return rows.map((r) => ({
    route: r.route,
    tasks: Number(r.tasks),
    succeeded: Number(r.succeeded),
    failed: Number(r.failed),
    slotTasks: Number(r.slotTasks),
  }));
};
