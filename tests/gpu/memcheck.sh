#!/usr/bin/env bash
# tests/gpu/memcheck.sh - runs the CUDA backend's test binary under compute-sanitizer memcheck
# (out-of-bounds and misaligned accesses, leaked device memory). Prints PASS:/FAIL:/SKIP: like the other
# tests; skips without compute-sanitizer or without a usable GPU. The vocabulary is shrunk
# (SM_TEST_SMALL=1) to keep the instrumented run short. SM_SANITIZER_TOOL=racecheck checks shared memory
# races instead (much slower).
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
export SM_BUILD=${SM_BUILD:-$PWD/$BUILD}
bin="$BUILD/tests/gpu/test_gpt2_cuda"
cs=$(command -v compute-sanitizer || true)
[ -z "$cs" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ] && cs=/usr/local/cuda/bin/compute-sanitizer
# compute-sanitizer and AddressSanitizer both intercept the allocator; memcheck runs on the plain build
if [ -n "${SM_ASAN:-}" ]; then echo "SKIP: cuda_memcheck (sanitizer build: memcheck runs in make test)"; exit 0; fi
if [ ! -x "$bin" ]; then echo "SKIP: cuda_memcheck ($bin not built)"; exit 0; fi
if [ -z "$cs" ]; then echo "SKIP: cuda_memcheck (compute-sanitizer not installed)"; exit 0; fi
if ! why=$("$bin" --probe); then echo "SKIP: cuda_memcheck (${why:-no GPU})"; exit 0; fi
log=$(mktemp /tmp/sm-memcheck.XXXXXX)
tool=${SM_SANITIZER_TOOL:-memcheck}
extra=()
[ "$tool" = memcheck ] && extra=(--leak-check full)
SM_TEST_SMALL=1 "$cs" --tool "$tool" "${extra[@]}" --error-exitcode 3 "$bin" >"$log" 2>&1
rc=$?
grep -E '^(PASS|FAIL|SKIP): ' "$log" | sed 's/^/  /'
if [ "$rc" -eq 0 ] && grep -q 'ERROR SUMMARY: 0 errors' "$log"; then
  echo "PASS: cuda_$tool"
else
  tail -n 60 "$log"
  echo "FAIL: cuda_$tool (exit $rc; full log $log)"
  exit 1
fi
rm -f "$log"
