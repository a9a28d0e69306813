-- Schema version 11: the channels where moderators turned on draft mode (/draft), as a JSON array of channel
-- ids; /imagine there draws with DPM++ 2M in fewer steps unless the member chose the steps.
ALTER TABLE guild_settings ADD COLUMN draft_channels TEXT NOT NULL DEFAULT '[]';
