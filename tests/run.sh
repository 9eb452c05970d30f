#!/usr/bin/env bash
# Runs every test: unit binaries (build/tests/test_*), GPU tests (build/tests/gpu/test_* and the
# compute-sanitizer run of them, tests/gpu/memcheck.sh; they skip without a GPU; and the CUDA sources under
# the host emulation, tests/gpu/emu, which needs no GPU), Lua tests
# (tests/lua/test_*.lua through `scalemix run`) and integration scripts
# (tests/integration/test_*.sh). Each prints PASS:/FAIL:/SKIP: lines; a program that exits non-zero
# without printing FAIL counts as one failure. Ends with "N passed, N failed, N skipped".
# TESTS=pattern limits the run to files whose name contains pattern.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export SM_BUILD="$PWD/$BUILD" SM_ROOT="$PWD"
pass=0 fail=0 skip=0 failed_names=()
log_dir=$(mktemp -d /tmp/sm-test-logs.XXXXXX)

run_one() { # name, command...
  local name=$1; shift
  local log="$log_dir/$(echo "$name" | tr '/' '_').log" start=$SECONDS
  "$@" >"$log" 2>&1 </dev/null
  local rc=$?
  local p f s
  p=$(grep -c '^PASS: ' "$log"); f=$(grep -c '^FAIL: ' "$log"); s=$(grep -c '^SKIP: ' "$log")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "FAIL: $name (exit $rc)" >>"$log"; fi
  pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
  printf '%-48s %3d passed %3d failed %3d skipped  (%ds)\n' "$name" "$p" "$f" "$s" $((SECONDS - start))
  grep '^SKIP: ' "$log" | sed 's/^/    /'
  if [ "$f" -gt 0 ]; then failed_names+=("$name"); sed 's/^/    | /' "$log" | tail -n 60; fi
}

want() { [ -z "${TESTS:-}" ] || [[ "$1" == *"$TESTS"* ]]; }

for t in "$BUILD"/tests/test_*; do [ -x "$t" ] && want "$t" && run_one "unit/$(basename "$t")" "$t"; done
for t in "$BUILD"/tests/gpu/test_*; do [ -x "$t" ] && want "$t" && run_one "gpu/$(basename "$t")" "$t"; done
want tests/gpu/memcheck.sh && run_one gpu/memcheck.sh env BUILD="$BUILD" bash tests/gpu/memcheck.sh
want tests/gpu/emu/run_emu.sh && run_one gpu/emu/run_emu.sh env BUILD="$BUILD" bash tests/gpu/emu/run_emu.sh
for t in tests/lua/test_*.lua; do
  [ -f "$t" ] && want "$t" || continue
  ws=$(mktemp -d /tmp/sm-lua-ws.XXXXXX)
  SCALEMIX_HOME="$ws" SCALEMIX_PLUGIN_PATH="$SM_BUILD/tests/plugins" run_one "lua/$(basename "$t")" "$BUILD/scalemix" run --db none --quiet "$t"
  rm -rf "$ws"
done
for t in tests/integration/test_*.sh; do [ -f "$t" ] && want "$t" && run_one "integration/$(basename "$t")" bash "$t"; done

[ ${#failed_names[@]} -gt 0 ] && echo "failed: ${failed_names[*]}"
echo "logs: $log_dir"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
