// sm_cuda_classifier.cu - softmax and cross-entropy fused over the logits the classifier matmul wrote:
// one block per row takes the row's max and sum of exponentials online (one pass), then, when a backward
// pass will follow, overwrites the logits in place with softmax - onehot. The probabilities never get a
// buffer of their own and the logits gradient costs no extra round trip through memory; the backward
// pass applies grad_scale / (B*T) as the alpha of the two matmuls that consume it.
#include <math.h>
#include "sm_cuda_kernels.cuh"

#define CLS_THREADS 512

__device__ __forceinline__ void online_merge(float &m, float &s, float m2, float s2) {
    if (m2 == -INFINITY) return;
    if (m == -INFINITY) { m = m2; s = s2; return; }
    float mx = fmaxf(m, m2);
    s = s * __expf(m - mx) + s2 * __expf(m2 - mx);
    m = mx;
}

template <typename X>
__global__ void __launch_bounds__(CLS_THREADS) k_classifier(X *logits, float *losses, const int32_t *targets,
                                                            int V, int Vp, int write_grad) {
    __shared__ float sm[CLS_THREADS / 32], ss[CLS_THREADS / 32];
    __shared__ float s_lse, s_target;
    const size_t row = blockIdx.x;
    X *x = logits + row * Vp;
    const int target = targets[row];
    float m = -INFINITY, s = 0.0f;
    for (int i = threadIdx.x; i < V; i += CLS_THREADS) {
        float v = sm_tof(x[i]);
        if (v > m) {
            s = (m == -INFINITY ? 0.0f : s * __expf(m - v)) + 1.0f;
            m = v;
        } else {
            s += __expf(v - m);
        }
    }
    for (int o = 16; o > 0; o >>= 1) { // fixed butterfly: the same merge order every run
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        online_merge(m, s, m2, s2);
    }
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) { sm[warp] = m; ss[warp] = s; }
    if (threadIdx.x == 0) s_target = sm_tof(x[target]);
    __syncthreads();
    if (threadIdx.x == 0) {
        float M = sm[0], S = ss[0];
        for (int w = 1; w < CLS_THREADS / 32; w++) online_merge(M, S, sm[w], ss[w]);
        float lse = M + logf(S);
        s_lse = lse;
        losses[row] = lse - s_target;
    }
    __syncthreads();
    if (!write_grad) return;
    const float lse = s_lse;
    for (int i = threadIdx.x; i < Vp; i += CLS_THREADS) {
        float g = 0.0f;
        if (i < V) g = __expf(sm_tof(x[i]) - lse) - (i == target ? 1.0f : 0.0f);
        x[i] = sm_fromf<X>(g);
    }
}

template <typename X>
cudaError_t sm_cu_classifier_fwd(X *logits, float *losses, const int32_t *targets, int N, int V, int Vp,
                                 int write_grad, cudaStream_t s) {
    k_classifier<X><<<N, CLS_THREADS, 0, s>>>(logits, losses, targets, V, Vp, write_grad);
    return cudaGetLastError();
}

template cudaError_t sm_cu_classifier_fwd<float>(float *, float *, const int32_t *, int, int, int, int, cudaStream_t);
template cudaError_t sm_cu_classifier_fwd<bf16>(bf16 *, float *, const int32_t *, int, int, int, int, cudaStream_t);
