-- 019: a run keeps the Lua modules its script loaded with require (run_end's lua_modules: name, path and the
-- sha256 of the bytes loaded), which the script's own sha256 does not cover. sm_ingest is wrapped, not
-- rewritten: the ingest as the earlier migrations define it runs first, then the batch's run_end events
-- fill the column (replaying a batch writes the same value again).
ALTER TABLE runs ADD COLUMN lua_modules jsonb;
ALTER FUNCTION sm_ingest(jsonb) RENAME TO sm_ingest_before_019;
CREATE FUNCTION sm_ingest(batch jsonb) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    n := sm_ingest_before_019(batch);
    UPDATE runs r SET lua_modules = e->'lua_modules'
      FROM jsonb_array_elements(batch) e
     WHERE e->>'type' = 'run_end' AND jsonb_typeof(e->'lua_modules') = 'array' AND r.run_id = e->>'run_id'
       AND r.lua_modules IS DISTINCT FROM e->'lua_modules';
    RETURN n;
END $$;
