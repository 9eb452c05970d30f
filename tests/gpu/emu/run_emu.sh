#!/usr/bin/env bash
# tests/gpu/emu/run_emu.sh - builds the CUDA backend's .cu sources as host C++ under the emulation in
# tests/gpu/emu/include (kernel launches rewritten to emu_launch, cuBLASLt replaced by emu_matmul.cpp) and
# runs emu_main against the CPU backend. Needs no GPU and no nvcc; checks the kernels' index arithmetic,
# masking, reductions and the backend's orchestration, not the GPU's behaviour or speed.
set -eu
cd "$(dirname "$0")/../../.."
if [ -n "${SM_ASAN:-}" ]; then
  echo "SKIP: cuda_host_emulation (built without sanitizers whatever the build; it ran in the plain make test)"
  exit 0
fi
BUILD=${BUILD:-build}
out=$(mktemp -d /tmp/sm-cuda-emu.XXXXXX)
trap 'rm -rf "$out"' EXIT
for f in core/model/cuda/*.cu; do
  case $f in *bench*) continue ;; esac
  python3 - "$f" "$out/$(basename "$f" .cu).cpp" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
# kernel<T, N><<<grid, block, smem, stream>>>(args)  ->  emu_launch(kernel<T, N>, grid, block, smem, stream)(args)
src, n = re.subn(r'([A-Za-z_]\w*(?:<[^<>;()]*>)?)<<<(.*?)>>>\(', r'emu_launch(\1, \2)(', src)
open(sys.argv[2], 'w').write(src)
PY
done
rm -f "$out/sm_cuda_matmul.cpp"
CXX=${CXX:-g++}
# UBSan's alignment check: a vector access (float4, uint4) off its 16-byte boundary faults on the GPU
flags="-std=c++20 -O2 -Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas -Itests/gpu/emu/include -Icore/model/cuda -Icore -pthread -fsanitize=alignment -fno-sanitize-recover=alignment"
libs="$(pkg-config --libs openblas) -lm -ldl -lpthread -fopenmp"
$CXX $flags -o "$out/emu" "$out"/*.cpp tests/gpu/emu/emu_matmul.cpp tests/gpu/emu/emu_main.cpp "$BUILD/libscalemix.a" \
  $(pkg-config --libs libuv luajit libpq libzstd zlib gsl libutf8proc jansson libcrypto | sed 's/-lgslcblas//') $libs
set +e
"$out/emu" | tee "$out/forward.log" | grep -v '^digest: '
rc=${PIPESTATUS[0]}
# The same cases with blocks and threads run in reverse order: a data race between threads (a missing
# barrier) or between blocks (two writing one place) changes bits; race-free kernels give identical ones.
SM_EMU_ORDER=reverse "$out/emu" >"$out/reverse.log" 2>&1
rc_rev=$?
if [ "$rc_rev" -ne 0 ]; then
  tail -n 20 "$out/reverse.log"
  echo "FAIL: cuda_emulation_reverse_order (the run in reverse order failed, exit $rc_rev)"
elif diff <(grep '^digest: ' "$out/forward.log") <(grep '^digest: ' "$out/reverse.log") >"$out/digests.diff"; then
  echo "PASS: cuda_emulation_order_independent ($(grep -c '^digest: ' "$out/forward.log") cases bitwise equal with blocks and threads in reverse order)"
else
  cat "$out/digests.diff"
  echo "FAIL: cuda_emulation_order_independent (results depend on the order threads or blocks run: a race)"
  rc_rev=1
fi
[ "$rc" -eq 0 ] && [ "$rc_rev" -eq 0 ]
