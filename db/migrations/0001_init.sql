-- Schema version 1: everything Latentcord keeps across restarts.
-- Times are unix seconds (REAL). Discord ids are INTEGER (snowflakes fit in 63 bits).

-- One row per guild a moderator has configured; no row means the defaults.
CREATE TABLE guild_settings (
    guild_id        INTEGER PRIMARY KEY,
    nsfw_mode       TEXT    NOT NULL DEFAULT 'block' CHECK (nsfw_mode IN ('block', 'age-restricted')),
    daily_credits   INTEGER CHECK (daily_credits IS NULL OR daily_credits BETWEEN 0 AND 1000000),
    log_channel_id  INTEGER,
    updated_at      REAL    NOT NULL
);

-- Terms a guild's moderators block in every channel, stored already normalised.
CREATE TABLE filter_terms (
    guild_id   INTEGER NOT NULL,
    term       TEXT    NOT NULL CHECK (length(term) BETWEEN 1 AND 64),
    added_by   INTEGER NOT NULL,
    added_at   REAL    NOT NULL,
    PRIMARY KEY (guild_id, term)
) WITHOUT ROWID;

-- Per-user or per-role daily credit limits; exactly one of user_id / role_id is set.
CREATE TABLE quota_overrides (
    id        INTEGER PRIMARY KEY,
    guild_id  INTEGER NOT NULL,
    user_id   INTEGER,
    role_id   INTEGER,
    credits   INTEGER NOT NULL CHECK (credits BETWEEN 0 AND 1000000),
    set_by    INTEGER NOT NULL,
    set_at    REAL    NOT NULL,
    CHECK ((user_id IS NULL) <> (role_id IS NULL))
);
CREATE UNIQUE INDEX quota_overrides_user ON quota_overrides (guild_id, user_id) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX quota_overrides_role ON quota_overrides (guild_id, role_id) WHERE role_id IS NOT NULL;

-- Every job, from admission to its outcome. guild_id is NULL in direct messages.
-- seeds, image_paths and withheld are JSON arrays.
CREATE TABLE jobs (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    kind               TEXT    NOT NULL CHECK (kind IN ('imagine', 'variation', 'upscale', 'reroll')),
    parent_job_id      INTEGER REFERENCES jobs (id),
    parent_image       INTEGER,
    guild_id           INTEGER,
    channel_id         INTEGER,          -- NULL for the owner's command line
    user_id            INTEGER NOT NULL,
    prompt             TEXT    NOT NULL,
    negative_prompt    TEXT    NOT NULL DEFAULT '',
    model              TEXT    NOT NULL,
    width              INTEGER NOT NULL,
    height             INTEGER NOT NULL,
    steps              INTEGER NOT NULL,
    guidance           REAL    NOT NULL,
    strength           REAL,
    seeds              TEXT    NOT NULL,
    cost               INTEGER NOT NULL CHECK (cost >= 0),
    status             TEXT    NOT NULL DEFAULT 'queued'
                               CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    created_at         REAL    NOT NULL,
    started_at         REAL,
    finished_at        REAL,
    image_paths        TEXT    NOT NULL DEFAULT '[]',
    withheld           TEXT    NOT NULL DEFAULT '[]',
    error              TEXT,
    message_id         INTEGER,
    interaction_token  TEXT,
    token_created_at   REAL
);
CREATE INDEX jobs_unfinished ON jobs (status, id) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_user ON jobs (user_id, id);
CREATE INDEX jobs_token ON jobs (token_created_at) WHERE interaction_token IS NOT NULL;

-- The quota ledger: credits are never edited or deleted, only charged and compensated.
-- guild_id is 0 for direct messages. credits > 0 for a charge, <= 0 for a refund or reset.
-- `at` is the time the credits count from in the rolling window: a refund or reset shares the
-- `at` of the charge it compensates (charge_id), so it leaves the window together with it;
-- recorded_at is when the row was actually written.
CREATE TABLE ledger (
    id           INTEGER PRIMARY KEY,
    guild_id     INTEGER NOT NULL,
    user_id      INTEGER NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('charge', 'refund', 'reset')),
    credits      INTEGER NOT NULL,
    job_id       INTEGER REFERENCES jobs (id),
    charge_id    INTEGER REFERENCES ledger (id),
    at           REAL    NOT NULL,
    recorded_at  REAL    NOT NULL,
    reason       TEXT,
    actor_id     INTEGER,
    CHECK ((kind = 'charge') = (charge_id IS NULL)),
    CHECK ((kind = 'charge' AND credits >= 0) OR (kind <> 'charge' AND credits <= 0))
);
CREATE UNIQUE INDEX ledger_one_charge_per_job ON ledger (job_id) WHERE kind = 'charge';
CREATE INDEX ledger_job ON ledger (job_id);
CREATE INDEX ledger_charge ON ledger (charge_id) WHERE charge_id IS NOT NULL;

-- Every moderator change: who, what, before, after, when.
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,
    guild_id  INTEGER NOT NULL,
    actor_id  INTEGER NOT NULL,
    action    TEXT    NOT NULL,
    target    TEXT,
    before    TEXT,
    after     TEXT,
    at        REAL    NOT NULL
);
CREATE INDEX audit_log_guild ON audit_log (guild_id, id);
