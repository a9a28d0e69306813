-- Schema version 15: the starboard (/starboard) and members' deletion of their data (/privacy delete).
--   guild_settings.starboard_channel_id / starboard_threshold   where a result reaching the threshold of ⭐ is
--                       reposted, and how many stars it needs (NULL: the bot's default, 5).
--   starboard_stars     who stars each result now, its requester never counted (one row per member and result).
--   starboard_posts     each result reposted to a starboard, claimed in the transaction whose star reached the
--                       threshold (message_id NULL until the repost is sent), so it is reposted once, ever.
--   jobs.deleted_by_member_at   when the member deleted their data: the row stays (the ledger and the audit
--                       log name it) with its prompts cleared, and a gallery never shows it.
ALTER TABLE guild_settings ADD COLUMN starboard_channel_id INTEGER;
ALTER TABLE guild_settings ADD COLUMN starboard_threshold INTEGER
    CHECK (starboard_threshold IS NULL OR starboard_threshold BETWEEN 1 AND 1000);
CREATE TABLE starboard_stars (
    job_id   INTEGER NOT NULL REFERENCES jobs (id),
    user_id  INTEGER NOT NULL,
    PRIMARY KEY (job_id, user_id)
) WITHOUT ROWID;
CREATE INDEX starboard_stars_user ON starboard_stars (user_id);
CREATE TABLE starboard_posts (
    job_id      INTEGER PRIMARY KEY REFERENCES jobs (id),
    guild_id    INTEGER NOT NULL,
    channel_id  INTEGER NOT NULL,
    message_id  INTEGER,
    posted_at   REAL    NOT NULL
);
ALTER TABLE jobs ADD COLUMN deleted_by_member_at REAL;
