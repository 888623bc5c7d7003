import type { Logger } from "../domain/logging/logger.ts";
import type { CallbackSender } from "./callback.sender.ts";
import { renderExpandedImages } from "./expanded-image.render.ts";
import type { ResultImageCache } from "./result-image.cache.ts";
import type { SimTaskStore } from "./sim-task.store.ts";
import { isTerminal, toWireTask, type SimTask } from "./sim-task.ts";
import type { TimerSet } from "./sim-timers.ts";

type Deps = {
  store: SimTaskStore;
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
export const createTaskLifecycle = ({ store, timers, callbacks, results, publicUrl, logger }: Deps) => {
  // Bumped on reset/stop so that renders still running for dropped tasks change nothing.
  let generation = 0;

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

  const finish = async (task: SimTask, render: Promise<Buffer[]> | undefined, started: number) => {
    if (task.plannedFailure !== undefined || !render) {
      void changeStatus(task, "failed", task.plannedFailure ?? "internal error: the generation failed");
      return;
    }
    try {
      const images = await render;
      if (started !== generation) return;
      results.put(task.taskId, images);
      void changeStatus(task, "succeed");
    } catch (error) {
      if (started !== generation) return;
      logger.error({ providerTaskId: task.taskId, err: error }, "rendering the result failed");
      void changeStatus(task, "failed", "internal error: the generation failed, please retry");
    }
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
      timers.after(Math.round(task.runMs * SUBMITTED_SHARE), () => void changeStatus(task, "processing"));
      timers.after(task.runMs, () => void finish(task, render, started));
      return callbacks.notify(task, toWireTask(task, publicUrl()));
    },

    cancelAll(): void {
      generation += 1;
      timers.clearAll();
      callbacks.cancelAll();
      results.clear();
    },
  };
};

export type TaskLifecycle = ReturnType<typeof createTaskLifecycle>;
