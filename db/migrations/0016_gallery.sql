-- Schema version 16: the web gallery (bot/web/).
--   jobs.age_restricted   whether it was asked for in an age-restricted channel (or a thread of one): a gallery
--                         never shows such a job, whatever the server's NSFW mode. NULL: not known, so not shown.
--                         Jobs from before this version are age-restricted where NSFW was allowed for them, and
--                         otherwise unknown until the bot sees their channel (Store.learn_age_restricted).
--   jobs.member_name      the requester's display name when they asked, for the gallery's "made by" and its
--                         member filter (the bot has no member list); cleared when they delete their data.
--   jobs_prompt_search    SQLite FTS5 over jobs.prompt (an external-content index kept by the triggers below), for
--                         the gallery's search. A migration that rebuilds jobs must recreate the triggers.
--   web_sessions          who is signed in to the gallery: the SHA-256 of the cookie's token (the token itself is
--                         never stored), the Discord user, the ids of the servers they were in when they signed
--                         in, the token their forms carry (CSRF), and when the session ends.
ALTER TABLE jobs ADD COLUMN age_restricted INTEGER CHECK (age_restricted IN (0, 1));
UPDATE jobs SET age_restricted = 1 WHERE nsfw_allowed = 1;
CREATE INDEX jobs_age_unknown ON jobs (channel_id) WHERE age_restricted IS NULL;
ALTER TABLE jobs ADD COLUMN member_name TEXT NOT NULL DEFAULT '';
CREATE INDEX jobs_gallery ON jobs (guild_id, id) WHERE status = 'done' AND delivery = 'delivered';
CREATE VIRTUAL TABLE jobs_prompt_search USING fts5 (
    prompt, content = 'jobs', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO jobs_prompt_search (jobs_prompt_search) VALUES ('rebuild');
CREATE TRIGGER jobs_prompt_search_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO jobs_prompt_search (rowid, prompt) VALUES (new.id, new.prompt);
END;
CREATE TRIGGER jobs_prompt_search_update AFTER UPDATE OF prompt ON jobs BEGIN
    INSERT INTO jobs_prompt_search (jobs_prompt_search, rowid, prompt) VALUES ('delete', old.id, old.prompt);
    INSERT INTO jobs_prompt_search (rowid, prompt) VALUES (new.id, new.prompt);
END;
CREATE TRIGGER jobs_prompt_search_delete AFTER DELETE ON jobs BEGIN
    INSERT INTO jobs_prompt_search (jobs_prompt_search, rowid, prompt) VALUES ('delete', old.id, old.prompt);
END;
CREATE TABLE web_sessions (
    token_hash  TEXT    PRIMARY KEY,
    user_id     INTEGER NOT NULL,
    user_name   TEXT    NOT NULL,
    guild_ids   TEXT    NOT NULL DEFAULT '[]',
    csrf_token  TEXT    NOT NULL,
    created_at  REAL    NOT NULL,
    expires_at  REAL    NOT NULL
) WITHOUT ROWID;
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
CREATE INDEX web_sessions_user ON web_sessions (user_id);
