-- Schema version 7: guild-approved fine-tunes (LoRAs and textual-inversion embeddings) and per-guild models.
--   fine_tune_files     each file once, by the SHA-256 of its bytes (stored as FINETUNES_DIR/<sha256>.safetensors);
--                       family is the model family it is for (models.finetunes: sd1, sd2, sdxl, tiny).
--   guild_fine_tunes    the names a guild's moderators gave files; a name is unique in its guild across both
--                       kinds, since an embedding's name is a word in prompts. weight is a LoRA's default strength.
--   guild_disabled_models  the configured models a guild may not use (all may, by default).
--   jobs.loras          JSON list of "name:weight:sha256", the LoRAs a job applies.
--   jobs.embeddings     JSON list of "name:sha256", the embeddings its prompts name.
CREATE TABLE fine_tune_files (
    sha256      TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL CHECK (kind IN ('lora', 'embedding')),
    family      TEXT    NOT NULL,
    size_bytes  INTEGER NOT NULL CHECK (size_bytes > 0),
    stored_at   REAL    NOT NULL
);
CREATE TABLE guild_fine_tunes (
    guild_id  INTEGER NOT NULL,
    name      TEXT    NOT NULL COLLATE NOCASE,
    kind      TEXT    NOT NULL CHECK (kind IN ('lora', 'embedding')),
    sha256    TEXT    NOT NULL REFERENCES fine_tune_files (sha256),
    weight    REAL    NOT NULL DEFAULT 1.0,
    nsfw      INTEGER NOT NULL DEFAULT 0 CHECK (nsfw IN (0, 1)),
    added_by  INTEGER NOT NULL,
    added_at  REAL    NOT NULL,
    PRIMARY KEY (guild_id, name)
);
CREATE INDEX guild_fine_tunes_file ON guild_fine_tunes (sha256);
CREATE TABLE guild_disabled_models (
    guild_id     INTEGER NOT NULL,
    model        TEXT    NOT NULL,
    disabled_by  INTEGER NOT NULL,
    disabled_at  REAL    NOT NULL,
    PRIMARY KEY (guild_id, model)
);
ALTER TABLE jobs ADD COLUMN loras TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN embeddings TEXT NOT NULL DEFAULT '[]';
