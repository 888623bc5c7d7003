import type { ParsedCallback, ProviderReport, ReportedStatus } from "../provider-adapter.ts";
import { klingTaskSchema, type KlingTask, type KlingTaskStatus } from "./kling-wire.schema.ts";

// Kling's statuses in ours (KLING.md: submitted -> processing -> succeed | failed). Its `succeed` is
// not success yet: the images must be in our storage and checked.
export const klingStatusToOurs: Record<KlingTaskStatus, ReportedStatus> = {
  submitted: "submitted",
  processing: "processing",
  succeed: "archiving",
  failed: "failed",
};

export const mapKlingStatus = (status: string): ReportedStatus | undefined =>
  Object.hasOwn(klingStatusToOurs, status) ? klingStatusToOurs[status as KlingTaskStatus] : undefined;

// A task object (the create's and get's `data`, the bare callback body) as our report. Empty texts
// count as none, as the provider means them.
export const klingTaskToReport = (task: KlingTask): ProviderReport => ({
  providerTaskId: task.task_id,
  status: klingStatusToOurs[task.task_status],
  providerStatus: task.task_status,
  message: task.task_status_msg || null,
  externalTaskId: task.task_info?.external_task_id ?? null,
  ...(task.created_at === undefined ? {} : { createdAtMs: task.created_at }),
  ...(task.updated_at === undefined ? {} : { updatedAtMs: task.updated_at }),
  charged: task.final_unit_deduction || null,
  images: (task.task_result?.images ?? []).map(({ index, url }) => ({ index, url })),
});

// KLING.md "Callbacks": the bare task object, no envelope.
export const parseKlingCallback = (body: unknown): ParsedCallback => {
  const parsed = klingTaskSchema.safeParse(body);
  return parsed.success ? { ok: true, report: klingTaskToReport(parsed.data) } : { ok: false, reason: `not a task object: ${parsed.error.issues[0]?.message}` };
};
