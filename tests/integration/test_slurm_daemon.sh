#!/usr/bin/env bash
# The scheduling daemon fires a run whose stages go to Slurm: the executor is a parameter of the schedule,
# which the pipeline hands to sm.config. Against a real single-node cluster (tests/slurm_lib.sh); the fire
# succeeds and its stage was an sbatch job.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/../slurm_lib.sh"
slurm_start
source "$(dirname "$0")/sched_lib.sh"
export SCALEMIX_PLUGIN_PATH="$SM_BUILD/tests/plugins"
real_sbatch=$(command -v sbatch)
mkdir -p "$TMP_WS/bin"
printf '#!/bin/sh\necho "$*" >>"%s/sbatch.calls"\nexec "%s" "$@"\n' "$TMP_WS" "$real_sbatch" >"$TMP_WS/bin/sbatch"
chmod +x "$TMP_WS/bin/sbatch"
export PATH="$TMP_WS/bin:$PATH"
cat >"$TMP_WS/onslurm.lua" <<'LUA'
local sm = require "scalemix"
sm.config { executor = params.executor }
print("double " .. sm.stage("sm_test_echo", { value = 21, sleep_ms = 1500 }, {}, { name = "echo" }).result.double)
LUA
cat >"$TMP_WS/declare.lua" <<LUA
local sm = require "scalemix"
sm.schedule{name = "nightly", cron = "0 7 * * *", tz = "UTC", pipeline = "$TMP_WS/onslurm.lua", params = {executor = "slurm"}}
LUA
setclock 2026-06-01T06:59:58Z
"$SCALEMIX" run --quiet "$TMP_WS/declare.lua" >"$TMP_WS/declare.log" 2>&1
check_eq "the schedule is declared with the executor among its parameters" "$?" 0
"$SCALEMIX" daemon --poll 0.3 --lease 3 >"$TMP_WS/daemon.log" 2>&1 &
D=$!
at_exit "kill -9 $D"
wait_until 90 sql_is "SELECT count(*) FROM schedule_fires WHERE state IN ('succeeded', 'failed')" 1
check_eq "the fire succeeded" "$(states nightly)" "07:00=succeeded"
check_eq "its stage went to Slurm: one sbatch call" "$(wc -l <"$TMP_WS/sbatch.calls" 2>/dev/null)" 1
log="$SCALEMIX_HOME/logs/sched/nightly/2026-06-01T07:00:00Z-a1.log"
check "the fire's log says the stage was submitted to Slurm" grep -Eq "echo: submitted to Slurm as job [0-9]+$" "$log"
check "and prints the stage's result" grep -q "^double 42$" "$log"
stop_daemon $D
finish
