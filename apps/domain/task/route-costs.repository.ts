import { sql } from "kysely";
import type { Db } from "../db/database.ts";

export type RouteCost = { route: string | null; tasks: number; succeeded: number; failed: number; slotTasks: number; cost: string | null };

// An account's tasks by the route that ran them: a task counts where the provider accepted it
// (it has a provider task id); its cost is that route's unit price times n, as recorded when it ran.
export const costsByRoute = async (db: Db, accountId: string): Promise<RouteCost[]> => {
  const rows = await db
    .selectFrom("task")
    .select((eb) => [
      "route",
      eb.fn.countAll<string>().as("tasks"),
      sql<string>`count(*) filter (where status = 'succeeded')`.as("succeeded"),
      sql<string>`count(*) filter (where status = 'failed')`.as("failed"),
      sql<string>`coalesce(sum(n), 0)`.as("slotTasks"),
      sql<string | null>`sum(unit_price * n)`.as("cost"),
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
    cost: r.cost,
  }));
};
