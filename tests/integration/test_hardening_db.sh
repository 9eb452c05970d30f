#!/usr/bin/env bash
# Hardening with the embedded lineage database (issue 14, item 11): a run whose process is killed (SIGKILL)
# is marked abandoned by `history` and by the next run, never "running" forever; a script's os.exit()
# records the run's end and its last events.
source "$(dirname "$0")/../lib.sh"
export SCALEMIX_PLUGIN_PATH="$SM_BUILD/tests/plugins"
cd "$TMP_WS"
at_exit "\"$SCALEMIX\" db stop"
sql() { "$SCALEMIX" sql -At -c "$1" 2>/dev/null; }

printf 'local sm = require "scalemix"\nsm.stage("sm_test_echo", { value = tonumber(params.v), sleep_ms = 20000 })\n' > long.lua
"$SCALEMIX" run -q --param v=1 long.lua >/dev/null 2>&1 & pid=$!
for _ in $(seq 100); do [ "$(sql "select count(*) from runs where status = 'running'")" = 1 ] && break; sleep 0.2; done
check_eq "the run is recorded running" "$(sql "select status from runs")" "running"
kill -KILL $pid; wait $pid 2>/dev/null
out=$("$SCALEMIX" history 2>&1)
echo "$out" | grep -q "abandoned"; check_eq "history marks the SIGKILLed run abandoned" $? 0
check_eq "the database says abandoned, with why" "$(sql "select status || ': ' || error from runs")" \
  "abandoned: its process ended without recording an end (killed or crashed)"

# the next run marks a killed run abandoned too
"$SCALEMIX" run -q --param v=2 long.lua >/dev/null 2>&1 & pid=$!
for _ in $(seq 100); do [ "$(sql "select count(*) from runs where status = 'running'")" = 1 ] && break; sleep 0.2; done
kill -KILL $pid; wait $pid 2>/dev/null
printf 'local sm = require "scalemix"\nsm.stage("sm_test_echo", { value = 3 })\nos.exit(0)\n' > ex.lua
"$SCALEMIX" run ex.lua 2>err.txt; check_eq "os.exit(0) exits 0" $? 0
grep -q "1 earlier run(s) whose process is gone marked abandoned" err.txt
check_eq "the next run says it marked the killed run abandoned" $? 0
check_eq "no run stays running" "$(sql "select count(*) from runs where status = 'running'")" 0
check_eq "the os.exit run is recorded succeeded with its stage" \
  "$(sql "select r.status || ' ' || count(s.*) from runs r join stage_runs s using (run_id) where r.pipeline = 'ex' group by r.run_id, r.status order by min(r.started_at) limit 1")" \
  "succeeded 1"
printf 'local sm = require "scalemix"\nos.exit(4)\n' > ex4.lua
"$SCALEMIX" run -q ex4.lua 2>/dev/null; check_eq "os.exit(4) exits 4" $? 4
check_eq "the os.exit(4) run is recorded failed" "$(sql "select status || ': ' || error from runs where pipeline = 'ex4'")" \
  "failed: the script called os.exit(4)"
finish
