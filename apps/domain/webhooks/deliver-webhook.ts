import type { ServerKey } from "../crypto/server-key.ts";
import type { Db } from "../db/database.ts";
import type { Resolver } from "../http/address-check.ts";
import type { AllowedPrivateHost } from "../http/private-host-allowlist.ts";
import type { OriginAgents } from "../http/origin-agents.ts";
import { safePost } from "../http/safe-post.ts";
import { SafeFetchError } from "../http/safe-fetch-error.ts";
import type { Logger } from "../logging/logger.ts";
import { metrics } from "../metrics/metrics.ts";
import type { LinkSigner } from "../task/task.presenter.ts";
import { nextAttemptDelayMs } from "./retry-schedule.ts";
import { ensureSigningSecrets, openSigningSecrets, secretsToSignWith, type SigningSecrets } from "./signing-secret.store.ts";
import { signStandardWebhook } from "./standard-webhooks.ts";
import { claimDelivery, recordAttempt, type AttemptOutcome, type ClaimedDelivery } from "./webhook-delivery.store.ts";
import { renderWebhookBody, snapshotStatus } from "./webhook-payload.ts";

export type DeliverWebhookDeps = {
  db: Db;
  logger: Logger;
  serverKey: ServerKey;
  signLink: LinkSigner;
  // Delay before each attempt (WEBHOOK_RETRY_SCHEDULE); past the last, the delivery fails.
  schedule: readonly number[];
  attemptTimeoutMs: number;
  maxResponseBytes: number;
  allowedPrivateHosts: readonly AllowedPrivateHost[];
  lookup?: Resolver;
  // Kept-alive connections to consumers, per origin; without, each attempt connects afresh.
  agents?: OriginAgents;
  // Has a delivery's next attempt made (its job id from deliveryJobId) after delayMs; 0 for the
  // next event of a task whose earlier one was just decided.
  enqueue: (delivery: { id: string; attempts: number }, delayMs: number) => Promise<void>;
};

// Refused for good: retrying sends to the same refused place.
const finalFetchErrors = new Set<SafeFetchError["kind"]>(["blocked", "invalid_url"]);

const utcDate = (value: string) => new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`);

const secretsOf = async (deps: DeliverWebhookDeps, delivery: ClaimedDelivery): Promise<SigningSecrets> => {
  const row = delivery.secretRow;
  if (!row) return ensureSigningSecrets(deps.db, deps.serverKey, delivery.accountId);
  return openSigningSecrets(deps.serverKey, delivery.accountId, {
    currentSealed: row.currentSealed,
    previousSealed: row.previousSealed,
    previousUntil: row.previousUntil === null ? null : utcDate(row.previousUntil),
    rotatedAt: utcDate(row.rotatedAt),
  });
};

const storedImagesOf = async (deps: DeliverWebhookDeps, delivery: ClaimedDelivery) => {
  // The snapshot's status alone (renderWebhookBody reads the whole snapshot once, after this).
  if (delivery.payloadKind === "raw" || !delivery.taskId || snapshotStatus(delivery.payload) !== "succeeded") return [];
  return deps.db
    .selectFrom("taskImage")
    .select(["index", "providerUrl", "storageKey", "width", "height", "bytes", "sha256"])
    .where("taskId", "=", delivery.taskId)
    .orderBy("index")
    .execute();
};

// What an answer (or its absence) means for the delivery: 2xx delivered, 410 disables the URL, a
// refused destination fails at once, anything else is tried again on the schedule until it is spent.
const judge = (deps: DeliverWebhookDeps, delivery: ClaimedDelivery, result: { status: number | null; error: string | null; final: boolean }) => {
  if (result.status !== null && result.status >= 200 && result.status < 300) return { status: "succeeded" as const, nextAttemptAt: null };
  if (result.status === 410) return { status: "disabled" as const, nextAttemptAt: null };
  const delay = result.final ? undefined : nextAttemptDelayMs(deps.schedule, delivery.attempts);
  if (delay === undefined) return { status: "failed" as const, nextAttemptAt: null };
  return { status: "pending" as const, nextAttemptAt: new Date(Date.now() + delay) };
};

// The metric's bounded result: a failure for good tells a refused destination from a spent schedule.
const resultLabel = (status: ReturnType<typeof judge>["status"], final: boolean) =>
  status === "pending" ? "failed_attempt" : status === "failed" ? (final ? "refused" : "gave_up") : status;

// Longer than one attempt can take, so a live attempt never loses its lease.
export const deliveryLeaseMs = (deps: Pick<DeliverWebhookDeps, "attemptTimeoutMs">) => deps.attemptTimeoutMs * 2;

// One attempt of one delivery (a job's whole work): claim it, then attemptClaimed.
export const deliverWebhook = async (deps: DeliverWebhookDeps, deliveryId: string): Promise<"sent" | "not_due"> => {
  const delivery = await claimDelivery(deps.db, deliveryId, deliveryLeaseMs(deps));
  if (!delivery) return "not_due";
  await attemptClaimed(deps, delivery);
  return "sent";
};

// One attempt of a delivery this process holds the lease of (claimDeliveries). At least once: the
// attempt is recorded after the POST, so a process killed in between leaves the delivery to be sent
// again when its lease lapses, same webhook-id.
export const attemptClaimed = async (deps: DeliverWebhookDeps, delivery: ClaimedDelivery): Promise<void> => {
  const deliveryId = delivery.id;
  const startedAt = new Date();
  const started = performance.now();
  let answer: { status: number | null; error: string | null; final: boolean; body: string | null };
  try {
    const [secrets, images] = await Promise.all([secretsOf(deps, delivery), storedImagesOf(deps, delivery)]);
    const body = renderWebhookBody({ ...delivery, images }, deps.signLink);
    const timestamp = Math.floor(Date.now() / 1000);
    const signatures = secretsToSignWith(secrets).map((secret) => signStandardWebhook(secret, delivery.id, timestamp, body));
    const posted = await safePost(delivery.url, {
      body,
      headers: {
        "content-type": "application/json",
        "user-agent": "kling-orchestrator-webhooks/1",
        "webhook-id": delivery.id,
        "webhook-timestamp": String(timestamp),
        // Space-separated, as the Standard Webhooks libraries read it: one per live secret.
        "webhook-signature": signatures.join(" "),
      },
      timeoutMs: deps.attemptTimeoutMs,
      maxResponseBytes: deps.maxResponseBytes,
      allowedPrivateHosts: deps.allowedPrivateHosts,
      lookup: deps.lookup,
      agents: deps.agents,
    });
    const redirect = posted.status >= 300 && posted.status < 400;
    answer = {
      status: posted.status,
      error: posted.status >= 200 && posted.status < 300 ? null : redirect ? `HTTP ${posted.status}: redirects are not followed` : `HTTP ${posted.status}`,
      final: false,
      body: posted.body,
    };
  } catch (error) {
    if (!(error instanceof SafeFetchError)) throw error;
    deps.logger.info({ deliveryId, err: error }, "outbound callback attempt failed");
    // The public reason: the account reads its delivery log, and must not learn internal addresses.
    answer = { status: null, error: error.publicReason, final: finalFetchErrors.has(error.kind), body: null };
  }
  const verdict = judge(deps, delivery, answer);
  const outcome: AttemptOutcome = {
    ...verdict,
    statusCode: answer.status,
    latencyMs: Math.round(performance.now() - started),
    error: answer.error,
    responseBody: answer.body,
    startedAt,
  };
  const successors = await recordAttempt(deps.db, delivery, outcome);
  metrics.webhookDeliveries.inc({ result: resultLabel(verdict.status, answer.final) });
  if (verdict.status === "pending" && verdict.nextAttemptAt) {
    await deps.enqueue(delivery, verdict.nextAttemptAt.getTime() - Date.now()).catch((error: unknown) =>
      deps.logger.warn({ deliveryId, err: error }, "retry not scheduled in Redis; the sweep will find it when due"),
    );
  }
  for (const next of successors) {
    await deps.enqueue(next, 0).catch((error: unknown) => deps.logger.warn({ deliveryId: next.id, err: error }, "next callback not enqueued; the sweep will"));
  }
};
