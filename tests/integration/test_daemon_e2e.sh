#!/usr/bin/env bash
# End to end with the real engine: a Lua script declares a schedule through sm.schedule (the FFI binding of
# sm_sched_declare); the daemon, with no test runner, fires `scalemix run` as its child; the lineage run row
# carries trigger, schedule and nominal time; a failing pipeline is recorded as a failed fire.
source "$(dirname "$0")/../lib.sh"
if ! "$SCALEMIX" run --help >/dev/null 2>&1 || ! "$SCALEMIX" schedule --help >/dev/null 2>&1; then
  fail "daemon end to end" "$SCALEMIX run --help or schedule --help does not answer"
  finish
fi
source "$(dirname "$0")/sched_lib.sh"
export E2E_OUT="$TMP_WS/e2e.out"
cat >"$TMP_WS/e2e.lua" <<'LUA'
local f = assert(io.open(os.getenv("E2E_OUT"), "a"))
f:write(string.format("x=%s\n", tostring(params.x)))
f:close()
LUA
echo 'error("boom: this pipeline fails on purpose")' >"$TMP_WS/fail.lua"
cat >"$TMP_WS/declare.lua" <<LUA
local sm = require "scalemix"
sm.schedule{name = "e2e", cron = "0 7 * * *", tz = "Europe/London", pipeline = "$TMP_WS/e2e.lua",
            params = {x = "7"}, overlap = "queue"}
sm.schedule{name = "e2e-fail", cron = "0 7 * * *", tz = "Europe/London", pipeline = "$TMP_WS/fail.lua"}
LUA
setclock 2026-06-01T05:59:58Z
"$SCALEMIX" run --quiet "$TMP_WS/declare.lua" >"$TMP_WS/declare.log" 2>&1
check_eq "a script declares schedules through sm.schedule" "$? $(sql "SELECT string_agg(name || ' ' || tz || ' ' || overlap, ',' ORDER BY name) FROM schedules")" "0 e2e Europe/London queue,e2e-fail Europe/London skip"
"$SCALEMIX" daemon --poll 0.3 --lease 3 >"$TMP_WS/daemon.log" 2>&1 &
D=$!
at_exit "kill -9 $D"
wait_until 60 sql_is "SELECT count(*) FROM schedule_fires WHERE state IN ('succeeded', 'failed')" 2
check_eq "the fire ran scalemix run and succeeded (07:00 BST = 06:00Z)" "$(states e2e 'YYYY-MM-DD"T"HH24:MI')" "2026-06-01T06:00=succeeded"
check_eq "the pipeline got its params" "$(cat "$E2E_OUT" 2>/dev/null)" "x=7"
check_eq "the lineage run row has trigger, schedule, nominal time, status" "$(sql "SELECT trigger || ' ' || schedule || ' ' || to_char(nominal_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI') || ' ' || status FROM runs WHERE schedule = 'e2e'")" "schedule e2e 2026-06-01T06:00 succeeded"
check "schedule_fire_runs links the fire to its run" sql_is "SELECT count(*) FROM schedule_fire_runs WHERE schedule = 'e2e' AND run_id IS NOT NULL AND run_status = 'succeeded'" 1
check_eq "a failing pipeline is a failed fire with its exit code" "$(sql "SELECT state || ' ' || exit_code FROM schedule_fires WHERE schedule = 'e2e-fail'")" "failed 1"
check_eq "and a failed lineage run" "$(sql "SELECT status FROM runs WHERE schedule = 'e2e-fail'")" "failed"
check "the run's output is in the fire's log" grep -q "boom" "$SCALEMIX_HOME/logs/sched/e2e-fail/2026-06-01T06:00:00Z-a1.log"
kill -TERM $D
wait $D
check_eq "daemon stops on SIGTERM" "$?" "0"
finish
