-- Schema version 3: a finished job's result is tracked until it reaches Discord or is given up.
--   delivery             '' while the job has no result to post; 'pending' from the moment it is done
--                        until a message holds it; then 'delivered', or 'abandoned' (refunded) when
--                        every try within the retry window failed.
--   delivery_attempts    failed tries so far.
--   delivery_started_at  when the result was ready: the retry window is counted from here, across
--                        restarts.
--   result_message_id    the Discord message that holds the result.
ALTER TABLE jobs ADD COLUMN delivery TEXT NOT NULL DEFAULT ''
    CHECK (delivery IN ('', 'pending', 'delivered', 'abandoned'));
ALTER TABLE jobs ADD COLUMN delivery_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN delivery_started_at REAL;
ALTER TABLE jobs ADD COLUMN result_message_id INTEGER;

-- Jobs finished under version 2 were posted (or lost) before this version existed.
UPDATE jobs SET delivery = 'delivered' WHERE status = 'done';

CREATE INDEX jobs_pending_delivery ON jobs (id) WHERE delivery = 'pending';
