import type { ExpansionRatios } from "../domain/expand-request/expand-limits.ts";
import type { z } from "zod";
import type { klingTaskSchema, KlingTaskStatus } from "../domain/provider/kling-protocol/kling-wire.schema.ts";

// One provider task as the simulator keeps it. The source image is not kept here: it lives only in
// the render started at creation, so memory is released as soon as the results exist.
export type SimTask = {
  taskId: string;
  account: string;
  externalTaskId: string | undefined;
  status: KlingTaskStatus;
  statusMsg: string;
  n: number;
  ratios: ExpansionRatios;
  prompt: string | undefined;
  callbackUrl: string | undefined;
  createdAt: number;
  updatedAt: number;
  runMs: number;
  // Decided at creation so that a failing task spends nothing on rendering.
  plannedFailure: string | undefined;
  // This task's "processing" callback is held back and delivered after the terminal one.
  reorderCallbacks: boolean;
  holdsSlots: boolean;
  // Dropped from the store by DELETE /_sim/tasks/{id}: its timers change nothing any more.
  forgotten: boolean;
};

export const isTerminal = (status: KlingTaskStatus): boolean => status === "succeed" || status === "failed";

// Kling's task object (KLING.md): the get's `data` and, bare, the callback body. It must parse with
// the schema our adapters read it with.
export const toWireTask = (task: SimTask, publicUrl: string) => ({
  task_id: task.taskId,
  task_status: task.status,
  task_status_msg: task.statusMsg,
  task_info: task.externalTaskId === undefined ? {} : { external_task_id: task.externalTaskId },
  created_at: task.createdAt,
  updated_at: task.updatedAt,
  ...(isTerminal(task.status) ? { final_unit_deduction: task.status === "succeed" ? String(task.n) : "0" } : {}),
  ...(task.status === "succeed"
    ? {
        task_result: {
          images: Array.from({ length: task.n }, (_, index) => ({
            index,
            url: `${publicUrl}/_sim/results/${task.taskId}/${index}.png`,
          })),
        },
      }
    : {}),
}) satisfies z.input<typeof klingTaskSchema>;

export type WireTask = ReturnType<typeof toWireTask>;
