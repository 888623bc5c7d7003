import type { IncomingHttpHeaders } from "node:http";
import { sql } from "kysely";
import { safeEqual } from "../crypto/constant-time.ts";
import type { CallbackOutcome } from "../db/database.ts";
import { isUuid } from "../db/uuid.ts";
import type { ProviderAdapter } from "../provider/provider-adapter.ts";
import type { DirectSender } from "../webhooks/direct-delivery.ts";
import { verifyStandardWebhook } from "../webhooks/standard-webhooks.ts";
import { applyProviderReport, type ApplyReportDeps } from "./apply-provider-report.ts";
import { insertInboxEntry } from "./callback-inbox.ts";
import { findTask } from "./task.repository.ts";

export { MAX_CALLBACKS_KEPT_PER_TASK } from "./callback-inbox.ts";

export type ReceiveCallbackDeps = ApplyReportDeps & {
  // Empty when callbacks are not signed (PROVIDER_WEBHOOK_SECRET unset): the per-task token is then
  // the only proof.
  webhookSecrets: readonly string[];
  // The adapter of a task's route (null: a row from before routes existed), which reads the body.
  adapterOf: (route: string | null) => ProviderAdapter;
  // Sends the outbound callback an applied callback causes from this process, right after the
  // move's commit (WEBHOOK_SEND_FROM_RECEIVER); without, the workers send it.
  sendOutbound?: DirectSender;
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
    await insertInboxEntry(sql`${task.id}::uuid`, sql``, { rawBody, outcome, detail, providerStatus, webhookId }).execute(deps.db);
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

  // An applied report records its inbox row in the move's own statement (apply-provider-report.ts).
  const { outcome, inboxStored } = await applyProviderReport(deps, task.id, report, "callback", {
    known: task,
    inbox: { rawBody, providerStatus: report.providerStatus, webhookId },
    ...(deps.sendOutbound ? { sendOutbound: deps.sendOutbound } : {}),
  });
  if (!inboxStored) await store(outcome, null, report.providerStatus);
  return { httpStatus: 200, outcome, stored: true };
};
