-- 011: the database holds state, not authority (issue 14).
--
-- schedules: what the daemon may run is what `scalemix schedule add` (or sm_sched_declare) registered:
-- script_sha256 is the pipeline script's digest at registration and auth_tag an HMAC-SHA256, keyed by
-- <workspace>/sched.key (0600, readable only by the workspace's owner), over the name, pipeline path,
-- script digest, parameters, cron and zone. The daemon refuses a fire whose tag does not verify or whose
-- script changed since; rows from before this migration have no tag and are refused until re-added.
ALTER TABLE schedules ADD COLUMN script_sha256 text, ADD COLUMN auth_tag text;

-- metrics: a metric belongs to a stage run that exists (the sink sends a stage's start before its metrics,
-- in the same batch or an earlier one). NOT VALID: enforced for every new row without re-checking rows
-- that an older scalemix may have stored.
ALTER TABLE metrics ADD CONSTRAINT metrics_stage_run_fk FOREIGN KEY (stage_run_id)
    REFERENCES stage_runs (stage_run_id) NOT VALID;
