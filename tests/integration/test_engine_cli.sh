#!/usr/bin/env bash
# The engine end to end through its CLI: usage and exit codes, run / reuse / plan, errors that name the
# script's line, concurrency, Ctrl-C cancellation, JSON logs, and SIGKILL at any moment followed by a resume.
source "$(dirname "$0")/../lib.sh"
export SCALEMIX_PLUGIN_PATH="$SM_BUILD/tests/plugins"
cd "$TMP_WS"
sm() { "$SCALEMIX" "$@"; }

# --- usage and exit codes
sm --help >/dev/null; check_eq "help exits 0" $? 0
sm version | grep -q '^scalemix [0-9]'; check_eq "version prints" $? 0
sm frobnicate 2>/dev/null; check_eq "unknown command exits 2" $? 2
sm run 2>/dev/null; check_eq "run without script exits 2" $? 2
sm run --db none missing.lua 2>err.txt; check_eq "missing script exits 2" $? 2
grep -q "cannot read script missing.lua" err.txt; check_eq "missing script message" $? 0
sm run --bogus x.lua 2>/dev/null; check_eq "unknown option exits 2" $? 2
sm help run | grep -q -- '--param'; check_eq "help run shows options" $? 0
sm help sm_test_echo | grep -q 'sleep_ms'; check_eq "help STAGE lists parameters" $? 0

# --- run, reuse, plan
cat > p.lua <<'LUA'
local sm = require "scalemix"
local a = sm.stage("sm_test_echo", { value = params.v or 1, text = "hello" })
local b = sm.stage("sm_test_echo", { value = a.result.double }, { t = a.outputs.text })
print("result", b.result.double, b.result.input_bytes, a:f64("triple").n, a:f64("triple")[3])
LUA
out=$(sm run --db none -q --param v=3 p.lua); check_eq "run computes" "$out" "result	12	5	3	9"
out=$(sm run p.lua --db none --param v=3 2>err.txt); check_eq "second run same result (options after the script)" "$out" "result	12	5	3	9"
check_eq "second run reuses both stages" "$(grep -c 'reused (cached' err.txt)" 2
out=$(sm plan --param v=4 p.lua | head -1)
[[ "$out" == run*"sm_test_echo@p.lua:2"*"parameter 'value' changed (3 -> 4)"* ]]; check_eq "plan says which parameter changed" $? 0
sm plan --param v=3 p.lua | grep -c '^reuse' | grep -q 2; check_eq "plan marks cached stages reuse" $? 0

# --- errors name file and line
printf 'local sm = require "scalemix"\n\nsm.stage("sm_test_echo", { value = "x" })\n' > bad.lua
sm run --db none -q bad.lua 2>err.txt; check_eq "bad parameter type exits 2 (a usage error)" $? 2
grep -q "bad.lua:3: stage sm_test_echo: parameter 'value' must be a number" err.txt; check_eq "bad parameter names line" $? 0
printf 'local sm = require "scalemix"\nsm.stage("sm_test_echo", { value = 1, fail = true })\n' > fail.lua
sm run --db none -q fail.lua 2>err.txt; check_eq "failed stage exits 1" $? 1
grep -q "fail.lua:2: stage sm_test_echo@fail.lua:2 failed: asked to fail" err.txt; check_eq "failed stage names line and stage" $? 0
printf 'local sm = require "scalemix"\nlocal x = = 1\n' > syntax.lua
sm run --db none -q syntax.lua 2>err.txt; check_eq "syntax error exits 1" $? 1
grep -q "syntax.lua:2:" err.txt; check_eq "syntax error names line" $? 0
printf 'local sm = require "scalemix"\nsm.stage("no_such_stage", {})\n' > noplugin.lua
sm run --db none -q noplugin.lua 2>err.txt; check_eq "missing plugin exits 1" $? 1
grep -q "noplugin.lua:2: no plugin for stage 'no_such_stage'" err.txt; check_eq "missing plugin message" $? 0
SCALEMIX_HOME=/proc/forbidden sm run --db none -q p.lua 2>err.txt; check_eq "unusable workspace exits 1" $? 1
grep -q "SCALEMIX_HOME" err.txt; check_eq "unusable workspace says what to do" $? 0

# --- two stages run concurrently
cat > par.lua <<'LUA'
local sm = require "scalemix"
sm.all { sm.async("sm_test_echo", { value = 1, sleep_ms = 400 }), sm.async("sm_test_echo", { value = 2, sleep_ms = 400 }) }
LUA
start=$(date +%s.%N)
sm run --db none -q --parallel 2 --events ev.jsonl par.lua; check_eq "parallel run succeeds" $? 0
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
python3 - ev.jsonl <<'PY'; check_eq "two stage_start events precede the first stage_end" $? 0
import json, sys
types = [json.loads(l)["type"] for l in open(sys.argv[1])]
stages = [t for t in types if t in ("stage_start", "stage_end")]
sys.exit(0 if stages[:2] == ["stage_start", "stage_start"] else 1)
PY
python3 - ev.jsonl <<'PY'; check_eq "events carry run_id, increasing seq and event_id" $? 0
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
ok = all(e["event_id"] == "%s/%d" % (e["run_id"], e["seq"]) for e in evs)
ok = ok and [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
ok = ok and evs[0]["type"] == "run_start" and evs[-1]["type"] == "run_end" and evs[-1]["status"] == "succeeded"
sys.exit(0 if ok else 1)
PY
sm run --db none -q --parallel 1 --events ev1.jsonl par.lua
python3 - ev1.jsonl <<'PY'; check_eq "--parallel 1 serialises stages" $? 0
import json, sys
types = [json.loads(l)["type"] for l in open(sys.argv[1]) if json.loads(l)["type"] in ("stage_start", "stage_end")]
sys.exit(0 if types == ["stage_start", "stage_end", "stage_start", "stage_end"] else 1)
PY

# --- Ctrl-C cancels cooperatively
printf 'local sm = require "scalemix"\nsm.stage("sm_test_echo", { value = 7, sleep_ms = 20000 })\n' > long.lua
"$SCALEMIX" run --db none -q --events evc.jsonl long.lua 2>err.txt &
pid=$!
sleep 0.7
kill -INT $pid
wait $pid; rc=$?
check_eq "Ctrl-C exits 1" $rc 1
grep -q "cancelled" err.txt; check_eq "Ctrl-C says cancelled" $? 0
python3 - evc.jsonl <<'PY'; check_eq "cancelled run and stage are recorded" $? 0
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
end = [e for e in evs if e["type"] == "run_end"][0]
st = [e for e in evs if e["type"] == "stage_end"][0]
state = [e for e in evs if e["type"] == "run_state"]
sys.exit(0 if end["status"] == "cancelled" and st["status"] == "cancelled" and state and state[0]["state"] == "cancelling" else 1)
PY

# --- on a terminal: one live line per running stage with progress, rate and ETA (tmux is the terminal)
if command -v tmux >/dev/null; then
  printf 'local sm = require "scalemix"\nsm.all { sm.async("sm_test_echo", { value = 1, sleep_ms = 4000 }), sm.async("sm_test_echo", { value = 2, sleep_ms = 4000 }) }\n' > live.lua
  sock="$TMP_WS/tmux.sock"
  tmux -S "$sock" new-session -d -x 120 -y 20 "cd '$TMP_WS' && SCALEMIX_HOME='$SCALEMIX_HOME' SCALEMIX_PLUGIN_PATH='$SCALEMIX_PLUGIN_PATH' TERM=xterm '$SCALEMIX' run --db none live.lua; sleep 30"
  at_exit "tmux -S '$sock' kill-server"
  sleep 2.5
  screen=$(tmux -S "$sock" capture-pane -p)
  n=$(echo "$screen" | grep -cE '^  sm_test_echo@live.lua:2(#2)? +[0-9.]+% [0-9.k]+/4000 ms .*ETA 0:0[0-9]')
  check_eq "terminal shows a live progress line per running stage" "$n" 2
  sleep 3
  screen=$(tmux -S "$sock" capture-pane -p)
  echo "$screen" | grep -q "succeeded" && ! echo "$screen" | grep -q "ETA"; check_eq "live lines are gone when the run ends" $? 0
else
  skip "terminal live lines" "tmux is not installed"
fi

# --- JSON logs
sm run --db none --log json --param v=5 p.lua >/dev/null 2>log.jsonl
python3 -c "import json,sys; [json.loads(l) for l in open('log.jsonl')]" && [ -s log.jsonl ]; check_eq "--log json lines are JSON" $? 0

# --- a stage that asks for isolation runs in a child process: same results; a crash there is contained
cat > iso.lua <<'LUA'
local sm = require "scalemix"
local a = sm.stage("sm_test_echo", { value = 4, text = "iso", isolate = true })
local b = sm.stage("sm_test_echo", { value = 1, isolate = true }, { t = a.outputs.text })
print("iso", a.result.double, a:f64("triple")[3], a.outputs.text.kind, b.result.input_bytes)
local ok, err = pcall(sm.stage, "sm_test_echo", { value = 9, crash = true, isolate = true })
print("crash", ok, (tostring(err):gsub("pid %d+", "pid N")))
LUA
out=$(sm run --db none -q --events evi.jsonl iso.lua 2>/dev/null)
check_eq "isolated stages return results, arrays and outputs" "$(echo "$out" | head -1)" "iso	8	12	text	3"
# (a SIGSEGV, or SIGABRT when AddressSanitizer catches it first)
[[ "$(echo "$out" | tail -1)" =~ ^crash.false.iso\.lua:5:\ stage\ sm_test_echo@iso\.lua:5\ failed:\ the\ stage\'s\ process\ \(pid\ N\)\ was\ killed\ by\ signal\ (11|6) ]]
check_eq "a crash in an isolated stage fails that stage only" $? 0
python3 - evi.jsonl <<'PY'; check_eq "isolated stages report metrics and artifacts as lineage events" $? 0
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
metrics = [e for e in evs if e["type"] == "metric"]
outs = [e for e in evs if e["type"] == "io" and e["direction"] == "out"]
sys.exit(0 if len(metrics) == 4 and len(outs) == 3 else 1)
PY
printf 'local sm = require "scalemix"\nsm.stage("sm_test_echo", { value = 7, sleep_ms = 20000, isolate = true })\n' > isolong.lua
"$SCALEMIX" run --db none -q isolong.lua 2>err.txt &
pid=$!
sleep 1
kill -INT $pid
wait $pid; check_eq "Ctrl-C cancels an isolated stage" $? 1
grep -q "cancelled" err.txt; check_eq "the isolated stage reports cancelled" $? 0

# --- an output committed twice is refused, in a thread and in a child process alike
for iso in false true; do
  printf 'local sm = require "scalemix"\nsm.stage("sm_test_echo", { value = 1, text = "x", commit_twice = true, isolate = %s })\n' $iso > twice.lua
  sm run --db none -q twice.lua 2>err.txt; check_eq "second commit of an output fails the stage (isolate=$iso)" $? 1
  grep -q "second commit of text refused" err.txt; check_eq "the host refused the second commit (isolate=$iso)" $? 0
done

# --- GPU stages are admitted by device memory (SCALEMIX_GPU_MEMORY stands in for the device's free memory)
cat > gpu.lua <<'LUA'
local sm = require "scalemix"
sm.all { sm.async("sm_test_echo", { value = 1, sleep_ms = 400, gpu_mb = tonumber(params.mb) }),
         sm.async("sm_test_echo", { value = 2, sleep_ms = 400, gpu_mb = tonumber(params.mb) }) }
LUA
stage_order() { python3 -c "import json,sys; print(' '.join(json.loads(l)['type'] for l in open(sys.argv[1]) if json.loads(l)['type'] in ('stage_start','stage_end')))" "$1"; }
SCALEMIX_GPU_MEMORY=$((1000 << 20)) sm run --db none -q --parallel 2 --param mb=600 --events g1.jsonl gpu.lua
check_eq "two GPU stages that do not fit together run one after the other" "$(stage_order g1.jsonl)" "stage_start stage_end stage_start stage_end"
SCALEMIX_GPU_MEMORY=$((1000 << 20)) sm run --db none -q --parallel 2 --param mb=400 --events g2.jsonl gpu.lua
check_eq "two GPU stages that fit share the device" "$(stage_order g2.jsonl)" "stage_start stage_start stage_end stage_end"
check_eq "plan shows each GPU stage's device memory" "$(sm plan --db none --param mb=300 gpu.lua | grep -c '\[GPU, 0.29 GiB of device memory\]$')" 2
check_eq "plan shows nothing extra for a cached stage" "$(sm plan --db none --param mb=400 gpu.lua | grep -c 'GiB')" 0

# --- --gpu picks the device for the run and its stage processes (through CUDA_VISIBLE_DEVICES)
printf 'print("visible", os.getenv("CUDA_VISIBLE_DEVICES"))\n' > vis.lua
out=$(CUDA_VISIBLE_DEVICES=0 sm run --db none -q --gpu 3 vis.lua); check_eq "--gpu sets CUDA_VISIBLE_DEVICES" "$out" "visible	3"
out=$(sm run --db none -q --gpu GPU-8f3a1c2e-0000-4b7d-9a1e-123456789abc vis.lua)
check_eq "--gpu takes a UUID" "$out" "visible	GPU-8f3a1c2e-0000-4b7d-9a1e-123456789abc"
sm run --db none -q --gpu 0,1 vis.lua 2>err.txt; check_eq "--gpu with a list exits 2" $? 2
grep -q -- "--gpu wants one GPU" err.txt; check_eq "--gpu says what it wants" $? 0

# --- SIGKILL at any moment, then the same command: completed stages reused, identical result
cat > chain.lua <<'LUA'
local sm = require "scalemix"
local v, prev = 1, nil
for i = 1, 6 do
  local s = sm.stage("sm_test_echo", { value = v, sleep_ms = 250, text = "step " .. i .. " " .. v },
                     prev and { prev = prev } or {}, { name = "step" .. i })
  v, prev = s.result.double, s.outputs.text
end
print("final", v, prev.digest)
LUA
want=$(SCALEMIX_HOME="$TMP_WS/clean" sm run --db none -q chain.lua)
for delay in 0.3 0.55 0.8 1.1; do
  SCALEMIX_HOME="$TMP_WS/killed" "$SCALEMIX" run --db none -q chain.lua >/dev/null 2>&1 &
  pid=$!
  sleep $delay
  kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null
done
got=$(SCALEMIX_HOME="$TMP_WS/killed" sm run --db none chain.lua 2>err.txt)
check_eq "resume after SIGKILLs gives the identical result" "$got" "$want"
n=$(grep -c 'reused (cached' err.txt)
[ "$n" -ge 1 ]; check_eq "resume reused completed stages ($n)" $? 0
leftover=$(find "$TMP_WS/killed/objects" -type f | while read -r f; do d=$(sha256sum "$f" | cut -c1-64); [ "$d" = "$(basename "$f")" ] || echo bad; done)
check_eq "no half-written object in the store" "$leftover" ""
finish
