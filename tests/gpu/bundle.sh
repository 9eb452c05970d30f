#!/usr/bin/env bash
# tests/gpu/bundle.sh - packs the GPU checks into one archive that runs on a GPU machine without scalemix's
# Debian packages (a rented GPU box, a cluster node, an image with only the CUDA toolkit): the CUDA test
# binary, the throughput benchmark, libsm_cuda.so, memcheck.sh, tests/gpu/bundle_run.sh as run.sh, and the
# shared libraries they load except glibc's, the C++ runtime's and CUDA's (the GPU machine has its own, and
# newer ones must win). run.sh links in only the bundled libraries that machine lacks. There:
#   tar xzf gpu-bundle.tgz -C DIR && DIR/gpu-bundle/run.sh [OUTDIR]
# usage: tests/gpu/bundle.sh [ARCHIVE]   (default $BUILD/gpu-bundle.tgz; build first: make test-build)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
archive=${1:-$BUILD/gpu-bundle.tgz}
test_bin=$BUILD/tests/gpu/test_gpt2_cuda bench_bin=$BUILD/bench/bench_gpt2_cuda cuda_lib=$BUILD/lib/libsm_cuda.so
for f in "$test_bin" "$bench_bin" "$cuda_lib"; do
  [ -f "$f" ] || { echo "bundle: $f is not built; run make test-build on a machine with nvcc first" >&2; exit 2; }
done
stage=$(mktemp -d /tmp/sm-gpu-bundle.XXXXXX)
trap 'rm -rf "$stage"' EXIT
root=$stage/gpu-bundle
mkdir -p "$root/build/tests/gpu" "$root/build/bench" "$root/build/lib" "$root/libs" "$root/tests/gpu"
cp "$test_bin" "$root/build/tests/gpu/"
cp "$bench_bin" "$root/build/bench/"
cp "$cuda_lib" "$root/build/lib/"
cp tests/gpu/memcheck.sh "$root/tests/gpu/"
cp tests/gpu/bundle_run.sh "$root/run.sh"
ldd "$test_bin" "$bench_bin" "$cuda_lib" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
  while read -r name path; do
    case $name in
      libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libresolv.so.*|ld-linux*) continue ;;
      libstdc++.so.*|libgcc_s.so.*|libcuda.so.*|libcudart.so.*|libcublas*|libnvidia*) continue ;;
    esac
    cp -L "$path" "$root/libs/$name"
  done
mkdir -p "$(dirname "$archive")"
tar czf "$archive" -C "$stage" gpu-bundle
echo "bundle: $archive ($(du -h "$archive" | cut -f1), $(ls "$root/libs" | wc -l) libraries)"
