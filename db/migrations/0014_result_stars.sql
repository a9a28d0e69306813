-- Schema version 14: the ⭐ reactions on each posted result, for /stats' most-starred results (and a starboard).
--   result_stars        one row per result message that was starred: its job, and how many members star it now;
--                       kept current from reaction add and remove events (the bot's own reaction not counted).
--   jobs_result_message finds a job by the message that holds its result, which is all a reaction event names.
CREATE TABLE result_stars (
    job_id      INTEGER PRIMARY KEY REFERENCES jobs (id),
    stars       INTEGER NOT NULL DEFAULT 0 CHECK (stars >= 0),
    updated_at  REAL    NOT NULL
);
CREATE INDEX jobs_result_message ON jobs (result_message_id) WHERE result_message_id IS NOT NULL;
