#!/usr/bin/env bash
# The database holds state, not authority (issue 14, items 1 and 2): the daemon runs only what `schedule add`
# registered. A schedule row written straight into the database, one whose pipeline or parameters were
# changed there, one whose script changed on disk, and one whose name would escape the workspace are all
# refused, with the reason in the daemon's log and in the fire's row; nothing is started for them and no
# file is made outside the workspace. A registered, untouched schedule still runs.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/sched_lib.sh"
P="$TMP_WS/p.lua"

err=$("$SCHED" schedule add ghost --cron "* * * * *" "$TMP_WS/nope.lua" 2>&1); rc=$?
check_eq "add refuses a pipeline that does not exist (exit 2)" "$rc" 2
check "and says which and why" grep -q "pipeline script $TMP_WS/nope.lua: No such file or directory" <<<"$err"
check_eq "nothing stored for it" "$(sql "SELECT count(*) FROM schedules WHERE name = 'ghost'")" 0

setclock 2026-05-01T06:59:57Z
echo 'os.execute("id > /tmp/owned")' >"$TMP_WS/evil.lua"
# 1. written straight into the database by anyone who can write to it
sql "INSERT INTO schedules (name, cron, tz, pipeline, decided_through) VALUES ('injected', '0 7 * * *', 'UTC', '$TMP_WS/evil.lua', '2026-05-01T06:59:00Z')"
# 1b. stored before tags existed (a schedule of an older version): refused, with the command that registers it
sql "INSERT INTO schedules (name, cron, tz, pipeline, params, decided_through) VALUES ('legacy', '0 7 * * *', 'UTC', '$P', '{\"budget\": \"2\"}', '2026-05-01T06:59:00Z')"
# 2. registered, then pointed at another script, or given other parameters, in the database
"$SCHED" schedule add moved --cron "0 7 * * *" "$P" >/dev/null
check_eq "the schedule key is private to the workspace's owner" "$(stat -c '%a %u' "$SCALEMIX_HOME/sched.key")" "600 $(id -u)"
sql "UPDATE schedules SET pipeline = '$TMP_WS/evil.lua' WHERE name = 'moved'"
"$SCHED" schedule add reparam --cron "0 7 * * *" "$P" --param budget=1 >/dev/null
sql "UPDATE schedules SET params = '{\"budget\": \"1e12\"}' WHERE name = 'reparam'"
# 3. registered, then the script changed on disk
cp "$P" "$TMP_WS/q.lua"
"$SCHED" schedule add edited --cron "0 7 * * *" "$TMP_WS/q.lua" >/dev/null
echo 'os.execute("id")' >>"$TMP_WS/q.lua"
# 4. registered and untouched
"$SCHED" schedule add good --cron "0 7 * * *" "$P" --param budget=1 >/dev/null
# 5. names that would lead the daemon's log folder out of the workspace: one decided by the daemon, one
#    as a queued backfill fire of a paused schedule (claimed without deciding)
trav="../../../../../../../../../../tmp/sm-trav-$$"
at_exit "rm -rf /tmp/sm-trav-$$ /tmp/sm-trav2-$$"
sql "INSERT INTO schedules (name, cron, tz, pipeline, decided_through) VALUES ('$trav', '0 7 * * *', 'UTC', '$P', '2026-05-01T06:59:00Z')"
sql "INSERT INTO schedules (name, cron, tz, pipeline, paused, decided_through) VALUES ('../../../../../../../../../../tmp/sm-trav2-$$', '0 7 * * *', 'UTC', '$P', true, '2026-05-01T06:59:00Z')"
sql "INSERT INTO schedule_fires (schedule_id, schedule, nominal_time, trigger, state) SELECT schedule_id, name, '2026-04-01T07:00:00Z', 'backfill', 'queued' FROM schedules WHERE name LIKE '%sm-trav2-%'"

start_daemon
D=$DPID
wait_until 30 sql_is "SELECT count(*) FROM schedule_fires WHERE state IN ('succeeded', 'failed')" 9
stop_daemon $D
check_eq "only the registered, untouched schedule ran" "$(grep '^start' "$RUNLOG" | awk '{print $2}' | sort | tr '\n' ' ')" "good "
check "the registered run got its registered parameters" grep -q "^start good .*--param budget=1 $P" "$RUNLOG"
reason() { sql "SELECT state || ': ' || coalesce(reason, '') FROM schedule_fires WHERE schedule = '$1'"; }
check "injected row: refused, no tag" grep -q "^failed: refused: schedule 'injected' has no authentication tag" <<<"$(reason injected)"
check "moved pipeline: refused, tag does not verify" grep -q "^failed: refused: schedule 'moved': its authentication tag does not verify" <<<"$(reason moved)"
check "changed parameters: refused, tag does not verify" grep -q "^failed: refused: schedule 'reparam': its authentication tag does not verify" <<<"$(reason reparam)"
check "changed script: refused, digest changed" grep -q "^failed: refused: schedule 'edited': pipeline script $TMP_WS/q.lua changed since it was registered" <<<"$(reason edited)"
check "traversing name: refused as an invalid name" grep -q "^failed: refused: the schedule name read from the database is not a valid name" <<<"$(reason "$trav")"
check "traversing backfill fire: refused as an invalid name" grep -q "^failed: refused: the schedule name read from the database is not a valid name" <<<"$(sql "SELECT state || ': ' || reason FROM schedule_fires WHERE schedule LIKE '%sm-trav2-%'")"
check "no file or folder made outside the workspace" bash -c "! ls -d /tmp/sm-trav-$$ /tmp/sm-trav2-$$ 2>/dev/null | grep -q ."
check_eq "the daemon's log says so (an error line for each)" "$(grep -c ' error: .*refused: ' "$TMP_WS/daemon.log")" 7
check "a schedule stored before tags existed: refused with the exact command that registers it again" \
  grep -q "^failed: refused: schedule 'legacy' has no authentication tag .*: scalemix schedule add legacy --replace --cron '0 7 \* \* \*' --tz 'UTC' '$P' --param 'budget=2'\$" <<<"$(reason legacy)"
cmd=$(reason legacy | sed 's/.*shows for it: scalemix //')
eval "\"\$SCHED\" $cmd" >/dev/null; check_eq "that command registers it" $? 0
check "the good schedule succeeded" sql_is "SELECT state FROM schedule_fires WHERE schedule = 'good'" succeeded

# Registering again (schedule add --replace) is how a changed script is accepted.
setclock 2026-05-02T06:59:58Z
"$SCHED" schedule add edited --replace --cron "0 7 * * *" "$TMP_WS/q.lua" >/dev/null
start_daemon
D=$DPID
wait_until 15 sql_is "SELECT state FROM schedule_fires WHERE schedule = 'edited' AND nominal_time = '2026-05-02T07:00:00Z'" succeeded
stop_daemon $D
check_eq "re-registered, the changed script runs" "$(sql "SELECT state FROM schedule_fires WHERE schedule = 'edited' AND nominal_time = '2026-05-02T07:00:00Z'")" succeeded
wait_until 5 sql_is "SELECT state FROM schedule_fires WHERE schedule = 'legacy' AND nominal_time = '2026-05-02T07:00:00Z'" succeeded
check "re-registered with the command given, the old schedule runs with its parameters" grep -q "^start legacy 2026-05-02T07:00:00Z .*--param budget=2 $P" "$RUNLOG"

# The daemon checks the digest, then the run reads the script: a script changed in between (here by the runner,
# just before it starts the real `scalemix run`) is refused by the run itself, which runs only the bytes of the
# registered digest (--expect-sha256). Its lineage lists the modules it loaded, which the digest does not cover.
REAL="$TMP_WS/real-runner.sh"
cat >"$REAL" <<EOF
#!/bin/bash
for a; do p=\$a; done # the pipeline is the last argument
[ "\$(basename "\$p")" = swap.lua ] && echo 'io.open("$TMP_WS/swapped-ran", "w"):close()' >>"\$p"
exec "$SCALEMIX" "\$@"
EOF
chmod +x "$REAL"
echo 'require "scalemix"' >"$TMP_WS/swap.lua"
echo 'require "scalemix"' >"$TMP_WS/same.lua"
"$SCHED" schedule add swap --cron "0 7 * * *" "$TMP_WS/swap.lua" >/dev/null
"$SCHED" schedule add same --cron "0 7 * * *" "$TMP_WS/same.lua" >/dev/null
setclock 2026-05-03T06:59:58Z
"$SCHED" daemon --runner "$REAL" --poll 0.3 --lease 1.5 >>"$TMP_WS/daemon.log" 2>&1 &
D=$!
at_exit "kill -9 $D"
wait_until 40 sql_is "SELECT count(*) FROM schedule_fires WHERE schedule IN ('swap', 'same') AND state IN ('succeeded', 'failed')" 2
stop_daemon $D
check "script changed between the daemon's check and the run: the fire failed, with the run's reason" \
  grep -q "^failed: run exited with code 1: scalemix run: refused: script $TMP_WS/swap.lua has sha256 .*, not the $(sql "SELECT script_sha256 FROM schedules WHERE name = 'swap'") it was started for; nothing ran" <<<"$(reason swap)"
check "nothing of the changed script ran" test ! -e "$TMP_WS/swapped-ran"
check_eq "the unchanged script ran" "$(sql "SELECT state FROM schedule_fires WHERE schedule = 'same'")" succeeded
check "its run lists the modules it loaded, with their digests" grep -q "^scalemix $(realpath "$SM_BUILD/../lua/scalemix.lua") $(sha256sum "$SM_BUILD/../lua/scalemix.lua" | cut -c1-64)\$" \
  <<<"$(sql "SELECT m->>'name' || ' ' || (m->>'path') || ' ' || (m->>'sha256') FROM runs, jsonb_array_elements(lua_modules) m WHERE schedule = 'same'")"
finish
