-- Schema version 10: how many jobs one /imagine may make with {a, b} permutations and --repeat on a server
-- (/quota permutations); NULL: the bot's default of 4.
ALTER TABLE guild_settings ADD COLUMN permutations INTEGER CHECK (permutations IS NULL OR permutations BETWEEN 1 AND 12);
