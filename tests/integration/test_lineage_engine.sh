#!/usr/bin/env bash
# The engine's own events land in the lineage database: a real `scalemix run` (tests/lua/test_library.lua
# with the test plugin) against the embedded server; every event is accepted (nothing rejected, journal
# empty), runs and stage runs are complete, and each stage run has its OpenLineage START and end events.
source "$(dirname "$0")/../lib.sh"
plugin_dir="$SM_BUILD/tests/plugins"
if ! [ -x "$SCALEMIX" ] || ! "$SCALEMIX" db --help >/dev/null 2>&1 || ! [ -f "$plugin_dir/sm_test_echo.so" ]; then
  skip "engine lineage" "needs $SCALEMIX with the db commands and $plugin_dir/sm_test_echo.so (make test-build)"
  finish
fi
unset SCALEMIX_DB PGHOST PGDATABASE PGSERVICE
export SCALEMIX_PLUGIN_PATH="$plugin_dir"
at_exit "\"$SCALEMIX\" db stop"
"$SCALEMIX" run --quiet "$SM_ROOT/tests/lua/test_library.lua" >"$TMP_WS/run.out" 2>&1; rc=$?
check_eq "the Lua library test runs with the lineage database" "$rc" 0
sql() { "$SCALEMIX" sql -At -F ' ' -c "$1" 2>&1; }
check_eq "one succeeded run" "$(sql "select count(*) from runs where status = 'succeeded' and finished_at is not null and pipeline is not null")" 1
check "stage runs recorded" test "$(sql "select count(*) from stage_runs")" -gt 0
check_eq "every stage run finished" "$(sql "select count(*) from stage_runs where finished_at is null or status = 'running'")" 0
check_eq "every stage run has an OpenLineage START and an end event" \
  "$(sql "select count(*) from stage_runs s where (select count(*) from lineage_events l where l.event->'run'->>'runId' = s.stage_run_id) <> 2")" 0
check "artifacts recorded with sha256 ids" test "$(sql "select count(*) from artifacts")" -gt 0
check_eq "every edge names a recorded artifact" "$(sql "select count(*) from stage_io i left join artifacts a using (artifact_id) where a.artifact_id is null")" 0
check_eq "run state history starts with running" "$(sql "select state from run_states order by seq limit 1")" running
check "no event was rejected" test ! -e "$SCALEMIX_HOME/journal/rejected.jsonl"
check_eq "the journal is empty after the run" "$(ls "$SCALEMIX_HOME/journal" | grep -c jsonl)" 0
check "history shows the run" bash -c "\"$SCALEMIX\" history 2>/dev/null | grep -q succeeded"
finish
