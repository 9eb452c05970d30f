#!/usr/bin/env bash
# `scalemix schedule`: next (no database), add/list/pause/resume/remove/fires, errors that name the bad
# field, backfill (dry run, failures, re-runs), and sm_sched_declare, against the real embedded PostgreSQL.
source "$(dirname "$0")/../lib.sh"
source "$(dirname "$0")/sched_lib.sh"
P="$TMP_WS/p.lua"

# --- next ---
got=$("$SCHED" schedule next --cron "30 1 * * *" --tz America/New_York --from 2026-10-31T12:00:00Z --count 3)
check_eq "next: repeated wall time fires once, at its first occurrence" "$(echo $got)" "2026-11-01T05:30:00Z 2026-11-02T06:30:00Z 2026-11-03T06:30:00Z"
got=$("$SCHED" schedule next --cron "15 2 * * *" --tz Europe/Berlin --from 2026-03-28T00:00:00Z --count 3)
check_eq "next: skipped wall time fires at the end of the gap" "$(echo $got)" "2026-03-28T01:15:00Z 2026-03-29T01:00:00Z 2026-03-30T00:15:00Z"
check_eq "next: --from is inclusive" "$("$SCHED" schedule next --cron @daily --from 2026-01-01T00:00:00Z --count 1)" "2026-01-01T00:00:00Z"
setclock 2026-02-27T10:00:00Z
check_eq "next: default --from is the (fake) clock's now" "$("$SCHED" schedule next --cron '0 0 29 2 *' --count 1)" "2028-02-29T00:00:00Z"
check_eq "next: --count default 5" "$("$SCHED" schedule next --cron @hourly | wc -l)" "5"
err=$("$SCHED" schedule next --cron "0 0 32 * *" 2>&1); rc=$?
check_eq "next: invalid cron exits 2" "$rc" "2"
check "next: the error names the field" bash -c "echo \"$err\" | grep -q \"field 3 (day of month) '32': out of range 1-31\""
err=$("$SCHED" schedule next --cron "@hourly" --tz Moon/Crater 2>&1); rc=$?
check "next: unknown zone is a usage error" test "$rc" -eq 2 -a -n "$(echo "$err" | grep "time zone 'Moon/Crater'")"
t0=$(date +%s%N)
"$SCHED" schedule next --cron @hourly --tz America/New_York --from 2026-01-01T05:00:00Z --count 8760 >"$TMP_WS/year"
ms=$((($(date +%s%N) - t0) / 1000000))
check_eq "next: 8760 distinct @hourly times" "$(sort -u "$TMP_WS/year" | wc -l)" "8760"
check_eq "next: a New York year of @hourly has 8759 fires (the DST gap hour is one)" "$(tail -n 2 "$TMP_WS/year" | tr '\n' ' ')" "2027-01-01T04:00:00Z 2027-01-01T05:00:00Z "
echo "info: 8760 @hourly next times in ${ms} ms (process included)"

# --- add / list / pause / resume / remove ---
setclock 2026-04-01T12:00:00Z
check "add" "$SCHED" schedule add nightly --cron "0 2 * * *" --tz Europe/Berlin --overlap queue --catchup all "$P" --param k=v
err=$("$SCHED" schedule add nightly --cron "0 3 * * *" "$P" 2>&1); rc=$?
check "add: a duplicate name is refused" test $rc -ne 0 -a -n "$(echo "$err" | grep 'exists already')"
check "add --replace updates" "$SCHED" schedule add nightly --cron "0 3 * * *" --tz Europe/Berlin --replace "$P"
check_eq "replace stored the new cron" "$(sql "SELECT cron || ' ' || overlap FROM schedules WHERE name = 'nightly'")" "0 3 * * * skip"
err=$("$SCHED" schedule add bad --cron "61 * * * *" "$P" 2>&1); rc=$?
check "add: a bad cron names field 1" test $rc -eq 2 -a -n "$(echo "$err" | grep "field 1 (minute) '61'")"
err=$("$SCHED" schedule add bad --cron "@daily" --overlap never "$P" 2>&1); rc=$?
check "add: a bad overlap policy is a usage error" test $rc -eq 2 -a -n "$(echo "$err" | grep "overlap 'never'")"
err=$("$SCHED" schedule add bad --cron "@daily" 2>&1); rc=$?
check_eq "add: pipeline required" "$rc" "2"
list=$("$SCHED" schedule list)
check "list: next fire in UTC (03:00 Berlin = 01:00Z)" bash -c "echo '$list' | grep -q '^nightly .*active .*2026-04-02T01:00:00Z'"
check "list --json is JSON with the schedule" bash -c "'$SCHED' schedule list --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[0][\"name\"]==\"nightly\" and d[0][\"next_fire\"]==\"2026-04-02T01:00:00Z\"'"
check "pause" "$SCHED" schedule pause nightly
check "list shows paused" bash -c "'$SCHED' schedule list | grep -q '^nightly .*paused'"
setclock 2026-04-05T12:00:00Z
check "resume" "$SCHED" schedule resume nightly
check_eq "resume skips the paused time" "$(sql "SELECT decided_through = '2026-04-05T12:00:00Z' FROM schedules WHERE name = 'nightly'")" "t"
err=$("$SCHED" schedule pause nosuch 2>&1); rc=$?
check "pause: unknown name fails" test $rc -eq 1 -a -n "$(echo "$err" | grep "no schedule named 'nosuch'")"
check "remove" "$SCHED" schedule remove nightly
check_eq "removed" "$(sql "SELECT count(*) FROM schedules WHERE name = 'nightly'")" "0"

# --- backfill ---
setclock 2026-04-10T00:00:00Z
"$SCHED" schedule add bf --cron "0 6 * * *" --tz Asia/Kolkata --paused "$P" >/dev/null
out=$("$SCHED" schedule backfill bf --from 2026-01-01T00:00:00Z --to 2026-01-03T12:00:00Z --dry-run)
check_eq "backfill --dry-run lists the nominal times" "$(echo $out)" "2026-01-01T00:30:00Z would run 2026-01-02T00:30:00Z would run 2026-01-03T00:30:00Z would run"
check_eq "dry run writes nothing" "$(sql "SELECT count(*) FROM schedule_fires WHERE schedule = 'bf'")" "0"
out=$(RUN_FAIL_NOMINAL=2026-01-02T00:30:00Z "$SCHED" schedule backfill bf --from 2026-01-01T00:00:00Z --to 2026-01-03T12:00:00Z --runner "$RUNNER" 2>"$TMP_WS/bf.log"); rc=$?
check_eq "backfill exits 1 when a run failed" "$rc" "1"
check "backfill reports each fire" bash -c "echo '$out' | grep -q '2026-01-02T00:30:00Z failed exit 3' && echo '$out' | grep -q '2026-01-01T00:30:00Z succeeded exit 0'"
check_eq "backfill runs carry --trigger backfill" "$(grep '^start bf ' "$RUNLOG" | grep -c -- '--trigger backfill')" "3"
out=$("$SCHED" schedule backfill bf --from 2026-01-01T00:00:00Z --to 2026-01-03T12:00:00Z --dry-run)
check "dry run after: succeeded ones are left alone, the failed one would run again" bash -c "echo '$out' | grep -q '01-01T00:30:00Z left alone (succeeded)' && echo '$out' | grep -q '01-02T00:30:00Z would run again (was failed)'"
"$SCHED" schedule backfill bf --from 2026-01-01T00:00:00Z --to 2026-01-03T12:00:00Z --runner "$RUNNER" >/dev/null 2>>"$TMP_WS/bf.log"
check_eq "backfill again exits 0, re-running only the failed one" "$? $(grep -c '^start bf 2026-01-01' "$RUNLOG") $(grep -c '^start bf 2026-01-02' "$RUNLOG")" "0 1 2"
check_eq "fires shows the history" "$("$SCHED" schedule fires bf | awk '{print $1, $2, $3}' | tr '\n' ' ')" "2026-01-01T00:30:00Z backfill succeeded 2026-01-02T00:30:00Z backfill succeeded 2026-01-03T00:30:00Z backfill succeeded "
err=$("$SCHED" schedule backfill bf --from 2026-01-03 --to 2026-01-01 2>&1); rc=$?
check_eq "backfill: --to before --from is a usage error" "$rc" "2"
out=$("$SCHED" schedule backfill bf --from 2026-02-01T00:00:00Z --to 2026-02-01T12:00:00Z --enqueue)
check_eq "backfill --enqueue leaves the fire queued for a daemon" "$(sql "SELECT state FROM schedule_fires WHERE schedule = 'bf' AND nominal_time = '2026-02-01T00:30:00Z'")" "queued"

# --- sm_sched_declare (the C entry point scripts use) ---
UNIT="$SM_BUILD/tests/test_sched_spec"
if [ -x "$UNIT" ]; then
  out=$(SCALEMIX_DB="$DSN" "$UNIT" 2>&1)
  check "sm_sched_declare upserts by name against the database" bash -c "echo '$out' | grep -q '^PASS: declare_upserts_by_name'"
else
  fail "sm_sched_declare" "$UNIT not built"
fi

finish
