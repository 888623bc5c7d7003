import { sql, type RawBuilder } from "kysely";
import type { CallbackOutcome } from "../db/database.ts";

// The provider-callback inbox: what the provider said, for reading (the task's row is what counts).
// Bounded per task, so that a holder of a task's callback token cannot grow it without limit.
export const MAX_CALLBACKS_KEPT_PER_TASK = 50;

export type InboxEntry = { rawBody: string; outcome: CallbackOutcome; detail: string | null; providerStatus: string | null; webhookId: string | null };

// The one insert of an inbox row, for a task id given as SQL (`id`) and the rows it comes from
// (`from`: empty for a known id, `from moved` inside a transition's statement, which then records an
// applied callback with its move: one round trip, and only when the move applies).
export const insertInboxEntry = (id: RawBuilder<unknown>, from: RawBuilder<unknown>, entry: { [K in keyof InboxEntry]: unknown }) => sql`
  insert into provider_callback (task_id, raw_body, outcome, detail, provider_status, webhook_id)
  select ${id}, ${entry.rawBody}, ${entry.outcome}::callback_outcome, ${entry.detail}, ${entry.providerStatus}, ${entry.webhookId} ${from}
  where (select count(*) from provider_callback where task_id = ${id}) < ${MAX_CALLBACKS_KEPT_PER_TASK}
`;
