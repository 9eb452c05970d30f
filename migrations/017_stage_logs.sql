-- 017: why a stage ran, what it asked for, what it logged and where a remote executor has it (issue 16).
-- stage_start carries `reason` (the planner's text, as `scalemix plan` prints it) and `resources`
-- ({threads, gpu, device_memory_bytes, isolate, executor}); `stage_log` is one line a stage wrote through the
-- host API; `stage_state` is a remote executor's view of a stage run (submitted, pending with its reason,
-- running) with its job id. Stage runs recorded before this have reason and resources NULL: not recorded.

ALTER TABLE stage_runs ADD COLUMN reason text, ADD COLUMN resources jsonb;

-- The tail of a stage's log is the last lines by seq (events of one run are numbered in order).
CREATE TABLE stage_logs (
    event_id      text PRIMARY KEY,
    stage_run_id  text NOT NULL,
    seq           bigint NOT NULL,
    level         text NOT NULL,   -- error | warn | info | debug
    message       text NOT NULL,
    at            timestamptz
);
CREATE INDEX stage_logs_tail_idx ON stage_logs (stage_run_id, seq);

CREATE TABLE stage_states (
    event_id      text PRIMARY KEY,
    stage_run_id  text NOT NULL,
    seq           bigint NOT NULL,
    state         text NOT NULL,   -- submitted | pending | running
    executor      text,
    job_id        text,
    reason        text,            -- why it is pending, as the executor says
    at            timestamptz
);
CREATE INDEX stage_states_run_idx ON stage_states (stage_run_id, seq);

CREATE VIEW latest_stage_states AS
    SELECT DISTINCT ON (stage_run_id) stage_run_id, state, executor, job_id, reason, at
      FROM stage_states
     ORDER BY stage_run_id, seq DESC;

-- sm_ingest stays the one entry point: the function it was (003, or whatever replaced it since) handles the
-- events it knows, then the new ones land here, keyed by event_id like every other write. A later migration
-- that changes sm_ingest wraps it the same way: CREATE OR REPLACE of the whole function would drop these.
ALTER FUNCTION sm_ingest(jsonb) RENAME TO sm_ingest_before_017;

CREATE FUNCTION sm_ingest(batch jsonb) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer := sm_ingest_before_017(batch);
    k integer;
    types text[];
BEGIN
    SELECT array_agg(DISTINCT e->>'type') INTO types FROM jsonb_array_elements(batch) e;
    IF types IS NULL THEN
        RETURN n;
    END IF;

    -- The row belongs to the stage_start that inserted it (or its newest retry): the row's event_id says
    -- which. An unchanged value is not rewritten, so a replay writes nothing.
    IF types && ARRAY['stage_start'] THEN
        UPDATE stage_runs s
           SET reason = nullif(e->>'reason', ''), resources = CASE WHEN jsonb_typeof(e->'resources') = 'object' THEN e->'resources' END
          FROM jsonb_array_elements(batch) e
         WHERE e->>'type' = 'stage_start' AND s.event_id = e->>'event_id'
           AND (s.reason IS DISTINCT FROM nullif(e->>'reason', '') OR
                s.resources IS DISTINCT FROM CASE WHEN jsonb_typeof(e->'resources') = 'object' THEN e->'resources' END);
        GET DIAGNOSTICS k = ROW_COUNT; n := n + k;
    END IF;

    IF types && ARRAY['stage_log'] THEN
        INSERT INTO stage_logs (event_id, stage_run_id, seq, level, message, at)
        SELECT e->>'event_id', e->>'stage_run_id', (e->>'seq')::bigint, e->>'level', e->>'message',
               (e->>'at')::timestamptz
          FROM jsonb_array_elements(batch) e WHERE e->>'type' = 'stage_log'
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS k = ROW_COUNT; n := n + k;
    END IF;

    IF types && ARRAY['stage_state'] THEN
        INSERT INTO stage_states (event_id, stage_run_id, seq, state, executor, job_id, reason, at)
        SELECT e->>'event_id', e->>'stage_run_id', (e->>'seq')::bigint, e->>'state', e->>'executor',
               e->>'job_id', e->>'reason', (e->>'at')::timestamptz
          FROM jsonb_array_elements(batch) e WHERE e->>'type' = 'stage_state'
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS k = ROW_COUNT; n := n + k;
    END IF;

    RETURN n;
END $$;
