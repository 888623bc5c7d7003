import type { KlingTaskStatus } from "../provider/kling-protocol/kling-wire.schema.ts";
import { TaskStatus as taskStatusValues } from "../db/generated/enums.ts";
import type { TaskStatus } from "../db/database.ts";

// Transitions only move forward in this order; terminal states never change (except by an explicit,
// recorded retry, which is not part of this module).
export const statusRank: Record<TaskStatus, number> = {
  queued: 0,
  submitting: 1,
  submitted: 2,
  processing: 3,
  archiving: 4,
  succeeded: 5,
  failed: 5,
  canceled: 5,
};

export const taskStatuses = Object.values(taskStatusValues);

export const terminalStatuses: readonly TaskStatus[] = ["succeeded", "failed", "canceled"];
// At the provider: polled by reconciliation, holding provider slots.
export const inFlightStatuses = ["submitted", "processing"] as const satisfies readonly TaskStatus[];
// Ours to move on: a job (submit or archive) must exist for each, or the sweeper re-drives it.
export const jobDrivenStatuses = ["queued", "submitting", "archiving"] as const satisfies readonly TaskStatus[];
export const nonTerminalStatuses = ["queued", "submitting", "submitted", "processing", "archiving"] as const satisfies readonly TaskStatus[];

export const isTerminal = (status: TaskStatus): boolean => terminalStatuses.includes(status);

export const statusesBefore = (target: TaskStatus): TaskStatus[] =>
  (Object.keys(statusRank) as TaskStatus[]).filter((s) => statusRank[s] < statusRank[target]);

// The drop-in API is a drop-in for Kling: it answers in Kling's words (what a provider reports is
// read by its adapter, apps/domain/provider/).
export const toProviderStatus = (status: TaskStatus): KlingTaskStatus => {
  switch (status) {
    case "queued":
    case "submitting":
    case "submitted":
      return "submitted";
    case "processing":
    case "archiving":
      return "processing";
    case "succeeded":
      return "succeed";
    case "failed":
    case "canceled":
      return "failed";
  }
};
