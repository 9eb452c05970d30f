// Host emulation of the CUDA runtime subset the backend uses (tests/gpu/emu): kernels run block by block,
// one fiber per CUDA thread; __shared__ becomes static (blocks run one at a time); __syncthreads and warp
// shuffles are barriers. Device memory is host memory filled with 0xFF bytes (NaN as floats), so a
// read of anything never written shows up as NaN in the results. Test-only: nothing here ships.
#pragma once
#include <math.h>
#include <stdio.h>
#include <ucontext.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <map>
#include <functional>
#include <memory>
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
inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

// One block at a time; its CUDA threads are fibers (ucontext) on this OS thread, each running until it
// reaches a barrier or ends. A barrier releases when all its participants have arrived: the block's
// threads for __syncthreads, the warp's 32 for __syncwarp and shuffles. Threads that can no longer all
// arrive (a barrier inside a branch, a thread that returned early) would hang the GPU: reported as FAIL.
struct emu_fiber {
    ucontext_t ctx;
    int state; // 0 runnable, 1 waiting at a barrier, 2 done
    unsigned wait_bar;
    unsigned long wait_gen;
};
struct emu_barrier {
    unsigned need, arrived;
    unsigned long gen;
};
struct emu_block {
    std::vector<emu_fiber> fib;
    std::vector<emu_barrier> bars; // [0] the block, [1 + w] warp w
    std::vector<float> slot;
    ucontext_t sched;
    unsigned cur;
    std::function<void()> body;
};
inline emu_block *emu_cur;
// SM_EMU_ORDER=reverse runs blocks and, between barriers, threads in reverse order: a kernel free of races
// gives the same bits either way (run_emu.sh compares them).
inline const bool emu_reverse = getenv("SM_EMU_ORDER") && !strcmp(getenv("SM_EMU_ORDER"), "reverse");

inline void emu_barrier_wait(unsigned bi) {
    emu_block *B = emu_cur;
    emu_barrier &br = B->bars[bi];
    if (++br.arrived == br.need) {
        br.arrived = 0;
        br.gen++;
        return;
    }
    emu_fiber &f = B->fib[B->cur];
    f.state = 1;
    f.wait_bar = bi;
    f.wait_gen = br.gen;
    swapcontext(&f.ctx, &B->sched);
}
inline void emu_fiber_entry() {
    emu_cur->body();
    emu_cur->fib[emu_cur->cur].state = 2;
}
// Runs one block of nt threads; stacks are kept between launches.
inline void emu_run_block(emu_block &B, unsigned nt) {
    static std::vector<std::unique_ptr<char[]>> stacks;
    const size_t stack_bytes = 256 << 10;
    while (stacks.size() < nt) stacks.emplace_back(new char[stack_bytes]);
    B.fib.assign(nt, emu_fiber{});
    B.bars.assign(1 + nt / 32, emu_barrier{32, 0, 0});
    B.bars[0].need = nt;
    B.slot.assign(nt, 0.0f);
    for (unsigned t = 0; t < nt; t++) {
        getcontext(&B.fib[t].ctx);
        B.fib[t].ctx.uc_stack.ss_sp = stacks[t].get();
        B.fib[t].ctx.uc_stack.ss_size = stack_bytes;
        B.fib[t].ctx.uc_link = &B.sched;
        makecontext(&B.fib[t].ctx, emu_fiber_entry, 0);
    }
    emu_cur = &B;
    for (unsigned done = 0; done < nt;) {
        int progressed = 0;
        done = 0;
        for (unsigned i = 0; i < nt; i++) {
            unsigned t = emu_reverse ? nt - 1 - i : i;
            emu_fiber &f = B.fib[t];
            if (f.state == 2) { done++; continue; }
            if (f.state == 1 && B.bars[f.wait_bar].gen == f.wait_gen) continue;
            f.state = 0;
            B.cur = t;
            threadIdx = {t, 0, 0};
            swapcontext(&B.sched, &f.ctx);
            progressed = 1;
            if (f.state == 2) done++;
        }
        if (!progressed && done < nt) {
            fprintf(stderr, "FAIL: block (%u,%u,%u): %u of %u threads wait at a barrier the others never reach "
                    "(undefined on a GPU: a hang or wrong results)\n", blockIdx.x, blockIdx.y, blockIdx.z, nt - done, nt);
            abort();
        }
    }
}

inline void __syncthreads() { emu_barrier_wait(0); }
inline void __syncwarp() { emu_barrier_wait(1 + threadIdx.x / 32); }
#define SM_DYNAMIC_SHARED(name) static __attribute__((aligned(128))) unsigned char name[262144]
inline float __shfl_xor_sync(unsigned, float v, int o) {
    unsigned t = threadIdx.x;
    emu_cur->slot[t] = v;
    __syncwarp();
    float r = emu_cur->slot[(t & ~31u) | ((t % 32) ^ (unsigned)o)];
    __syncwarp();
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
        blockDim = b;
        gridDim = g;
        for (unsigned bz = 0; bz < g.z; bz++)
            for (unsigned by = 0; by < g.y; by++)
                for (unsigned i = 0; i < g.x; i++) {
                    unsigned bx = emu_reverse ? g.x - 1 - i : i;
                    emu_block blk;
                    blockIdx = {bx, by, bz};
                    blk.body = [&]() { k(a...); };
                    emu_run_block(blk, nt);
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
