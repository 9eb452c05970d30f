#!/usr/bin/env bash
# Nothing lost: the embedded PostgreSQL is stopped and restarted while a real pipeline runs; the run goes
# on, and afterwards every run, stage run, artifact edge and metric row is in the database exactly once.
# Also the README's lineage queries on a pipeline whose fit is fed by proxy-run results.
source "$(dirname "$0")/../lib.sh"
export SCALEMIX_PLUGIN_PATH="$SM_BUILD/tests/plugins"
cd "$TMP_WS"
at_exit "\"$SCALEMIX\" db stop"
"$SCALEMIX" db start >/dev/null 2>&1; check_eq "embedded server starts" $? 0
sql() { "$SCALEMIX" sql -At -c "$1" 2>/dev/null; }

cat > chain.lua <<'LUA'
local sm = require "scalemix"
local prev
for i = 1, 8 do
  local s = sm.stage("sm_test_echo", { value = i, sleep_ms = 400, text = "step " .. i }, prev and { prev = prev } or {},
                     { name = "step" .. i })
  prev = s.outputs.text
end
LUA
"$SCALEMIX" run -q chain.lua 2>run.err &
pid=$!
sleep 1.2
"$SCALEMIX" db stop >/dev/null 2>&1; check_eq "server stopped mid-run" $? 0
sleep 1.5
"$SCALEMIX" db start >/dev/null 2>&1; check_eq "server restarted mid-run" $? 0
wait $pid; check_eq "the run went on and succeeded through the outage" $? 0
run=$(sql "select run_id from runs where pipeline = 'chain'")
check_eq "one run row, succeeded" "$(sql "select count(*) || ' ' || max(status) from runs where pipeline = 'chain'")" "1 succeeded"
check_eq "every stage run, once" "$(sql "select count(*), count(distinct stage) from stage_runs where run_id = '$run' and status = 'succeeded'")" "8|8"
check_eq "every metric row, once (2 per stage)" "$(sql "select count(*) from metrics m join stage_runs s using (stage_run_id) where s.run_id = '$run'")" "16"
check_eq "every output edge (text and result per stage)" "$(sql "select count(*) from stage_io i join stage_runs s using (stage_run_id) where s.run_id = '$run' and direction = 'out'")" "16"
check_eq "every input edge (steps 2..8)" "$(sql "select count(*) from stage_io i join stage_runs s using (stage_run_id) where s.run_id = '$run' and direction = 'in'")" "7"
check_eq "run states recorded" "$(sql "select count(*) > 0 from run_states where run_id = '$run'")" "t"

# Lineage walk across stages: the last step's text comes from all eight steps.
last=$(sql "select artifact_id from stage_io i join stage_runs s using (stage_run_id) where s.stage = 'step8' and i.name = 'text' and direction = 'out'")
check_eq "lineage_up walks back through every step" "$(sql "select count(distinct stage) from lineage_up('$last') where stage like 'step%'")" "8"
finish
