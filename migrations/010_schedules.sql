-- 010: recurring runs (core/sched). `schedules` holds what `scalemix schedule add` or a script's
-- declaration stored; `schedule_fires` holds one row per schedule and nominal time (the idempotency key:
-- two daemons, a restart or a backfill can never fire the same nominal time twice); `schedule_daemons`
-- records the daemons that heartbeat. History outlives a removed schedule (no foreign key on purpose).

CREATE TABLE schedules (
    schedule_id      bigserial PRIMARY KEY,
    name             text NOT NULL UNIQUE,
    cron             text NOT NULL,
    tz               text NOT NULL DEFAULT 'UTC',
    pipeline         text NOT NULL,                 -- absolute path of the pipeline script
    params           jsonb NOT NULL DEFAULT '{}',   -- {"k": "v"}, passed as --param k=v
    overlap          text NOT NULL DEFAULT 'skip' CHECK (overlap IN ('skip', 'queue', 'cancel-old')),
    catchup          text NOT NULL DEFAULT 'latest' CHECK (catchup IN ('none', 'latest', 'all')),
    catchup_window   interval NOT NULL DEFAULT '1 day',
    when_changed     text[] NOT NULL DEFAULT '{}',  -- absolute paths whose digests gate each fire
    paused           boolean NOT NULL DEFAULT false,
    decided_through  timestamptz NOT NULL,          -- every nominal time up to here has been decided
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE schedule_fires (
    fire_id           bigserial PRIMARY KEY,
    schedule_id       bigint NOT NULL,
    schedule          text NOT NULL,
    nominal_time      timestamptz NOT NULL,
    trigger           text NOT NULL DEFAULT 'schedule' CHECK (trigger IN ('schedule', 'backfill')),
    state             text NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'skipped')),
    reason            text,                           -- why skipped / requeued / failed, in words
    attempt           integer NOT NULL DEFAULT 0,     -- times a daemon started it
    daemon_id         text,                           -- the daemon holding it while running
    host              text,
    pid               integer,
    lease_until       timestamptz,                    -- a running fire whose lease lapsed lost its daemon
    cancel_requested  boolean NOT NULL DEFAULT false, -- overlap=cancel-old asks the holder to stop it
    exit_code         integer,
    term_signal       integer,
    input_digest      text,                           -- sha256 over --when-changed inputs at decision time
    log_path          text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    UNIQUE (schedule_id, nominal_time)
);
-- At most one running fire per schedule, enforced by the database for every daemon at once.
CREATE UNIQUE INDEX schedule_fires_one_running ON schedule_fires (schedule_id) WHERE state = 'running';
CREATE INDEX schedule_fires_queued_idx ON schedule_fires (nominal_time, fire_id) WHERE state = 'queued';
CREATE INDEX schedule_fires_lease_idx ON schedule_fires (lease_until) WHERE state = 'running';
CREATE INDEX schedule_fires_schedule_idx ON schedule_fires (schedule, nominal_time DESC);

CREATE TABLE schedule_daemons (
    daemon_id     text PRIMARY KEY,
    host          text NOT NULL,
    pid           integer NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz
);

-- Each fire with the lineage runs it produced (one row per run attempt; run columns NULL until the run
-- has written its start event).
CREATE VIEW schedule_fire_runs AS
SELECT f.fire_id, f.schedule, f.nominal_time, f.trigger, f.state, f.attempt, f.exit_code, f.reason,
       r.run_id, r.status AS run_status, r.started_at AS run_started_at, r.finished_at AS run_finished_at
FROM schedule_fires f
LEFT JOIN runs r ON r.schedule = f.schedule AND r.nominal_time = f.nominal_time;
