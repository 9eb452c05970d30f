# sched_lib.sh - shared setup for the scheduler's integration tests (sourced after tests/lib.sh):
# picks the binary (scalemix once it dispatches `schedule`, else the scalemix-sched driver), starts the
# embedded PostgreSQL of the test workspace through the engine's own sm_db_resolve, and provides a fake
# pipeline runner and a fake clock (the test-only SCALEMIX_CLOCK_FILE).
SCHED="$SM_BUILD/sched/scalemix-sched"
"$SCALEMIX" schedule --help >/dev/null 2>&1 && SCHED="$SCALEMIX"
DBCLI="$SM_BUILD/tests/sm_db_cli"
"$SCALEMIX" db --help >/dev/null 2>&1 && DBCLI="$SCALEMIX"
if [ ! -x "$SCHED" ] || [ ! -x "$DBCLI" ]; then
  fail "setup" "$SCHED or $DBCLI missing: run make test-build"
  finish
fi
mkdir -p "$SCALEMIX_HOME"
export SCALEMIX_CLOCK_FILE="$TMP_WS/clock" RUNLOG="$TMP_WS/runs.log"
unset SCALEMIX_DB SCALEMIX_FAKE_NOW SCALEMIX_FAKE_SPEED
touch "$RUNLOG"
setclock() { echo "$1 ${2:-1}" >"$SCALEMIX_CLOCK_FILE"; }
setclock 2026-01-01T00:00:00Z
if ! "$SCHED" schedule list >/dev/null 2>"$TMP_WS/init.log"; then
  fail "setup" "embedded database: $(tail -n 3 "$TMP_WS/init.log")"
  finish
fi
at_exit "'$DBCLI' db stop"
DSN=$("$DBCLI" db dsn 2>/dev/null)
sql() { psql "$DSN" -XAtq -c "$1"; }

# The fake pipeline: logs start/end/int lines "WHAT SCHEDULE NOMINAL PID ARGS"; sleeps RUN_SLEEP_<schedule>
# (or RUN_SLEEP, default 0.1 s); exits 3 when its nominal time is RUN_FAIL_NOMINAL; exits 130 on SIGINT.
RUNNER="$TMP_WS/runner.sh"
cat >"$RUNNER" <<'EOF'
#!/bin/bash
args="$*"; nom=""; sched=""; trig=""
while [ $# -gt 0 ]; do
  case $1 in --nominal-time) nom=$2; shift ;; --schedule) sched=$2; shift ;; --trigger) trig=$2; shift ;; esac
  shift
done
echo "start $sched $nom $$ $args db=${SCALEMIX_DB:+set}" >>"$RUNLOG"
trap 'echo "int $sched $nom $$" >>"$RUNLOG"; exit 130' INT
v="RUN_SLEEP_${sched//[^A-Za-z0-9_]/_}"
sleep "${!v:-${RUN_SLEEP:-0.1}}" &
wait $!
echo "end $sched $nom $$ $trig" >>"$RUNLOG"
[ "$nom" == "${RUN_FAIL_NOMINAL:-}" ] && exit 3
exit 0
EOF
chmod +x "$RUNNER"
echo 'return 1' >"$TMP_WS/p.lua"

DAEMON_PIDS=()
# Starts a daemon in the background (extra options as arguments); its pid is in $DPID.
start_daemon() {
  "$SCHED" daemon --runner "$RUNNER" --poll 0.3 --lease 1.5 "$@" >>"$TMP_WS/daemon.log" 2>&1 &
  DPID=$!
  DAEMON_PIDS+=("$DPID")
  at_exit "kill -9 $DPID"
}
# wait_until TIMEOUT_SECONDS CMD...: polls CMD every 0.1 s.
wait_until() {
  local end=$((SECONDS + $1)); shift
  until "$@"; do [ $SECONDS -ge $end ] && return 1; sleep 0.1; done
}
sql_is() { [ "$(sql "$1")" == "$2" ]; }
# fire states of one schedule: "NOMINAL=STATE ..." in nominal order (nominal as HH:MM or full with $2=full)
states() {
  sql "SELECT string_agg(to_char(nominal_time AT TIME ZONE 'UTC', '${2:-HH24:MI}') || '=' || state, ' ' ORDER BY nominal_time) FROM schedule_fires WHERE schedule = '$1'"
}
stop_daemon() { # pid: SIGTERM and wait; returns its exit status
  kill -TERM "$1" 2>/dev/null
  wait "$1"
}
