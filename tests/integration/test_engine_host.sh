#!/usr/bin/env bash
# The one host API across transports: library code inside a plugin logs through the host table (so
# --verbose/--quiet reach it, on a thread and in a stage process alike), and `stage-exec --spec --out`
# (the file transport of jobs on other nodes) runs a stage from a spec file and appends its host calls.
source "$(dirname "$0")/../lib.sh"
cd "$TMP_WS"
export SCALEMIX_PLUGIN_PATH="$SM_BUILD/tests/plugins"
sm() { "$SCALEMIX" "$@"; }

# --- library code (sm_log in the plugin's own copy of the library) follows the run's log level
for iso in false true; do
  printf 'local sm = require "scalemix"\nsm.stage("sm_test_echo", { value = 3, lib_log = true, isolate = %s })\n' $iso > liblog.lua
  rm -rf "$SCALEMIX_HOME/cache"
  sm run --db none --verbose --log plain liblog.lua 2>err.txt
  grep -q 'sm_test_echo@liblog.lua:2: library debug line (level 3)' err.txt
  check_eq "--verbose shows a library debug line as the stage's (isolate=$iso)" $? 0
  rm -rf "$SCALEMIX_HOME/cache"
  sm run --db none --log plain liblog.lua 2>err.txt
  grep -q 'library debug line' err.txt; check_eq "no library debug line by default (isolate=$iso)" $? 1
  grep -q 'sm_test_echo@liblog.lua:2: library info line' err.txt; check_eq "a library info line by default (isolate=$iso)" $? 0
  rm -rf "$SCALEMIX_HOME/cache"
  sm run --db none --quiet liblog.lua 2>err.txt
  grep -q 'library info line' err.txt; check_eq "--quiet hides a library info line (isolate=$iso)" $? 1
done

# --- the file transport: a spec file in, host calls appended to an out file
plugin="$SM_BUILD/tests/plugins/sm_test_echo.so"
sha=$(sha256sum "$plugin" | cut -c1-64)
mkdir -p "$SCALEMIX_HOME"
cat > spec.json <<JSON
{"plugin_path": "$plugin", "plugin_sha256": "$sha", "params": {"value": 4, "text": "hello", "sleep_ms": 0,
 "commit_twice": false, "crash": false, "fail": false, "gpu_mb": 0, "isolate": false, "lib_log": true, "log_lines": 0, "tags": [],
 "use_scratch": false}, "inputs": {}, "workspace": "$SCALEMIX_HOME", "scratch": "$SCALEMIX_HOME/scratch/x",
 "threads": 1, "log_level": 2}
JSON
sm stage-exec --spec spec.json --out out.jsonl >stdout.txt 2>err.txt; check_eq "stage-exec --spec --out exits 0" $? 0
check_eq "nothing on stdout" "$(wc -c < stdout.txt)" 0
check_eq "the last line is the stage's status" "$(tail -n1 out.jsonl)" '{"t":"done","rc":0,"msg":""}'
check_eq "the output is reported once" "$(grep -c '"t":"output","name":"text"' out.jsonl)" 1
check_eq "info lines go to the file" "$(grep -c 'library info line' out.jsonl)" 1
check_eq "debug lines above log_level do not" "$(grep -c 'library debug line' out.jsonl)" 0
digest=$(python3 -c 'import json,sys; print([json.loads(l) for l in open("out.jsonl") if "\"output\"" in l][0]["digest"])')
check "the output is committed to the shared store" test -f "$SCALEMIX_HOME/objects/${digest:0:2}/$digest"
sm stage-exec --spec spec.json --out out.jsonl 2>/dev/null
check_eq "a second run appends, never rewrites" "$(grep -c '"t":"done"' out.jsonl)" 2
sed 's/"value": 4/"value": 4, "fail": true/; s/"fail": false, //' spec.json > failspec.json
sm stage-exec --spec failspec.json --out fail.jsonl 2>/dev/null
check "a failed stage reports its code and message" grep -q '"t":"done","rc":-[0-9]*,"msg":"asked to fail' fail.jsonl
echo '{' > bad.json
sm stage-exec --spec bad.json --out bad.jsonl 2>/dev/null
check "a broken spec is a failed stage, said in the out file" grep -q '"msg":"stage-exec: invalid stage spec in bad.json' bad.jsonl
sm stage-exec --spec spec.json 2>/dev/null; check_eq "--spec without --out exits 2" $? 2

# --- a stage names its executor; an unknown one is an error naming those the run has
printf 'local sm = require "scalemix"\nsm.stage("sm_test_echo", { value = 1 }, nil, { executor = "nowhere" })\n' > nowhere.lua
sm run --db none -q nowhere.lua 2>err.txt; check_eq "an unknown executor is a usage error (exit 2)" $? 2
check "the error names the executors known" grep -q "unknown executor 'nowhere' (this run has: local, thread, process, slurm)" err.txt
printf 'local sm = require "scalemix"\nprint(sm.stage("sm_test_echo", { value = 5 }, nil, { executor = "process" }).result.double)\n' > proc.lua
check_eq "a stage may name a built-in executor" "$(sm run --db none -q proc.lua)" 10

# --- events: stage_start says why (the plan's words) and with what; stage_log per line, capped
rm -rf "$SCALEMIX_HOME"
printf 'local sm = require "scalemix"\nsm.stage("sm_test_echo", { value = params.v, log_lines = params.n, isolate = params.iso }, nil, { name = "e" })\n' > ev.lua
sm run --db none -q --param v=1 --param n=3 --param iso=false --events ev1.jsonl ev.lua 2>/dev/null
reason=$(sm plan --db none --param v=2 --param n=2100 --param iso=true ev.lua | sed -n 's/^run  *e  *//p')
case "$reason" in *"parameter 'value' changed (1 -> 2)"*) r=0;; *) r=1;; esac; check_eq "plan says why ($reason)" $r 0
sm run --db none -q --param v=2 --param n=2100 --param iso=true --events ev2.jsonl ev.lua 2>/dev/null
sm run --db none -q --param v=2 --param n=2100 --param iso=true --events ev3.jsonl ev.lua 2>/dev/null
python3 - "$reason" <<'PY'
import json, sys
def load(p): return [json.loads(l) for l in open(p)]
e1, e2, e3 = load("ev1.jsonl"), load("ev2.jsonl"), load("ev3.jsonl")
def one(evs, t): return [e for e in evs if e["type"] == t]
s1, s2, s3 = one(e1, "stage_start")[0], one(e2, "stage_start")[0], one(e3, "stage_start")[0]
ok = []
ok.append(s1["reason"] == "no previous run of this stage")
ok.append(s1["resources"] == {"threads": 1, "gpu": 0, "device_memory_bytes": 0, "isolate": 0, "executor": "local"})
ok.append(s2["reason"] == sys.argv[1] and s2["resources"]["isolate"] == 1)
ok.append(s3["reused"] and s3["resources"] is None and s3["reason"].startswith("cached result of stage run "))
l1 = one(e1, "stage_log")
ok.append([x["message"] for x in l1] == ["line 0", "line 1", "line 2"] and all(x["level"] == "info" and x["stage_run_id"] == s1["stage_run_id"] and x["at"] for x in l1))
l2 = one(e2, "stage_log")
ok.append(len(l2) == 2001 and l2[-1]["level"] == "warn" and "100 more log lines" in l2[-1]["message"])
end2 = [i for i, e in enumerate(e2) if e["type"] == "stage_end"][0]
ok.append(e2.index(l2[-1]) < end2)
print(ok)
sys.exit(0 if all(ok) else 1)
PY
check_eq "stage_start carries reason and resources; stage_log per line, 2,000 at most, then one that says so" $? 0
finish
