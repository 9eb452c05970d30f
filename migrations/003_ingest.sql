-- 003: sm_ingest(batch) maps a JSON array of engine events (core/sm_events.h) onto the tables, in one
-- transaction. Every insert is keyed by event_id (ON CONFLICT DO NOTHING) and every update is guarded by
-- the row's last applied seq, so replaying a batch, or any part of it, writes nothing twice.

CREATE FUNCTION sm_obj(j jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(j) = 'object' THEN j ELSE '{}'::jsonb END;
$$;

-- An engine lifecycle event as an OpenLineage RunEvent (spec 2-0-2). Stage runs are runs of the job
-- "<pipeline>.<stage>" with the pipeline run as their parent facet.
CREATE FUNCTION sm_openlineage(e jsonb) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    producer constant text := 'https://github.com/scalemix/scalemix';
    t text := e->>'type';
    v_pipeline text;
    v_stage text;
    et text;
    at text;
    job text;
    rid text;
    facets jsonb := '{}';
    inputs jsonb := '[]';
    outputs jsonb := '[]';
BEGIN
    SELECT r.pipeline INTO v_pipeline FROM runs r WHERE r.run_id = e->>'run_id';
    v_pipeline := coalesce(v_pipeline, e->>'pipeline', 'unknown');
    IF t IN ('run_start', 'stage_start') THEN
        et := 'START'; at := e->>'started_at';
    ELSIF t = 'run_state' THEN
        et := 'OTHER'; at := e->>'at';
    ELSE
        et := CASE e->>'status' WHEN 'failed' THEN 'FAIL' WHEN 'cancelled' THEN 'ABORT' ELSE 'COMPLETE' END;
        at := e->>'finished_at';
    END IF;
    IF t LIKE 'run\_%' THEN
        job := v_pipeline;
        rid := e->>'run_id';
        facets := jsonb_build_object('scalemix', jsonb_strip_nulls(jsonb_build_object(
            '_producer', producer, '_schemaURL', producer || '/facets/run.json',
            'type', t, 'seq', e->'seq', 'state', e->'state', 'status', e->'status', 'trigger', e->'trigger',
            'nominalTime', e->'nominal_time', 'schedule', e->'schedule', 'scriptSha256', e->'script_sha256',
            'params', e->'params')));
        IF e->>'nominal_time' IS NOT NULL THEN
            facets := facets || jsonb_build_object('nominalTime', jsonb_build_object(
                '_producer', producer,
                '_schemaURL', 'https://openlineage.io/spec/facets/1-0-0/NominalTimeRunFacet.json',
                'nominalStartTime', e->'nominal_time'));
        END IF;
        IF e->>'parent_run_id' IS NOT NULL THEN
            facets := facets || jsonb_build_object('parent', jsonb_build_object(
                '_producer', producer,
                '_schemaURL', 'https://openlineage.io/spec/facets/1-0-0/ParentRunFacet.json',
                'run', jsonb_build_object('runId', e->'parent_run_id'),
                'job', jsonb_build_object('namespace', 'scalemix', 'name', v_pipeline)));
        END IF;
    ELSE
        SELECT s.stage INTO v_stage FROM stage_runs s WHERE s.stage_run_id = e->>'stage_run_id';
        job := v_pipeline || '.' || coalesce(e->>'stage', v_stage, 'unknown');
        rid := e->>'stage_run_id';
        facets := jsonb_build_object(
            'parent', jsonb_build_object(
                '_producer', producer,
                '_schemaURL', 'https://openlineage.io/spec/facets/1-0-0/ParentRunFacet.json',
                'run', jsonb_build_object('runId', e->'run_id'),
                'job', jsonb_build_object('namespace', 'scalemix', 'name', v_pipeline)),
            'scalemix', jsonb_strip_nulls(jsonb_build_object(
                '_producer', producer, '_schemaURL', producer || '/facets/stage.json',
                'type', t, 'seq', e->'seq', 'status', e->'status', 'plugin', e->'plugin',
                'pluginVersion', e->'plugin_version', 'cacheKey', e->'cache_key', 'reused', e->'reused',
                'attempt', e->'attempt', 'result', e->'result')));
        IF t = 'stage_end' THEN
            SELECT coalesce(jsonb_agg(jsonb_build_object('namespace', 'scalemix',
                       'name', coalesce(a.path, io.artifact_id),
                       'facets', jsonb_strip_nulls(jsonb_build_object('scalemix', jsonb_build_object(
                           '_producer', producer, '_schemaURL', producer || '/facets/artifact.json',
                           'sha256', io.artifact_id, 'kind', a.kind, 'bytes', a.bytes))))
                       ORDER BY io.artifact_id) FILTER (WHERE io.direction = 'in'), '[]'),
                   coalesce(jsonb_agg(jsonb_build_object('namespace', 'scalemix',
                       'name', coalesce(a.path, io.artifact_id),
                       'facets', jsonb_strip_nulls(jsonb_build_object('scalemix', jsonb_build_object(
                           '_producer', producer, '_schemaURL', producer || '/facets/artifact.json',
                           'sha256', io.artifact_id, 'kind', a.kind, 'bytes', a.bytes))))
                       ORDER BY io.artifact_id) FILTER (WHERE io.direction = 'out'), '[]')
              INTO inputs, outputs
              FROM stage_io io LEFT JOIN artifacts a ON a.artifact_id = io.artifact_id
             WHERE io.stage_run_id = e->>'stage_run_id';
        END IF;
    END IF;
    IF e->>'error' IS NOT NULL THEN
        facets := facets || jsonb_build_object('errorMessage', jsonb_build_object(
            '_producer', producer,
            '_schemaURL', 'https://openlineage.io/spec/facets/1-0-0/ErrorMessageRunFacet.json',
            'message', e->'error', 'programmingLanguage', 'C'));
    END IF;
    RETURN jsonb_build_object(
        'eventType', et, 'eventTime', at, 'producer', producer,
        'schemaURL', 'https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent',
        'run', jsonb_build_object('runId', rid, 'facets', facets),
        'job', jsonb_build_object('namespace', 'scalemix', 'name', job),
        'inputs', inputs, 'outputs', outputs);
END $$;

CREATE FUNCTION sm_ingest(batch jsonb) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    k integer;
    types text[];
BEGIN
    IF jsonb_typeof(batch) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'sm_ingest: expected a JSON array of events, got %', jsonb_typeof(batch);
    END IF;
    -- Statements for types absent from the batch are skipped: metric-only batches are the common case.
    SELECT array_agg(DISTINCT e->>'type') INTO types FROM jsonb_array_elements(batch) e;
    IF types IS NULL THEN
        RETURN 0;
    END IF;

    IF types && ARRAY['run_start'] THEN
        INSERT INTO runs (run_id, pipeline, script_path, script_sha256, params, params_sha256, status, trigger,
                          nominal_time, schedule, parent_run_id, host, started_at, event_id, last_seq)
        SELECT e->>'run_id', e->>'pipeline', e->>'script_path', e->>'script_sha256', sm_obj(e->'params'),
               encode(sha256(convert_to(sm_obj(e->'params')::text, 'UTF8')), 'hex'), 'running', e->>'trigger',
               (e->>'nominal_time')::timestamptz, e->>'schedule', e->>'parent_run_id', e->>'host',
               (e->>'started_at')::timestamptz, e->>'event_id', (e->>'seq')::bigint
          FROM jsonb_array_elements(batch) e WHERE e->>'type' = 'run_start'
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS k = ROW_COUNT; n := n + k;
    END IF;

    IF types && ARRAY['stage_start'] THEN
        INSERT INTO stage_runs (stage_run_id, run_id, stage, plugin, plugin_version, plugin_sha256, cache_key,
                                params, reused, status, attempt, started_at, event_id, last_seq)
        SELECT e->>'stage_run_id', e->>'run_id', e->>'stage', e->>'plugin', e->>'plugin_version',
               e->>'plugin_sha256', e->>'cache_key', sm_obj(e->'params'), coalesce((e->>'reused')::boolean, false),
               'running', coalesce((e->>'attempt')::integer, 1), (e->>'started_at')::timestamptz, e->>'event_id',
               (e->>'seq')::bigint
          FROM jsonb_array_elements(batch) WITH ORDINALITY AS x(e, ord) WHERE e->>'type' = 'stage_start'
         ORDER BY ord
        ON CONFLICT (stage_run_id) DO UPDATE   -- a retry that reuses the stage_run_id: the newer attempt wins
           SET attempt = EXCLUDED.attempt, status = 'running', started_at = EXCLUDED.started_at,
               finished_at = NULL, error = NULL, result = NULL, end_event_id = NULL,
               event_id = EXCLUDED.event_id, last_seq = EXCLUDED.last_seq
         WHERE stage_runs.last_seq < EXCLUDED.last_seq;
        GET DIAGNOSTICS k = ROW_COUNT; n := n + k;
    END IF;

    IF types && ARRAY['artifact'] THEN
        INSERT INTO artifacts (artifact_id, kind, name, path, bytes, produced_by, created_at, meta, event_id)
        SELECT e->>'artifact_id', e->>'kind', e->>'name', e->>'path', (e->>'bytes')::bigint, e->>'produced_by',
               (e->>'created_at')::timestamptz, sm_obj(e->'meta'), e->>'event_id'
          FROM jsonb_array_elements(batch) e WHERE e->>'type' = 'artifact'
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS k = ROW_COUNT; n := n + k;
    END IF;

    IF types && ARRAY['io'] THEN
        INSERT INTO stage_io (stage_run_id, artifact_id, direction, name, event_id)
        SELECT e->>'stage_run_id', e->>'artifact_id', e->>'direction', e->>'name', e->>'event_id'
          FROM jsonb_array_elements(batch) e WHERE e->>'type' = 'io'
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS k = ROW_COUNT; n := n + k;
    END IF;

    IF types && ARRAY['metric'] THEN
        INSERT INTO metrics (event_id, stage_run_id, name, step, domain, value, recorded_at)
        SELECT e->>'event_id', e->>'stage_run_id', e->>'name', (e->>'step')::numeric::bigint, e->>'domain',
               (e->>'value')::double precision, (e->>'recorded_at')::timestamptz
          FROM jsonb_array_elements(batch) e WHERE e->>'type' = 'metric'
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS k = ROW_COUNT; n := n + k;
    END IF;

    IF types && ARRAY['mixture'] THEN
        INSERT INTO mixtures (event_id, stage_run_id, method, budget_tokens, domain, weight, tokens)
        SELECT e->>'event_id', e->>'stage_run_id', e->>'method', (e->>'budget_tokens')::numeric::bigint,
               m->>'domain', (m->>'weight')::double precision, (m->>'tokens')::numeric::bigint
          FROM jsonb_array_elements(batch) e
         CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(e->'entries') = 'array'
                                                      THEN e->'entries' ELSE '[]'::jsonb END) m
         WHERE e->>'type' = 'mixture'
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS k = ROW_COUNT; n := n + k;
    END IF;

    IF types && ARRAY['fit'] THEN
        INSERT INTO fits (event_id, stage_run_id, domain, a, b, c, rmse)
        SELECT e->>'event_id', e->>'stage_run_id', e->>'domain', (e->>'a')::double precision,
               (e->>'b')::double precision, (e->>'c')::double precision, (e->>'rmse')::double precision
          FROM jsonb_array_elements(batch) e WHERE e->>'type' = 'fit'
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS k = ROW_COUNT; n := n + k;
    END IF;

    -- State history: run_start (running), run_state and run_end all land in run_states.
    IF types && ARRAY['run_start', 'run_state', 'run_end'] THEN
        INSERT INTO run_states (event_id, run_id, seq, state, at)
        SELECT e->>'event_id', e->>'run_id', (e->>'seq')::bigint,
               CASE e->>'type' WHEN 'run_start' THEN 'running' WHEN 'run_state' THEN e->>'state' ELSE e->>'status' END,
               coalesce((CASE e->>'type' WHEN 'run_start' THEN e->>'started_at' WHEN 'run_state' THEN e->>'at'
                         ELSE e->>'finished_at' END)::timestamptz, now())
          FROM jsonb_array_elements(batch) e WHERE e->>'type' IN ('run_start', 'run_state', 'run_end')
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS k = ROW_COUNT; n := n + k;
    END IF;

    IF types && ARRAY['run_state', 'run_end'] THEN
        UPDATE runs r
           SET status = CASE WHEN u.e->>'type' = 'run_end' THEN u.e->>'status' ELSE u.e->>'state' END,
               finished_at = CASE WHEN u.e->>'type' = 'run_end' THEN (u.e->>'finished_at')::timestamptz
                                  ELSE r.finished_at END,
               error = CASE WHEN u.e->>'type' = 'run_end' THEN u.e->>'error' ELSE r.error END,
               last_seq = (u.e->>'seq')::bigint
          FROM (SELECT DISTINCT ON (e->>'run_id') e
                  FROM jsonb_array_elements(batch) e WHERE e->>'type' IN ('run_state', 'run_end')
                 ORDER BY e->>'run_id', (e->>'seq')::bigint DESC) u
         WHERE r.run_id = u.e->>'run_id' AND r.last_seq < (u.e->>'seq')::bigint;
        GET DIAGNOSTICS k = ROW_COUNT; n := n + k;
    END IF;

    IF types && ARRAY['stage_end'] THEN
        UPDATE stage_runs s
           SET status = u.e->>'status', finished_at = (u.e->>'finished_at')::timestamptz, error = u.e->>'error',
               result = CASE WHEN jsonb_typeof(u.e->'result') = 'object' THEN u.e->'result' END,
               reused = s.reused OR u.e->>'status' = 'reused',
               end_event_id = u.e->>'event_id', last_seq = (u.e->>'seq')::bigint
          FROM (SELECT DISTINCT ON (e->>'stage_run_id') e
                  FROM jsonb_array_elements(batch) e WHERE e->>'type' = 'stage_end'
                 ORDER BY e->>'stage_run_id', (e->>'seq')::bigint DESC) u
         WHERE s.stage_run_id = u.e->>'stage_run_id' AND s.last_seq < (u.e->>'seq')::bigint;
        GET DIAGNOSTICS k = ROW_COUNT; n := n + k;
    END IF;

    -- Last, so that a stage_end's RunEvent sees the stage's input and output edges of this batch.
    IF types && ARRAY['run_start', 'run_state', 'run_end', 'stage_start', 'stage_end'] THEN
        INSERT INTO lineage_events (event_id, run_id, seq, event_type, event_time, event)
        SELECT e->>'event_id', e->>'run_id', (e->>'seq')::bigint, e->>'type',
               (CASE WHEN e->>'type' IN ('run_start', 'stage_start') THEN e->>'started_at'
                     WHEN e->>'type' = 'run_state' THEN e->>'at' ELSE e->>'finished_at' END)::timestamptz,
               sm_openlineage(e)
          FROM jsonb_array_elements(batch) WITH ORDINALITY AS x(e, ord)
         WHERE e->>'type' IN ('run_start', 'run_state', 'run_end', 'stage_start', 'stage_end')
           AND NOT EXISTS (SELECT 1 FROM lineage_events l WHERE l.event_id = e->>'event_id')
         ORDER BY ord
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS k = ROW_COUNT; n := n + k;
    END IF;

    RETURN n;
END $$;
