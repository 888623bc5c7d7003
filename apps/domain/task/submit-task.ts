import type { Logger } from "../logging/logger.ts";
import type { ProviderRouteSet, RouteControls } from "../provider-capacity/provider-route-set.ts";
import { ProviderError } from "../provider/provider-error.ts";
import { applyProviderReport, type ApplyReportDeps } from "./apply-provider-report.ts";
import { failTask } from "./fail-task.ts";
import { backoffWithJitter } from "./retry-policy.ts";
import type { Task } from "../db/database.ts";
import { providerImageOf, type ProviderImageDeps } from "./provider-image.ts";
import { findTask } from "./task.repository.ts";
import { claimSubmitAttempt, markWaiting, releaseSubmitAttempt, renewSubmitAttempt, spendTransientFailure } from "./task.store.ts";
import { transitionTask } from "./task-transition.ts";
import { cancelIfBatchCanceled } from "../batch/batch-control.ts";
import { gateWaitReason, pickRoute, SLOT_WAIT_REASON, type PickRouteDeps } from "./pick-route.ts";
import { STEP_BACK_MS } from "../provider-capacity/provider-slots.ts";

export type SubmitTaskDeps = ApplyReportDeps & ProviderImageDeps & PickRouteDeps & {
  routes: ProviderRouteSet;
  logger: Logger;
  callbackUrlFor: (taskId: string, token: string, route: RouteControls["route"]) => string;
  maxAttempts: number;
  retryBaseMs: number;
  retryMaxMs: number;
  // One attempt's lease (renewed every third of it while the attempt runs).
  attemptLeaseMs: number;
};

export type SubmitOutcome =
  | { kind: "submitted" | "adopted" | "already_done" | "failed" }
  // Waits for slots, rate limits, an open circuit or a paused account do not spend the retry
  // budget; only transient failures do (see spendRetry).
  | { kind: "retry_later"; delayMs: number; reason: string }
  | { kind: "task_missing" }
  | { kind: "needs_source_check" };

const RATE_LIMIT_FLOOR_MS = 1_000;
const ATTEMPT_BUSY_RETRY_MS = 1_000;

// One submission attempt for one task. Never creates a second provider task for the same task: a
// task found in `submitting` had an attempt whose outcome we may not know, so we ask first, and
// only the route of that attempt (which may hold it) is asked or used until it answers.
export const submitTask = async (
  deps: SubmitTaskDeps,
  taskId: string,
  options: { priority?: number } = {},
): Promise<SubmitOutcome> => {
  // The source bytes (up to 10 MB) are read only near the head of the line (prepareAttempt): a job
  // may run many times while it waits.
  const task = await findTask(deps.db, taskId);
  if (!task) return { kind: "task_missing" };
  if (task.status !== "queued" && task.status !== "submitting") return { kind: "already_done" };

  const bound = task.status === "submitting" ? deps.routes.of(task.route) : undefined;
  if (task.status === "submitting" && !bound) {
    // Its route was removed from PROVIDER_ROUTES while it may hold the task: only a human knows.
    const reason = `waiting: route '${task.route}' may hold this task but is no longer configured (PROVIDER_ROUTES)`;
    if (task.waitReason !== reason) await markWaiting(deps.db, taskId, ["submitting"], reason);
    return { kind: "retry_later", delayMs: 30_000, reason };
  }
  const candidates = bound ? [bound] : deps.routes.all.filter((r) => task.n <= r.route.capacity);
  if (candidates.length === 0) {
    await failTask(deps, taskId, "worker", {
      class: "over_capacity",
      message: `n=${task.n} needs ${task.n} provider slots; the largest provider route has ${deps.routes.largestCapacity} (PROVIDER_CAPACITY or PROVIDER_ROUTES)`,
    });
    return { kind: "failed" };
  }

  // A URL image is checked in its own stage first (check-source-image.ts); a job that got here
  // without it (queued before that stage existed) is handed there.
  if (task.imageUrl && task.sourceWidth === null) return { kind: "needs_source_check" };

  // What the create needs besides slots (the source to send, the attempt's lease) is prepared while
  // the task waits near the head of a line, so that the slot hand-off is the acquire, the
  // `submitting` mark and the create request (measured by `npm run bench:provider`). Only near the
  // head: a source may be 10 MB, and a job far back in line may run many times while it waits.
  const preparation = prepareAttempt(deps, task);
  try {
    const picked = await pickRoute(deps, task, candidates, options.priority ?? 0, (place) => {
      if (place < PREPARE_AHEAD) preparation.start();
    });
    if (picked.kind === "gated") {
      if (task.waitReason !== picked.reason) await markWaiting(deps.db, taskId, [task.status], picked.reason);
      return { kind: "retry_later", delayMs: picked.retryInMs + Math.round(Math.random() * 500), reason: picked.reason };
    }
    if (picked.kind !== "acquired") {
      return { kind: "retry_later", delayMs: picked.kind === "stepped_back" ? picked.delayMs + Math.round(Math.random() * STEP_BACK_MS) : 10, reason: SLOT_WAIT_REASON };
    }
    const route = picked.route;

    const { image, claimed } = await preparation.start();
    if (image === undefined) {
      await failTask(deps, taskId, "worker", { class: "invalid_image", message: "image: the task has no source image" });
      return { kind: "failed" };
    }
    // One attempt at a time, whatever BullMQ does: a second run of this job (its lock lost while Redis
    // hung) finds the lease taken and waits, instead of racing this one to a second create.
    // The lease is short and renewed while the attempt runs, so a crashed worker's lease runs out soon.
    if (!claimed || (claimed.status === "submitting" && deps.routes.of(claimed.route) !== route)) {
      // Another attempt left the task bound to a route other than the one picked: only that one may
      // be asked about it, and the slots taken here go back.
      if (claimed) await route.slots.release(taskId);
      return { kind: "retry_later", delayMs: ATTEMPT_BUSY_RETRY_MS + Math.round(Math.random() * 500), reason: "another attempt is in progress" };
    }
    return await attemptSubmission(deps, claimed, image, route, preparation.lease);
  } finally {
    await preparation.dispose();
  }
};

// How near the head of a line (places) a waiting task prepares its create.
const PREPARE_AHEAD = 8;

// The source to send (what we checked, never the caller's URL again: provider-image.ts) and the
// attempt's lease, taken at most once per job run; dispose() gives the lease back.
const prepareAttempt = (deps: SubmitTaskDeps, task: Task) => {
  let renewal: ReturnType<typeof setInterval> | undefined;
  // Set once a move took the task past submission, which ended the lease with it (task-transition.ts).
  const lease = { ended: false };
  let prepared: Promise<{ image: string | undefined; claimed: Task | undefined }> | undefined;
  const start = () =>
    (prepared ??= (async () => {
      const image = await providerImageOf(deps, task);
      if (image === undefined) return { image, claimed: undefined };
      const claimed = await claimSubmitAttempt(deps.db, task.id, deps.attemptLeaseMs);
      if (claimed) {
        renewal = setInterval(() => {
          renewSubmitAttempt(deps.db, task.id, deps.attemptLeaseMs).catch((error: unknown) => deps.logger.warn({ err: error, taskId: task.id }, "attempt lease not renewed"));
        }, deps.attemptLeaseMs / 3);
      }
      return { image, claimed };
    })());
  return {
    lease,
    start: () => {
      const started = start();
      // Started while waiting: a failure surfaces when the attempt awaits it (or not at all).
      started.catch(() => undefined);
      return started;
    },
    dispose: async () => {
      if (!prepared) return;
      const outcome = await prepared.catch(() => undefined);
      clearInterval(renewal);
      if (!outcome?.claimed || lease.ended) return;
      await releaseSubmitAttempt(deps.db, task.id).catch((error: unknown) => deps.logger.warn({ err: error, taskId: task.id }, "attempt lease not released; it runs out"));
    },
  };
};

const attemptSubmission = async (deps: SubmitTaskDeps, task: Task, image: string, route: RouteControls, lease: { ended: boolean }): Promise<SubmitOutcome> => {
  const taskId = task.id;
  const { adapter, slots, gate } = route;
  // Found in `submitting`: an earlier attempt's outcome is unknown (it may have created the task).
  const outcomeUnknown = task.status === "submitting";
  const marked = await transitionTask(deps, {
    taskId,
    to: "submitting",
    from: ["queued", "submitting"],
    source: "worker",
    detail: { attempt: task.attempts + 1, route: route.route.name },
    data: {
      attempts: task.attempts + 1,
      provider: adapter.kind,
      route: route.route.name,
      unitPrice: route.route.unitPrice === null ? null : String(route.route.unitPrice),
      waitReason: null,
      nextCheckAt: new Date(Date.now() + deps.stallRecheckMs),
    },
  });
  if (!marked.applied) {
    await slots.release(taskId);
    return { kind: "already_done" };
  }

  // Whether the provider may hold a task for this one right now: until the lookup answers "no
  // such task", an earlier attempt's create may have made one, and its slots must stay taken.
  let mayHoldTask = outcomeUnknown;
  try {
    if (outcomeUnknown) {
      const existing = await adapter.findByExternalId(taskId);
      if (existing) {
        deps.logger.info({ taskId, providerTaskId: existing.providerTaskId, route: route.route.name }, "adopted the provider task of an earlier attempt");
        await applyProviderReport(deps, taskId, existing, "worker", { note: { adopted: true, provider_task_id: existing.providerTaskId, route: route.route.name } });
        return { kind: "adopted" };
      }
      mayHoldTask = false;
      // Nothing was created: a batch canceled meanwhile is not sent now.
      if (await cancelIfBatchCanceled(deps, taskId, ["submitting"])) {
        await slots.release(taskId);
        return { kind: "already_done" };
      }
    }
    const created = await adapter.create({
      image,
      ratios: { up: task.upRatio, down: task.downRatio, left: task.leftRatio, right: task.rightRatio },
      prompt: task.prompt,
      n: task.n,
      watermark: task.watermark,
      externalTaskId: taskId,
      callbackUrl: deps.callbackUrlFor(taskId, task.callbackToken, route.route),
    });
    // The provider had the task by the time its answer arrived, whatever the notes below take.
    const answeredAtMs = Date.now();
    await Promise.all([gate.recordSuccess(), slots.noteAccepted()]);
    // The row as the `submitting` mark left it: a callback that came first only fails the guarded
    // update, and the report then reads the task again.
    const applied = await applyProviderReport(deps, taskId, created, "worker", { note: { route: route.route.name }, known: marked.task, receivedAtMs: answeredAtMs });
    // The row as the report left or found it (a callback may have moved it first): no lease there
    // means a move past submission ended ours, and nothing is left to give back.
    lease.ended = applied.task?.submitLeaseUntil === null;
    return { kind: "submitted" };
  } catch (error) {
    if (!(error instanceof ProviderError)) throw error;
    // The external_task_id is this task's id, so "duplicate" proves the route already holds it: an
    // earlier create whose answer was lost, not yet visible to the lookup. The task stays bound to
    // the route in `submitting` with its slots, and the next attempt looks it up and adopts it;
    // failing it would leave a paid provider task nobody collects.
    if (error.details.reason === "duplicate_external_id") {
      deps.logger.warn({ taskId, route: route.route.name }, "the provider already holds this task; adopting it on the next attempt");
      return { kind: "retry_later", delayMs: DUPLICATE_LOOKUP_RETRY_MS, reason: "the provider already holds this task; looking it up" };
    }
    const outcome = await handleProviderError(deps, route, taskId, error, mayHoldTask, task.n);
    // The route surely holds nothing for this task: it is free to go to another route next time.
    if (outcome.kind === "retry_later" && !mayHoldTask && error.definitelyNotCreated) {
      return leaveRoute(deps, route, taskId, error, outcome);
    }
    return outcome;
  }
};

// Back to `queued`, with the refusal in the task's history: the next attempt picks a route afresh.
// While the refusing route cannot take work (open circuit, paused account) and another can, the
// task goes again soon instead of waiting out this route's probe.
const leaveRoute = async (
  deps: SubmitTaskDeps,
  route: RouteControls,
  taskId: string,
  error: ProviderError,
  outcome: Extract<SubmitOutcome, { kind: "retry_later" }>,
): Promise<SubmitOutcome> => {
  const left = await transitionTask(deps, {
    taskId,
    to: "queued",
    from: ["submitting"],
    source: "worker",
    detail: { route: route.route.name, refused: error.message, code: error.details.code ?? null },
    data: { waitReason: outcome.reason },
  });
  if (!left.applied) return outcome;
  if (await cancelIfBatchCanceled(deps, taskId, ["queued"])) return { kind: "already_done" };
  const routeBlocked = (await route.gate.state()).mode !== "closed";
  const elsewhere = deps.routes.all.some((r) => r !== route);
  if (routeBlocked && elsewhere) return { ...outcome, delayMs: Math.min(outcome.delayMs, FAILOVER_RETRY_MS + Math.round(Math.random() * FAILOVER_RETRY_MS)) };
  return outcome;
};

const FAILOVER_RETRY_MS = 100;
const DUPLICATE_LOOKUP_RETRY_MS = 1_000;

const handleProviderError = async (
  deps: SubmitTaskDeps,
  { slots, gate, route }: RouteControls,
  taskId: string,
  error: ProviderError,
  mayHoldTask: boolean,
  refusedSlots: number,
): Promise<SubmitOutcome> => {
  const { action, reason, code, outcomeUnknown, retryAfterMs } = error.details;
  // While the answer was lost, a callback may already have told us the provider has the task: then
  // nothing failed, and neither the slots nor the retry budget should be touched.
  const current = await findTask(deps.db, taskId);
  if (current && current.status !== "submitting") return { kind: "already_done" };
  // Unless this request or an earlier one (whose task we could not look up) may have created a
  // task, the provider holds nothing for it.
  if (!outcomeUnknown && !mayHoldTask) await slots.release(taskId);
  // A considered answer about this request (a refusal, a rate limit) proves the route and the
  // account work: it closes an open circuit just as a success does.
  const answered = action === "fail_task" || error.rateLimited;
  if (answered) await gate.recordSuccess();
  if (action === "fail_task") {
    await failTask(deps, taskId, "worker", { class: "provider_rejected", message: error.message, code });
    return { kind: "failed" };
  }
  if (action === "pause_account") {
    await gate.pause(`code ${code ?? "none"}: ${error.message}`);
    deps.logger.error({ code, err: error, route: route.name }, "provider account paused: needs a human");
    // The task that met the refusal (the first, or a probe) says so too, like those kept waiting.
    const reason = gateWaitReason(await gate.state(), route.name);
    await markWaiting(deps.db, taskId, ["queued", "submitting"], reason);
    return { kind: "retry_later", delayMs: 1_000, reason };
  }
  if (error.rateLimited) {
    // Rate limits never spend the retry budget. The parallel-task limit means the account is fuller
    // than our ledger thinks (shared with someone else): lower our effective capacity, recover it later.
    if (reason === "parallel_limit") await slots.lowerCapacity(refusedSlots);
    // The contract asks for a back-off of at least 1 s on that limit, growing exponentially: with each
    // attempt of this task (current.attempts counts this one), never under the floor whatever
    // SUBMIT_RETRY_MAX_MS says.
    const ceilingMs = Math.max(deps.retryMaxMs, RATE_LIMIT_FLOOR_MS);
    const delayMs = Math.max(retryAfterMs ?? 0, RATE_LIMIT_FLOOR_MS, backoffWithJitter(current?.attempts ?? 1, 2 * RATE_LIMIT_FLOOR_MS, ceilingMs));
    return { kind: "retry_later", delayMs, reason: error.message };
  }
  if (action === "reauthenticate") return { kind: "retry_later", delayMs: 100, reason: error.message };
  // CometAPI answered 404 {"code": null} on the whole route for weeks: no point trying again soon.
  await gate.recordFailure(error.message, { immediately: reason === "route_missing" });
  // A failure that opened the circuit, or a failed probe that re-opened it, is the provider's
  // outage, not this task's: the task waits with the others and its retry budget is not spent
  // (else every probe of a long outage would use up the budget of the task that carried it).
  const after = await gate.state();
  if (after.mode !== "closed") {
    const reason = gateWaitReason(after, route.name);
    await markWaiting(deps.db, taskId, ["queued", "submitting"], reason);
    return { kind: "retry_later", delayMs: Math.max(250, after.until - Date.now()) + Math.round(Math.random() * 500), reason };
  }
  return spendRetry(deps, taskId, error.message, retryAfterMs);
};

const spendRetry = async (deps: SubmitTaskDeps, taskId: string, reason: string, retryAfterMs?: number): Promise<SubmitOutcome> => {
  const transientFailures = await spendTransientFailure(deps.db, taskId);
  if (transientFailures >= deps.maxAttempts) {
    await failTask(deps, taskId, "worker", {
      class: "retries_exhausted",
      message: `gave up after ${transientFailures} transient failures: ${reason}`,
    });
    return { kind: "failed" };
  }
  const delayMs = Math.max(retryAfterMs ?? 0, backoffWithJitter(transientFailures, deps.retryBaseMs, deps.retryMaxMs));
  return { kind: "retry_later", delayMs, reason };
};
