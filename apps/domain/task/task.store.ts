import { sql } from "kysely";
import { compiledOnce } from "../db/compiled-statement.ts";
import type { Db, Task, TaskStatus } from "../db/database.ts";

// Writes with names, beside task.repository.ts (reads) and task-transition.ts (status changes).
// Each is guarded by the status it expects, so a write never lands on a task that moved on.

// Why a task is not moving right now (waiting for slots, a paused provider, a retried download):
// shown as the native status_message and the drop-in task_status_msg.
export const markWaiting = async (db: Db, taskId: string, statuses: readonly TaskStatus[], reason: string | null) => {
  await db
    .updateTable("task")
    .set({ waitReason: reason, updatedAt: new Date() })
    .where("id", "=", taskId)
    .where("status", "in", statuses)
    .where((eb) => (reason === null ? eb("waitReason", "is not", null) : eb.or([eb("waitReason", "is", null), eb("waitReason", "!=", reason)])))
    .execute();
};

// When reconciliation next looks at the task if nothing is heard from it.
// Hot statements (a callback, a job, each task) are compiled once (compiled-statement.ts).
const scheduleCheckStatement = compiledOnce(["taskId", "status", "at", "providerTaskId"], (db, v) =>
  db
    .updateTable("task")
    .set({ nextCheckAt: v.at, providerTaskId: sql<string | null>`coalesce(${v.providerTaskId}, provider_task_id)` })
    .where("id", "=", v.taskId)
    .where("status", "=", v.status),
);
export const scheduleCheck = async (db: Db, taskId: string, status: TaskStatus, at: Date, providerTaskId?: string) => {
  await scheduleCheckStatement(db, { taskId, status, at, providerTaskId: providerTaskId || null });
};

// The lease of one submission attempt (see submit-task.ts): taken only if no live attempt holds it;
// answers the task as it is now, or undefined when another attempt is in progress.
const claimStatement = compiledOnce(["taskId", "leaseSeconds"], (db, v) =>
  db
    .updateTable("task")
    .set({ submitLeaseUntil: sql<Date>`now() + make_interval(secs => ${v.leaseSeconds})` })
    .where("id", "=", v.taskId)
    .where("status", "in", ["queued", "submitting"])
    .where((eb) => eb.or([eb("submitLeaseUntil", "is", null), eb("submitLeaseUntil", "<", sql<Date>`now()`)]))
    .returningAll(),
);
export const claimSubmitAttempt = async (db: Db, taskId: string, leaseMs: number): Promise<Task | undefined> =>
  (await claimStatement(db, { taskId, leaseSeconds: leaseMs / 1000 }))[0];

export const renewSubmitAttempt = async (db: Db, taskId: string, leaseMs: number) => {
  await db
    .updateTable("task")
    .set({ submitLeaseUntil: sql<Date>`now() + make_interval(secs => ${leaseMs / 1000})` })
    .where("id", "=", taskId)
    .where("submitLeaseUntil", "is not", null)
    .execute();
};

export const releaseSubmitAttempt = async (db: Db, taskId: string) => {
  await db.updateTable("task").set({ submitLeaseUntil: null }).where("id", "=", taskId).execute();
};

// A source image found good: its size and stored bytes, and (while the task is still queued) no
// more wait reason from a retried download, in one statement.
const checkedSourceStatement = compiledOnce(["taskId", "width", "height", "sourceKey", "now"], (db, v) =>
  db
    .updateTable("task")
    .set({
      sourceWidth: v.width,
      sourceHeight: v.height,
      sourceKey: v.sourceKey,
      waitReason: sql<string | null>`case when status = 'queued' then null else wait_reason end`,
      updatedAt: v.now,
    })
    .where("id", "=", v.taskId),
);
export const recordCheckedSource = async (db: Db, taskId: string, source: { width: number; height: number; sourceKey: string }) => {
  await checkedSourceStatement(db, { taskId, ...source, now: new Date() });
};

// Transient provider errors spend the task's retry budget; the new count decides whether to go on.
export const spendTransientFailure = async (db: Db, taskId: string): Promise<number> => {
  const row = await db
    .updateTable("task")
    .set((eb) => ({ transientFailures: eb("transientFailures", "+", 1), updatedAt: new Date() }))
    .where("id", "=", taskId)
    .returning("transientFailures")
    .executeTakeFirstOrThrow();
  return row.transientFailures;
};

export type StoredImage = { storageKey: string; width: number; height: number; bytes: number; sha256: string };

export const recordStoredImage = async (db: Db, taskId: string, index: number, image: StoredImage) => {
  await db
    .updateTable("taskImage")
    .set({ ...image, storedAt: new Date() })
    .where("taskId", "=", taskId)
    .where("index", "=", index)
    .execute();
};
