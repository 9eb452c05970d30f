// sm_cuda_common.cuh - shared by the CUDA backend's .cu files: the activation types (float for the
// checking mode, bf16 for training), conversions, warp reductions and the launch-error convention
// (every launcher returns cudaGetLastError() so the backend can turn it into an sm_error).
#ifndef SM_CUDA_COMMON_CUH
#define SM_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ float sm_tof(float x) { return x; }
__device__ __forceinline__ float sm_tof(bf16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T sm_fromf(float x);
template <> __device__ __forceinline__ float sm_fromf<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 sm_fromf<bf16>(float x) { return __float2bfloat16_rn(x); }

__device__ __forceinline__ float sm_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float sm_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Dynamic shared memory (sizes set per launch; the tensor-core attention needs more than 48 KiB).
#ifndef SM_DYNAMIC_SHARED
#define SM_DYNAMIC_SHARED(name) extern __shared__ __align__(128) unsigned char name[]
#endif

static inline unsigned sm_ceil_div(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }

// GELU, tanh approximation (GPT-2's), and its derivative.
#define SM_GELU_K 0.7978845608028654f /* sqrt(2/pi) */
__device__ __forceinline__ float sm_gelu(float x) {
    float u = SM_GELU_K * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}
__device__ __forceinline__ float sm_gelu_grad(float x) {
    float u = SM_GELU_K * (x + 0.044715f * x * x * x);
    float th = tanhf(u);
    float sech2 = 1.0f - th * th;
    return 0.5f * (1.0f + th) + 0.5f * x * sech2 * SM_GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
}

#endif
