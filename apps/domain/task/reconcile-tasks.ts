import { setTimeout as sleep } from "node:timers/promises";
import { forEachConcurrently } from "../async/for-each-concurrently.ts";
import type { Task, TaskStatus } from "../db/database.ts";
import type { Logger } from "../logging/logger.ts";
import { expectedEndMs, MIN_POLL_DELAY_MS } from "../provider-capacity/provider-run-time.ts";
import type { ProviderRouteSet } from "../provider-capacity/provider-route-set.ts";
import type { FairPriority } from "../queues/fair-priority.ts";
import { ProviderError } from "../provider/provider-error.ts";
import { applyProviderReport, type ApplyReportDeps } from "./apply-provider-report.ts";
import { failTask } from "./fail-task.ts";
import { holdSlotsOfRunningTasks } from "./recover-redis-state.ts";
import { nextPollDelayMs } from "./retry-policy.ts";
import { inFlightStatuses, isTerminal } from "./task-status.ts";
import { scheduleCheck } from "./task.store.ts";
import { transitionTask } from "./task-transition.ts";
import { cancelIfBatchCanceled } from "../batch/batch-control.ts";

export type ReconcileDeps = ApplyReportDeps & {
  routes: ProviderRouteSet;
  pollMaxIntervalMs: number;
  // A task in flight longer than this (since submission) fails with a timeout reason.
  taskDeadlineMs: number;
  // Re-drives a task's job: adds it when missing (with the priority, asked only then), retries it
  // when it ended failed.
  redriveJob: (kind: "source" | "submit" | "archive", taskId: string, priority?: () => Promise<number>) => Promise<void>;
  fairPriority: Pick<FairPriority, "next" | "nextBatchRange">;
  batchSize: number;
};

// The fair-priority counts drift from the truth as tasks leave the queue; Postgres has the truth,
// except for intakes that have their priority and no row yet: the snapshot taken before the read
// keeps those (fair-priority.ts).
export const resyncFairPriority = async (deps: Pick<ReconcileDeps, "db">, fairPriority: Pick<FairPriority, "beginResync">) => {
  const apply = await fairPriority.beginResync();
  const rows = await deps.db
    .selectFrom("task")
    .select(["accountId", (eb) => eb("batchId", "is not", null).as("inBatch"), (eb) => eb.fn.countAll<string>().as("queued")])
    .where("status", "=", "queued")
    .groupBy(["accountId", "inBatch"])
    .execute();
  // Single tasks and batch items are counted apart (fair-priority.ts).
  const count = (inBatch: boolean) => new Map(rows.filter((r) => Boolean(r.inBatch) === inBatch).map((r) => [r.accountId, Number(r.queued)]));
  await apply(count(false), count(true));
};

// A re-added job takes its place in line as at intake: a single task ahead of every batch item,
// a batch item after its account's others. Without a priority BullMQ runs a job before every
// prioritised one, so after Redis restarted empty a whole re-added batch went ahead of single tasks.
const fairPriorityOf = (deps: Pick<ReconcileDeps, "fairPriority">, task: Pick<Task, "accountId" | "batchId">) => () =>
  task.batchId === null ? deps.fairPriority.next(task.accountId) : deps.fairPriority.nextBatchRange(task.accountId, 1);

// A URL image not yet checked goes through the source stage before it can be submitted.
export const needsSourceCheck = (task: Pick<Task, "imageUrl" | "sourceWidth">) => task.imageUrl !== null && task.sourceWidth === null;

export type ReconcileSummary = { polled: number; redriven: number; timedOut: number; slotsRepaired: number; errors: number };

const POLL_CONCURRENCY = 16;
// A follow-up wakes no more often than this (a burst of checks due together is one wake).
const FOLLOW_MIN_WAIT_MS = 25;

const overdueTasks = (deps: Pick<ReconcileDeps, "db" | "batchSize">, statuses: readonly TaskStatus[]) =>
  deps.db
    .selectFrom("task")
    .selectAll()
    .where("status", "in", statuses)
    .where("nextCheckAt", "<=", new Date())
    .orderBy("nextCheckAt", "asc")
    .limit(deps.batchSize)
    .execute();

// A lost end callback is noticed by the poll at the task's expected end (next_check_at, from the
// provider's learnt run time: apply-provider-report.ts); with only a sweep every RECONCILE_EVERY_MS
// that poll would come up to that much later, the task's slots held all the while (measured by
// `npm run bench:provider`). So until the next sweep is due, a sweep waits for the in-flight checks
// that fall due and polls them then: one indexed read per wake, and none when nothing is due soon.
// Checks already due count too: those that fell due while the sweep did its other work, or while
// the previous wake's polls ran, would otherwise wait for a later check's wake or the next sweep
// (up to a sweep interval: the bench's slowest poll-found ends).
export const followUpcomingChecks = async (deps: ReconcileDeps, untilMs: number): Promise<number> => {
  let polled = 0;
  for (let wake = 0; ; wake++) {
    const now = Date.now();
    if (untilMs - now < FOLLOW_MIN_WAIT_MS) return polled;
    const next = await deps.db
      .selectFrom("task")
      .select("nextCheckAt")
      .where("status", "in", inFlightStatuses)
      .where("nextCheckAt", "<", new Date(untilMs))
      .orderBy("nextCheckAt", "asc")
      .limit(1)
      .executeTakeFirst();
    if (!next?.nextCheckAt) return polled;
    // The first wake polls what is already due at once; later ones batch a burst (and a task whose
    // poll failed without moving its check is not asked again at once).
    await sleep(Math.max(wake === 0 ? 0 : FOLLOW_MIN_WAIT_MS, next.nextCheckAt.getTime() - Date.now()));
    await forEachConcurrently(await overdueTasks(deps, inFlightStatuses), POLL_CONCURRENCY, async (task) => {
      try {
        await pollTask(deps, task);
        polled++;
      } catch (error) {
        deps.logger.warn({ taskId: task.id, err: error }, "poll at the expected end failed");
      }
    });
  }
};

// Callbacks are hints; the provider's GET is the truth. Every non-terminal task carries the time of
// its next expected sign of life (`next_check_at`); a task past it is looked at here.
// `onRunningPolled`: called once the running tasks past their check are polled, before the rest
// (the caller starts following upcoming checks then, beside the ledger repair and re-drives).
export const reconcileTasks = async (deps: ReconcileDeps, onRunningPolled?: () => void): Promise<ReconcileSummary> => {
  const summary: ReconcileSummary = { polled: 0, redriven: 0, timedOut: 0, slotsRepaired: 0, errors: 0 };
  // Running tasks past their check first: one whose end callback was lost holds its slots until its
  // poll, and the ledger repair and the deadline sweep below take several statements (more under
  // load) that the poll need not wait for. Two lists, so that a large backlog of waiting tasks
  // never delays the polls of running ones.
  const running = await overdueTasks(deps, inFlightStatuses);
  await forEachConcurrently(running, POLL_CONCURRENCY, async (task) => {
    try {
      await pollTask(deps, task);
      summary.polled++;
    } catch (error) {
      summary.errors++;
      deps.logger.warn({ taskId: task.id, err: error }, "reconcile step failed");
    }
  });
  onRunningPolled?.();
  summary.timedOut = await failOverdueTasks(deps);
  summary.slotsRepaired = await repairSlotLedger(deps);
  const due = await overdueTasks(deps, ["queued", "submitting", "archiving"]);
  // A bounded number of provider calls at once: a backlog of overdue tasks must not flood the provider.
  await forEachConcurrently(due, POLL_CONCURRENCY, async (task) => {
    try {
      const kind = task.status === "archiving" ? "archive" : needsSourceCheck(task) ? "source" : "submit";
      await deps.redriveJob(kind, task.id, kind === "archive" ? undefined : fairPriorityOf(deps, task));
      await scheduleCheck(deps.db, task.id, task.status, new Date(Date.now() + deps.stallRecheckMs));
      summary.redriven++;
    } catch (error) {
      summary.errors++;
      deps.logger.warn({ taskId: task.id, err: error }, "reconcile step failed");
    }
  });
  return summary;
};

const failOverdueTasks = async (deps: ReconcileDeps) => {
  const late = await deps.db
    .selectFrom("task")
    .select("id")
    .where("status", "in", inFlightStatuses)
    .where("submittedAt", "<", new Date(Date.now() - deps.taskDeadlineMs))
    .limit(deps.batchSize)
    .execute();
  for (const { id } of late) {
    await failTask(deps, id, "sweeper", {
      class: "timeout",
      message: `the provider did not finish the task within ${Math.round(deps.taskDeadlineMs / 1000)} s of submission`,
    });
  }
  return late.length;
};

// Each route's ledger must match what its provider counts: slots of ended tasks go back (a crash
// between the end and the release), and tasks a route is running are held there (Redis lost the
// ledger).
const repairSlotLedger = async (deps: ReconcileDeps) => {
  let repaired = 0;
  for (const route of deps.routes.all) {
    const { holders } = await route.slots.snapshot();
    const heldIds = Object.keys(holders);
    if (heldIds.length > 0) {
      const live = await deps.db
        .selectFrom("task")
        .select(["id", "route", "status"])
        .where("id", "in", heldIds)
        .where("status", "in", ["queued", "submitting", ...inFlightStatuses])
        .execute();
      // A task at a provider holds slots on its own route only; one being submitted may hold them on
      // the route it is about to be sent to, which its row does not name yet.
      const onThisRoute = (t: { route: string | null; status: TaskStatus }) =>
        t.status === "queued" || t.status === "submitting" || deps.routes.of(t.route) === route;
      const liveIds = new Set(live.filter(onThisRoute).map((t) => t.id));
      for (const id of heldIds) {
        if (!liveIds.has(id) && (await route.slots.release(id)) > 0) repaired++;
      }
    }
    let runningQuery = deps.db.selectFrom("task").select(["id", "n"]).where("status", "in", inFlightStatuses);
    runningQuery = route === deps.routes.all[0] ? runningQuery.where((eb) => eb.or([eb("route", "=", route.route.name), eb("route", "is", null)])) : runningQuery.where("route", "=", route.route.name);
    if (heldIds.length > 0) runningQuery = runningQuery.where("id", "not in", heldIds);
    repaired += await holdSlotsOfRunningTasks(deps.db, route.slots, await runningQuery.execute(), inFlightStatuses);
  }
  return repaired;
};

const pollTask = async (deps: ReconcileDeps, task: Task) => {
  const reschedule = async () => {
    // A task past its expected end is looked at again soon, then less and less often as it runs
    // over: its lateness counts from when it should have ended (a poll that just missed the end of
    // a task whose callback was lost comes back shortly, its slots held meanwhile).
    const estimate = await deps.runTimeOf(task.route).estimateMs();
    const floor = Math.min(deps.callbackGraceMs, Math.max(MIN_POLL_DELAY_MS, (estimate ?? 0) / 8));
    const since = task.submittedAt ?? task.acceptedAt;
    const late = Date.now() - (estimate === undefined ? since.getTime() : expectedEndMs(since, estimate));
    await scheduleCheck(deps.db, task.id, task.status, new Date(Date.now() + nextPollDelayMs(Math.max(0, late), floor, deps.pollMaxIntervalMs)));
  };
  const route = deps.routes.of(task.route);
  if (!route) {
    await reschedule();
    throw new Error(`task ${task.id} ran on route '${task.route}', which is no longer configured (PROVIDER_ROUTES)`);
  }
  try {
    const report = task.providerTaskId
      ? await route.adapter.get(task.providerTaskId)
      : await route.adapter.findByExternalId(task.id);
    if (!report) return providerLostTask(deps, task, "not found by its external_task_id");
    // The row the sweep just read saves a read (a stale one only fails the guarded move, and the
    // report then reads the task again).
    const { task: after } = await applyProviderReport(deps, task.id, report, "poll", { known: task });
    // A report that found no row to move (raced three times) reschedules too: a check left in the
    // past would be polled again at every follow-up wake (25 ms), not once a sweep.
    if (!after || (!isTerminal(after.status) && after.status !== "archiving")) await reschedule();
  } catch (error) {
    if (error instanceof ProviderError && error.details.reason === "task_unknown") {
      return providerLostTask(deps, task, error.message);
    }
    await reschedule();
    throw error;
  }
};

// The rule for a task the provider no longer knows: if it never reported `processing`, send it again
// once (its slots are released and its job re-driven); otherwise, or the second time, fail it.
const providerLostTask = async (deps: ReconcileDeps, task: Task, why: string) => {
  if (task.status === "submitted" && task.resubmissions === 0) {
    const requeued = await transitionTask(deps, {
      taskId: task.id,
      to: "queued",
      from: ["submitted"],
      source: "poll",
      detail: { resubmit: true, reason: `the provider does not know the task: ${why}` },
      data: { resubmissions: 1, providerTaskId: null, providerStatus: null, nextCheckAt: new Date(Date.now() + deps.stallRecheckMs) },
    });
    if (requeued.applied) {
      await deps.routes.releaseSlots(task.id);
      if (await cancelIfBatchCanceled(deps, task.id, ["queued"])) return;
      await deps.redriveJob("submit", task.id, fairPriorityOf(deps, task));
    }
    return;
  }
  await failTask(deps, task.id, "poll", {
    class: "provider_lost",
    message: `the provider no longer knows this task after accepting it: ${why}`,
  });
};
