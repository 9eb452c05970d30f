#!/usr/bin/env bash
# The scheduling daemon against the real embedded PostgreSQL, with the test-only fake clock and runner:
# firing with DST and params, overlap policies, catch-up policies, --when-changed, two daemons racing,
# kill -9 and restart, SIGTERM (drain and interrupt).
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/sched_lib.sh"
P="$TMP_WS/p.lua"

# --- 1. a due fire runs the pipeline with trigger, nominal time (DST gap rule) and params ---
setclock 2026-03-08T06:59:00Z
"$SCHED" schedule add dst --cron "30 2 * * *" --tz America/New_York "$P" --param budget=1e9 --param tag=x >/dev/null
start_daemon
D=$DPID
sleep 0.5
check_eq "nothing fires before the nominal time" "$(states dst)" ""
setclock 2026-03-08T07:00:05Z # 02:30 New York does not exist that day: fires at 03:00 EDT = 07:00Z
wait_until 10 sql_is "SELECT state FROM schedule_fires WHERE schedule = 'dst'" succeeded
check_eq "skipped wall time fires at the end of the gap" "$(states dst 'YYYY-MM-DD"T"HH24:MI')" "2026-03-08T07:00=succeeded"
check "runner got trigger, schedule, nominal time, database" grep -q -- "--trigger schedule --schedule dst --nominal-time 2026-03-08T07:00:00Z .*db=set" "$RUNLOG"
check "runner got both params" bash -c "grep '^start dst' '$RUNLOG' | grep -q -- '--param budget=1e9' && grep '^start dst' '$RUNLOG' | grep -q -- '--param tag=x'"
check "runner argv is run OPTIONS... PIPELINE" grep -q -- "start dst 2026-03-08T07:00:00Z [0-9]* run --trigger .* $P db=set" "$RUNLOG"
check_eq "exit code recorded" "$(sql "SELECT exit_code FROM schedule_fires WHERE schedule = 'dst'")" "0"
check "run log file written" test -f "$SCALEMIX_HOME/logs/sched/dst/2026-03-08T07:00:00Z-a1.log"
check "list shows the last outcome" bash -c "'$SCHED' schedule list | grep -q 'dst .*succeeded 2026-03-08T07:00:00Z exit 0'"
stop_daemon $D
check_eq "SIGTERM with nothing running exits 0" "$?" "0"
"$SCHED" schedule remove dst >/dev/null

# --- 2. overlap policies: a fire is due while the previous one still runs ---
setclock 2026-05-01T07:00:30Z
for p in skip queue cancel-old; do
  "$SCHED" schedule add "ov-$p" --cron "* * * * *" --overlap $p "$P" >/dev/null
done
RUN_SLEEP=3 start_daemon --max-runs 4
D=$DPID
setclock 2026-05-01T07:01:00Z
wait_until 10 bash -c "[ \$(grep -c '^start ov-.* 2026-05-01T07:01:00Z' '$RUNLOG') -eq 3 ]"
setclock 2026-05-01T07:02:00Z
wait_until 20 sql_is "SELECT count(*) FROM schedule_fires WHERE schedule LIKE 'ov-%' AND state IN ('queued', 'running')" 0
check_eq "overlap=skip records the new fire as skipped" "$(states ov-skip)" "07:01=succeeded 07:02=skipped"
check "skip reason says why" bash -c "psql '$DSN' -XAtc \"SELECT reason FROM schedule_fires WHERE schedule = 'ov-skip' AND state = 'skipped'\" | grep -q 'overlap=skip'"
check_eq "overlap=queue runs both" "$(states ov-queue)" "07:01=succeeded 07:02=succeeded"
end1=$(grep -n '^end ov-queue 2026-05-01T07:01' "$RUNLOG" | cut -d: -f1)
start2=$(grep -n '^start ov-queue 2026-05-01T07:02' "$RUNLOG" | cut -d: -f1)
check "overlap=queue runs the second after the first ended" test "${end1:-99999}" -lt "${start2:-0}"
check_eq "overlap=cancel-old cancels the running fire" "$(states ov-cancel-old)" "07:01=cancelled 07:02=succeeded"
check "cancel-old interrupted the old run with SIGINT" grep -q '^int ov-cancel-old 2026-05-01T07:01:00Z' "$RUNLOG"
stop_daemon $D
for p in skip queue cancel-old; do "$SCHED" schedule remove "ov-$p" >/dev/null; done

# --- 3. catch-up after downtime: hourly schedules added at 00:30, no daemon until 05:30 ---
setclock 2026-06-01T00:30:00Z
"$SCHED" schedule add cu-none --cron "0 * * * *" --catchup none "$P" >/dev/null
"$SCHED" schedule add cu-latest --cron "0 * * * *" --catchup latest "$P" >/dev/null
"$SCHED" schedule add cu-all --cron "0 * * * *" --catchup all --catchup-window 3h "$P" >/dev/null
setclock 2026-06-01T05:30:00Z
start_daemon
D=$DPID
wait_until 15 sql_is "SELECT count(*) FROM schedule_fires WHERE schedule LIKE 'cu-%' AND state = 'succeeded'" 4
sleep 1
check_eq "catchup=none runs no missed fire" "$(states cu-none)" ""
check_eq "catchup=latest runs only the latest" "$(states cu-latest)" "05:00=succeeded"
check_eq "catchup=all runs those within the window, in order" "$(states cu-all)" "03:00=succeeded 04:00=succeeded 05:00=succeeded"
o3=$(grep -n '^start cu-all 2026-06-01T03:00' "$RUNLOG" | cut -d: -f1); o5=$(grep -n '^start cu-all 2026-06-01T05:00' "$RUNLOG" | cut -d: -f1)
check "catch-up runs oldest first" test "${o3:-99999}" -lt "${o5:-0}"
stop_daemon $D
for s in cu-none cu-latest cu-all; do "$SCHED" schedule remove $s >/dev/null; done

# --- 4. --when-changed: fire only when the inputs' digest changed since the last successful run ---
mkdir -p "$TMP_WS/inputs/sub"
echo one >"$TMP_WS/inputs/sub/a.txt"
setclock 2026-07-01T00:00:30Z
"$SCHED" schedule add wc --cron "* * * * *" --when-changed "$TMP_WS/inputs" "$P" >/dev/null
check_eq "the last --when-changed path before options is the pipeline" "$(sql "SELECT pipeline || ' ' || array_to_string(when_changed, ',') FROM schedules WHERE name = 'wc'")" "$P $TMP_WS/inputs"
start_daemon
D=$DPID
setclock 2026-07-01T00:01:00Z
wait_until 10 sql_is "SELECT count(*) FROM schedule_fires WHERE schedule = 'wc' AND state = 'succeeded'" 1
setclock 2026-07-01T00:02:00Z
wait_until 10 sql_is "SELECT count(*) FROM schedule_fires WHERE schedule = 'wc'" 2
echo two >"$TMP_WS/inputs/sub/a.txt"
setclock 2026-07-01T00:03:00Z
wait_until 10 sql_is "SELECT count(*) FROM schedule_fires WHERE schedule = 'wc' AND state = 'succeeded'" 2
check_eq "unchanged inputs skip, changed inputs run" "$(states wc)" "00:01=succeeded 00:02=skipped 00:03=succeeded"
check "skip reason names the unchanged inputs" bash -c "psql '$DSN' -XAtc \"SELECT reason FROM schedule_fires WHERE schedule = 'wc' AND state = 'skipped'\" | grep -q 'inputs unchanged'"
stop_daemon $D
"$SCHED" schedule remove wc >/dev/null

# --- 5. two daemons on one database never fire a nominal time twice ---
setclock 2026-08-01T00:00:00Z 60 # one real second is one minute
"$SCHED" schedule add race-a --cron "* * * * *" --overlap queue "$P" >/dev/null
"$SCHED" schedule add race-b --cron "*/2 * * * *" "$P" >/dev/null
"$SCHED" schedule add race-c --cron "* * * * *" --overlap queue "$P" >/dev/null
RUN_SLEEP=0.05 start_daemon --max-runs 3
D1=$DPID
RUN_SLEEP=0.05 start_daemon --max-runs 3
D2=$DPID
sleep 8
stop_daemon $D1
stop_daemon $D2
starts=$(grep -c '^start race-' "$RUNLOG")
dups=$(grep '^start race-' "$RUNLOG" | awk '{print $2, $3}' | sort | uniq -d | wc -l)
check "the racing daemons fired (at least 12 runs)" test "$starts" -ge 12
check_eq "no nominal time started twice" "$dups" "0"
check_eq "every run is one succeeded fire row" "$(sql "SELECT count(*) FROM schedule_fires WHERE schedule LIKE 'race-%' AND state = 'succeeded'")" "$starts"
gaps=$(sql "SELECT count(*) FROM (SELECT schedule, nominal_time - lag(nominal_time) OVER (PARTITION BY schedule ORDER BY nominal_time) AS d FROM schedule_fires WHERE schedule LIKE 'race-%') x WHERE d <> CASE WHEN schedule = 'race-b' THEN interval '2 min' ELSE interval '1 min' END")
check_eq "no nominal time lost (each schedule's fires are consecutive)" "$gaps" "0"
echo "info: fires per daemon: $(sql "SELECT string_agg(n::text, ' ') FROM (SELECT count(*) AS n FROM schedule_fires WHERE schedule LIKE 'race-%' GROUP BY daemon_id) x")"
for s in race-a race-b race-c; do "$SCHED" schedule remove $s >/dev/null; done

# --- 6. kill -9 mid-run, restart: the run dies with its daemon; the fire is run again, once ---
setclock 2026-09-01T06:59:58Z
"$SCHED" schedule add crash --cron "0 7 * * *" "$P" >/dev/null
RUN_SLEEP_crash=5 start_daemon
D=$DPID
wait_until 10 grep -q '^start crash 2026-09-01T07:00:00Z' "$RUNLOG"
child=$(grep '^start crash' "$RUNLOG" | head -1 | awk '{print $4}')
kill -9 $D
wait $D 2>/dev/null
wait_until 5 bash -c "! kill -0 $child 2>/dev/null"
check "the run died with its daemon (no orphan)" bash -c "! kill -0 $child 2>/dev/null"
check_eq "the fire is still marked running" "$(sql "SELECT state FROM schedule_fires WHERE schedule = 'crash'")" "running"
RUN_SLEEP_crash=0.1 start_daemon
D=$DPID
wait_until 15 sql_is "SELECT state FROM schedule_fires WHERE schedule = 'crash'" succeeded
check_eq "after restart the fire ran again and succeeded (attempt 2)" "$(sql "SELECT state || ' ' || attempt FROM schedule_fires WHERE schedule = 'crash'")" "succeeded 2"
check_eq "one fire row, one completed run" "$(sql "SELECT count(*) FROM schedule_fires WHERE schedule = 'crash'") $(grep -c '^end crash' "$RUNLOG")" "1 1"
stop_daemon $D
# a lost fire whose run the lineage shows as succeeded is not run again
setclock 2026-09-01T07:04:58Z
"$SCHED" schedule add crash2 --cron "5 7 * * *" "$P" >/dev/null
RUN_SLEEP_crash2=5 start_daemon
D=$DPID
wait_until 10 grep -q '^start crash2' "$RUNLOG"
kill -9 $D
wait $D 2>/dev/null
sql "INSERT INTO runs (run_id, status, trigger, schedule, nominal_time, event_id) VALUES ('r-crash2', 'succeeded', 'schedule', 'crash2', '2026-09-01T07:05:00Z', 'r-crash2/1')"
start_daemon
D=$DPID
wait_until 15 sql_is "SELECT state FROM schedule_fires WHERE schedule = 'crash2'" succeeded
check_eq "lost fire with a succeeded lineage run is resolved without a rerun" "$(sql "SELECT attempt FROM schedule_fires WHERE schedule = 'crash2'") $(grep -c '^start crash2' "$RUNLOG")" "1 1"
check "schedule_fire_runs joins the fire to its run" sql_is "SELECT run_id FROM schedule_fire_runs WHERE schedule = 'crash2'" r-crash2
stop_daemon $D
"$SCHED" schedule remove crash >/dev/null; "$SCHED" schedule remove crash2 >/dev/null

# --- 7. SIGTERM: drain (wait for the run), or interrupt after --drain and queue the fire again ---
setclock 2026-10-01T06:59:59Z
"$SCHED" schedule add term1 --cron "0 7 * * *" "$P" >/dev/null
RUN_SLEEP_term1=2 start_daemon --drain 10
D=$DPID
wait_until 10 grep -q '^start term1' "$RUNLOG"
stop_daemon $D
check_eq "SIGTERM waits for the running run, exit 0" "$? $(states term1)" "0 07:00=succeeded"
check "the drained run completed" grep -q '^end term1' "$RUNLOG"
"$SCHED" schedule remove term1 >/dev/null
setclock 2026-10-01T07:59:59Z
"$SCHED" schedule add term2 --cron "0 8 * * *" "$P" >/dev/null
RUN_SLEEP_term2=30 start_daemon --drain 0.5 --kill-grace 2
D=$DPID
wait_until 10 grep -q '^start term2' "$RUNLOG"
t0=$SECONDS
stop_daemon $D
check "after --drain the run is interrupted and the daemon stops promptly" test $((SECONDS - t0)) -le 6
check "the run got SIGINT" grep -q '^int term2' "$RUNLOG"
check_eq "the interrupted fire is queued again" "$(states term2)" "08:00=queued"
RUN_SLEEP_term2=0.1 start_daemon
D=$DPID
wait_until 10 sql_is "SELECT state FROM schedule_fires WHERE schedule = 'term2'" succeeded
check_eq "the next daemon runs it (attempt 2)" "$(sql "SELECT state || ' ' || attempt FROM schedule_fires WHERE schedule = 'term2'")" "succeeded 2"
stop_daemon $D
check "daemons record their stop" sql_is "SELECT count(*) > 0 FROM schedule_daemons WHERE stopped_at IS NOT NULL" t

# --- 8. the database goes away mid-run: the outcome is recorded once it is back ---
setclock 2026-11-01T06:59:59Z
"$SCHED" schedule add outage --cron "0 7 * * *" "$P" >/dev/null
RUN_SLEEP_outage=2 start_daemon
D=$DPID
wait_until 10 grep -q '^start outage' "$RUNLOG"
"$DBCLI" db stop >/dev/null 2>&1
check "database stopped" bash -c "! psql '$DSN' -XAtc 'select 1' >/dev/null 2>&1"
wait_until 10 grep -q '^end outage' "$RUNLOG"
sleep 1
"$DBCLI" db start >/dev/null 2>&1
wait_until 20 sql_is "SELECT state FROM schedule_fires WHERE schedule = 'outage'" succeeded
check_eq "a run that ended during the outage is recorded afterwards, once" "$(states outage) $(grep -c '^start outage' "$RUNLOG")" "07:00=succeeded 1"
stop_daemon $D
check_eq "the daemon survived the outage and stops cleanly" "$?" "0"

# --- 9. a stalled daemon (SIGSTOP past its lease) loses the fire to another; back, it stops its own run ---
setclock 2026-12-01T06:59:59Z
"$SCHED" schedule add stall --cron "0 7 * * *" "$P" >/dev/null
RUN_SLEEP_stall=30 start_daemon
A=$DPID
wait_until 10 grep -q '^start stall' "$RUNLOG"
kill -STOP $A
RUN_SLEEP_stall=0.2 start_daemon
B=$DPID
wait_until 15 sql_is "SELECT state || ' ' || attempt FROM schedule_fires WHERE schedule = 'stall'" "succeeded 2"
check_eq "another daemon took over the stalled daemon's fire" "$(sql "SELECT state || ' ' || attempt FROM schedule_fires WHERE schedule = 'stall'")" "succeeded 2"
kill -CONT $A
wait_until 10 grep -q '^int stall' "$RUNLOG"
check "the stalled daemon, resumed, interrupted its superseded run" grep -q '^int stall' "$RUNLOG"
sleep 1
check_eq "and left the fire as the other daemon recorded it" "$(sql "SELECT state || ' ' || attempt FROM schedule_fires WHERE schedule = 'stall'")" "succeeded 2"
stop_daemon $A
stop_daemon $B

finish
