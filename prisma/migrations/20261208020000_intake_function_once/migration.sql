-- intake_task again (accept-task.ts calls it), with the same meaning as 20261208010000_intake_function
-- but less for Postgres to do per create, and its replay lookup written once instead of in both of
-- its statements. The account row is read once into variables (its cap and replay window), where
-- the function read it up to four times. The replay lookup runs on its own first, and only where a
-- window is on and the request names no external_task_id: with the window off (the default) a
-- create no longer plans or runs it at all. A replay found is answered and nothing is written. The
-- statement that writes then carries no replay part: a stripe upsert alone for an account without a
-- cap, else the whole statement. The stripe-only statement still checks, in its own snapshot, that
-- the account has no cap and has its balance row, and writes nothing where not (the whole statement
-- runs then), as before. The writes are those of the function before, unchanged (task, event, hold,
-- entry: credit-ledger.ts, holdCreditsCtes), so a refused hold still fails the statement with
-- nothing written (isCapRefusal). The lookup and the write are two statements now, each with its own
-- snapshot: an identical create that commits between them is not seen, as one that committed after
-- the one statement's snapshot was not seen before (replay-window.ts: a heuristic).
-- Prisma's pg adapter splits a migration's script at every semicolon, string or not: the comments
-- here have none, and the function's text is an E'' string whose semicolons are written \073.
CREATE OR REPLACE FUNCTION intake_task(
    p_task_id UUID, p_account_id UUID, p_external_task_id TEXT, p_callback_url TEXT, p_origin task_origin,
    p_request_hash TEXT, p_image_url TEXT, p_source_key TEXT,
    p_up DOUBLE PRECISION, p_down DOUBLE PRECISION, p_left DOUBLE PRECISION, p_right DOUBLE PRECISION,
    p_prompt TEXT, p_n INTEGER, p_watermark BOOLEAN, p_source_width INTEGER, p_source_height INTEGER,
    p_callback_token TEXT, p_next_check_at TIMESTAMP(3),
    p_per_image NUMERIC, p_default_cap NUMERIC, p_replay_window_seconds INTEGER, p_hold_stripes INTEGER
) RETURNS SETOF task LANGUAGE plpgsql AS E'
DECLARE
    v_cap NUMERIC\073
    v_window INTEGER\073
BEGIN
    SELECT a.spend_cap_credits, a.replay_window_seconds INTO v_cap, v_window FROM account a WHERE a.id = p_account_id\073
    v_cap := coalesce(v_cap, p_default_cap)\073
    v_window := coalesce(v_window, p_replay_window_seconds)\073
    IF p_external_task_id IS NULL AND v_window > 0 THEN
        RETURN QUERY
        SELECT * FROM task
        WHERE account_id = p_account_id AND request_hash = p_request_hash AND external_task_id IS NULL AND batch_id IS NULL
          AND accepted_at > (now() AT TIME ZONE ''utc'') - make_interval(secs => v_window)
        ORDER BY accepted_at DESC LIMIT 1\073
        IF FOUND THEN
            RETURN\073
        END IF\073
    END IF\073
    IF v_cap IS NULL THEN
        RETURN QUERY
        WITH inserted AS (
            INSERT INTO task (id, account_id, external_task_id, callback_url, origin, request_hash, image_url, source_key, up_ratio, down_ratio,
                              left_ratio, right_ratio, prompt, n, watermark, source_width, source_height, callback_token, next_check_at)
            SELECT p_task_id, p_account_id, p_external_task_id, p_callback_url, p_origin, p_request_hash, p_image_url, p_source_key, p_up, p_down,
                   p_left, p_right, p_prompt, p_n, p_watermark, p_source_width, p_source_height, p_callback_token, p_next_check_at
            WHERE (SELECT spend_cap_credits FROM account WHERE id = p_account_id) IS NULL
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
        SELECT * FROM inserted\073
        IF FOUND THEN
            RETURN\073
        END IF\073
    END IF\073
    RETURN QUERY
    WITH cap AS (
        SELECT coalesce((SELECT spend_cap_credits FROM account WHERE id = p_account_id)::numeric, p_default_cap) AS credits
    ), inserted AS (
        INSERT INTO task (id, account_id, external_task_id, callback_url, origin, request_hash, image_url, source_key, up_ratio, down_ratio,
                          left_ratio, right_ratio, prompt, n, watermark, source_width, source_height, callback_token, next_check_at)
        VALUES (p_task_id, p_account_id, p_external_task_id, p_callback_url, p_origin, p_request_hash, p_image_url, p_source_key, p_up, p_down,
                p_left, p_right, p_prompt, p_n, p_watermark, p_source_width, p_source_height, p_callback_token, p_next_check_at)
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
    SELECT * FROM inserted\073
END
'
