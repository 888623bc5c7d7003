import { sql, type QueryCreator } from "kysely";
import type { DB } from "../db/database.ts";

// The replay window: a heuristic for clients that retry a create after their own timeout and cannot
// send an external_task_id (the published Kling SDK's README example does exactly that). Within the
// account's window (replay_window_seconds, else REPLAY_WINDOW_SECONDS; 0: off), a create with the
// same request (the same hash as external_task_id replays use) and no external_task_id answers the
// newest such task instead of creating and paying for a second one. A heuristic: two creates a
// client really meant as two identical tasks within the window become one; two identical creates
// sent at the same instant may both be created. An external_task_id is the exact tool.
//
// The newest such task (none when the request names an external_task_id: its replays go by that id).
// Intake folds it into its insert statement (accept-task.ts): a create costs no round trip for it.
export const replayCandidate = (db: QueryCreator<DB>, accountId: string, requestHash: string, externalTaskId: string | null, defaultWindowSeconds: number) => {
  const window = sql<number>`coalesce((select replay_window_seconds from account where id = ${accountId}::uuid), ${defaultWindowSeconds}::int)`;
  return db
    .selectFrom("task")
    .selectAll()
    .where("accountId", "=", accountId)
    .where("requestHash", "=", requestHash)
    .where("externalTaskId", "is", null)
    .where(sql<boolean>`${externalTaskId}::text is null`)
    .where("batchId", "is", null)
    // 0 is off. `accepted_at > now() - 0 s` alone was not: now() is this statement's transaction
    // start, and an identical create that committed after it (while this one waited for a CPU or a
    // connection) has a later accepted_at, so it was answered as a replay (test/credits/replay-window-off).
    .where(sql<boolean>`${window} > 0`)
    // accepted_at is UTC without a zone (database.ts).
    .where(sql<boolean>`accepted_at > (now() at time zone 'utc') - make_interval(secs => ${window})`)
    .orderBy("acceptedAt", "desc")
    .limit(1);
};
