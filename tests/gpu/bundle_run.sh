#!/usr/bin/env bash
# run.sh of a bundle made by tests/gpu/bundle.sh: the CUDA tests, compute-sanitizer memcheck and the
# throughput benchmark, each log also written to OUTDIR (default ./out beside this script).
# SM_BENCH_STEPS (default 10) and SM_BENCH_MAX_BATCH (default 128) pass on to the benchmark.
# Ends with a summary line; exits 1 if any check failed, 3 if checks were skipped (no usable GPU or no
# compute-sanitizer: the bundle is for a GPU machine, so that is not a pass), else 0.
set -u
here=$(cd "$(dirname "$0")" && pwd)
outdir=${1:-$here/out}
mkdir -p "$outdir" "$here/active"
# only what this machine lacks: its own libraries (newer, and those its CUDA tools were built against) win
for f in "$here"/libs/*; do
  n=$(basename "$f")
  ldconfig -p | grep -q "^[[:space:]]*$n " || ln -sf "$f" "$here/active/$n"
done
cuda_libdir=
nvcc_path=$(command -v nvcc || true)
[ -n "$nvcc_path" ] && cuda_libdir=$(cd "$(dirname "$nvcc_path")/.." && pwd)/lib64
export LD_LIBRARY_PATH="$here/active${cuda_libdir:+:$cuda_libdir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export SM_BUILD=$here/build
cd "$here"
echo "bundled libraries linked in (missing here): $(ls active | tr '\n' ' ')" | tee "$outdir/env.txt"
nvidia-smi >>"$outdir/env.txt" 2>&1 || echo "nvidia-smi: not available" >>"$outdir/env.txt"
rc=0
build/tests/gpu/test_gpt2_cuda 2>&1 | tee "$outdir/test_gpt2_cuda.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
BUILD=build bash tests/gpu/memcheck.sh 2>&1 | tee "$outdir/memcheck.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
build/bench/bench_gpt2_cuda "${SM_BENCH_STEPS:-10}" "${SM_BENCH_MAX_BATCH:-128}" 2>&1 | tee "$outdir/bench.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
grep -q '^no GPU' "$outdir/bench.log" && echo "SKIP: bench_gpt2_cuda ($(head -c 200 "$outdir/bench.log"))" >"$outdir/bench_status.log"
logs=("$outdir/test_gpt2_cuda.log" "$outdir/memcheck.log")
[ -f "$outdir/bench_status.log" ] && logs+=("$outdir/bench_status.log")
p=$(cat "${logs[@]}" | grep -c '^PASS: ') f=$(cat "${logs[@]}" | grep -c '^FAIL: ') s=$(cat "${logs[@]}" | grep -c '^SKIP: ')
[ "$f" -gt 0 ] && rc=1
[ "$rc" -eq 0 ] && [ "$s" -gt 0 ] && rc=3
echo "bundle: $p passed, $f failed, $s skipped; exit $rc" | tee "$outdir/summary.txt"
exit $rc
