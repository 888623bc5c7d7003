import { sql, type CompiledQuery, type QueryCreator, type SelectQueryBuilder, type Updateable } from "kysely";
import { asJson, executeCompiled, type DB, type Db, type EventSource, type Task, type TaskStatus, type Tx } from "../db/database.ts";
import type { TaskChangeNotifier } from "../live-progress/task-change.ts";
import { initialDeliveryStatusSql, notifyDeliverySql, sendableAtOnceSql, taskEventTypeSql } from "../webhooks/outbound-events.ts";
import { recordTransition } from "../metrics/task-metrics.ts";
import { isTerminal, statusesBefore } from "./task-status.ts";
import { retryOnConflict } from "../errors/dependency-errors.ts";
import type { StoredImage } from "./task.store.ts";
import { settleMovedTasksCtes } from "../credits/credit-ledger.ts";
import { insertInboxEntry, type InboxEntry } from "./callback-inbox.ts";
import { leasedFromMove, leasedJsonSql, type ClaimedDelivery } from "../webhooks/webhook-delivery.store.ts";

export type TransitionRequest = {
  taskId: string;
  to: TaskStatus;
  source: EventSource;
  // Defaults to every status ranked below `to`: the guard that keeps transitions monotonic.
  from?: readonly TaskStatus[];
  data?: Omit<Updateable<DB["task"]>, "status" | "id">;
  detail?: Record<string, unknown>;
  // A success report's result images, recorded by the same statement when (and only when) the move
  // applies: one round trip instead of a transaction around the move and an insert.
  resultImages?: readonly { index: number; url: string }[];
  // An archived image's record (task.store.ts recordStoredImage), written by the same statement when
  // the move applies: the archive's last image and its success in one round trip.
  storedImage?: { index: number } & StoredImage;
  // A provider callback's inbox row (callback-inbox.ts), written by the same statement when the
  // move applies: the callback's move and its record in one round trip.
  inboxEntry?: InboxEntry;
  // The outbound callback this move causes is written leased to the calling process for this long
  // (its first attempt claimed, no NOTIFY) when it may be sent at once (outbound-events.ts
  // sendableAtOnceSql), so that the caller sends it right after the commit, with no second commit
  // and no hop through a worker; the result's `leased` carries it, as a claim answers it. Only for
  // a move from the exact status the caller read (the receiver's). A caller that dies, or fails to send it, leaves it to
  // the workers: the sweep finds it once the lease lapses; a failed attempt is retried by them.
  leaseOutboundMs?: number;
};

// Not applied: the task was gone or in none of the `from` statuses. Callers that need it as it is
// now read it themselves (most only look again or give up), so no read is spent on it here.
export type TransitionResult = { applied: true; from: TaskStatus; task: Task; leased?: ClaimedDelivery[] } | { applied: false };

// The tasks a move applies to, each with the status and updated_at it leaves, locked (FOR UPDATE)
// by the same statement that moves them.
type PickTasks = (db: QueryCreator<DB>) => SelectQueryBuilder<DB, "task", { id: string; status: TaskStatus; updatedAt: Date }>;
type Move = Omit<TransitionRequest, "taskId" | "from"> & { from: readonly TaskStatus[] };
export type MovedTask = Task & { fromStatus: TaskStatus; fromUpdatedAt: Date; leasedDeliveries?: string[] | null };

// The one status-changing statement, for one task or a chunk of a batch's: a guarded update plus
// its events, in one statement: late or duplicate events cannot move a task backwards, and history
// never disagrees with the row. The status it moves from is read under a row lock in the same
// statement, so two changes racing for the same task apply one after the other, each against the
// status the other left. One round trip (a callback's hot path; measured by `npm run bench:api`),
// inside a transaction or alone.
// The same statement records the outbound callback the change causes (outbound-events.ts), as a
// snapshot of the row, for tasks with a callback_url: every status change passes through here, so
// no change goes without its event and no event without its change.
// The values a move's statement takes besides its shape (`to`, `from`, `source`, which data columns):
// given as they are, or as placeholders when the statement is compiled once for its shape.
type MoveValues = {
  now: unknown;
  detail: unknown;
  withImages: boolean;
  imageIndexes: unknown;
  imageUrls: unknown;
  withStored: boolean;
  stored: unknown;
  inbox: { [K in keyof InboxEntry]: unknown } | undefined;
  withLease: boolean;
  leaseSeconds: unknown;
};

const buildMove = (tx: Tx | Db, pick: PickTasks, move: Move, values: MoveValues) => {
  const now = values.now as Date;
  // `null` (no insert) for statuses that no task is called back about.
  const eventType = taskEventTypeSql(move.to, "moved", "moved.from_status") ?? sql<null>`null`;
  const terminal = isTerminal(move.to);
  const deliveryStatus = initialDeliveryStatusSql(sql.ref("moved.account_id"), sql.ref("moved.callback_url"));
  const leased = values.withLease ? sendableAtOnceSql(sql.ref("moved.id"), deliveryStatus) : sql<boolean>`false`;
  return tx
    .with("before", pick)
    .with("moved", (db) =>
      db
        .updateTable("task")
        .from("before")
        .set({
          ...move.data,
          status: move.to,
          updatedAt: now,
          ...(isTerminal(move.to) ? { finishedAt: now, nextCheckAt: null } : {}),
          // A submission attempt's lease (task.store.ts claimSubmitAttempt) ends with the move that
          // takes the task past submission: no attempt can claim it then, and the attempt that moved
          // it (the create's answer) is spared a statement of its own to give the lease back.
          ...(leavesSubmission(move.to) ? { submitLeaseUntil: null } : {}),
        })
        .whereRef("task.id", "=", "before.id")
        .where("before.status", "in", move.from)
        .returningAll("task")
        .returning(sql<TaskStatus>`before.status`.as("fromStatus"))
        .returning(sql<Date>`before.updated_at`.as("fromUpdatedAt")),
    )
    .with("images", () =>
      values.withImages
        ? sql`(insert into task_image (task_id, index, provider_url)
            select moved.id, image.index, image.url from moved, unnest(${values.imageIndexes}::int[], ${values.imageUrls}::text[]) as image(index, url)
            on conflict (task_id, index) do nothing)`
        : noRows,
    )
    .with("stored", () =>
      values.withStored
        ? sql`(update task_image ti
            set storage_key = s.storage_key, width = s.width, height = s.height, bytes = s.bytes, sha256 = s.sha256, stored_at = ${values.now}
            from moved, jsonb_to_record(${values.stored}::jsonb) as s(index int, storage_key text, width int, height int, bytes int, sha256 text)
            where ti.task_id = moved.id and ti.index = s.index)`
        : noRows,
    )
    .with("inbox", () => (values.inbox ? sql`(${insertInboxEntry(sql.ref("moved.id"), sql`from moved`, values.inbox)})` : noRows))
    .with("event", (db) =>
      db
        .insertInto("taskEvent")
        .columns(["taskId", "fromStatus", "toStatus", "source", "detail"])
        .expression((eb) =>
          eb
            .selectFrom("moved")
            .select((s) => [
              "moved.id",
              "moved.fromStatus",
              s.val(move.to).as("toStatus"),
              s.val(move.source).as("source"),
              sql`${values.detail}::jsonb`.as("detail"),
            ]),
        ),
    )
    .with("outbound", (db) =>
        db
          .insertInto("webhookDelivery")
          // A batch item's events carry its batch too, so the delivery log filtered by batch shows them.
          .columns(["accountId", "taskId", "batchId", "eventType", "url", "payloadKind", "payload", "status", "attempts", "leaseUntil"])
          .expression((eb) =>
            eb
              .selectFrom("moved")
              .select([
                "moved.accountId",
                "moved.id",
                "moved.batchId",
                sql<string>`${eventType}`.as("eventType"),
                "moved.callbackUrl",
                sql<string>`case when moved.origin = 'dropin' then 'provider_task' else 'native_task' end`.as("payloadKind"),
                // The row as it is now (less its secrets): rendered at each attempt, so links are fresh.
                sql`to_jsonb(moved) - 'from_status' - 'from_updated_at' - 'callback_token' - 'request_hash'`.as("payload"),
                deliveryStatus.as("status"),
                // Leased: its first attempt is taken by the caller, as a claim would take it.
                sql<number>`case when ${leased} then 1 else 0 end`.as("attempts"),
                sql<Date | null>`case when ${leased} then now() + make_interval(secs => ${values.leaseSeconds}::float8) end`.as("leaseUntil"),
              ])
              .where(sql<boolean>`${eventType} is not null`),
          )
          // The workers hear of every event but those the caller sends itself, whose whole rows go
          // back to it (leasedJsonSql below).
          .$if(values.withLease, (q) => q.returningAll())
          .returning((eb) => [
            sql<boolean>`lease_until is not null`.as("leased"),
            sql<string | null>`case when lease_until is null then ${notifyDeliverySql(eb.ref("id"))} end`.as("notified"),
          ]),
    )
    // An end settles the moved tasks' credit holds in the same statement: no reader (a batch's end
    // event, the usage routes) sees a task ended with its hold still open, and the end costs one
    // round trip, not a transaction of three. Empty CTEs for a move that ends nothing.
    .with("settle_ended", () => (terminal ? settle.settle_ended : noRows))
    .with("settle_done", () => (terminal ? settle.settle_done : noRows))
    .with("settle_locked", () => (terminal ? settle.settle_locked : noRows))
    .with("settle_balance", () => (terminal ? settle.settle_balance : noRows))
    .selectFrom("moved")
    .selectAll()
    .$if(values.withLease, (q) => q.select(leasedJsonSql(sql.table("outbound")).as("leasedDeliveries")));
};

const settle = settleMovedTasksCtes("moved");
const leavesSubmission = (to: TaskStatus) => to !== "queued" && to !== "submitting";
const noRows = sql<Record<string, unknown>>`(select 1 where false)`;

const moveValues = (move: Move): MoveValues => ({
  now: new Date(),
  detail: asJson(move.detail),
  withImages: (move.resultImages?.length ?? 0) > 0,
  imageIndexes: move.resultImages?.map((i) => i.index),
  imageUrls: move.resultImages?.map((i) => i.url),
  withStored: move.storedImage !== undefined,
  stored:
    move.storedImage &&
    JSON.stringify({
      index: move.storedImage.index,
      storage_key: move.storedImage.storageKey,
      width: move.storedImage.width,
      height: move.storedImage.height,
      bytes: move.storedImage.bytes,
      sha256: move.storedImage.sha256,
    }),
  inbox: move.inboxEntry,
  withLease: move.leaseOutboundMs !== undefined,
  leaseSeconds: (move.leaseOutboundMs ?? 0) / 1000,
});

const moveTasksInTx = async (tx: Tx | Db, pick: PickTasks, move: Move): Promise<MovedTask[]> => buildMove(tx, pick, move, moveValues(move)).execute();

// A single task's move is compiled once per shape and run with its values swapped in (executeCompiled):
// building and compiling this statement was most of Kysely's share of a task's CPU (a callback's or
// a job's profile). A data value that is not a plain one (an object, an array) takes the building path.
type CompiledMove = { query: CompiledQuery<MovedTask>; slots: Map<symbol, (move: Move, taskId: string, values: MoveValues) => unknown> };
const compiledMoves = new Map<string, CompiledMove>();
const MAX_COMPILED_MOVES = 500;
const isPlainValue = (v: unknown) => v === null || v instanceof Date || ["string", "number", "boolean", "bigint"].includes(typeof v);

const moveSingleTask = async (tx: Tx | Db, taskId: string, move: Move): Promise<MovedTask[]> => {
  const dataKeys = Object.keys(move.data ?? {}).filter((k) => (move.data as Record<string, unknown>)[k] !== undefined);
  const data = (move.data ?? {}) as Record<string, unknown>;
  if (!dataKeys.every((k) => isPlainValue(data[k]))) {
    return moveTasksInTx(tx, (db) => db.selectFrom("task").select(["id", "status", "updatedAt"]).where("id", "=", taskId).forUpdate(), move);
  }
  const hasImages = (move.resultImages?.length ?? 0) > 0;
  const hasStored = move.storedImage !== undefined;
  const hasInbox = move.inboxEntry !== undefined;
  const hasLease = move.leaseOutboundMs !== undefined;
  const key = JSON.stringify([move.to, move.from, move.source, dataKeys, hasImages, hasStored, hasInbox, hasLease]);
  let compiled = compiledMoves.get(key);
  if (!compiled) {
    const slots = new Map<symbol, (move: Move, taskId: string, values: MoveValues) => unknown>();
    const slot = (name: string, value: (move: Move, taskId: string, values: MoveValues) => unknown) => {
      const placeholder = Symbol(name);
      slots.set(placeholder, value);
      return placeholder;
    };
    const placeholders: MoveValues = {
      now: slot("now", (_m, _t, v) => v.now),
      detail: slot("detail", (_m, _t, v) => v.detail),
      withImages: hasImages,
      imageIndexes: slot("imageIndexes", (_m, _t, v) => v.imageIndexes),
      imageUrls: slot("imageUrls", (_m, _t, v) => v.imageUrls),
      withStored: hasStored,
      stored: slot("stored", (_m, _t, v) => v.stored),
      inbox: hasInbox
        ? {
            rawBody: slot("inbox.rawBody", (m) => m.inboxEntry!.rawBody),
            outcome: slot("inbox.outcome", (m) => m.inboxEntry!.outcome),
            detail: slot("inbox.detail", (m) => m.inboxEntry!.detail),
            providerStatus: slot("inbox.providerStatus", (m) => m.inboxEntry!.providerStatus),
            webhookId: slot("inbox.webhookId", (m) => m.inboxEntry!.webhookId),
          }
        : undefined,
      withLease: hasLease,
      leaseSeconds: slot("leaseSeconds", (_m, _t, v) => v.leaseSeconds),
    };
    const shapedData = Object.fromEntries(dataKeys.map((k) => [k, slot(k, (m) => (m.data as Record<string, unknown>)[k])]));
    const idSlot = slot("taskId", (_m, t) => t) as unknown as string;
    const pick: PickTasks = (db) => db.selectFrom("task").select(["id", "status", "updatedAt"]).where("id", "=", idSlot).forUpdate();
    const query = buildMove(tx, pick, { ...move, data: shapedData as Move["data"] }, placeholders).compile() as CompiledQuery<MovedTask>;
    compiled = { query, slots };
    if (compiledMoves.size < MAX_COMPILED_MOVES) compiledMoves.set(key, compiled);
  }
  const values = moveValues(move);
  const { query, slots } = compiled;
  return executeCompiled(tx, query, query.parameters.map((p) => (typeof p === "symbol" && slots.has(p) ? slots.get(p)!(move, taskId, values) : p)));
};

export const transitionTaskInTx = async (tx: Tx | Db, request: TransitionRequest): Promise<TransitionResult> => {
  const [moved] = await moveSingleTask(tx, request.taskId, { ...request, from: request.from ?? statusesBefore(request.to) });
  if (moved) {
    const { fromStatus, fromUpdatedAt, leasedDeliveries, ...task } = moved;
    recordTransition(fromStatus, task, fromUpdatedAt);
    return { applied: true, from: fromStatus, task, ...(leasedDeliveries ? { leased: leasedFromMove(leasedDeliveries) } : {}) };
  }
  return { applied: false };
};

export type TransitionDeps = { db: Db; taskChanged: TaskChangeNotifier };

// Every state change goes through here: the change (with `alsoInTx`, more writes in the same
// transaction), then, only once it is committed, the live-progress notification. Notified before
// the commit, a listener could re-read the old row and wait for a message that never comes again.
// Callers of transitionTaskInTx inside their own transaction notify after their commit.
export const transitionTask = async (
  deps: TransitionDeps,
  request: TransitionRequest,
  alsoInTx?: (tx: Tx, task: Task) => Promise<void>,
): Promise<TransitionResult> => {
  // An end settles the task's credits in its own statement (buildMove): a transaction only for
  // the caller's writes. Run again whole if Postgres undid it for a conflict (a deadlock): the guard
  // makes that safe.
  const result = await retryOnConflict(() =>
    alsoInTx
      ? deps.db.transaction().execute(async (tx) => {
          const moved = await transitionTaskInTx(tx, request);
          if (moved.applied && alsoInTx) await alsoInTx(tx, moved.task);
          return moved;
        })
      : transitionTaskInTx(deps.db, request),
  );
  if (result.applied) deps.taskChanged(result.task);
  return result;
};

// The bulk form, for a batch's tasks (cancel, retry): the same statement as a single transition,
// over a chunk of the batch's tasks at a time, so each chunk's tasks get their events, outbound
// callbacks, live updates and metrics exactly as one task does. A chunk is one statement (set-based,
// never one per task) and one short transaction: a 100,000-item batch is moved in a couple hundred
// short statements, not one long lock.
export type BatchTransitionRequest = Omit<TransitionRequest, "taskId" | "from"> & {
  batchId: string;
  // The statuses moved from (explicit: a bulk move names exactly what it takes).
  from: readonly TaskStatus[];
  // Narrows the move to tasks that failed with one of these classes (a retry).
  failureClasses?: readonly string[];
};

export const BULK_TRANSITION_CHUNK = 500;

export const transitionBatchTasks = async (
  deps: TransitionDeps,
  request: BatchTransitionRequest,
  options: { chunk?: number; alsoInTx?: (tx: Tx, moved: readonly MovedTask[]) => Promise<void> } = {},
): Promise<number> => {
  const limit = options.chunk ?? BULK_TRANSITION_CHUNK;
  // Rows in id order, waiting for (not skipping) a row another transition holds: once it commits,
  // Postgres re-checks the row against the filter, so a task that moved on meanwhile drops out and
  // no task is missed. The same order in every bulk move keeps two of them from deadlocking.
  const pick: PickTasks = (db) => {
    let q = db
      .selectFrom("task")
      .select(["id", "status", "updatedAt"])
      .where("batchId", "=", request.batchId)
      .where("status", "in", [...request.from]);
    if (request.failureClasses) q = q.where("failureClass", "in", [...request.failureClasses]);
    return q.orderBy("id").limit(limit).forUpdate();
  };
  let total = 0;
  for (;;) {
    const moved = await retryOnConflict(() => deps.db.transaction().execute(async (tx) => {
      // An end settles the moved tasks' credit holds in the same statement, as a single end does.
      const rows = await moveTasksInTx(tx, pick, request);
      // Writes that must commit with the move, per chunk (as alsoInTx of transitionTask).
      if (rows.length > 0 && options.alsoInTx) await options.alsoInTx(tx, rows);
      return rows;
    }));
    if (moved.length === 0) return total;
    total += moved.length;
    afterTasksMoved(deps, moved);
  }
};

// Every per-task effect of a committed bulk move that is not in its statement (events and outbound
// callbacks are): metrics and live updates, once per moved task.
const afterTasksMoved = (deps: TransitionDeps, moved: readonly MovedTask[]) => {
  for (const { fromStatus, fromUpdatedAt, ...task } of moved) {
    recordTransition(fromStatus, task, fromUpdatedAt);
    deps.taskChanged(task);
  }
};
