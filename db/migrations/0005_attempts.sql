-- Schema version 5: a job is run by one worker at a time, and only its latest attempt counts.
--   attempt        how many times it was handed to a worker.
--   attempt_token  a fresh secret for the current attempt; a result is accepted only with it, so a
--                  worker declared lost that wakes up later cannot finish a job given to another.
--                  NULL while the job waits.
--   worker_id      the worker of the current or last attempt.
ALTER TABLE jobs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN attempt_token TEXT;
ALTER TABLE jobs ADD COLUMN worker_id TEXT;
