import type { Logger } from "../domain/logging/logger.ts";
import type { CallbackSender } from "./callback.sender.ts";
import { renderExpandedImages } from "./expanded-image.render.ts";
import type { ResultImageCache } from "./result-image.cache.ts";
import type { SimTaskStore } from "./sim-task.store.ts";
import { isTerminal, toWireTask, type SimTask } from "./sim-task.ts";
import type { TimerSet } from "./sim-timers.ts";

type Deps = {
  store: SimTaskStore;
  clock: () => "auto" | "manual";
  timers: TimerSet;
  callbacks: CallbackSender;
  results: ResultImageCache;
  publicUrl: () => string;
  logger: Logger;
};

// The share of the run time a task spends "submitted" before it becomes "processing".
const SUBMITTED_SHARE = 0.3;

// Moves a task submitted -> processing -> succeed | failed on timers, renders its images, releases
// its slots when it ends and sends a callback on every change.
export const createTaskLifecycle = ({ store, clock, timers, callbacks, results, publicUrl, logger }: Deps) => {
  // Bumped on reset/stop so that renders still running for dropped tasks change nothing.
  let generation = 0;
  // Running tasks: their render, and whether timers will end them (not under the manual clock).
  const running = new Map<string, { task: SimTask; render: Promise<Buffer[]> | undefined; started: number; timed: boolean }>();

  const changeStatus = (task: SimTask, status: SimTask["status"], message = "") => {
    if (task.forgotten) return Promise.resolve();
    store.transition(task, status, message);
    if (isTerminal(status)) {
      store.releaseSlots(task);
      store.stats()[status === "succeed" ? "tasks_succeeded" : "tasks_failed"] += 1;
    }
    logger.info({ providerTaskId: task.taskId, status, message: message || undefined }, "task status changed");
    return callbacks.notify(task, toWireTask(task, publicUrl()));
  };

  // Resolves once the terminal callback has been handled. A task ended already (by a test, before
  // its timer) is left as it is.
  const finish = async (task: SimTask, render: Promise<Buffer[]> | undefined, started: number): Promise<void> => {
    if (isTerminal(task.status)) return;
    running.delete(task.taskId);
    if (task.plannedFailure !== undefined || !render) {
      return changeStatus(task, "failed", task.plannedFailure ?? "internal error: the generation failed");
    }
    try {
      const images = await render;
      if (started !== generation || isTerminal(task.status)) return;
      results.put(task.taskId, images);
      return changeStatus(task, "succeed");
    } catch (error) {
      if (started !== generation || isTerminal(task.status)) return;
      logger.error({ providerTaskId: task.taskId, err: error }, "rendering the result failed");
      return changeStatus(task, "failed", "internal error: the generation failed, please retry");
    }
  };

  const startTimers = (task: SimTask, render: Promise<Buffer[]> | undefined, started: number, elapsedMs: number) => {
    const toProcessing = Math.round(task.runMs * SUBMITTED_SHARE) - elapsedMs;
    if (task.status === "submitted") {
      timers.after(Math.max(0, toProcessing), () => {
        if (task.status === "submitted") void changeStatus(task, "processing");
      });
    }
    timers.after(Math.max(0, task.runMs - elapsedMs), () => void finish(task, render, started));
  };

  return {
    // Starts the task's clock; resolves when the "submitted" callback has been handled, which the
    // create route awaits in callback_mode before_create_response.
    start(task: SimTask, source: Buffer): Promise<void> {
      const started = generation;
      let render: Promise<Buffer[]> | undefined;
      if (task.plannedFailure === undefined) {
        render = renderExpandedImages(source, task.ratios, task.n);
        // Handled in finish(); this only keeps an early rejection from being reported as unhandled.
        render.catch(() => undefined);
      }
      const timed = clock() === "auto";
      running.set(task.taskId, { task, render, started, timed });
      if (timed) startTimers(task, render, started, 0);
      return callbacks.notify(task, toWireTask(task, publicUrl()));
    },

    // The test's clock (SIM_TASK_CONTROL): ends a running task now, through `processing` as the
    // provider would, succeeding (its images rendered) or failing with `message`. Resolves once the
    // terminal callback has been handled; false when the task had already ended.
    async endNow(task: SimTask, outcome: { fail?: string } = {}): Promise<boolean> {
      if (isTerminal(task.status) || task.forgotten) return false;
      const entry = running.get(task.taskId);
      running.delete(task.taskId);
      if (task.status === "submitted") await changeStatus(task, "processing");
      if (outcome.fail !== undefined) await changeStatus(task, "failed", outcome.fail);
      else await finish(task, entry?.render, entry?.started ?? generation);
      return true;
    },

    // The task's current state to its callback_url again (a late or repeated callback on demand).
    callbackNow(task: SimTask): Promise<void> {
      return callbacks.notify(task, toWireTask(task, publicUrl()));
    },

    // Back to the auto clock: tasks started under the manual one get timers for what is left of
    // their run time (none left: they end now).
    resumeTimers(): void {
      for (const entry of running.values()) {
        if (entry.timed || isTerminal(entry.task.status)) continue;
        entry.timed = true;
        startTimers(entry.task, entry.render, entry.started, Date.now() - entry.task.createdAt);
      }
    },

    cancelAll(): void {
      generation += 1;
      running.clear();
      timers.clearAll();
      callbacks.cancelAll();
      results.clear();
    },
  };
};

export type TaskLifecycle = ReturnType<typeof createTaskLifecycle>;
