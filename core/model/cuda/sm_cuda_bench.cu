// sm_cuda_bench.cu - sm_gpt2_cuda_gemm_tflops (see sm_cuda_bench.h): the measured bf16 matmul ceiling.
#include <cuda_runtime.h>
#include <stdio.h>

extern "C" {
#include "model/cuda/sm_cuda_bench.h"
}
#include "sm_cuda_common.cuh"
#include "sm_cuda_matmul.cuh"

// Pseudo-random values in [-1, 1): all-zero inputs would let the tensor cores idle at lower power and
// overstate the ceiling.
__global__ void k_fill(bf16 *x, size_t n, uint32_t seed) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 16; h *= 0x7feb352du; h ^= h >> 15;
    x[i] = __float2bfloat16_rn((float)(h & 0xffff) / 32768.0f - 1.0f);
}

extern "C" __attribute__((visibility("default"))) int sm_gpt2_cuda_gemm_tflops(int n, int iters, double *tflops,
                                                                               sm_error *err) {
    char why[512] = "";
    bf16 *a = nullptr, *b = nullptr, *d = nullptr;
    void *ws = nullptr;
    cudaStream_t s = nullptr;
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    sm_cu_mm mm = {nullptr, nullptr, (size_t)32 << 20, nullptr};
    size_t nn = (size_t)n * n;
    int rc = SM_OK;
    cudaError_t ce = cudaSuccess;
    float ms = 0.0f;
    sm_cu_mm_args args;
    if (n < 16 || iters < 1) {
        snprintf(why, sizeof why, "n %d and iters %d must be >= 16 and >= 1", n, iters);
        rc = SM_ERR_ARG;
        goto done;
    }
#define BENCH_CK(call)                                                                                   \
    if ((ce = (call)) != cudaSuccess) {                                                                  \
        snprintf(why, sizeof why, "%s: %s", #call, cudaGetErrorString(ce));                              \
        rc = SM_ERR_INTERNAL;                                                                            \
        goto done;                                                                                       \
    }
    BENCH_CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    BENCH_CK(cudaMalloc(&a, nn * 2));
    BENCH_CK(cudaMalloc(&b, nn * 2));
    BENCH_CK(cudaMalloc(&d, nn * 2));
    BENCH_CK(cudaMalloc(&ws, mm.workspace_bytes));
    BENCH_CK(cudaEventCreate(&e0));
    BENCH_CK(cudaEventCreate(&e1));
    if (cublasLtCreate(&mm.lt) != CUBLAS_STATUS_SUCCESS) {
        snprintf(why, sizeof why, "cublasLtCreate failed");
        rc = SM_ERR_INTERNAL;
        goto done;
    }
    mm.workspace = ws;
    mm.stream = s;
    k_fill<<<sm_ceil_div(nn, 256), 256, 0, s>>>(a, nn, 1u);
    k_fill<<<sm_ceil_div(nn, 256), 256, 0, s>>>(b, nn, 2u);
    BENCH_CK(cudaGetLastError());
    args = {1, 0, n, n, n, a, n, b, n, d, n, CUDA_R_16BF, CUDA_R_16BF, 1.0f, 0.0f, SM_MM_NONE, nullptr, nullptr, 0};
    for (int i = 0; i < 3 + iters; i++) {
        if (i == 3) BENCH_CK(cudaEventRecord(e0, s));
        int r = sm_cu_matmul(&mm, &args, why, sizeof why);
        if (r) {
            rc = SM_ERR_INTERNAL;
            goto done;
        }
    }
    BENCH_CK(cudaEventRecord(e1, s));
    BENCH_CK(cudaEventSynchronize(e1));
    BENCH_CK(cudaEventElapsedTime(&ms, e0, e1));
    *tflops = 2.0 * n * (double)n * n * iters / (ms * 1e-3) / 1e12;
done:
    if (mm.lt) cublasLtDestroy(mm.lt);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    cudaFree(d);
    cudaFree(ws);
    if (s) cudaStreamDestroy(s);
    if (rc && err) {
        err->code = rc;
        snprintf(err->msg, sizeof err->msg, "cuda gemm bench: %s", why);
    }
    return rc;
}
