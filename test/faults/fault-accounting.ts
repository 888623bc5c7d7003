import type pg from "pg";
import type { SimTaskView } from "../support/fault-kit.ts";
import type { FaultStack } from "./fault-stack.ts";

// One submitted task and what its fault may do to it.
export type PlannedTask = {
  id: string;
  n: number;
  // How it was made to misbehave (a source or result answer), for the notes.
  label: string;
  // Failure classes this fault explains for this task; empty: it must succeed.
  mayFailWith: readonly string[];
  // The task must fail (its input is bad): success would be wrong, not a recovery.
  mustFail?: boolean;
};

export type FaultCount = {
  fault: string;
  tasks: number;
  succeeded: number;
  failedAsExpected: number;
  lost: number;
  duplicatedAtProvider: number;
  maxRecoveryS: number;
  // Why each lost or duplicated task was counted so, and anything else odd, for stderr.
  notes: string[];
};

type TaskRow = {
  id: string;
  status: string;
  n: number;
  failure_class: string | null;
  failure_message: string | null;
  provider_task_id: string | null;
  resubmissions: number;
  finished_at: Date | null;
  stored_images: number;
};

const terminal = ["succeeded", "failed", "canceled"];

export const readTasks = async (db: pg.Pool, ids: string[]): Promise<TaskRow[]> =>
  (
    await db.query<TaskRow>(
      `select t.id, t.status, t.n, t.failure_class, t.failure_message, t.provider_task_id, t.resubmissions, t.finished_at,
              (select count(*)::int from task_image i where i.task_id = t.id and i.storage_key is not null) as stored_images
         from task t where t.id = any($1::uuid[])`,
      [ids],
    )
  ).rows;

// Tasks per status, for the moment of injection.
export const census = async (db: pg.Pool): Promise<Record<string, number>> => {
  const { rows } = await db.query<{ status: string; count: number }>("select status, count(*)::int as count from task group by status");
  return Object.fromEntries(rows.map((r) => [r.status, r.count]));
};

// Resolves once every task is terminal or the deadline has passed; true if all ended.
export const waitUntilTerminal = async (db: pg.Pool, ids: string[], deadline: number): Promise<boolean> => {
  for (;;) {
    const { rows } = await db.query<{ open: number }>(
      "select count(*)::int as open from task where id = any($1::uuid[]) and status not in ('succeeded', 'failed', 'canceled')",
      [ids],
    );
    if (rows[0]!.open === 0) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
};

const lastEvents = async (db: pg.Pool, taskId: string, count = 4) => {
  const { rows } = await db.query<{ from_status: string | null; to_status: string; source: string; detail: unknown }>(
    "select from_status, to_status, source, detail from task_event where task_id = $1 order by id desc limit $2",
    [taskId, count],
  );
  return rows
    .reverse()
    .map((e) => `${e.from_status ?? "-"}->${e.to_status}(${e.source}${e.detail ? ` ${JSON.stringify(e.detail)}` : ""})`)
    .join(" ");
};

// Counts one fault's batch from Postgres and the simulator. A task is lost when it is not terminal
// by the deadline, failed for a reason the fault does not explain, succeeded although its input was
// bad, or succeeded without all its images stored; `tainted` lists tasks that something outside
// the provider (a forged callback) was allowed to change. A provider task is duplicated when it is
// one more than one per task (less the documented resubmissions of a task the provider lost), when
// a create with an external_task_id already taken was even tried (a provider that does not enforce
// uniqueness would have run and billed it), or when it is no task of ours at all.
export const countFault = async (
  stack: FaultStack,
  planned: PlannedTask[],
  timing: { healedAt: number; deadlineAt: number; allEnded: boolean },
  tainted: ReadonlyMap<string, string> = new Map(),
): Promise<FaultCount> => {
  const notes: string[] = [];
  const rows = new Map((await readTasks(stack.db, planned.map((p) => p.id))).map((r) => [r.id, r]));
  const [simTasks, stats] = (await Promise.all([stack.sim.tasks(), stack.sim.stats()])) as [SimTaskView[], Record<string, number>];

  let succeeded = 0;
  let failedAsExpected = 0;
  let lost = 0;
  let lastEnd = timing.healedAt;
  for (const plan of planned) {
    const row = rows.get(plan.id);
    const why = lostReason(plan, row, tainted.get(plan.id));
    if (row?.finished_at) lastEnd = Math.max(lastEnd, row.finished_at.getTime());
    if (why) {
      lost++;
      notes.push(`lost ${plan.id} [${plan.label}]: ${why}; events: ${await lastEvents(stack.db, plan.id)}`);
    } else if (row!.status === "succeeded") succeeded++;
    else failedAsExpected++;
  }

  // Where tasks were made to misbehave in different ways, how each way ended.
  if (planned.some((p) => p.label !== "plain")) {
    const outcomes = new Map<string, number>();
    for (const plan of planned) {
      const row = rows.get(plan.id);
      const end = `${plan.label} -> ${row?.status ?? "missing"}${row?.failure_class ? `/${row.failure_class}` : ""}`;
      outcomes.set(end, (outcomes.get(end) ?? 0) + 1);
    }
    notes.push(`outcomes: ${[...outcomes].sort().map(([end, n]) => `${end} x${n}`).join("; ")}`);
  }

  let duplicated = 0;
  // (Map.groupBy needs Node 21.)
  const byExternalId = new Map<string, SimTaskView[]>();
  for (const t of simTasks) byExternalId.set(t.external_task_id ?? "", [...(byExternalId.get(t.external_task_id ?? "") ?? []), t]);
  for (const plan of planned) {
    const mine = byExternalId.get(plan.id) ?? [];
    const allowed = 1 + (rows.get(plan.id)?.resubmissions ?? 0);
    if (mine.length > allowed) {
      duplicated += mine.length - allowed;
      notes.push(`duplicated ${plan.id}: ${mine.length} provider tasks (${mine.map((t) => t.task_id).join(", ")})`);
    }
    const row = rows.get(plan.id);
    if (mine.length === 1 && row?.provider_task_id && row.provider_task_id !== mine[0]!.task_id) {
      notes.push(`task ${plan.id} tracks provider task ${row.provider_task_id}, the provider has ${mine[0]!.task_id}`);
    }
  }
  const ours = new Set(planned.map((p) => p.id));
  const foreign = simTasks.filter((t) => !ours.has(t.external_task_id ?? ""));
  if (foreign.length > 0) {
    duplicated += foreign.length;
    notes.push(`${foreign.length} provider tasks are none of ours: ${foreign.map((t) => `${t.task_id}/${t.external_task_id}`).join(", ")}`);
  }
  const refusedDuplicates = stats.duplicate_external_task_ids ?? 0;
  if (refusedDuplicates > 0) {
    duplicated += refusedDuplicates;
    notes.push(`${refusedDuplicates} creates were refused as a duplicate external_task_id (a second create was tried)`);
    // Which tasks had more than one create call (rate-limit refusals among them are harmless).
    for (const { external_task_id: id, count } of await stack.sim.createCalls()) {
      if (count > 1 && ours.has(id)) notes.push(`  ${id}: ${count} create calls; events: ${await lastEvents(stack.db, id, 8)}`);
    }
  }
  // What the provider saw: evidence that the fault bit (callbacks that failed while the API was
  // down, errors and hangs injected), whatever the count.
  const seen = ["tasks_created", "create_calls", "get_calls", "errors_injected", "connection_faults", "rejected_over_capacity", "callbacks_sent", "callbacks_failed", "callbacks_lost", "callbacks_duplicated"];
  notes.push(`the provider saw: ${seen.map((k) => `${k}=${stats[k] ?? "?"}`).join(" ")}`);
  if ((stats.peak_slots_in_use ?? 0) > (stats.capacity ?? Infinity)) {
    notes.push(`the provider saw ${stats.peak_slots_in_use} slots in use at once; the capacity is ${stats.capacity}`);
  }

  // From the heal to the last task's end; with a task still open, the whole wait (a lower bound).
  const end = timing.allEnded ? lastEnd : Math.max(lastEnd, timing.deadlineAt);
  if (!timing.allEnded) notes.push("not every task ended by the deadline: max_recovery_s is the whole wait, a lower bound");
  return {
    fault: stack.name,
    tasks: planned.length,
    succeeded,
    failedAsExpected,
    lost,
    duplicatedAtProvider: duplicated,
    maxRecoveryS: Math.max(0, end - timing.healedAt) / 1000,
    notes,
  };
};

const lostReason = (plan: PlannedTask, row: TaskRow | undefined, taint: string | undefined): string | undefined => {
  if (!row) return "no such task in Postgres";
  if (taint) return `changed by something other than the provider: ${taint}`;
  if (!terminal.includes(row.status)) return `still ${row.status} at the deadline`;
  if (row.status === "succeeded") {
    if (plan.mustFail) return "succeeded although its input was bad";
    if (row.stored_images !== row.n) return `succeeded with ${row.stored_images} of ${row.n} images stored`;
    return undefined;
  }
  if (row.status === "failed" && row.failure_class && plan.mayFailWith.includes(row.failure_class)) return undefined;
  return `${row.status} with ${row.failure_class ?? "no class"}: ${row.failure_message ?? ""}`;
};

export const formatFaultLine = (c: FaultCount) =>
  `fault=${c.fault} tasks=${c.tasks} succeeded=${c.succeeded} failed_as_expected=${c.failedAsExpected} lost=${c.lost} ` +
  `duplicated_at_provider=${c.duplicatedAtProvider} max_recovery_s=${c.maxRecoveryS.toFixed(1)}`;

export const formatTotalLine = (counts: FaultCount[]) => {
  const sum = (pick: (c: FaultCount) => number) => counts.reduce((total, c) => total + pick(c), 0);
  return `total tasks=${sum((c) => c.tasks)} succeeded=${sum((c) => c.succeeded)} lost=${sum((c) => c.lost)} duplicated_at_provider=${sum((c) => c.duplicatedAtProvider)}`;
};
