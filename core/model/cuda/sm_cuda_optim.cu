// sm_cuda_optim.cu - AdamW over the fp32 master weights (refreshing the compute copy in the same pass),
// the global gradient norm (two fixed-shape reduction passes in double: bitwise reproducible), casts.
#include "sm_cuda_kernels.cuh"

template <typename X>
__global__ void k_adamw(float *p, X *pcopy, const float *g, float *m, float *v, size_t n, float lr, float b1,
                        float b2, float eps, float wd, float gm, float bc1, float bc2) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i] * gm;
    float mi = b1 * m[i] + (1.0f - b1) * gi;
    float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float mhat = mi / bc1, vhat = vi / bc2;
    float pi = p[i];
    pi -= lr * (mhat / (sqrtf(vhat) + eps) + wd * pi);
    p[i] = pi;
    if (pcopy) pcopy[i] = sm_fromf<X>(pi);
}

template <typename X>
cudaError_t sm_cu_adamw(float *p, X *pcopy, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                        float beta2, float eps, float wd, float grad_mult, float bc1, float bc2, cudaStream_t s) {
    if (n == 0) return cudaSuccess;
    k_adamw<X><<<sm_ceil_div(n, 256), 256, 0, s>>>(p, pcopy, g, m, v, n, lr, beta1, beta2, eps, wd, grad_mult,
                                                   bc1, bc2);
    return cudaGetLastError();
}

#define NORM_THREADS 256

__global__ void k_sumsq_partial(double *partials, const float *g, size_t n) {
    __shared__ double sh[NORM_THREADS];
    double acc = 0.0;
    for (size_t i = (size_t)blockIdx.x * NORM_THREADS + threadIdx.x; i < n; i += (size_t)gridDim.x * NORM_THREADS) {
        double x = g[i];
        acc += x * x;
    }
    sh[threadIdx.x] = acc;
    __syncthreads();
    for (int w = NORM_THREADS / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) partials[blockIdx.x] = sh[0];
}

__global__ void k_sumsq_final(double *out, const double *partials, int n) {
    __shared__ double sh[SM_CU_NORM_BLOCKS];
    for (int i = threadIdx.x; i < SM_CU_NORM_BLOCKS; i += blockDim.x) sh[i] = i < n ? partials[i] : 0.0;
    __syncthreads();
    for (int w = SM_CU_NORM_BLOCKS / 2; w > 0; w >>= 1) {
        for (int i = threadIdx.x; i < w; i += blockDim.x) sh[i] += sh[i + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = sh[0];
}

cudaError_t sm_cu_sumsq(double *out, double *partials, const float *g, size_t n, cudaStream_t s) {
    k_sumsq_partial<<<SM_CU_NORM_BLOCKS, NORM_THREADS, 0, s>>>(partials, g, n);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    k_sumsq_final<<<1, 256, 0, s>>>(out, partials, SM_CU_NORM_BLOCKS);
    return cudaGetLastError();
}

template <typename X> __global__ void k_cast(X *dst, const float *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = sm_fromf<X>(src[i]);
}
template <typename X> cudaError_t sm_cu_cast(X *dst, const float *src, size_t n, cudaStream_t s) {
    if (n == 0) return cudaSuccess;
    k_cast<X><<<sm_ceil_div(n, 256), 256, 0, s>>>(dst, src, n);
    return cudaGetLastError();
}

template cudaError_t sm_cu_adamw<float>(float *, float *, const float *, float *, float *, size_t, float, float,
                                        float, float, float, float, float, float, cudaStream_t);
template cudaError_t sm_cu_adamw<bf16>(float *, bf16 *, const float *, float *, float *, size_t, float, float,
                                       float, float, float, float, float, float, cudaStream_t);
template cudaError_t sm_cu_cast<float>(float *, const float *, size_t, cudaStream_t);
template cudaError_t sm_cu_cast<bf16>(bf16 *, const float *, size_t, cudaStream_t);
