-- Schema version 2.

-- The quota window is a sum over one (guild, user) pair's recent ledger rows, computed on every
-- admission; without this index that sum scans the whole ledger, which only ever grows.
CREATE INDEX ledger_window ON ledger (guild_id, user_id, at);

-- What a job needs to be replayed exactly after a restart, and what it took:
--   scheduler     the diffusers scheduler class name the job was admitted with; '' for jobs
--                 recorded by version 1, meaning "the model's default scheduler".
--   nsfw_allowed  the NSFW decision made at admission (1 = the channel allowed NSFW, so images are
--                 not classified). Version 1 jobs get 0, the safe answer: classify and withhold.
--   timings       seconds per phase of the job (queue wait, GPU, encoding...) as a JSON object.
ALTER TABLE jobs ADD COLUMN scheduler TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN nsfw_allowed INTEGER NOT NULL DEFAULT 0 CHECK (nsfw_allowed IN (0, 1));
ALTER TABLE jobs ADD COLUMN timings TEXT NOT NULL DEFAULT '{}';
