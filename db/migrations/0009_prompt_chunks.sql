-- Schema version 9: how many of the text encoder's 77-token windows a job's prompt fills (compel encodes
-- them all, so nothing is cut); jobs batch only with jobs of the same count, as their tensors must match.
ALTER TABLE jobs ADD COLUMN chunks INTEGER NOT NULL DEFAULT 1;
