import { sql, type Expression, type RawBuilder } from "kysely";
import { asJson, type Db, type TaskStatus, type Tx } from "../db/database.ts";

// What a caller's callback_url receives, by how the task was created:
// - drop-in tasks (the provider's shape): the provider's task object on each change of the status the
//   drop-in GET shows: kling.submitted, kling.processing, kling.succeed, kling.failed;
// - native tasks: task.succeeded, task.failed, task.canceled, with the task as GET /v1/tasks/{id}
//   shows it;
// - batches (recorded by the batch code with recordWebhookEvent): batch.progress, batch.completed.
export const WEBHOOK_NOTIFY_CHANNEL = "webhook_delivery";

export type PayloadKind = "provider_task" | "native_task" | "raw";

const nativeEventFor: Partial<Record<TaskStatus, string>> = {
  succeeded: "task.succeeded",
  failed: "task.failed",
  canceled: "task.canceled",
};

// The drop-in view maps queued..submitted to "submitted" and processing/archiving to "processing",
// so `archiving` is news to a drop-in client only when the task never showed `processing`.
const dropinEventSql = (to: TaskStatus, fromColumn: RawBuilder<unknown>): RawBuilder<string | null> | undefined => {
  switch (to) {
    case "submitted":
      return sql<string>`'kling.submitted'`;
    case "processing":
      return sql<string>`'kling.processing'`;
    case "archiving":
      return sql<string | null>`case when ${fromColumn} in ('queued', 'submitting', 'submitted') then 'kling.processing' end`;
    case "succeeded":
      return sql<string>`'kling.succeed'`;
    case "failed":
    case "canceled":
      return sql<string>`'kling.failed'`;
    default:
      return undefined;
  }
};

// The event a transition to `to` causes, as a SQL expression over the moved row (`origin`,
// `callback_url`, and the status it left in `fromColumn`); undefined when no task gets one.
export const taskEventTypeSql = (to: TaskStatus, row: string, fromColumn: string): RawBuilder<string | null> | undefined => {
  const native = nativeEventFor[to];
  const dropin = dropinEventSql(to, sql.ref(fromColumn));
  if (!native && !dropin) return undefined;
  const origin = sql.ref(`${row}.origin`);
  return sql<string | null>`case when ${sql.ref(`${row}.callback_url`)} is null then null
    when ${origin} = 'dropin' then ${dropin ?? sql`null`}
    else ${native ? sql`${native}` : sql`null`} end`;
};

// A URL that answered 410 Gone stays disabled for the account: its later events are stored as such.
export const initialDeliveryStatusSql = (accountId: RawBuilder<unknown>, url: RawBuilder<unknown>) =>
  sql<"pending" | "disabled">`(case when exists (select 1 from webhook_disabled_url w where w.account_id = ${accountId} and w.url = ${url})
    then 'disabled' else 'pending' end)::webhook_delivery_status`;

// Whether a task's new event may be sent at once by the process that records it (task-transition.ts
// `leaseOutbound`): only when it is to be sent at all and no earlier event of the task is still
// undecided, so that the consumer sees the task's states in order (the same rule as the claim's).
// Inside the move's statement the row lock on the task orders two moves of it, and a move from
// the status it read (`from`) that lost that race does not apply, so no earlier event can commit
// unseen by this check and then be sent after this one.
export const sendableAtOnceSql = (taskId: RawBuilder<unknown>, status: RawBuilder<"pending" | "disabled">) =>
  sql<boolean>`(${status} = 'pending' and not exists (select 1 from webhook_delivery p where p.task_id = ${taskId} and p.status = 'pending'))`;

export type WebhookEventInput = {
  accountId: string;
  taskId?: string | null;
  batchId?: string | null;
  eventType: string;
  url: string;
  // Sent as the event's `data`, as given.
  payload: unknown;
};

// Generic recording, for events that are not task transitions (batch.progress, batch.completed):
// call it inside the transaction that makes the change, so the event commits with it or not at
// all. Events with the same batch id (and no task id) are delivered in the order recorded.
export const recordWebhookEvent = async (tx: Tx | Db, event: WebhookEventInput): Promise<string> => {
  const row = await tx
    .insertInto("webhookDelivery")
    .values({
      accountId: event.accountId,
      taskId: event.taskId ?? null,
      batchId: event.batchId ?? null,
      eventType: event.eventType,
      url: event.url,
      payloadKind: "raw" satisfies PayloadKind,
      payload: sql`${asJson(event.payload ?? {})}::jsonb`,
      status: initialDeliveryStatusSql(sql`${event.accountId}::uuid`, sql`${event.url}`),
    })
    .returning((eb) => ["id", notifyDeliverySql(eb.ref("id")).as("notified")])
    .executeTakeFirstOrThrow();
  return row.id;
};

// Wakes the workers' listeners when the transaction commits (NOTIFY is transactional); a lost
// notification only costs the sweep interval. The payload is the job id of the delivery's first
// attempt (webhook-delivery.store.ts deliveryJobId with attempts 0).
export const notifyDeliverySql = (id: Expression<unknown>) =>
  sql<string>`pg_notify(${WEBHOOK_NOTIFY_CHANNEL}, ${id}::text || '_0')::text`;
