// The replay window: a heuristic for clients that retry a create after their own timeout and cannot
// send an external_task_id (the published Kling SDK's README example does exactly that). Within the
// account's window (replay_window_seconds, else REPLAY_WINDOW_SECONDS; 0: off), a create with the
// same request (the same hash as external_task_id replays use) and no external_task_id answers the
// newest such task instead of creating and paying for a second one. A heuristic: two creates a
// client really meant as two identical tasks within the window become one; two identical creates
// sent at the same instant may both be created. An external_task_id is the exact tool.
//
// Its lookup is the first statement of intake's call, the PL/pgSQL function intake_task
// (prisma/migrations/20261208020000_intake_function_once, called by accept-task.ts): a create costs no
// round trip for it, and with the window off Postgres does not run it. The newest such task, none when the request names an external_task_id (its
// replays go by that id) or belongs to a batch. A window of 0 is off: `accepted_at > now() - 0 s`
// alone was not, since now() is the transaction's start and an identical create that committed
// after it (while this one waited for a CPU or a connection) has a later accepted_at
// (test/credits/replay-window-off).
export {};
