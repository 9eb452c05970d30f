#!/usr/bin/env bash
# fault_injection.sh - a pipeline run under faults, with the embedded lineage database, and an account of
# what was lost. Not part of `make test` (it takes about a minute and mounts a tmpfs, as root); run it with
#   BUILD=build bash tests/fault/fault_injection.sh
# Faults: SIGKILL at random moments, bit flips in stored objects, concurrent runs of the same pipeline, the
# database stopped mid-run, and a full disk under the journal. Every run writes its events to a file as well
# (--events); at the end the database is compared with those files, the results with a clean run's, and the
# store with its digests. It prints one line per figure and "lost: N" (the goal is 0) and exits 1 if N > 0.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SM="$ROOT/${BUILD:-build}/scalemix"
export SCALEMIX_PLUGIN_PATH="$ROOT/${BUILD:-build}/tests/plugins"
T=$(mktemp -d /tmp/sm-fault.XXXXXX)
chmod 755 "$T"
export SCALEMIX_HOME="$T/ws"
cleanup() { umount "$SCALEMIX_HOME/journal" 2>/dev/null; "$SM" db stop >/dev/null 2>&1; rm -rf "$T"; }
trap cleanup EXIT
cd "$T"
sql() { "$SM" sql -At -c "$1" 2>/dev/null; }
cat > pipe.lua <<'LUA'
local sm = require "scalemix"
local v, prev = 1, nil
for i = 1, 6 do
  local s = sm.stage("sm_test_echo", { value = v, sleep_ms = 150, use_scratch = true, text = "step " .. i .. " " .. v },
                     prev and { prev = prev } or {}, { name = "step" .. i })
  v, prev = s.result.double, s.outputs.text
end
print("final", v, prev.digest)
LUA
run() { # tag (unique), then extra args: one run with its events in ev.<tag>.jsonl
  local tag=$1; shift
  "$SM" run -q --events "ev.$tag.jsonl" pipe.lua "$@"
}
want=$(SCALEMIX_HOME="$T/clean" "$SM" run --db none -q pipe.lua)
"$SM" db start >/dev/null 2>&1

# 1. SIGKILL at random moments (10 runs), then a clean finish
kills=0
for i in $(seq 10); do
  [ $((i % 3)) -eq 0 ] || rm -rf "$SCALEMIX_HOME/cache" # mostly from scratch, sometimes resuming
  "$SM" run -q --events "ev.kill$i.jsonl" pipe.lua >/dev/null 2>&1 & pid=$! # not through run(): $! must be scalemix
  sleep "0.$((RANDOM % 9 + 1))"
  kill -KILL $pid 2>/dev/null && kills=$((kills + 1)); wait $pid 2>/dev/null
done
got=$(run after-kills 2>/dev/null)
echo "sigkill: $kills runs killed; the next run's result identical: $([ "$got" = "$want" ] && echo yes || echo NO)"
bad_results=$([ "$got" = "$want" ] && echo 0 || echo 1)

# 2. bit flips in 5 stored objects (same size), then a run
flipped=0
for f in $(find "$SCALEMIX_HOME/objects" -type f | shuf -n 5 --random-source=<(yes)); do
  python3 - "$f" <<'PY' && flipped=$((flipped + 1))
import os, sys
p = sys.argv[1]; os.chmod(p, 0o644)
b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 0x01; open(p, "wb").write(bytes(b))
PY
done
got=$(run after-flips 2>flips.err)
set_aside=$(grep -c "was corrupt" flips.err)
"$SM" verify >verify.out; vrc=$?
corrupt_left=$(sed -n 's/.*: \([0-9]*\) corrupt.*/\1/p' verify.out)
echo "bit rot: $flipped objects flipped; $set_aside detected on reuse; result identical: $([ "$got" = "$want" ] && echo yes || echo NO);" \
     "corrupt objects left (scalemix verify): $corrupt_left"
[ "$got" = "$want" ] || bad_results=$((bad_results + 1))
"$SM" verify --repair >/dev/null

# 3. three concurrent runs of the same pipeline on a fresh workspace key (new parameter set)
rm -rf "$SCALEMIX_HOME/cache"
pids=()
for i in 1 2 3; do "$SM" run -q --events "ev.concurrent$i.jsonl" pipe.lua >conc.$i.out 2>conc.$i.err & pids+=($!); done
crc=0; for p in "${pids[@]}"; do wait "$p" || crc=$((crc + 1)); done
same=0; for i in 1 2 3; do [ "$(cat conc.$i.out)" = "$want" ] && same=$((same + 1)); done
echo "concurrent: 3 runs, $crc failed, $same with the clean result, $(cat conc.*.err | grep -c 'is live') saw a live scratch folder"
bad_results=$((bad_results + crc + 3 - same))

# 4. the database stopped mid-run for 2 s
rm -rf "$SCALEMIX_HOME/cache"
"$SM" run -q --events ev.outage.jsonl pipe.lua >outage.out 2>outage.err & pid=$!
sleep 0.5; "$SM" db stop >/dev/null 2>&1; sleep 2; "$SM" db start >/dev/null 2>&1
wait $pid; orc=$?
echo "db outage: run exit $orc, result identical: $([ "$(cat outage.out)" = "$want" ] && echo yes || echo NO)"
[ $orc -eq 0 ] && [ "$(cat outage.out)" = "$want" ] || bad_results=$((bad_results + 1))

# 5. a full disk under the journal for a whole run (the database is up)
rm -rf "$SCALEMIX_HOME/cache"
mount -t tmpfs -o size=1m tmpfs "$SCALEMIX_HOME/journal" && { dd if=/dev/zero of="$SCALEMIX_HOME/journal/fill" bs=4k 2>/dev/null; true; }
run disk-full >full.out 2>full.err; frc=$?
echo "journal disk full: run exit $frc; the journal failure reported: $(grep -c 'cannot write journal' full.err);" \
     "claimed kept in the journal: $(grep -c 'stay in' full.err); reported lost: $(grep -c 'lineage is lost' full.err)"
cp -a "$SCALEMIX_HOME/journal/." "$T/jcopy" 2>/dev/null; rm -f "$T/jcopy/fill"
umount "$SCALEMIX_HOME/journal"; cp -a "$T/jcopy/." "$SCALEMIX_HOME/journal/" 2>/dev/null

# the account: every event file against the database (history drains journals and marks abandoned runs)
"$SM" history -n 1000 >/dev/null 2>&1
lost=0 lost_killed=0
for f in ev.*.jsonl; do
  read -r rid n_stage n_metric end_status < <(python3 - "$f" <<'PY'
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rid = evs[0]["run_id"] if evs else "-"
st = sum(e["type"] == "stage_start" for e in evs)
mt = sum(e["type"] == "metric" for e in evs)
end = [e["status"] for e in evs if e["type"] == "run_end"]
print(rid, st, mt, end[0] if end else "-")
PY
)
  [ "$rid" = "-" ] && continue
  db=$(sql "select r.status, (select count(*) from stage_runs s where s.run_id = r.run_id),
                   (select count(*) from metrics m join stage_runs s using (stage_run_id) where s.run_id = r.run_id)
              from runs r where r.run_id = '$rid'" | tr '|' ' ')
  read -r db_status db_stages db_metrics <<<"${db:-none 0 0}"
  miss=$(( (n_stage > db_stages ? n_stage - db_stages : 0) + (n_metric > db_metrics ? n_metric - db_metrics : 0) ))
  [ "$db_status" = none ] && miss=$((miss + 1))
  if [ "$end_status" != "-" ] && [ "$db_status" != "$end_status" ]; then miss=$((miss + 1)); fi
  if [ "$end_status" = "-" ] && [ "$db_status" != abandoned ]; then miss=$((miss + 1)); fi
  [ $miss -gt 0 ] && echo "  $f: run $rid events $n_stage stages/$n_metric metrics end $end_status; database $db_status $db_stages/$db_metrics"
  case "$f" in ev.kill*) lost_killed=$((lost_killed + miss)) ;; *) lost=$((lost + miss)) ;; esac
done
runs=$(ls ev.*.jsonl | wc -l)
echo "runs: $runs; in the database: $(sql "select count(*) from runs"); running: $(sql "select count(*) from runs where status = 'running'");" \
     "abandoned: $(sql "select count(*) from runs where status = 'abandoned'")"
echo "statuses: $(sql "select string_agg(status || ' ' || n, ', ') from (select status, count(*) n from runs group by status order by status) x")"
"$SM" verify >/dev/null; echo "store after all: scalemix verify exit $?"
echo "wrong results: $bad_results"
echo "lost in SIGKILLed runs: $lost_killed (events emitted in the moment before the kill, not yet journaled)"
echo "lost: $lost (lineage rows missing or a wrong status, runs not killed)"
[ $lost -eq 0 ] && [ $bad_results -eq 0 ]
