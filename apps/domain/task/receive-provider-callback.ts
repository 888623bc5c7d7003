import type { IncomingHttpHeaders } from "node:http";
import { sql } from "kysely";
import { safeEqual } from "../crypto/constant-time.ts";
import type { CallbackOutcome } from "../db/database.ts";
import { isUuid } from "../db/uuid.ts";
import type { ProviderAdapter } from "../provider/provider-adapter.ts";
import { verifyStandardWebhook } from "../webhooks/standard-webhooks.ts";
import { applyProviderReport, type ApplyReportDeps } from "./apply-provider-report.ts";
import { findTask } from "./task.repository.ts";

export const MAX_CALLBACKS_KEPT_PER_TASK = 50;

export type ReceiveCallbackDeps = ApplyReportDeps & {
  // Empty when callbacks are not signed (PROVIDER_WEBHOOK_SECRET unset): the per-task token is then
  // the only proof.
  webhookSecrets: readonly string[];
  // The adapter of a task's route (null: a row from before routes existed), which reads the body.
  adapterOf: (route: string | null) => ProviderAdapter;
};

export type CallbackInput = { taskId: string; token: string; headers: IncomingHttpHeaders; rawBody: Buffer };

// What the route answers. `stored`: whether the callback went into the inbox (only authenticated
// ones do).
export type CallbackReceipt = { httpStatus: number; outcome: CallbackOutcome | "unauthenticated"; detail?: string; stored: boolean };

const unauthenticated = (detail: string): CallbackReceipt => ({ httpStatus: 401, outcome: "unauthenticated", detail, stored: false });

// The provider's callbacks are unsigned (or signed with a secret we may not have), so each task's
// callback URL carries a secret token of its own; with PROVIDER_WEBHOOK_SECRET the Standard Webhooks
// signature is checked too, on the raw bytes. Verify, then apply, then store: nothing from an
// unauthenticated sender is written, and an unknown task answers like a bad token, so the route
// cannot be used to probe which task ids exist.
export const receiveProviderCallback = async (deps: ReceiveCallbackDeps, input: CallbackInput): Promise<CallbackReceipt> => {
  // A signed callback's webhook-id names the message: the same id again (a replay inside the
  // signature's tolerance window, or the sender's own retry) is the same message.
  let webhookId: string | null = null;
  if (deps.webhookSecrets.length > 0) {
    const signature = verifyStandardWebhook({ secrets: [...deps.webhookSecrets], headers: input.headers, rawBody: input.rawBody });
    if (!signature.ok) return unauthenticated(`bad webhook signature: ${signature.reason}`);
    webhookId = String(input.headers["webhook-id"]).slice(0, 200);
  }
  const task = isUuid(input.taskId) ? await findTask(deps.db, input.taskId) : undefined;
  if (!task || !safeEqual(task.callbackToken, input.token)) return unauthenticated("unknown task or bad callback token");

  const rawBody = input.rawBody.toString("utf8");
  // Bounded per task: a holder of the token cannot grow the inbox without limit (the task's state
  // is what counts; the inbox is for reading what the provider said).
  const store = async (outcome: CallbackOutcome, detail: string | null, providerStatus: string | null) => {
    await sql`
      insert into provider_callback (task_id, raw_body, outcome, detail, provider_status, webhook_id)
      select ${task.id}::uuid, ${rawBody}, ${outcome}::callback_outcome, ${detail}, ${providerStatus}, ${webhookId}
      where (select count(*) from provider_callback where task_id = ${task.id}::uuid) < ${MAX_CALLBACKS_KEPT_PER_TASK}
    `.execute(deps.db);
  };
  const reject = async (detail: string): Promise<CallbackReceipt> => {
    await store("rejected", detail, null);
    return { httpStatus: 400, outcome: "rejected", detail, stored: true };
  };

  if (webhookId !== null) {
    const seen = await deps.db
      .selectFrom("providerCallback")
      .select("id")
      .where("taskId", "=", task.id)
      .where("webhookId", "=", webhookId)
      .limit(1)
      .executeTakeFirst();
    if (seen) {
      await store("duplicate", `replay of webhook-id ${webhookId}`, null);
      return { httpStatus: 200, outcome: "duplicate", detail: "replayed webhook-id", stored: true };
    }
  }

  let json: unknown;
  try {
    json = JSON.parse(rawBody);
  } catch {
    return reject("body is not JSON");
  }
  const parsed = deps.adapterOf(task.route).parseCallback(json);
  if (!parsed.ok) return reject(parsed.reason);
  const { report } = parsed;
  if (report.externalTaskId && report.externalTaskId !== task.id) return reject("external_task_id does not match the task");

  // An applied report's callback is kept by the move's own statement; any other outcome's here.
  const callbackRecord = { rawBody, providerStatus: report.providerStatus, webhookId, keepAtMost: MAX_CALLBACKS_KEPT_PER_TASK };
  const { outcome } = await applyProviderReport(deps, task.id, report, "callback", { known: task, callbackRecord });
  if (outcome !== "applied") await store(outcome, null, report.providerStatus);
  return { httpStatus: 200, outcome, stored: true };
};
