-- Intake's statement as a PL/pgSQL function (called by accept-task.ts). An unnamed statement is
-- parsed and planned at every execution, and intake's (the task, its event, the credit hold and
-- entry and the replay window's lookup in one statement) cost Postgres 2.0-3.5 ms of CPU a create
-- for that, while named statements do not pass a transaction pooler (issue 15). PL/pgSQL keeps each
-- statement's plan for the life of the connection (a generic plan after five custom ones, planned
-- again when a table it reads changes), and the client sends `select * from intake_task($1, ...)`,
-- which is cheap to plan and needs no named statement: it works through PgBouncer in transaction
-- mode as any unnamed statement does.
--
-- The statements are those intake sent before, with the same meaning (credit-ledger.ts,
-- holdCreditsCtes, and replay-window.ts). The task is inserted before the hold locks the balance
-- (the ledger's lock order). The credit entry's account comes from the hold, so a refused hold fails
-- the statement (not-null violation on credit_entry.account_id, isCapRefusal) and nothing is
-- written. A replay found inserts nothing and is answered instead (its id is not p_task_id). An
-- account already seen without a cap, with its balance row made (and no installation cap), holds
-- on a stripe by a statement without the capped hold. That statement checks the same in its own
-- snapshot and, where it does not hold, writes nothing, and the whole statement runs.
-- Prisma's pg adapter splits a migration's script at every semicolon, string or not: the comments
-- here have none, and the function's text is an E'' string whose semicolons are written \073.
CREATE FUNCTION intake_task(
    p_task_id UUID, p_account_id UUID, p_external_task_id TEXT, p_callback_url TEXT, p_origin task_origin,
    p_request_hash TEXT, p_image_url TEXT, p_source_key TEXT,
    p_up DOUBLE PRECISION, p_down DOUBLE PRECISION, p_left DOUBLE PRECISION, p_right DOUBLE PRECISION,
    p_prompt TEXT, p_n INTEGER, p_watermark BOOLEAN, p_source_width INTEGER, p_source_height INTEGER,
    p_callback_token TEXT, p_next_check_at TIMESTAMP(3),
    p_per_image NUMERIC, p_default_cap NUMERIC, p_replay_window_seconds INTEGER, p_hold_stripes INTEGER
) RETURNS SETOF task LANGUAGE plpgsql AS E'
BEGIN
    IF p_default_cap IS NULL
       AND EXISTS (SELECT 1 FROM credit_balance WHERE account_id = p_account_id)
       AND (SELECT spend_cap_credits FROM account WHERE id = p_account_id) IS NULL THEN
        RETURN QUERY
        WITH replay AS (
            SELECT * FROM task
            WHERE account_id = p_account_id AND request_hash = p_request_hash AND external_task_id IS NULL
              AND p_external_task_id IS NULL AND batch_id IS NULL
              AND coalesce((SELECT replay_window_seconds FROM account WHERE id = p_account_id), p_replay_window_seconds) > 0
              AND accepted_at > (now() AT TIME ZONE ''utc'') - make_interval(secs => coalesce((SELECT replay_window_seconds FROM account WHERE id = p_account_id), p_replay_window_seconds))
            ORDER BY accepted_at DESC LIMIT 1
        ), inserted AS (
            INSERT INTO task (id, account_id, external_task_id, callback_url, origin, request_hash, image_url, source_key, up_ratio, down_ratio,
                              left_ratio, right_ratio, prompt, n, watermark, source_width, source_height, callback_token, next_check_at)
            SELECT p_task_id, p_account_id, p_external_task_id, p_callback_url, p_origin, p_request_hash, p_image_url, p_source_key, p_up, p_down,
                   p_left, p_right, p_prompt, p_n, p_watermark, p_source_width, p_source_height, p_callback_token, p_next_check_at
            WHERE NOT EXISTS (SELECT 1 FROM replay)
              AND (SELECT spend_cap_credits FROM account WHERE id = p_account_id) IS NULL
              AND EXISTS (SELECT 1 FROM credit_balance WHERE account_id = p_account_id)
            RETURNING *
        ), event AS (
            INSERT INTO task_event (task_id, to_status, source) SELECT inserted.id, ''queued'', ''api'' FROM inserted
        ), held AS (
            INSERT INTO credit_hold_stripe AS s (account_id, stripe, reserved)
            SELECT p_account_id, floor(random() * p_hold_stripes)::smallint, w.credits
            FROM (SELECT coalesce(sum(inserted.n), 0) * p_per_image AS credits FROM inserted HAVING count(*) > 0) w
            ON CONFLICT (account_id, stripe) DO UPDATE SET reserved = s.reserved + excluded.reserved, updated_at = now()
            RETURNING s.account_id
        ), entry AS (
            INSERT INTO credit_entry (account_id, task_id, reserved)
            SELECT (SELECT held.account_id FROM held), inserted.id, inserted.n * p_per_image FROM inserted
        )
        SELECT * FROM inserted UNION ALL SELECT * FROM replay\073
        IF FOUND THEN
            RETURN\073
        END IF\073
    END IF\073
    RETURN QUERY
    WITH cap AS (
        -- Read once per statement (a scalar subquery), as each of its former copies read the same snapshot.
        SELECT coalesce((SELECT spend_cap_credits FROM account WHERE id = p_account_id)::numeric, p_default_cap) AS credits
    ), replay AS (
        SELECT * FROM task
        WHERE account_id = p_account_id AND request_hash = p_request_hash AND external_task_id IS NULL
          AND p_external_task_id IS NULL AND batch_id IS NULL
          AND coalesce((SELECT replay_window_seconds FROM account WHERE id = p_account_id), p_replay_window_seconds) > 0
          AND accepted_at > (now() AT TIME ZONE ''utc'') - make_interval(secs => coalesce((SELECT replay_window_seconds FROM account WHERE id = p_account_id), p_replay_window_seconds))
        ORDER BY accepted_at DESC LIMIT 1
    ), inserted AS (
        INSERT INTO task (id, account_id, external_task_id, callback_url, origin, request_hash, image_url, source_key, up_ratio, down_ratio,
                          left_ratio, right_ratio, prompt, n, watermark, source_width, source_height, callback_token, next_check_at)
        SELECT p_task_id, p_account_id, p_external_task_id, p_callback_url, p_origin, p_request_hash, p_image_url, p_source_key, p_up, p_down,
               p_left, p_right, p_prompt, p_n, p_watermark, p_source_width, p_source_height, p_callback_token, p_next_check_at
        WHERE NOT EXISTS (SELECT 1 FROM replay)
        RETURNING *
    ), event AS (
        INSERT INTO task_event (task_id, to_status, source) SELECT inserted.id, ''queued'', ''api'' FROM inserted
    ), held_capped AS (
        -- With a cap, the conditional update of the balance row (stripes included), without one, only
        -- the account''s first hold creates its balance row.
        INSERT INTO credit_balance AS b (account_id, reserved)
        SELECT p_account_id, CASE WHEN (SELECT credits FROM cap) IS NULL THEN 0 ELSE w.credits END
        FROM (SELECT coalesce(sum(inserted.n), 0) * p_per_image AS credits FROM inserted HAVING count(*) > 0) w
        WHERE CASE WHEN (SELECT credits FROM cap) IS NULL THEN NOT EXISTS (SELECT 1 FROM credit_balance WHERE account_id = p_account_id)
                   ELSE w.credits + coalesce((SELECT sum(reserved) FROM credit_hold_stripe WHERE account_id = p_account_id), 0) <= (SELECT credits FROM cap) END
        ON CONFLICT (account_id) DO UPDATE
          SET reserved = b.reserved + excluded.reserved, updated_at = now()
          WHERE (SELECT credits FROM cap) IS NOT NULL
            AND b.spent + b.reserved + coalesce((SELECT sum(reserved) FROM credit_hold_stripe WHERE account_id = p_account_id), 0) + excluded.reserved <= (SELECT credits FROM cap)
        RETURNING b.account_id
    ), held_open AS (
        INSERT INTO credit_hold_stripe AS s (account_id, stripe, reserved)
        SELECT p_account_id, floor(random() * p_hold_stripes)::smallint, w.credits
        FROM (SELECT coalesce(sum(inserted.n), 0) * p_per_image AS credits FROM inserted HAVING count(*) > 0) w
        WHERE (SELECT credits FROM cap) IS NULL
        ON CONFLICT (account_id, stripe) DO UPDATE SET reserved = s.reserved + excluded.reserved, updated_at = now()
        RETURNING s.account_id
    ), held AS (
        -- Without a cap, an account''s first hold returns its id from both: `union` keeps one.
        SELECT account_id FROM held_capped UNION SELECT account_id FROM held_open
    ), entry AS (
        INSERT INTO credit_entry (account_id, task_id, reserved)
        SELECT (SELECT held.account_id FROM held), inserted.id, inserted.n * p_per_image FROM inserted
    )
    SELECT * FROM inserted UNION ALL SELECT * FROM replay\073
END
'
