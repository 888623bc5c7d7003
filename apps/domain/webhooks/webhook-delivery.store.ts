import { sql, type RawBuilder, type Selectable } from "kysely";
import type { DB, Db, Tx } from "../db/database.ts";
import { keysetPage, type PageQuery } from "../db/keyset-page.ts";
import { notifyDeliverySql } from "./outbound-events.ts";

// Where each outbound callback stands, in Postgres: Redis only carries the jobs that wake a worker,
// and the sweep finds anything due whose job went missing.
export type WebhookDelivery = Selectable<DB["webhookDelivery"]>;
export type WebhookAttempt = Selectable<DB["webhookAttempt"]>;
export type DeliveryStatus = WebhookDelivery["status"];

// A BullMQ job id per attempt: adding the same one twice (a notification and the sweep) is a no-op.
export const deliveryJobId = (delivery: { id: string; attempts: number }) => `${delivery.id}_${delivery.attempts}`;

// An earlier event of the same task (or, for batch events, of the same batch) still undecided: this
// one waits for it, so a consumer sees a task's states in order.
const waitsForEarlier = sql<boolean>`exists (
  select 1 from webhook_delivery p
  where p.status = 'pending' and p.seq < d.seq
    and ((d.task_id is not null and p.task_id = d.task_id)
      or (d.task_id is null and d.batch_id is not null and p.task_id is null and p.batch_id = d.batch_id)))`;

export type ClaimedDelivery = WebhookDelivery & { secretRow: { currentSealed: string; previousSealed: string | null; previousUntil: string | null; rotatedAt: string } | null };

// Takes deliveries for one attempt each, in one statement (a burst of events is one round trip):
// each must be pending, due, not held by a live attempt, and not behind an earlier event (of two
// events of one task named together, only the earlier is taken; the later follows when it is
// decided). The lease outlives the attempt's timeout; a worker killed mid-attempt leaves it to
// lapse, and the sweep hands the delivery to another worker. Several workers naming the same id
// race on the row: one takes it, the others find it leased.
export const claimDeliveries = async (db: Db, ids: readonly string[], leaseMs: number): Promise<ClaimedDelivery[]> => {
  if (ids.length === 0) return [];
  const result = await sql<ClaimedRow>`
    update webhook_delivery d
    set attempts = d.attempts + 1, lease_until = now() + make_interval(secs => ${leaseMs / 1000}), updated_at = now()
    where d.id = any(${[...ids]}::uuid[]) and d.status = 'pending'
      and d.next_attempt_at <= now() + interval '1 second'
      and (d.lease_until is null or d.lease_until < now())
      and not ${waitsForEarlier}
    returning ${claimedColumns}
  `.execute(db);
  return result.rows.map(parsedClaim);
};

// What an attempt needs of a delivery (and its account's signing secrets), as a claim answers it.
const claimedColumns = sql`d.id, d.seq, d.account_id as "accountId", d.task_id as "taskId", d.batch_id as "batchId",
      d.event_type as "eventType", d.url, d.payload_kind as "payloadKind", d.payload::text as "payloadText", d.status, d.attempts,
      d.next_attempt_at as "nextAttemptAt", d.lease_until as "leaseUntil", d.last_status_code as "lastStatusCode",
      d.last_error as "lastError", d.last_latency_ms as "lastLatencyMs", d.created_at as "createdAt",
      d.updated_at as "updatedAt", d.finished_at as "finishedAt",
      (select json_build_object('currentSealed', s.current_sealed, 'previousSealed', s.previous_sealed,
         'previousUntil', s.previous_until, 'rotatedAt', s.rotated_at)
       from webhook_signing_secret s where s.account_id = d.account_id) as "secretRow"`;
type ClaimedRow = Omit<ClaimedDelivery, "payload"> & { payloadText: string };
// As text: Kysely's CamelCasePlugin would rename the keys inside a jsonb value, and a raw event's
// data must reach the consumer exactly as it was recorded.
const parsedClaim = ({ payloadText, ...delivery }: ClaimedRow): ClaimedDelivery => ({ ...delivery, payload: JSON.parse(payloadText) as ClaimedDelivery["payload"] });

// Deliveries the move that recorded them wrote already leased to its caller (task-transition.ts
// `leaseOutboundMs`), answered by that same statement as the claim answers them: rows of `source`
// (the move's inserted deliveries, all their columns), each as one JSON text (leasedFromMove reads
// them), so that the path from the event to its POST has one commit and one statement.
export const leasedJsonSql = (source: RawBuilder<unknown>) =>
  sql<string[] | null>`(select array_agg(row_to_json(x)::text) from (select ${claimedColumns} from ${source} d where d.leased) x)`;

const timestamp = (value: unknown) => (typeof value === "string" ? new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`) : null);
export const leasedFromMove = (rows: readonly string[]): ClaimedDelivery[] =>
  rows.map((text) => {
    const row = JSON.parse(text) as ClaimedRow & Record<"nextAttemptAt" | "leaseUntil" | "createdAt" | "updatedAt" | "finishedAt", unknown>;
    return parsedClaim({
      ...row,
      seq: String(row.seq),
      nextAttemptAt: timestamp(row.nextAttemptAt)!,
      leaseUntil: timestamp(row.leaseUntil),
      createdAt: timestamp(row.createdAt)!,
      updatedAt: timestamp(row.updatedAt)!,
      finishedAt: timestamp(row.finishedAt),
    });
  });

export const claimDelivery = async (db: Db, id: string, leaseMs: number): Promise<ClaimedDelivery | undefined> =>
  (await claimDeliveries(db, [id], leaseMs))[0];

export type AttemptOutcome = {
  status: DeliveryStatus;
  nextAttemptAt: Date | null;
  statusCode: number | null;
  latencyMs: number;
  error: string | null;
  responseBody: string | null;
  startedAt: Date;
};

// The attempt and the delivery's new state in one statement; a 410 also disables the URL for the
// account and every delivery still waiting for it (in the same transaction). Answers the next event
// of the same task or batch when this one is decided (it was waiting for this one), looked up once
// the decision is committed: an event committed meanwhile either is seen here or, if its own claim
// came after this commit, was not held back by this one. (Looked up inside the transaction, an
// event committed between the lookup and the commit, whose claim also came before the commit, would
// wait for the sweep.)
export const recordAttempt = async (db: Db, delivery: WebhookDelivery, outcome: AttemptOutcome): Promise<{ id: string; attempts: number }[]> => {
  const decided = outcome.status !== "pending";
  const record = async (executor: Db | Tx) => {
    await sql`
      with attempt as (
        insert into webhook_attempt (delivery_id, attempt, started_at, status_code, latency_ms, error, response_body)
        values (${delivery.id}::uuid, ${delivery.attempts}, ${outcome.startedAt}, ${outcome.statusCode}, ${outcome.latencyMs}, ${outcome.error}, ${outcome.responseBody})
      )
      update webhook_delivery set status = ${outcome.status}::webhook_delivery_status, next_attempt_at = ${outcome.nextAttemptAt},
        lease_until = null, last_status_code = ${outcome.statusCode}, last_error = ${outcome.error},
        last_latency_ms = ${outcome.latencyMs}, updated_at = now(), finished_at = ${decided ? sql`now()` : sql`null`}
      where id = ${delivery.id}::uuid
    `.execute(executor);
  };
  if (outcome.status === "disabled") {
    await db.transaction().execute(async (tx) => {
      await record(tx);
      const reason = `HTTP 410 Gone to delivery ${delivery.id}`;
      await sql`
        insert into webhook_disabled_url (account_id, url, reason) values (${delivery.accountId}::uuid, ${delivery.url}, ${reason})
        on conflict (account_id, url) do update set disabled_at = now(), reason = excluded.reason
      `.execute(tx);
      await sql`
        update webhook_delivery set status = 'disabled', lease_until = null, last_error = 'the URL answered 410 Gone to an earlier delivery',
          updated_at = now(), finished_at = now()
        where account_id = ${delivery.accountId}::uuid and url = ${delivery.url} and status = 'pending' and id <> ${delivery.id}::uuid
      `.execute(tx);
    });
  } else {
    // One statement: no transaction around it.
    await record(db);
  }
  if (!decided) return [];
  const next = await sql<{ id: string; attempts: number }>`
    select d.id, d.attempts from webhook_delivery d
    where d.status = 'pending' and d.seq > ${delivery.seq}
      and ${delivery.taskId !== null ? sql`d.task_id = ${delivery.taskId}::uuid` : delivery.batchId !== null ? sql`d.task_id is null and d.batch_id = ${delivery.batchId}::uuid` : sql`false`}
    order by d.seq limit 1
  `.execute(db);
  return next.rows;
};

// Due deliveries whose job may be gone (Redis emptied, a killed worker's lease lapsed, a missed
// notification), oldest first.
export const dueDeliveries = async (db: Db, limit: number) =>
  (
    await sql<{ id: string; attempts: number; nextAttemptAt: Date }>`
      select d.id, d.attempts, d.next_attempt_at as "nextAttemptAt" from webhook_delivery d
      where d.status = 'pending' and d.next_attempt_at <= now()
        and (d.lease_until is null or d.lease_until < now())
        and not ${waitsForEarlier}
      order by d.next_attempt_at limit ${limit}
    `.execute(db)
  ).rows;

export type DeliveryListQuery = PageQuery & {
  taskId?: string;
  batchId?: string;
  status?: DeliveryStatus;
  eventType?: string;
  since?: Date;
  until?: Date;
};

// Newest first; the cursor is the last row's seq.
export const listDeliveries = async (db: Db, accountId: string, query: DeliveryListQuery) => {
  let select = db.selectFrom("webhookDelivery").selectAll().where("accountId", "=", accountId);
  if (query.taskId) select = select.where("taskId", "=", query.taskId);
  if (query.batchId) select = select.where("batchId", "=", query.batchId);
  if (query.status) select = select.where("status", "=", query.status);
  if (query.eventType) select = select.where("eventType", "=", query.eventType);
  if (query.since) select = select.where("createdAt", ">=", query.since);
  if (query.until) select = select.where("createdAt", "<", query.until);
  const page = await keysetPage(select, { column: "seq", field: "seq", order: "desc" }, query);
  return { deliveries: page.rows, nextCursor: page.nextCursor };
};

export const findDelivery = async (db: Db, accountId: string, id: string) => {
  const delivery = await db.selectFrom("webhookDelivery").selectAll().where("id", "=", id).where("accountId", "=", accountId).executeTakeFirst();
  if (!delivery) return undefined;
  const attempts = await db.selectFrom("webhookAttempt").selectAll().where("deliveryId", "=", id).orderBy("id", "asc").execute();
  return { delivery, attempts };
};

// Sends a delivery again with the same webhook-id, from the start of the schedule, whatever its
// state (a pending one just becomes due now). Asking for it again is the way to re-enable a URL
// that answered 410. The workers are woken by the notification when this commits.
export const redeliver = async (db: Db, accountId: string, filter: { id: string } | { status: "failed" | "disabled"; since: Date; until?: Date }) =>
  db.transaction().execute(async (tx) => {
    let update = tx
      .updateTable("webhookDelivery as d")
      .set({ status: "pending", attempts: 0, nextAttemptAt: sql<Date>`now()`, leaseUntil: null, finishedAt: null, updatedAt: sql<Date>`now()` })
      .where("d.accountId", "=", accountId);
    if ("id" in filter) update = update.where("d.id", "=", filter.id);
    else {
      update = update.where("d.status", "=", filter.status).where("d.createdAt", ">=", filter.since);
      if (filter.until) update = update.where("d.createdAt", "<", filter.until);
    }
    const rows = await update.returning(["d.id", "d.url", notifyDeliverySql(sql.ref("d.id")).as("notified")]).execute();
    const urls = [...new Set(rows.map((r) => r.url))];
    if (urls.length > 0) await tx.deleteFrom("webhookDisabledUrl").where("accountId", "=", accountId).where("url", "in", urls).execute();
    return rows.map((r) => r.id);
  });
