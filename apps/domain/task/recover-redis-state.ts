import type { Db } from "../db/database.ts";
import type { ProviderSlots } from "../provider-capacity/provider-slots.ts";
import type { ProviderRouteSet } from "../provider-capacity/provider-route-set.ts";
import type { TaskStatus } from "../db/database.ts";
import { inFlightStatuses, nonTerminalStatuses } from "./task-status.ts";

// Postgres is the source of truth; Redis only moves work (DESIGN.md "Redis is disposable").
export type RecoveryDeps = { db: Db; routes: ProviderRouteSet };

export type RecoverySummary = { slotsHeld: number; tasksRechecked: number };

// After Redis came back without its data: the slot ledger is empty while the provider still runs
// our tasks, and every job is gone. Hold the slots of every task the provider may be running
// (in flight, and `submitting`, whose create may have landed) before anything else can take them,
// then bring every unfinished task's next check forward, so the sweeper re-adds missing jobs and
// polls the provider for tasks whose callbacks were refused while Redis was away.
export const recoverLostRedisState = async (deps: RecoveryDeps): Promise<RecoverySummary> => {
  const holders = await deps.db
    .selectFrom("task")
    .select(["id", "n", "route"])
    .where("status", "in", [...inFlightStatuses, "submitting"])
    .execute();
  // Each on the route that has it (a route since removed from the configuration holds nothing of ours).
  for (const route of deps.routes.all) {
    await holdSlotsOfRunningTasks(deps.db, route.slots, holders.filter((t) => deps.routes.of(t.route) === route), [...inFlightStatuses, "submitting"]);
  }
  const tasksRechecked = await recheckUnfinishedTasksNow(deps.db);
  return { slotsHeld: holders.length, tasksRechecked };
};

// After an outage without data loss: jobs are still there, but callbacks may have been answered
// 503 (a provider that does not retry then never sends them again) and archive jobs may not have
// been added. Looking at every unfinished task now costs a sweep; waiting costs minutes.
export const recheckUnfinishedTasksNow = async (db: Db): Promise<number> => {
  const result = await db
    .updateTable("task")
    .set({ nextCheckAt: new Date() })
    .where("status", "in", nonTerminalStatuses)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
};

// Holds the slots of tasks a read found running, then reads them again and gives back the slots of
// those that ended meanwhile. A task's slots are released only after its row says it ended (see
// applyProviderReport), so a task still running at the second read releases after this hold, and
// one that ended before it is caught here: either way no ended task keeps slots.
export const holdSlotsOfRunningTasks = async (
  db: Db,
  slots: ProviderSlots,
  tasks: readonly { id: string; n: number }[],
  runningStatuses: readonly TaskStatus[],
): Promise<number> => {
  if (tasks.length === 0) return 0;
  for (const task of tasks) await slots.hold(task.id, task.n);
  const still = await db.selectFrom("task").select("id").where("id", "in", tasks.map((t) => t.id)).where("status", "in", runningStatuses).execute();
  const running = new Set(still.map((t) => t.id));
  for (const task of tasks) if (!running.has(task.id)) await slots.release(task.id);
  return running.size;
};
