-- Schema version 13: edits by instruction, reference images, and the reference sets moderators curate.
--   jobs.reference_images  JSON list of the images that guide a job, in order: a kept picture's path
--                          (images_dir/sources/<sha256>.png) or "job:<id>:<n>" (image n, from 1, of a job).
--   jobs.mood              the name of the moodboard whose images it took (NULL: none).
--   moodboards             a guild's named reference sets; a name is unique in its guild (and no LoRA,
--                          embedding or style of the guild bears it: the store checks, across the tables).
--   moodboard_images       a set's pictures in order, each a kept picture's path (shared with jobs).
ALTER TABLE jobs ADD COLUMN reference_images TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN mood TEXT;
CREATE TABLE moodboards (
    guild_id  INTEGER NOT NULL,
    name      TEXT    NOT NULL COLLATE NOCASE,
    nsfw      INTEGER NOT NULL DEFAULT 0 CHECK (nsfw IN (0, 1)),
    added_by  INTEGER NOT NULL,
    added_at  REAL    NOT NULL,
    PRIMARY KEY (guild_id, name)
);
CREATE TABLE moodboard_images (
    guild_id  INTEGER NOT NULL,
    name      TEXT    NOT NULL COLLATE NOCASE,
    position  INTEGER NOT NULL CHECK (position >= 0),
    path      TEXT    NOT NULL,
    PRIMARY KEY (guild_id, name, position),
    FOREIGN KEY (guild_id, name) REFERENCES moodboards (guild_id, name) ON DELETE CASCADE
);
CREATE INDEX moodboard_images_path ON moodboard_images (path);
