-- Schema version 13: edits by instruction, reference images, and the reference sets moderators curate.
--   jobs.kind              gains 'edit' (/edit and the Edit button) and 'describe' (/describe); the table is
--                          rebuilt for its CHECK, as in version 6 (foreign keys are off while migrations run).
--   jobs.upscaler          the upscaler net (UPSCALER's file) an upscale enlarged with (NULL: a resize).
--   jobs.texts             JSON list of what a job wrote instead of drawing: /describe's four prompts.
--   jobs.reference_images  JSON list of the images that guide a job, in order: a kept picture's path
--                          (images_dir/sources/<sha256>.png) or "job:<id>:<n>" (image n, from 1, of a job).
--   jobs.mood              the name of the moodboard whose images it took (NULL: none).
--   moodboards             a guild's named reference sets; a name is unique in its guild (and no LoRA,
--                          embedding or style of the guild bears it: the store checks, across the tables).
--   moodboard_images       a set's pictures in order, each a kept picture's path (shared with jobs).
CREATE TABLE jobs_v13 (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind                TEXT    NOT NULL
                                CHECK (kind IN ('imagine', 'variation', 'upscale', 'reroll',
                                                'image', 'region', 'zoom', 'pan', 'edit', 'describe')),
    parent_job_id       INTEGER REFERENCES jobs (id),
    parent_image        INTEGER,
    guild_id            INTEGER,
    channel_id          INTEGER,          -- NULL for the owner's command line
    user_id             INTEGER NOT NULL,
    prompt              TEXT    NOT NULL,
    negative_prompt     TEXT    NOT NULL DEFAULT '',
    model               TEXT    NOT NULL,
    width               INTEGER NOT NULL,
    height              INTEGER NOT NULL,
    steps               INTEGER NOT NULL,
    guidance            REAL    NOT NULL,
    strength            REAL,
    seeds               TEXT    NOT NULL,
    cost                INTEGER NOT NULL CHECK (cost >= 0),
    status              TEXT    NOT NULL DEFAULT 'queued'
                                CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    created_at          REAL    NOT NULL,
    started_at          REAL,
    finished_at         REAL,
    image_paths         TEXT    NOT NULL DEFAULT '[]',
    withheld            TEXT    NOT NULL DEFAULT '[]',
    error               TEXT,
    message_id          INTEGER,
    interaction_token   TEXT,
    token_created_at    REAL,
    scheduler           TEXT    NOT NULL DEFAULT '',
    nsfw_allowed        INTEGER NOT NULL DEFAULT 0 CHECK (nsfw_allowed IN (0, 1)),
    timings             TEXT    NOT NULL DEFAULT '{}',
    delivery            TEXT    NOT NULL DEFAULT ''
                                CHECK (delivery IN ('', 'pending', 'delivered', 'abandoned')),
    delivery_attempts   INTEGER NOT NULL DEFAULT 0,
    delivery_started_at REAL,
    result_message_id   INTEGER,
    attempt             INTEGER NOT NULL DEFAULT 0,
    attempt_token       TEXT,
    worker_id           TEXT,
    source              TEXT,
    mask                TEXT,
    loras               TEXT    NOT NULL DEFAULT '[]',
    embeddings          TEXT    NOT NULL DEFAULT '[]',
    style               TEXT,
    chunks              INTEGER NOT NULL DEFAULT 1,
    result_deleted_at   REAL,
    reference_images    TEXT    NOT NULL DEFAULT '[]',
    mood                TEXT,
    upscaler            TEXT,
    texts               TEXT    NOT NULL DEFAULT '[]'
);
INSERT INTO jobs_v13 (
    id, kind, parent_job_id, parent_image, guild_id, channel_id, user_id, prompt, negative_prompt, model, width,
    height, steps, guidance, strength, seeds, cost, status, created_at, started_at, finished_at, image_paths,
    withheld, error, message_id, interaction_token, token_created_at, scheduler, nsfw_allowed, timings, delivery,
    delivery_attempts, delivery_started_at, result_message_id, attempt, attempt_token, worker_id, source, mask,
    loras, embeddings, style, chunks, result_deleted_at
)
SELECT
    id, kind, parent_job_id, parent_image, guild_id, channel_id, user_id, prompt, negative_prompt, model, width,
    height, steps, guidance, strength, seeds, cost, status, created_at, started_at, finished_at, image_paths,
    withheld, error, message_id, interaction_token, token_created_at, scheduler, nsfw_allowed, timings, delivery,
    delivery_attempts, delivery_started_at, result_message_id, attempt, attempt_token, worker_id, source, mask,
    loras, embeddings, style, chunks, result_deleted_at
FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_v13 RENAME TO jobs;
CREATE INDEX jobs_unfinished ON jobs (status, id) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_user ON jobs (user_id, id);
CREATE INDEX jobs_token ON jobs (token_created_at) WHERE interaction_token IS NOT NULL;
CREATE INDEX jobs_pending_delivery ON jobs (id) WHERE delivery = 'pending';
CREATE INDEX jobs_source ON jobs (source) WHERE source IS NOT NULL;
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
