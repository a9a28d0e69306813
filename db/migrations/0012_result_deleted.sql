-- Schema version 12: when the member or a moderator deleted a finished job's result (its Delete button or ❌).
-- A member's picture (jobs.source) is kept while a job may still start from it: one that waits or runs, or
-- one finished whose result was not deleted; jobs_source finds those jobs by picture.
ALTER TABLE jobs ADD COLUMN result_deleted_at REAL;
CREATE INDEX jobs_source ON jobs (source) WHERE source IS NOT NULL;
