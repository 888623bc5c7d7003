import { sql } from "kysely";
import type { Db } from "../db/database.ts";
import { accountBalance, type CreditCap } from "./credit-ledger.ts";

// Every total of money is read here, from the ledger (credit-ledger.ts) and nowhere else: accounts,
// batches, routes, days.

export type CreditFigures = { spent: number; reserved: number };

// Batches' spent and reserved credits, for many batches in one grouped query.
export const batchCredits = async (db: Db, batchIds: readonly string[]): Promise<Map<string, CreditFigures>> => {
  const totals = new Map<string, CreditFigures>();
  if (batchIds.length === 0) return totals;
  const rows = await db
    .selectFrom("creditEntry")
    .select([
      "batchId",
      sql<string>`coalesce(sum(settled) filter (where state = 'settled'), 0)`.as("spent"),
      sql<string>`coalesce(sum(reserved) filter (where state = 'reserved'), 0)`.as("reserved"),
    ])
    .where("batchId", "in", batchIds)
    .groupBy("batchId")
    .execute();
  for (const r of rows) totals.set(r.batchId!, { spent: Number(r.spent), reserved: Number(r.reserved) });
  return totals;
};

export type RouteCredits = {
  // null: held by tasks no route has taken yet.
  route: string | null;
  tasks: number;
  settledTasks: number;
  spent: number;
  reserved: number;
  // At the route's price per slot-task (unit_price x n) when one is configured; null otherwise.
  cost: number | null;
};

// By the route that ran (or is running) each task: settled entries name their route; open holds are
// counted under their task's current route. One account, or every account (accountId undefined:
// /metrics). `from`/`to` bound the settlements counted (open holds are always current).
export const routeCredits = async (db: Db, filter: { accountId?: string; from?: Date; to?: Date } = {}): Promise<RouteCredits[]> => {
  const inPeriod = periodSql(filter.from, filter.to);
  const rows = await sql<{ route: string | null; tasks: string; settledTasks: string; spent: string; reserved: string; cost: string | null }>`
    select coalesce(e.route, t.route) as route,
      count(*) filter (where e.state = 'reserved' or (e.state in ('settled', 'released') and ${inPeriod}))::text as tasks,
      count(*) filter (where e.state = 'settled' and ${inPeriod})::text as "settledTasks",
      coalesce(sum(e.settled) filter (where e.state = 'settled' and ${inPeriod}), 0)::text as spent,
      coalesce(sum(e.reserved) filter (where e.state = 'reserved'), 0)::text as reserved,
      sum(e.cost) filter (where e.state = 'settled' and ${inPeriod})::text as cost
    from credit_entry e left join task t on t.id = e.task_id and e.state = 'reserved'
    where ${filter.accountId === undefined ? sql`true` : sql`e.account_id = ${filter.accountId}::uuid`}
    group by 1 order by 1 nulls first`.execute(db);
  return rows.rows.map((r) => ({
    route: r.route,
    tasks: Number(r.tasks),
    settledTasks: Number(r.settledTasks),
    spent: Number(r.spent),
    reserved: Number(r.reserved),
    cost: r.cost === null ? null : Number(r.cost),
  }));
};

// Sums of decimal strings, kept to the ledger's 6 places.
const round6 = (value: number) => Math.round(value * 1e6) / 1e6;

const periodSql = (from: Date | undefined, to: Date | undefined) =>
  sql<boolean>`(${from ?? null}::timestamp is null or e.settled_at >= ${from ?? null}::timestamp) and (${to ?? null}::timestamp is null or e.settled_at < ${to ?? null}::timestamp)`;

export type DayCredits = { day: string; tasks: number; spent: number; released: number; cost: number | null };

// Settlements by UTC day within [from, to).
export const dailyCredits = async (db: Db, accountId: string, from: Date, to: Date): Promise<DayCredits[]> => {
  const rows = await sql<{ day: string; tasks: string; spent: string; released: string; cost: string | null }>`
    select to_char(date_trunc('day', e.settled_at), 'YYYY-MM-DD') as day,
      count(*) filter (where e.state = 'settled')::text as tasks,
      coalesce(sum(e.settled) filter (where e.state = 'settled'), 0)::text as spent,
      count(*) filter (where e.state = 'released')::text as released,
      sum(e.cost) filter (where e.state = 'settled')::text as cost
    from credit_entry e
    where e.account_id = ${accountId}::uuid and e.settled_at >= ${from}::timestamp and e.settled_at < ${to}::timestamp
      and e.state in ('settled', 'released')
    group by 1 order by 1`.execute(db);
  return rows.rows.map((r) => ({ day: r.day, tasks: Number(r.tasks), spent: Number(r.spent), released: Number(r.released), cost: r.cost === null ? null : Number(r.cost) }));
};

export type AccountUsage = {
  balance: { spent: number; reserved: number; cap: CreditCap };
  period: { from: Date; to: Date; spent: number; cost: number | null; settledTasks: number; releasedTasks: number };
  byRoute: RouteCredits[];
  byDay: DayCredits[];
};

// An account's usage: its balance now (all time), and its settlements within [from, to).
export const accountUsage = async (db: Db, accountId: string, from: Date, to: Date, defaultCap: CreditCap): Promise<AccountUsage> => {
  const [balance, byRoute, byDay] = await Promise.all([
    accountBalance(db, accountId, defaultCap),
    routeCredits(db, { accountId, from, to }),
    dailyCredits(db, accountId, from, to),
  ]);
  const costs = byDay.filter((d) => d.cost !== null);
  return {
    balance,
    period: {
      from,
      to,
      spent: round6(byDay.reduce((sum, d) => sum + d.spent, 0)),
      cost: costs.length === 0 ? null : round6(costs.reduce((sum, d) => sum + d.cost!, 0)),
      settledTasks: byDay.reduce((sum, d) => sum + d.tasks, 0),
      releasedTasks: byDay.reduce((sum, d) => sum + d.released, 0),
    },
    byRoute,
    byDay,
  };
};
