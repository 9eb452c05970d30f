/* sm_cuda_bench.h - an extra symbol of libsm_cuda.so for benchmarks (not part of the backend contract):
 * the bf16 throughput of one n x n x n cuBLASLt product (fp32 accumulation, bf16 output), the honest
 * ceiling that MFU figures are quoted against beside the datasheet peak. */
#ifndef SM_CUDA_BENCH_H
#define SM_CUDA_BENCH_H

#include "../../sm_common.h"

#define SM_GPT2_CUDA_GEMM_BENCH "sm_gpt2_cuda_gemm_tflops"
/* Times iters products after warmup ones on the current device; *tflops = 2 n^3 iters / seconds / 1e12. */
typedef int (*sm_gpt2_cuda_gemm_fn)(int n, int iters, double *tflops, sm_error *err);

#endif
