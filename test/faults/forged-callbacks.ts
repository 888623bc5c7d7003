import { randomBytes, randomUUID } from "node:crypto";
import { standardWebhookHeaders } from "../../apps/domain/webhooks/standard-webhooks.ts";
import { call } from "../support/http.ts";
import type { FaultStack } from "./fault-stack.ts";

// The marker every forged body carries, so the inbox rows it left can be found afterwards.
export const FORGED_MARK = "forged-by-fault-suite";

type Target = { id: string; callback_token: string; provider_task_id: string | null };

// Each way a callback can be forged. The harness knows each task's URL token (it reads Postgres),
// so that the signature check is tested on its own, with the token right, as well as the token.
const forgeries = ["wrong_token_unsigned", "wrong_token_signed", "no_signature", "bad_signature", "other_secret", "stale_timestamp", "unknown_task"] as const;
type Forgery = (typeof forgeries)[number];

export type ForgeryLog = { sent: number; byAnswer: Record<string, number>; accepted: Map<string, string> };

// Sends forged callbacks at tasks while they run, one round every `everyMs`, until stopped. A
// forged callback claims the task ended (succeeded with images on a host of ours, or failed), with
// the task's real provider task id, so that only authentication can tell it from a real one.
export const startForgingCallbacks = (stack: FaultStack, taskIds: string[], everyMs = 100) => {
  const log: ForgeryLog = { sent: 0, byAnswer: {}, accepted: new Map() };
  let running = true;
  let round = 0;
  const loop = (async () => {
    while (running) {
      const { rows } = await stack.db.query<Target>(
        `select id, callback_token, provider_task_id from task
          where id = any($1::uuid[]) and status in ('submitting', 'submitted', 'processing') order by random() limit 3`,
        [taskIds],
      );
      await Promise.all(rows.map((target) => forge(stack, target, forgeries[round++ % forgeries.length]!, log)));
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  })();
  return {
    stop: async (): Promise<ForgeryLog> => {
      running = false;
      await loop;
      return log;
    },
  };
};

const forge = async (stack: FaultStack, target: Target, how: Forgery, log: ForgeryLog) => {
  const taskId = how === "unknown_task" ? randomUUID() : target.id;
  const token = how === "wrong_token_unsigned" || how === "wrong_token_signed" ? randomBytes(16).toString("hex") : target.callback_token;
  const succeed = log.sent % 2 === 0;
  const now = Date.now();
  const body = JSON.stringify({
    task_id: target.provider_task_id ?? "1000000000000000000",
    task_status: succeed ? "succeed" : "failed",
    task_status_msg: succeed ? "" : FORGED_MARK,
    task_info: { external_task_id: taskId, note: FORGED_MARK },
    created_at: now - 1_000,
    updated_at: now + 60_000,
    final_unit_deduction: succeed ? "1" : "0",
    task_result: succeed ? { images: [{ index: 0, url: stack.images.sourceUrl("good") }] } : undefined,
  });
  const headers = { "content-type": "application/json", ...signatureHeaders(stack.webhookSecret, how, body) };
  const answer = await call(stack.api.url, "POST", `/webhooks/kling/${taskId}/${token}`, { rawBody: body, headers }).catch(
    (error: Error) => ({ status: 0, body: error.message }),
  );
  log.sent++;
  log.byAnswer[answer.status] = (log.byAnswer[answer.status] ?? 0) + 1;
  if (answer.status >= 200 && answer.status < 300) {
    log.accepted.set(target.id, `a forged callback (${how}) was answered ${answer.status} ${JSON.stringify(answer.body)}`);
  }
};

const signatureHeaders = (secret: string | undefined, how: Forgery, body: string): Record<string, string> => {
  const id = `msg_${randomUUID()}`;
  const now = Math.floor(Date.now() / 1000);
  const otherSecret = `whsec_${randomBytes(24).toString("base64")}`;
  switch (how) {
    case "wrong_token_unsigned":
    case "no_signature":
      return {};
    case "bad_signature":
      return { "webhook-id": id, "webhook-timestamp": String(now), "webhook-signature": `v1,${randomBytes(32).toString("base64")}` };
    case "other_secret":
      return standardWebhookHeaders(otherSecret, id, now, body);
    case "stale_timestamp":
      return secret ? standardWebhookHeaders(secret, id, now - 600, body) : {};
    case "wrong_token_signed":
    case "unknown_task":
      return secret ? standardWebhookHeaders(secret, id, now, body) : {};
  }
};

// Inbox rows of forged callbacks by outcome: anything but rejected or unknown_task got past the checks.
export const forgedInboxOutcomes = async (stack: FaultStack) => {
  const { rows } = await stack.db.query<{ outcome: string | null; count: number }>(
    "select outcome::text, count(*)::int as count from provider_callback where raw_body like $1 group by outcome",
    [`%${FORGED_MARK}%`],
  );
  return Object.fromEntries(rows.map((r) => [r.outcome ?? "none", r.count]));
};
