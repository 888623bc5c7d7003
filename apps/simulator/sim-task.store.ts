import type { ExpansionRatios } from "../domain/expand-request/expand-limits.ts";
import type { KlingTaskStatus } from "../domain/provider/kling-protocol/kling-wire.schema.ts";
import { ProviderRefusal } from "./provider-reply.ts";
import type { SimTask } from "./sim-task.ts";

const emptyStats = () => ({
  tasks_created: 0,
  tasks_succeeded: 0,
  tasks_failed: 0,
  duplicate_external_task_ids: 0,
  rejected_over_capacity: 0,
  rejected_invalid: 0,
  create_errors_forced: 0,
  tasks_forgotten: 0,
  create_calls: 0,
  get_calls: 0,
  list_calls: 0,
  errors_injected: 0,
  connection_faults: 0,
  callbacks_sent: 0,
  callbacks_lost: 0,
  callbacks_failed: 0,
  callbacks_duplicated: 0,
  callbacks_reordered: 0,
});

export type SimStats = ReturnType<typeof emptyStats>;

export type NewTask = {
  account: string;
  externalTaskId: string | undefined;
  n: number;
  ratios: ExpansionRatios;
  prompt: string | undefined;
  callbackUrl: string | undefined;
  runMs: number;
  plannedFailure: string | undefined;
  reorderCallbacks: boolean;
};

const externalKey = (account: string, externalTaskId: string) => `${account}\u0000${externalTaskId}`;

// In-memory tasks, per-account slots and counters. Every check-and-change here is synchronous,
// so two concurrent creates cannot both pass the duplicate or capacity check.
export const createSimTaskStore = () => {
  const tasks = new Map<string, SimTask>();
  const byExternalId = new Map<string, SimTask>();
  const createCounts = new Map<string, number>();
  const slots = new Map<string, { inUse: number; peak: number }>();
  let stats = emptyStats();
  // Opaque, numeric-looking and 18 digits like Kling's; seeded from the clock so restarts differ.
  let nextId = BigInt(Date.now()) * 100_000n;

  const slotsOf = (account: string) => {
    let entry = slots.get(account);
    if (!entry) slots.set(account, (entry = { inUse: 0, peak: 0 }));
    return entry;
  };

  // For the admin routes: `id` is a task_id, or with `account` also that account's external_task_id.
  const locate = (id: string, account?: string): SimTask | undefined => {
    const byTaskId = tasks.get(id);
    if (account === undefined) return byTaskId;
    return byTaskId && byTaskId.account === account ? byTaskId : byExternalId.get(externalKey(account, id));
  };

  return {
    locate,
    stats: (): SimStats => stats,

    // Counts every create call that carried this external_task_id, accepted or not.
    countCreateCall(account: string, externalTaskId: string) {
      const key = externalKey(account, externalTaskId);
      createCounts.set(key, (createCounts.get(key) ?? 0) + 1);
    },

    createCountOf: (task: SimTask): number =>
      task.externalTaskId === undefined ? 1 : (createCounts.get(externalKey(task.account, task.externalTaskId)) ?? 1),

    // `foreignSlots`: held by another client of the same account; they count against capacity but
    // not in this account's slot numbers, which are what the caller itself holds.
    admit(input: NewTask, capacity: number, foreignSlots = 0): SimTask {
      if (input.externalTaskId !== undefined && byExternalId.has(externalKey(input.account, input.externalTaskId))) {
        stats.duplicate_external_task_ids += 1;
        throw new ProviderRefusal(1201, `external_task_id: '${input.externalTaskId}' is duplicate; it must be unique within the account`);
      }
      const accountSlots = slotsOf(input.account);
      if (accountSlots.inUse + foreignSlots + input.n > capacity) {
        stats.rejected_over_capacity += 1;
        const foreign = foreignSlots > 0 ? ` (${foreignSlots} of them by another client)` : "";
        throw new ProviderRefusal(1303, `parallel task limit exceeded: ${accountSlots.inUse + foreignSlots} of ${capacity} slots in use${foreign}, this task needs ${input.n}`);
      }
      accountSlots.inUse += input.n;
      accountSlots.peak = Math.max(accountSlots.peak, accountSlots.inUse);
      const now = Date.now();
      nextId += 1n;
      const task: SimTask = { ...input, taskId: nextId.toString(), status: "submitted", statusMsg: "", createdAt: now, updatedAt: now, holdsSlots: true, forgotten: false };
      tasks.set(task.taskId, task);
      if (task.externalTaskId !== undefined) byExternalId.set(externalKey(task.account, task.externalTaskId), task);
      stats.tasks_created += 1;
      return task;
    },

    // Kling: "use either task_id or external_task_id"; another account's task does not exist.
    find(account: string, id: string): SimTask | undefined {
      const byTaskId = tasks.get(id);
      if (byTaskId && byTaskId.account === account) return byTaskId;
      return byExternalId.get(externalKey(account, id));
    },

    // updated_at strictly increases on every change, even within one millisecond.
    transition(task: SimTask, status: KlingTaskStatus, statusMsg = "") {
      task.status = status;
      task.statusMsg = statusMsg;
      task.updatedAt = Math.max(Date.now(), task.updatedAt + 1);
    },

    releaseSlots(task: SimTask) {
      if (!task.holdsSlots) return;
      task.holdsSlots = false;
      slotsOf(task.account).inUse -= task.n;
    },

    // The provider loses a task (a provider-side incident): gets answer 1203 from now on, its slots
    // are free, its external_task_id may be used again, and it never changes or calls back again.
    // `id` is a task_id, or with `account` also that account's external_task_id.
    forget(id: string, account?: string): SimTask | undefined {
      const task = locate(id, account);
      if (!task) return undefined;
      tasks.delete(task.taskId);
      if (task.externalTaskId !== undefined && byExternalId.get(externalKey(task.account, task.externalTaskId)) === task) {
        byExternalId.delete(externalKey(task.account, task.externalTaskId));
      }
      if (task.holdsSlots) {
        task.holdsSlots = false;
        slotsOf(task.account).inUse -= task.n;
      }
      task.forgotten = true;
      stats.tasks_forgotten += 1;
      return task;
    },

    // Every external_task_id that came with a create call, and how many such calls there were
    // (accepted or not), oldest first: what a caller was charged for, or tried to be.
    createCalls: (account?: string) =>
      [...createCounts.entries()]
        .map(([key, count]) => {
          const [owner = "", externalTaskId = ""] = key.split("\u0000");
          return { account: owner, external_task_id: externalTaskId, count };
        })
        .filter((entry) => account === undefined || entry.account === account),

    // Newest first, as Kling's list answers.
    list: (account?: string): SimTask[] =>
      [...tasks.values()].filter((t) => account === undefined || t.account === account).reverse(),

    slotUsage(account?: string) {
      const entries = account === undefined ? [...slots.values()] : [slotsOf(account)];
      return {
        slots_in_use: entries.reduce((sum, e) => sum + e.inUse, 0),
        // Capacity is per account, so the peak is the highest any one account reached.
        peak_slots_in_use: entries.reduce((max, e) => Math.max(max, e.peak), 0),
      };
    },

    reset() {
      tasks.clear();
      byExternalId.clear();
      createCounts.clear();
      slots.clear();
      stats = emptyStats();
    },
  };
};

export type SimTaskStore = ReturnType<typeof createSimTaskStore>;
