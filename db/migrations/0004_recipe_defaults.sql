-- Schema version 4: every job row holds a complete recipe, so it can be read back without
-- fix-ups in code (db/rows.py maps the columns to the application's recipe field by field).
--   scheduler  '' in jobs recorded before schema 2 stored schedulers: they ran with the
--              default scheduler of the time, Euler a.
--   strength   NULL for text-to-image jobs of schema 1 and 2: 0 means "not img2img".
UPDATE jobs SET scheduler = 'EulerAncestralDiscreteScheduler' WHERE scheduler = '';
UPDATE jobs SET strength = 0 WHERE strength IS NULL;
