// Host emulation of the CUDA runtime subset the backend uses (tests/gpu/emu): kernels run as one OS thread
// per CUDA thread, block by block; __shared__ becomes static (blocks run one at a time); __syncthreads and
// warp shuffles are barriers. Device memory is host memory filled with 0xFF bytes (NaN as floats), so a
// read of anything never written shows up as NaN in the results. Test-only: nothing here ships.
#pragma once
#include <math.h>
#include <stdio.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <map>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct uint3 { unsigned x, y, z; };
// 16-byte aligned as on the GPU, so that UBSan's alignment check (run_emu.sh) flags a misaligned vector access
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
inline thread_local uint3 threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;

struct emu_block {
    pthread_barrier_t all;
    std::vector<pthread_barrier_t> warp;
    std::vector<float> slot;
};
inline thread_local emu_block *emu_cur;

inline void __syncthreads() { pthread_barrier_wait(&emu_cur->all); }
inline void __syncwarp() { pthread_barrier_wait(&emu_cur->warp[threadIdx.x / 32]); }
#define SM_DYNAMIC_SHARED(name) static __attribute__((aligned(128))) unsigned char name[262144]
inline float __shfl_xor_sync(unsigned, float v, int o) {
    unsigned t = threadIdx.x;
    emu_cur->slot[t] = v;
    pthread_barrier_wait(&emu_cur->warp[t / 32]);
    float r = emu_cur->slot[(t & ~31u) | ((t % 32) ^ (unsigned)o)];
    pthread_barrier_wait(&emu_cur->warp[t / 32]);
    return r;
}
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline float __expf(float x) { return expf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }

template <typename K> struct emu_launcher {
    K k;
    dim3 g, b;
    template <typename... A> void operator()(A... a) {
        unsigned nt = b.x; // the backend only launches 1-D blocks, multiples of 32
        for (unsigned bz = 0; bz < g.z; bz++)
            for (unsigned by = 0; by < g.y; by++)
                for (unsigned bx = 0; bx < g.x; bx++) {
                    emu_block blk;
                    pthread_barrier_init(&blk.all, NULL, nt);
                    blk.warp.resize(nt / 32);
                    for (auto &w : blk.warp) pthread_barrier_init(&w, NULL, 32);
                    blk.slot.resize(nt);
                    std::vector<std::thread> th;
                    for (unsigned t = 0; t < nt; t++)
                        th.emplace_back([&, t]() {
                            emu_cur = &blk;
                            threadIdx = {t, 0, 0};
                            blockIdx = {bx, by, bz};
                            blockDim = b;
                            gridDim = g;
                            k(a...);
                        });
                    for (auto &x : th) x.join();
                    pthread_barrier_destroy(&blk.all);
                    for (auto &w : blk.warp) pthread_barrier_destroy(&w);
                }
    }
};
// Dynamic shared memory each kernel opted into with cudaFuncSetAttribute (host side, one thread).
inline std::map<const void *, size_t> &emu_smem_optin() {
    static std::map<const void *, size_t> m;
    return m;
}
// The launch limits of sm_90 whose breach fails the launch on a GPU (cudaErrorInvalidConfiguration or
// cudaErrorInvalidValue) but would pass unnoticed here.
inline void emu_check_launch(const void *k, dim3 g, dim3 b, size_t smem) {
    auto opt = emu_smem_optin().find(k);
    size_t optin = opt == emu_smem_optin().end() ? 0 : opt->second;
    const char *bad = b.x == 0 || (size_t)b.x * b.y * b.z > 1024 ? "a block of 0 or more than 1024 threads"
                      : g.x == 0 || g.y == 0 || g.z == 0         ? "an empty grid"
                      : g.y > 65535 || g.z > 65535               ? "a grid over 65535 in y or z"
                      : smem > 232448                            ? "more than 227 KiB of dynamic shared memory"
                      : smem > 49152 && optin < smem ? "over 48 KiB of dynamic shared memory without cudaFuncSetAttribute"
                                                     : nullptr;
    if (bad) {
        fprintf(stderr, "FAIL: kernel launch with %s (grid %u x %u x %u, block %u, %zu bytes of dynamic shared memory, "
                "%zu opted in)\n", bad, g.x, g.y, g.z, b.x, smem, optin);
        abort();
    }
}
template <typename K> emu_launcher<K> emu_launch(K k, dim3 g, dim3 b, size_t smem = 0, void * = nullptr) {
    emu_check_launch(reinterpret_cast<const void *>(k), g, b, smem);
    return {k, g, b};
}

typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2 };
typedef void *cudaStream_t;
typedef void *cudaEvent_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16BF = 14 } cudaDataType_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
#define cudaStreamNonBlocking 1
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
template <typename F> cudaError_t cudaFuncSetAttribute(F f, cudaFuncAttribute, int v) {
    if (v < 0 || v > 232448) return cudaErrorInvalidValue;
    emu_smem_optin()[reinterpret_cast<const void *>(f)] = (size_t)v;
    return cudaSuccess;
}

inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char *cudaGetErrorString(cudaError_t) { return "emulated error"; }
inline const char *cudaGetErrorName(cudaError_t) { return "emu"; }
inline cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
inline cudaError_t cudaGetDevice(int *d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaMemGetInfo(size_t *f, size_t *t) { *f = *t = (size_t)64 << 30; return cudaSuccess; }
inline cudaError_t cudaMalloc(void **p, size_t n) {
    *p = aligned_alloc(256, (n + 255) & ~(size_t)255); // cudaMalloc's alignment
    if (!*p) return cudaErrorMemoryAllocation;
    memset(*p, 0xFF, n);
    return cudaSuccess;
}
inline cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t = 0) {
    memcpy(d, s, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t = 0) { memset(d, v, n); return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) { *s = (void *)1; return cudaSuccess; }
inline cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
