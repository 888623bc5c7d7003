import { createHash, randomBytes } from "node:crypto";
import { CompiledQuery } from "kysely";
import { metrics } from "../metrics/metrics.ts";
import { v7 as uuidv7 } from "uuid";
import { executeCompiled, type Db, type Task } from "../db/database.ts";
import type { TaskOrigin } from "../db/generated/enums.ts";
import { AppError, validationError } from "../errors/app-error.ts";
import { databaseUnavailable, isDatabaseUnavailable, isUniqueViolation, retryOnConflict, statementMayHaveRun } from "../errors/dependency-errors.ts";
import type { ExpandRequest } from "../expand-request/expand-request.schema.ts";
import { inspectSourceImage } from "../expand-request/source-image.ts";
import { SafeFetchError } from "../http/safe-fetch.ts";
import { sourceImageKey, type ObjectStorage } from "../storage/local-storage.ts";
import { accountBalance, HOLD_STRIPES, isCapRefusal, spendCapError } from "../credits/credit-ledger.ts";
import { refuseAboveCapacity, type CreditTerms } from "../credits/credit-terms.ts";
import type { SettleIntake } from "../queues/fair-priority.ts";

export type AcceptTaskDeps = {
  db: Db;
  storage: ObjectStorage;
  // Adds the task's first job with the account's fair priority: the source check for a URL image,
  // else the submission. Must throw (an AppError 503) when the queue cannot take it: nothing is then
  // written. Resolves to the settle of the priority's in-flight mark (fair-priority.ts).
  enqueueFirstJob: (task: { id: string; accountId: string; stage: "source" | "submit" }) => Promise<SettleIntake>;
  // Takes back a job whose task was not written after all (best effort: the processor drops a job
  // without a task anyway).
  withdrawFirstJob: (task: { id: string; stage: "source" | "submit" }) => Promise<void>;
  stallRecheckMs: number;
  // The same address rules as image URLs (public http(s) only, unless ALLOWED_PRIVATE_HOSTS names
  // the host and port): rejects with a SafeFetchError.
  checkCallbackUrl: (url: string) => Promise<void>;
  // An image URL naming a literal address that is not public: the reason, refused at intake
  // rather than failed by the download later.
  imageUrlRefusal: (url: string) => string | undefined;
  // Prices, cap and capacity (credits/credit-terms.ts).
  credits: CreditTerms;
};

// replayedBy: why the first task answers again (an external_task_id seen before, or the replay window).
export type AcceptedTask = { task: Task; replayed: boolean; replayedBy?: "external_task_id" | "window" };

// The request as the caller meant it, so that a retried create is recognised: both spellings of the
// downward ratio and both types of `n` give the same hash.
const requestHashOf = (request: ExpandRequest) =>
  createHash("sha256")
    .update(
      JSON.stringify({
        ...request,
        image: request.image.kind === "url" ? request.image : { kind: "base64", sha256: createHash("sha256").update(request.image.data).digest("hex") },
      }),
    )
    .digest("hex");

// Intake: validate what can be validated here, then enqueue the submit job and write the task (or
// find the replay window's answer, in the same statement). The job goes first, so a task row never
// exists without its job; a job whose row is then not written is withdrawn (or dropped by the
// processor, which finds no task).
// `origin`: the API the task came through, which decides the shape of its outbound callbacks.
export const acceptTask = async (
  deps: AcceptTaskDeps,
  accountId: string,
  request: ExpandRequest,
  origin: TaskOrigin = "native",
): Promise<AcceptedTask> => {
  const requestHash = requestHashOf(request);
  refuseAboveCapacity(deps.credits, request.n);
  if (request.externalTaskId) await refuseAmbiguousExternalId(deps.db, accountId, request.externalTaskId);
  if (request.image.kind === "url") {
    const refusal = deps.imageUrlRefusal(request.image.url);
    if (refusal) throw validationError([{ field: "image", message: refusal }]);
  }
  if (request.callbackUrl) await refuseUnreachableCallbackUrl(deps, request.callbackUrl);
  const taskId = uuidv7();
  let inline: { key: string; width: number; height: number } | undefined;
  if (request.image.kind === "base64") {
    const bytes = Buffer.from(request.image.data, "base64");
    const check = await inspectSourceImage(bytes);
    if (!check.ok) throw validationError([{ field: "image", message: check.reason }]);
    inline = { key: sourceImageKey(taskId, check.info.format), width: check.info.width, height: check.info.height };
    await deps.storage.put(inline.key, bytes);
  }
  const stage = request.image.kind === "url" ? "source" : "submit";
  const credits = deps.credits.perImage * request.n;
  const forget = () => (inline ? deps.storage.remove(inline.key).catch(() => undefined) : undefined);

  let settle: SettleIntake;
  try {
    settle = await deps.enqueueFirstJob({ id: taskId, accountId, stage });
  } catch (error) {
    await forget();
    throw error;
  }
  // The row is committed, or will not be: the sweeper's resync may now go by Postgres alone. A
  // statement that may still commit keeps its mark until the mark expires (fair-priority.ts).
  let rowSettled = true;
  try {
    // Run again if Postgres undid it for a conflict (a deadlock): nothing of it was written.
    const [row] = await retryOnConflict(() =>
      runIntakeStatement(deps.db, {
        taskId,
        accountId,
        externalTaskId: request.externalTaskId ?? null,
        callbackUrl: request.callbackUrl ?? null,
        origin,
        requestHash,
        imageUrl: request.image.kind === "url" ? request.image.url : null,
        sourceKey: inline?.key ?? null,
        up: request.ratios.up,
        down: request.ratios.down,
        left: request.ratios.left,
        right: request.ratios.right,
        prompt: request.prompt ?? null,
        n: request.n,
        watermark: request.watermark ?? null,
        sourceWidth: inline?.width ?? null,
        sourceHeight: inline?.height ?? null,
        callbackToken: randomBytes(24).toString("base64url"),
        nextCheckAt: new Date(Date.now() + deps.stallRecheckMs),
        perImage: deps.credits.perImage,
        defaultCap: deps.credits.defaultCap ?? null,
        replayWindowSeconds: deps.credits.replayWindowSeconds,
      }),
    );
    if (!row) throw new Error("intake statement returned no row");
    const { task, replayed } = row;
    if (replayed) {
      // The replay window's answer (replay-window.ts): nothing was written, so the job and the
      // stored image go again.
      await Promise.all([deps.withdrawFirstJob({ id: taskId, stage }).catch(() => undefined), forget()]);
      return { task, replayed: true, replayedBy: "window" };
    }
    metrics.tasksAccepted.inc({ image: inline ? "base64" : "url" });
    return { task, replayed: false };
  } catch (error) {
    // A statement that timed out may still commit: keep its job and image then (the sweeper or the
    // processor's grace settles either way), and tell the caller how to learn the outcome.
    if (isDatabaseUnavailable(error) && statementMayHaveRun(error)) {
      rowSettled = false;
      throw databaseUnavailable(error, "unknown");
    }
    await Promise.all([deps.withdrawFirstJob({ id: taskId, stage }).catch(() => undefined), forget()]);
    if (isCapRefusal(error)) throw spendCapError(await accountBalance(deps.db, accountId, deps.credits.defaultCap), credits, `a task with n = ${request.n}`);
    if (isUniqueViolation(error) && request.externalTaskId) return replayOrConflict(deps.db, accountId, request.externalTaskId, requestHash);
    if (isDatabaseUnavailable(error)) throw databaseUnavailable(error, "nothing_stored");
    throw error;
  } finally {
    // Not awaited: the caller's answer need not wait a round trip for it; a mark settled a little
    // late only counts the task twice at a resync in between (fair-priority.ts).
    if (rowSettled) void settle().catch(() => undefined);
  }
};

const intakeValueNames = [
  "taskId", "accountId", "externalTaskId", "callbackUrl", "origin", "requestHash", "imageUrl", "sourceKey", "up", "down", "left", "right",
  "prompt", "n", "watermark", "sourceWidth", "sourceHeight", "callbackToken", "nextCheckAt", "perImage", "defaultCap", "replayWindowSeconds",
] as const;
type IntakeValues = Record<(typeof intakeValueNames)[number], unknown>;

// Intake's one statement: a call of intake_task (prisma/migrations/20261208020000_intake_function_once),
// which writes the task, its first event and its credit hold and entry together, or answers the
// replay window's task (replay-window.ts) and writes nothing; a hold refused by the cap fails it
// with nothing written (isCapRefusal). Its body is PL/pgSQL so that Postgres keeps its plans per
// connection: sent as an unnamed statement, the same SQL was parsed and planned at every create
// (2.0-3.5 ms of Postgres CPU), and a named statement would not pass a transaction pooler (issue 15).
// The call itself is small to plan, and unnamed unless DB_PREPARED_STATEMENTS names it.
const intakeCall = CompiledQuery.raw(
  `select * from intake_task(${intakeValueNames.map((_, i) => `$${i + 1}`).join(", ")}, ${HOLD_STRIPES})`,
  [],
) as CompiledQuery<Task>;

const runIntakeStatement = async (db: Db, values: IntakeValues) => {
  const rows = await executeCompiled(db, intakeCall, intakeValueNames.map((name) => values[name]));
  // A task of another id is the replay window's answer: this create wrote nothing. The row as it
  // came (no copy of its 43 columns per create).
  return rows.map((task) => ({ task, replayed: task.id !== values.taskId }));
};

// A client that retries a create it never got an answer to (a timeout, a dropped connection) gets
// the first task back; the same external_task_id with a different request stays an error.
const replayOrConflict = async (db: Db, accountId: string, externalTaskId: string, requestHash: string): Promise<AcceptedTask> => {
  const existing = await db
    .selectFrom("task")
    .selectAll()
    .where("accountId", "=", accountId)
    .where("externalTaskId", "=", externalTaskId)
    .executeTakeFirst();
  if (existing && existing.requestHash === requestHash) return { task: existing, replayed: true, replayedBy: "external_task_id" };
  throw new AppError("conflict", `external_task_id '${externalTaskId}' already names another request of this account`, {
    violations: [{ field: "external_task_id", message: "already used by another task of this account with a different request" }],
  });
};

// Checked again when a callback is delivered (at connect time); here only what will surely fail is
// refused: a private or loopback destination. A name that does not resolve, or a DNS hiccup, passes.
const refuseUnreachableCallbackUrl = async (deps: AcceptTaskDeps, url: string) => {
  try {
    await deps.checkCallbackUrl(url);
  } catch (error) {
    if (error instanceof SafeFetchError && !error.retryable) {
      throw validationError([{ field: "callback_url", message: error.publicReason }]);
    }
  }
};

// GET .../{id} takes a task id or an external_task_id: one equal to another task's id would make
// that lookup ambiguous, so it is refused. (Task ids are random UUIDv7s: a new one never collides
// with an existing external_task_id in practice.)
const refuseAmbiguousExternalId = async (db: Db, accountId: string, externalTaskId: string) => {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(externalTaskId)) return;
  const clash = await db
    .selectFrom("task")
    .select("id")
    .where("accountId", "=", accountId)
    .where("id", "=", externalTaskId.toLowerCase())
    .executeTakeFirst();
  if (clash) {
    throw validationError([{ field: "external_task_id", message: "equals the task_id of another task of this account; choose an id that is not one of ours" }]);
  }
};
