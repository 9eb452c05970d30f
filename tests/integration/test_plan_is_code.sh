#!/usr/bin/env bash
# A pipeline script is code, like a Makefile: `scalemix plan` runs the script too (only its stages are dry),
# so what the script does itself happens. The help and the README must say so (issue 14, item 4).
source "$(dirname "$0")/../lib.sh"
export SCALEMIX_PLUGIN_PATH="$SM_BUILD/tests/plugins"
cd "$TMP_WS"

help=$("$SCALEMIX" help plan 2>&1)
check "help plan says a pipeline script is code" grep -q "A pipeline script is code, like a Makefile" <<<"$help"
check "help plan says plan runs the script's os.execute/io.popen" grep -q "os.execute or io.popen included, happens" <<<"$help"
check "the README says so" grep -q "A pipeline script is code, like a Makefile" "$SM_ROOT/README.md"

cat >p.lua <<LUA
local sm = require "scalemix"
os.execute("touch '$TMP_WS/planned-side-effect'")
sm.stage("sm_test_echo", { value = 1, text = "x" })
LUA
"$SCALEMIX" plan --db none p.lua >/dev/null 2>&1
check_eq "plan exits 0" $? 0
check "plan ran the script's os.execute (as documented)" test -f "$TMP_WS/planned-side-effect"
finish
