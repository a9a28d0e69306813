-- Schema version 6: jobs that start from a member's picture or edit an image, and members' own preferences.
--   jobs.kind    gains 'image' (/imagine with a picture), 'region' (Vary (Region)), 'zoom' (Zoom Out) and
--                'pan'. SQLite cannot change a CHECK in place, so the table is rebuilt as its documentation
--                describes (foreign keys are off while migrations run; the runner checks them before commit).
--   jobs.source  the stored picture an 'image' job starts from; NULL otherwise.
--   jobs.mask    the edit a 'region', 'zoom' or 'pan' job makes (bot.images.edits: 'region:left-half',
--                'zoom:2', 'pan:up' ...); its canvas and mask are rebuilt from it and the parent's image.
--   member_preferences  one row per member who changed a default; a member without one has the defaults.
CREATE TABLE jobs_v6 (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind                TEXT    NOT NULL
                                CHECK (kind IN ('imagine', 'variation', 'upscale', 'reroll',
                                                'image', 'region', 'zoom', 'pan')),
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
    mask                TEXT
);
INSERT INTO jobs_v6 (
    id, kind, parent_job_id, parent_image, guild_id, channel_id, user_id, prompt, negative_prompt, model,
    width, height, steps, guidance, strength, seeds, cost, status, created_at, started_at, finished_at,
    image_paths, withheld, error, message_id, interaction_token, token_created_at, scheduler, nsfw_allowed,
    timings, delivery, delivery_attempts, delivery_started_at, result_message_id, attempt, attempt_token, worker_id
)
SELECT
    id, kind, parent_job_id, parent_image, guild_id, channel_id, user_id, prompt, negative_prompt, model,
    width, height, steps, guidance, strength, seeds, cost, status, created_at, started_at, finished_at,
    image_paths, withheld, error, message_id, interaction_token, token_created_at, scheduler, nsfw_allowed,
    timings, delivery, delivery_attempts, delivery_started_at, result_message_id, attempt, attempt_token, worker_id
FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_v6 RENAME TO jobs;
CREATE INDEX jobs_unfinished ON jobs (status, id) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_user ON jobs (user_id, id);
CREATE INDEX jobs_token ON jobs (token_created_at) WHERE interaction_token IS NOT NULL;
CREATE INDEX jobs_pending_delivery ON jobs (id) WHERE delivery = 'pending';

CREATE TABLE member_preferences (
    user_id     INTEGER PRIMARY KEY,
    remix       INTEGER NOT NULL DEFAULT 0 CHECK (remix IN (0, 1)),
    updated_at  REAL    NOT NULL
);
