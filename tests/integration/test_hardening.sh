#!/usr/bin/env bash
# Hardening (issue 14, items 5-12): nothing corrupt is trusted and no failure is reported as success.
# Usage errors exit 2 with a message; script errors anywhere (unawaited tasks, error(nil), unawaited failed
# stages) fail the run; signals reach a script computing in pure Lua; os.exit() and SIGKILL leave no run
# "running"; a corrupt store object is detected, replaced and repaired; concurrent runs never share a live
# scratch folder; a failed journal write is never reported as kept.
source "$(dirname "$0")/../lib.sh"
export SCALEMIX_PLUGIN_PATH="$SM_BUILD/tests/plugins"
cd "$TMP_WS"
sm() { "$SCALEMIX" "$@"; }

# --- 12: bad command-line values and model tables are refused, never dropped or defaulted
printf 'local sm = require "scalemix"\nprint("x", type(params.x), tostring(params.x))\n' > px.lua
for v in nan inf -inf 1e999; do
  sm run --db none -q --param "x=$v" px.lua >out.txt 2>err.txt; rc=$?
  check_eq "--param x=$v exits 2" "$rc" 2
  grep -q -- "--param x=$v is not a finite number" err.txt; check_eq "--param x=$v says why" $? 0
done
sm run --db none -q --param "$(printf 'x=caf\xe9')" px.lua >out.txt 2>err.txt; check_eq "--param with invalid UTF-8 exits 2" $? 2
grep -q "is not valid UTF-8" err.txt; check_eq "invalid UTF-8 says why" $? 0
check_eq "--param x=1.5e3 keeps its value" "$(sm run --db none -q --param x=1.5e3 px.lua)" "x	number	1500"
for a in abc 0 -3 2x ''; do
  sm run --db none -q --parallel "$a" px.lua >/dev/null 2>err.txt; check_eq "--parallel '$a' exits 2" $? 2
  grep -q -- "--parallel wants a positive whole number" err.txt; check_eq "--parallel '$a' says why" $? 0
done
sm run --db none -q --threads 1.5 px.lua >/dev/null 2>err.txt; check_eq "--threads 1.5 exits 2" $? 2
# A stage parameter refused at submission is a usage error: exit 2 in run and in plan, also when plan cannot
# submit the stage because its input comes from a stage that would run; a stage that fails at work exits 1.
model_case() { # model table, expected message
  printf 'local sm = require "scalemix"\nsm.stage("train", { domains = { "a" }, tokens = { a = 1000 }, model = %s })\n' "$1" > model.lua
  printf 'local sm = require "scalemix"\nlocal a = sm.stage("sm_test_echo", { value = 1 })\nsm.stage("train", { domains = { "a" }, tokens = { a = 1000 }, model = %s }, { x = a.outputs.out })\n' "$1" > pend.lua
  SCALEMIX_PLUGIN_PATH="$SM_BUILD/plugins" sm run --db none -q model.lua >/dev/null 2>err.txt; local rc=$?
  check_eq "model = $1 exits 2 (usage)" "$rc" 2
  grep -q "model.lua:2: .*$2" err.txt; check_eq "model = $1: '$2' on the script's line" $? 0
  SCALEMIX_PLUGIN_PATH="$SM_BUILD/plugins" sm plan --db none -q model.lua >/dev/null 2>err.txt; rc=$?
  check_eq "plan with model = $1 exits 2" "$rc" 2
  grep -q "model.lua:2: .*$2" err.txt; check_eq "plan with model = $1 says '$2' on the line" $? 0
  SCALEMIX_PLUGIN_PATH="$SM_BUILD/plugins:$SCALEMIX_PLUGIN_PATH" sm plan --workspace "$TMP_WS/pend-ws" --db none -q pend.lua >/dev/null 2>err.txt; rc=$?
  check_eq "plan with model = $1 behind a stage that would run exits 2" "$rc" 2
  grep -q "pend.lua:3: .*$2" err.txt; check_eq "and says '$2' on the line" $? 0
}
model_case '{ layers = "two" }' "model.layers must be a whole number"
model_case '{ layers = 1.5 }' "model.layers must be a whole number"
model_case '{ layers = 2, depth = 3 }' "model: unknown key 'depth'"
model_case '{ seq = 0 }' "model.seq is 0; it must be between 2 and"
model_case '{ heads = 3, channels = 64 }' "model.channels (64) must divide by model.heads (3)"
model_case '"big"' "parameter 'model' must be an object"
usage_case() { # what, script body: each is refused at submission and exits 2, whether or not it is awaited
  printf 'local sm = require "scalemix"\n%s\n' "$2" > usage.lua
  sm run --db none -q usage.lua >/dev/null 2>err.txt; check_eq "$1 exits 2" $? 2
  grep -q "usage.lua:2: " err.txt; check_eq "$1 names the line" $? 0
}
usage_case "a parameter of the wrong type" 'sm.stage("sm_test_echo", { value = "x" })'
usage_case "an unknown parameter" 'sm.stage("sm_test_echo", { value = 1, colour = 2 })'
usage_case "a parameter JSON cannot carry (nan)" 'sm.stage("sm_test_echo", { value = 0/0 })'
usage_case "a refused stage call in an awaited task" 'sm.spawn(function() sm.stage("sm_test_echo", { value = "x" }) end):wait()'
usage_case "a refused stage call in a task nobody waits for" 'sm.spawn(function() sm.stage("sm_test_echo", { value = "x" }) end)'
printf 'local sm = require "scalemix"\npcall(sm.stage, "sm_test_echo", { value = "x" })\nsm.stage("sm_test_echo", { value = 1, fail = true })\n' > work.lua
sm run --db none -q work.lua >/dev/null 2>err.txt; check_eq "a stage that fails at work exits 1 (after a caught usage error)" $? 1

# --- 1: every Lua module a run loads is in its lineage (run_end's lua_modules) with the digest of the bytes
#     loaded: the script's own digest does not cover what it requires
mkdir -p modsdir && printf 'return { v = 41 }\n' > modsdir/helper.lua
printf 'local sm = require "scalemix"\nprint(require("helper").v + 1)\n' > modsdir/m.lua
out=$(sm run --db none -q --events mods.jsonl modsdir/m.lua); check_eq "a script requiring a module from its folder runs" "$out" 42
# "name path sha256" per module run_end lists
mods=$(grep '"run_end"' mods.jsonl | python3 -c 'import json,sys
for m in json.load(sys.stdin)["lua_modules"]: print(m["name"], m["path"], m["sha256"])')
check "run_end lists the module with its absolute path and the sha256 of its bytes" \
  grep -qx "helper $(realpath modsdir/helper.lua) $(sha256sum modsdir/helper.lua | cut -c1-64)" <<<"$mods"
check "and the library's own modules" \
  grep -qx "scalemix $(realpath "$SM_BUILD/../lua/scalemix.lua") $(sha256sum "$SM_BUILD/../lua/scalemix.lua" | cut -c1-64)" <<<"$mods"

# --- 9: an error anywhere fails the run (exit 1, file:line, recorded failed)
err_case() { # name, script body (after the require line), expected message
  printf 'local sm = require "scalemix"\n%s\n' "$2" > e9.lua
  sm run --db none -q --events e9.jsonl e9.lua >/dev/null 2>err.txt; local rc=$?
  check_eq "$1 exits 1" "$rc" 1
  grep -q -- "$3" err.txt; check_eq "$1 says '$3'" $? 0
  check_eq "$1 recorded failed" "$(tail -1 e9.jsonl | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')" failed
  rm -f e9.jsonl
}
err_case "unawaited sm.spawn error" 'sm.spawn(function() error("boom") end)' 'e9.lua:2: boom (in a task nobody waited for)'
err_case "error(nil)" 'error(nil)' 'e9.lua:2: error(nil) raised'
err_case "error(false) in a task" $'local t = sm.spawn(function()\n  error(false)\nend)' 'e9.lua:3: error(false) raised'
err_case "unawaited failed sm.async" 'sm.async("sm_test_echo", { value = 1, fail = true })' 'e9.lua:2: stage sm_test_echo@e9.lua:2 failed: asked to fail (value 1) (nobody waited for it)'
printf 'local sm = require "scalemix"\nlocal s = sm.async("sm_test_echo", { value = 5, sleep_ms = 300 })\n' > e9ok.lua
sm run --db none -q --events e9ok.jsonl e9ok.lua 2>err.txt; check_eq "an unawaited stage that succeeds: exit 0" $? 0
grep -q '"status":"succeeded","type":"stage_end"\|"type":"stage_end".*"status":"succeeded"' e9ok.jsonl
check_eq "an unawaited stage runs to its end (not cancelled)" $? 0

# --- 10: signals reach a script computing in pure Lua; a cancelled run exits 1
printf 'local sm = require "scalemix"\nlocal s = 0\nfor i = 1, 3e9 do s = s + i end\nprint(s)\n' > spin.lua
for sig in TERM INT; do
  "$SCALEMIX" run --db none -q --events spin.jsonl spin.lua >/dev/null 2>err.txt & pid=$!
  sleep 1; kill -$sig $pid
  for _ in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
  if kill -0 $pid 2>/dev/null; then kill -9 $pid; fail "SIG$sig stops a pure-Lua loop" "still running 5 s later"; else pass "SIG$sig stops a pure-Lua loop"; fi
  wait $pid; check_eq "SIG$sig: a cancelled run exits 1" $? 1
  check_eq "SIG$sig: recorded cancelled" "$(tail -1 spin.jsonl | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status"))')" cancelled
  rm -f spin.jsonl
done
printf 'local sm = require "scalemix"\nlocal ok = pcall(function() for i = 1, 3e9 do end end)\nprint("caught", ok)\n' > swallow.lua
"$SCALEMIX" run --db none -q swallow.lua >/dev/null 2>err.txt & pid=$!
sleep 1; kill -TERM $pid; wait $pid; check_eq "a script that catches the cancellation still exits 1" $? 1

# --- 11: os.exit records the run's end
for c in "os.exit()" "os.exit(0)" "os.exit(true)" "os.exit(3)" "os.exit(false)"; do
  printf 'local sm = require "scalemix"\nsm.stage("sm_test_echo", { value = 1 })\n%s\n' "$c" > ex.lua
  sm run --db none -q --events ex.jsonl ex.lua >/dev/null 2>err.txt; rc=$?
  case "$c" in *3*) want_rc=3 want=failed ;; *false*) want_rc=1 want=failed ;; *) want_rc=0 want=succeeded ;; esac
  check_eq "$c exits $want_rc" "$rc" "$want_rc"
  check_eq "$c: run_end recorded $want" "$(tail -1 ex.jsonl | python3 -c 'import json,sys; e=json.load(sys.stdin); print(e["type"], e.get("status"))')" "run_end $want"
  rm -f ex.jsonl
done
printf 'local sm = require "scalemix"\nsm.spawn(function() os.exit(5) end)\nlocal ok = pcall(sm.stage, "sm_test_echo", { value = 1, sleep_ms = 20000 })\nwhile true do end\n' > ex5.lua
start=$SECONDS
timeout 15 "$SCALEMIX" run --db none -q ex5.lua >/dev/null 2>&1; rc=$?
check_eq "os.exit(5) in a task while the script waits on a long stage and then spins: exit 5" "$rc" 5
[ $((SECONDS - start)) -lt 10 ]; check_eq "... promptly (the stage is cancelled, the pcall cannot hold it)" $? 0

# --- 8: two concurrent runs of one stage never share a live scratch folder: the second waits, says so
for iso in false true; do
  printf 'local sm = require "scalemix"\nsm.stage("sm_test_echo", { value = 8, sleep_ms = 1500, use_scratch = true, isolate = %s })\n' "$iso" > sc.lua
  "$SCALEMIX" run --db none sc.lua >sc1.out 2>sc1.err & p1=$!
  sleep 0.5
  "$SCALEMIX" run --db none sc.lua >sc2.out 2>sc2.err & p2=$!
  wait $p1; r1=$?; wait $p2; r2=$?
  check_eq "isolate=$iso: concurrent runs of one stage both succeed" "$r1 $r2" "0 0"
  grep -q "waiting: another run is running this stage" sc2.err; check_eq "isolate=$iso: the second run says it waits" $? 0
  grep -h "live" sc1.err sc2.err
  rm -rf "$SCALEMIX_HOME/cache"
done

# --- 5: bit rot in the store is never reused, a fresh copy replaces a rotten one, `scalemix verify`
export SCALEMIX_HOME="$TMP_WS/ws5"
flip() { python3 - "$1" "${2:-0}" <<'PY'  # file [byte offset from the middle]: one bit flipped, size unchanged
import os, sys
p = sys.argv[1]; os.chmod(p, 0o644)
b = bytearray(open(p, "rb").read()); b[len(b) // 2 + int(sys.argv[2])] ^= 0x20; open(p, "wb").write(bytes(b))
PY
}
cat > rot.lua <<'LUA'
local sm = require "scalemix"
local a = sm.stage("sm_test_echo", { value = 5, text = "the quick brown fox jumps over the lazy dog" }, nil, { name = "a" })
local b = sm.stage("sm_test_echo", { value = 1 }, { t = a.outputs.text }, { name = "b" })
print("bytes", b.result.input_bytes, a.outputs.text.digest)
LUA
want=$(sm run --db none -q rot.lua)
d=$(echo "$want" | cut -f3); obj="$SCALEMIX_HOME/objects/${d:0:2}/$d"
flip "$obj"
got=$(sm run --db none rot.lua 2>err.txt)
check_eq "a same-size flip in a cached output: the result is still right" "$got" "$want"
grep -q "was corrupt" err.txt; check_eq "the corrupt object is reported" $? 0
check_eq "the stage that made it ran again (not reused)" "$(grep -c 'reused (cached' err.txt)" 1
check_eq "the object holds its content again" "$(sha256sum "$obj" | cut -c1-64)" "$(basename "$obj")"
ls "$SCALEMIX_HOME"/corrupt/ 2>/dev/null | grep -q "^$(basename "$obj")\."; check_eq "the rotten copy is set aside in corrupt/" $? 0
# the same content committed again replaces a rotten copy (the cache entry is gone, so nothing verified it first)
flip "$obj" 1; rm -f "$SCALEMIX_HOME"/cache/*.json
got=$(sm run --db none -q rot.lua 2>err.txt)
check_eq "a rerun without cache entries computes the same" "$got" "$want"
check_eq "committing the same content replaced the rotten object" "$(sha256sum "$obj" | cut -c1-64)" "$(basename "$obj")"
# an input is hashed before a stage reads it
cat > rot_in.lua <<'LUA'
local sm = require "scalemix"
local a = sm.stage("sm_test_echo", { value = 6, text = "input that rots between two stages" }, nil, { name = "a6" })
local f = io.open(a.outputs.text.path, "r+b"); f:seek("set", 3); f:write("X"); f:close()
sm.stage("sm_test_echo", { value = 2 }, { t = a.outputs.text }, { name = "b6" })
LUA
sm run --db none -q rot_in.lua 2>err.txt; check_eq "a stage whose input rotted fails" $? 1
grep -q "b6 failed: object .* was corrupt" err.txt; check_eq "it names the corrupt input" $? 0
# scalemix verify [--repair]
sm run --db none -q rot.lua >/dev/null 2>&1
sm verify >out.txt; check_eq "verify on an intact store exits 0" $? 0
grep -q "^verified [0-9]* object(s), .*: 0 corrupt" out.txt; check_eq "verify counts the objects" $? 0
flip "$obj" 2
sm verify >out.txt; check_eq "verify finds a corrupt object: exit 1" $? 1
grep -q "^corrupt $(basename "$obj")" out.txt; check_eq "verify names it" $? 0
sm verify --repair >out.txt; check_eq "verify --repair sets it aside: exit 0" $? 0
[ ! -e "$obj" ]; check_eq "the corrupt object left the store" $? 0
sm verify >/dev/null; check_eq "the store verifies after the repair" $? 0
check_eq "the rotten copy is in corrupt/" "$(ls "$SCALEMIX_HOME"/corrupt/ | grep -c "^$(basename "$obj")\.")" 2
got=$(sm run --db none rot.lua 2>err.txt)
check_eq "after the repair the next run rebuilds it" "$got|$(grep -c 'reused (cached' err.txt)" "$want|1"
sm verify --bogus >/dev/null 2>&1; check_eq "verify with an unknown option exits 2" $? 2
export SCALEMIX_HOME="$TMP_WS/ws"

finish
