-- Schema version 8: named styles moderators define, members' own defaults, and the style a job used.
--   guild_styles        a style's prompt holds {prompt} where the member's text goes (else the text comes first);
--                       its negative is added to the member's.
--   member_preferences  gains the defaults /settings keeps; NULL means "the server's default".
--   jobs.style          the name of the style a job's prompt was made with (NULL: none).
CREATE TABLE guild_styles (
    guild_id  INTEGER NOT NULL,
    name      TEXT    NOT NULL COLLATE NOCASE,
    prompt    TEXT    NOT NULL,
    negative  TEXT    NOT NULL DEFAULT '',
    added_by  INTEGER NOT NULL,
    added_at  REAL    NOT NULL,
    PRIMARY KEY (guild_id, name)
);
ALTER TABLE member_preferences ADD COLUMN model TEXT;
ALTER TABLE member_preferences ADD COLUMN aspect TEXT;
ALTER TABLE member_preferences ADD COLUMN steps INTEGER;
ALTER TABLE member_preferences ADD COLUMN guidance REAL;
ALTER TABLE member_preferences ADD COLUMN count INTEGER;
ALTER TABLE member_preferences ADD COLUMN negative TEXT;
ALTER TABLE member_preferences ADD COLUMN style TEXT;
ALTER TABLE jobs ADD COLUMN style TEXT;
