-- 001: the lineage tables. Every row written by the engine carries the event_id of the event that
-- created it (unique), so replaying an event writes nothing. References between tables are logical
-- (no foreign keys): events of one run arrive in order, but a partial journal must still load.

CREATE TABLE runs (
    run_id         text PRIMARY KEY,
    pipeline       text,
    script_path    text,
    script_sha256  text,
    params         jsonb NOT NULL DEFAULT '{}',
    params_sha256  text,             -- sha256 of params' canonical jsonb text: identical sets match
    status         text NOT NULL DEFAULT 'running',
    trigger        text,             -- manual | schedule | backfill
    nominal_time   timestamptz,      -- the scheduled time, apart from the actual start
    schedule       text,
    parent_run_id  text,
    host           text,
    started_at     timestamptz,
    finished_at    timestamptz,
    error          text,
    event_id       text NOT NULL UNIQUE,
    last_seq       bigint NOT NULL DEFAULT 0   -- highest event seq applied to this row
);
CREATE INDEX runs_started_at_idx ON runs (started_at DESC);
CREATE INDEX runs_pipeline_idx ON runs (pipeline, started_at DESC);
CREATE INDEX runs_params_sha256_idx ON runs (params_sha256);
CREATE INDEX runs_schedule_idx ON runs (schedule, nominal_time) WHERE schedule IS NOT NULL;

CREATE TABLE run_states (
    event_id  text PRIMARY KEY,
    run_id    text NOT NULL,
    seq       bigint NOT NULL,
    state     text NOT NULL,
    at        timestamptz NOT NULL
);
CREATE INDEX run_states_run_idx ON run_states (run_id, seq);

CREATE TABLE stage_runs (
    stage_run_id    text PRIMARY KEY,
    run_id          text NOT NULL,
    stage           text NOT NULL,
    plugin          text,
    plugin_version  text,
    plugin_sha256   text,
    cache_key       text,
    params          jsonb NOT NULL DEFAULT '{}',
    reused          boolean NOT NULL DEFAULT false,
    status          text NOT NULL DEFAULT 'running',
    attempt         integer NOT NULL DEFAULT 1,
    started_at      timestamptz,
    finished_at     timestamptz,
    error           text,
    result          jsonb,
    event_id        text NOT NULL,    -- the stage_start event of the latest attempt
    end_event_id    text,
    last_seq        bigint NOT NULL DEFAULT 0
);
CREATE INDEX stage_runs_run_idx ON stage_runs (run_id);
CREATE INDEX stage_runs_cache_key_idx ON stage_runs (cache_key);

CREATE TABLE artifacts (
    artifact_id  text PRIMARY KEY CHECK (artifact_id ~ '^[0-9a-f]{64}$'),  -- sha256 of the content
    kind         text,
    name         text,
    path         text,
    bytes        bigint,
    produced_by  text,            -- stage_run_id, or null for inputs from outside
    created_at   timestamptz,
    meta         jsonb NOT NULL DEFAULT '{}',
    event_id     text NOT NULL
);
CREATE INDEX artifacts_produced_by_idx ON artifacts (produced_by);

CREATE TABLE stage_io (
    stage_run_id  text NOT NULL,
    artifact_id   text NOT NULL,
    direction     text NOT NULL CHECK (direction IN ('in', 'out')),
    name          text,
    event_id      text NOT NULL,
    PRIMARY KEY (stage_run_id, artifact_id, direction)
);
CREATE INDEX stage_io_artifact_idx ON stage_io (artifact_id, direction);

-- The hot table. One index only, which serves both lookups by stage run and metric name and replays:
-- an event always carries the same stage_run_id and name, so (stage_run_id, name, event_id) is unique
-- exactly when event_id is.
CREATE TABLE metrics (
    event_id      text NOT NULL,
    stage_run_id  text NOT NULL,
    name          text NOT NULL,
    step          bigint,
    domain        text,
    value         double precision,
    recorded_at   timestamptz,
    PRIMARY KEY (stage_run_id, name, event_id)
);

CREATE TABLE mixtures (
    event_id       text NOT NULL,
    stage_run_id   text NOT NULL,
    method         text,
    budget_tokens  bigint,
    domain         text NOT NULL,
    weight         double precision,
    tokens         bigint,
    PRIMARY KEY (event_id, domain)
);
CREATE INDEX mixtures_stage_idx ON mixtures (stage_run_id);

CREATE TABLE fits (
    event_id      text PRIMARY KEY,
    stage_run_id  text NOT NULL,
    domain        text,
    a             double precision,
    b             double precision,
    c             double precision,
    rmse          double precision
);
CREATE INDEX fits_stage_idx ON fits (stage_run_id);

-- Run and stage lifecycle events as OpenLineage RunEvents (START / OTHER / COMPLETE / FAIL / ABORT),
-- append-only so that it can be exported as is.
CREATE TABLE lineage_events (
    event_id     text PRIMARY KEY,
    run_id       text NOT NULL,
    seq          bigint NOT NULL,
    event_type   text NOT NULL,
    event_time   timestamptz,
    event        jsonb NOT NULL,
    ingested_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lineage_events_run_idx ON lineage_events (run_id, seq);

CREATE FUNCTION sm_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER lineage_events_append_only BEFORE UPDATE OR DELETE ON lineage_events
    FOR EACH ROW EXECUTE FUNCTION sm_forbid_change();

CREATE VIEW latest_metrics AS
    SELECT DISTINCT ON (stage_run_id, name, domain)
           stage_run_id, name, domain, step, value, recorded_at
      FROM metrics
     ORDER BY stage_run_id, name, domain, step DESC NULLS LAST, recorded_at DESC NULLS LAST;
