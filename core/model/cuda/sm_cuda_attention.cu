// sm_cuda_attention.cu - fused causal self-attention, flash style: scores live in registers a tile at a
// time, K/V (forward, dQ) or Q/dO (dK/dV) tiles pass through shared memory, the softmax is done online
// and only the per-query log-sum-exp is stored. The backward pass recomputes the probabilities from it.
// dQ and dK/dV are computed by two kernels (each owning its outputs) instead of one kernel with atomic
// dQ updates: this costs one extra pass over the scores but keeps the gradients bitwise reproducible.
// Arithmetic is fp32 on CUDA cores (inputs are widened on load).
#include <math.h>
#include <type_traits>
#include "sm_cuda_kernels.cuh"

#define ATT_BR 64 /* queries per tile */
#define ATT_BC 64 /* keys per tile */
#define ATT_SUB 16 /* keys scored together between two rescalings of the output accumulator */

// One thread per query; q (pre-scaled) and the output accumulator stay in registers.
template <typename X, int HS>
__global__ void __launch_bounds__(ATT_BR) k_attn_fwd(X *out, float *lse, const X *qkv, int T, int NH, float scale) {
    __shared__ __align__(16) float Ks[ATT_BC][HS];
    __shared__ __align__(16) float Vs[ATT_BC][HS];
    const int tile = gridDim.x - 1 - blockIdx.x; // the longest (last) query tiles start first
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int C = NH * HS;
    const size_t C3 = 3 * (size_t)C;
    const X *base = qkv + (size_t)b * T * C3 + (size_t)h * HS;
    const int q0 = tile * ATT_BR, i = q0 + threadIdx.x;

    for (int e = threadIdx.x; e < ATT_BR * HS; e += ATT_BR) { // Q tile, coalesced, through shared memory
        int r = e / HS, d = e % HS;
        Ks[r][d] = q0 + r < T ? sm_tof(base[(size_t)(q0 + r) * C3 + d]) * scale : 0.0f;
    }
    __syncthreads();
    float q[HS], o[HS];
#pragma unroll
    for (int d = 0; d < HS; d++) {
        q[d] = Ks[threadIdx.x][d];
        o[d] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    const int kend = min(T, q0 + ATT_BR);
    for (int j0 = 0; j0 < kend; j0 += ATT_BC) {
        __syncthreads();
        for (int e = threadIdx.x; e < ATT_BC * HS; e += ATT_BR) {
            int r = e / HS, d = e % HS, j = j0 + r;
            Ks[r][d] = j < T ? sm_tof(base[(size_t)j * C3 + C + d]) : 0.0f;
            Vs[r][d] = j < T ? sm_tof(base[(size_t)j * C3 + 2 * C + d]) : 0.0f;
        }
        __syncthreads();
        int jn = i < T ? min(ATT_BC, i - j0 + 1) : 0; // causal: keys j0..i of this tile
        for (int js = 0; js < jn; js += ATT_SUB) {
            float sc[ATT_SUB];
            float mx = m;
#pragma unroll
            for (int u = 0; u < ATT_SUB; u++) {
                float acc = -INFINITY;
                if (js + u < jn) {
                    const float4 *k4 = reinterpret_cast<const float4 *>(Ks[js + u]);
                    acc = 0.0f;
#pragma unroll
                    for (int c = 0; c < HS / 4; c++) {
                        float4 k = k4[c];
                        acc += q[4 * c] * k.x + q[4 * c + 1] * k.y + q[4 * c + 2] * k.z + q[4 * c + 3] * k.w;
                    }
                }
                sc[u] = acc;
                mx = fmaxf(mx, acc);
            }
            float corr = __expf(m - mx); // 0 on the first block (m = -inf, mx finite)
            l *= corr;
#pragma unroll
            for (int d = 0; d < HS; d++) o[d] *= corr;
#pragma unroll
            for (int u = 0; u < ATT_SUB; u++) {
                float p = __expf(sc[u] - mx);
                l += p;
                const float4 *v4 = reinterpret_cast<const float4 *>(Vs[js + u]);
#pragma unroll
                for (int c = 0; c < HS / 4; c++) {
                    float4 v = v4[c];
                    o[4 * c] += p * v.x;
                    o[4 * c + 1] += p * v.y;
                    o[4 * c + 2] += p * v.z;
                    o[4 * c + 3] += p * v.w;
                }
            }
            m = mx;
        }
    }
    __syncthreads();
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
    for (int d = 0; d < HS; d++) Ks[threadIdx.x][d] = o[d] * inv;
    if (i < T) lse[(size_t)bh * T + i] = m + logf(l);
    __syncthreads();
    for (int e = threadIdx.x; e < ATT_BR * HS; e += ATT_BR) { // coalesced store
        int r = e / HS, d = e % HS;
        if (q0 + r < T) out[((size_t)b * T + q0 + r) * C + (size_t)h * HS + d] = sm_fromf<X>(Ks[r][d]);
    }
}

// delta[b,h,t] = dout . out over the head's channels (the softmax backward's row term). One warp per row.
template <typename X, int HS>
__global__ void k_attn_delta(float *delta, const X *dout, const X *out, int B, int T, int NH) {
    size_t w = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (w >= (size_t)B * T * NH) return;
    int h = (int)(w % NH);
    size_t bt = w / NH;
    int b = (int)(bt / T), t = (int)(bt % T);
    size_t off = bt * NH * HS + (size_t)h * HS;
    float acc = 0.0f;
    for (int d = lane; d < HS; d += 32) acc += sm_tof(dout[off + d]) * sm_tof(out[off + d]);
    acc = sm_warp_sum(acc);
    if (lane == 0) delta[((size_t)b * NH + h) * T + t] = acc;
}

// Two threads per row (key or query) split the head dimension by alternating float4 chunks (thread hf
// owns chunks 2c+hf), so the pair's shared-memory reads fall in different banks; dot products are
// completed with one shuffle. All threads of a warp run the same trip counts (masking, not branching),
// as the full-warp shuffles require.
#define NCH (HS / 8)

template <typename X, int HS>
__global__ void __launch_bounds__(2 * ATT_BC) k_attn_bwd_dkdv(X *dqkv, const X *qkv, const X *dout, const float *lse,
                                                           const float *delta, int T, int NH, float scale) {
    __shared__ __align__(16) float Qs[ATT_BR][HS];
    __shared__ __align__(16) float Os[ATT_BR][HS]; // dout tile
    __shared__ float Ls[ATT_BR], Ds[ATT_BR];
    const int ktile = blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int C = NH * HS;
    const size_t C3 = 3 * (size_t)C;
    const X *qkv_b = qkv + (size_t)b * T * C3 + (size_t)h * HS;
    const X *do_b = dout + (size_t)b * T * C + (size_t)h * HS;
    const float *lse_bh = lse + (size_t)bh * T, *del_bh = delta + (size_t)bh * T;
    const int hf = threadIdx.x & 1, j = ktile * ATT_BC + (threadIdx.x >> 1);

    float k[4 * NCH], v[4 * NCH], dk[4 * NCH], dv[4 * NCH];
#pragma unroll
    for (int c = 0; c < NCH; c++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int d = 4 * (2 * c + hf) + e;
            k[4 * c + e] = j < T ? sm_tof(qkv_b[(size_t)j * C3 + C + d]) : 0.0f;
            v[4 * c + e] = j < T ? sm_tof(qkv_b[(size_t)j * C3 + 2 * C + d]) : 0.0f;
            dk[4 * c + e] = 0.0f;
            dv[4 * c + e] = 0.0f;
        }
    for (int i0 = ktile * ATT_BC; i0 < T; i0 += ATT_BR) { // only queries at or after this key tile
        __syncthreads();
        for (int e = threadIdx.x; e < ATT_BR * HS; e += 2 * ATT_BC) {
            int r = e / HS, d = e % HS, i = i0 + r;
            Qs[r][d] = i < T ? sm_tof(qkv_b[(size_t)i * C3 + d]) : 0.0f;
            Os[r][d] = i < T ? sm_tof(do_b[(size_t)i * C + d]) : 0.0f;
        }
        for (int r = threadIdx.x; r < ATT_BR; r += 2 * ATT_BC) {
            Ls[r] = i0 + r < T ? lse_bh[i0 + r] : 0.0f;
            Ds[r] = i0 + r < T ? del_bh[i0 + r] : 0.0f;
        }
        __syncthreads();
        const int iend = min(ATT_BR, T - i0);
        for (int ii = 0; ii < iend; ii++) {
            const float4 *q4 = reinterpret_cast<const float4 *>(Qs[ii]);
            const float4 *o4 = reinterpret_cast<const float4 *>(Os[ii]);
            float s = 0.0f, dp = 0.0f;
#pragma unroll
            for (int c = 0; c < NCH; c++) {
                float4 qq = q4[2 * c + hf], oo = o4[2 * c + hf];
                s += qq.x * k[4 * c] + qq.y * k[4 * c + 1] + qq.z * k[4 * c + 2] + qq.w * k[4 * c + 3];
                dp += oo.x * v[4 * c] + oo.y * v[4 * c + 1] + oo.z * v[4 * c + 2] + oo.w * v[4 * c + 3];
            }
            s += __shfl_xor_sync(0xffffffffu, s, 1);
            dp += __shfl_xor_sync(0xffffffffu, dp, 1);
            bool valid = j < T && i0 + ii >= j;
            float p = valid ? __expf(s * scale - Ls[ii]) : 0.0f;
            float ds = p * (dp - Ds[ii]);
#pragma unroll
            for (int c = 0; c < NCH; c++) {
                float4 qq = q4[2 * c + hf], oo = o4[2 * c + hf];
                dv[4 * c] += p * oo.x;
                dv[4 * c + 1] += p * oo.y;
                dv[4 * c + 2] += p * oo.z;
                dv[4 * c + 3] += p * oo.w;
                dk[4 * c] += ds * qq.x;
                dk[4 * c + 1] += ds * qq.y;
                dk[4 * c + 2] += ds * qq.z;
                dk[4 * c + 3] += ds * qq.w;
            }
        }
    }
    if (j < T) {
        X *row = dqkv + ((size_t)b * T + j) * C3 + (size_t)h * HS;
#pragma unroll
        for (int c = 0; c < NCH; c++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int d = 4 * (2 * c + hf) + e;
                row[C + d] = sm_fromf<X>(dk[4 * c + e] * scale);
                row[2 * C + d] = sm_fromf<X>(dv[4 * c + e]);
            }
    }
}

template <typename X, int HS>
__global__ void __launch_bounds__(2 * ATT_BR) k_attn_bwd_dq(X *dqkv, const X *qkv, const X *dout, const float *lse,
                                                         const float *delta, int T, int NH, float scale) {
    __shared__ __align__(16) float Ks[ATT_BC][HS];
    __shared__ __align__(16) float Vs[ATT_BC][HS];
    const int qtile = gridDim.x - 1 - blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int C = NH * HS;
    const size_t C3 = 3 * (size_t)C;
    const X *qkv_b = qkv + (size_t)b * T * C3 + (size_t)h * HS;
    const X *do_b = dout + (size_t)b * T * C + (size_t)h * HS;
    const int hf = threadIdx.x & 1, i = qtile * ATT_BR + (threadIdx.x >> 1);
    const float L = i < T ? lse[(size_t)bh * T + i] : 0.0f, D = i < T ? delta[(size_t)bh * T + i] : 0.0f;

    float q[4 * NCH], g[4 * NCH], dq[4 * NCH];
#pragma unroll
    for (int c = 0; c < NCH; c++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int d = 4 * (2 * c + hf) + e;
            q[4 * c + e] = i < T ? sm_tof(qkv_b[(size_t)i * C3 + d]) : 0.0f;
            g[4 * c + e] = i < T ? sm_tof(do_b[(size_t)i * C + d]) : 0.0f;
            dq[4 * c + e] = 0.0f;
        }
    const int kend = min(T, (qtile + 1) * ATT_BR);
    for (int j0 = 0; j0 < kend; j0 += ATT_BC) {
        __syncthreads();
        for (int e = threadIdx.x; e < ATT_BC * HS; e += 2 * ATT_BR) {
            int r = e / HS, d = e % HS, j = j0 + r;
            Ks[r][d] = j < T ? sm_tof(qkv_b[(size_t)j * C3 + C + d]) : 0.0f;
            Vs[r][d] = j < T ? sm_tof(qkv_b[(size_t)j * C3 + 2 * C + d]) : 0.0f;
        }
        __syncthreads();
        const int jn = min(ATT_BC, kend - j0);
        for (int jj = 0; jj < jn; jj++) {
            const float4 *k4 = reinterpret_cast<const float4 *>(Ks[jj]);
            const float4 *v4 = reinterpret_cast<const float4 *>(Vs[jj]);
            float s = 0.0f, dp = 0.0f;
#pragma unroll
            for (int c = 0; c < NCH; c++) {
                float4 kk = k4[2 * c + hf], vv = v4[2 * c + hf];
                s += q[4 * c] * kk.x + q[4 * c + 1] * kk.y + q[4 * c + 2] * kk.z + q[4 * c + 3] * kk.w;
                dp += g[4 * c] * vv.x + g[4 * c + 1] * vv.y + g[4 * c + 2] * vv.z + g[4 * c + 3] * vv.w;
            }
            s += __shfl_xor_sync(0xffffffffu, s, 1);
            dp += __shfl_xor_sync(0xffffffffu, dp, 1);
            bool valid = i < T && j0 + jj <= i;
            float p = valid ? __expf(s * scale - L) : 0.0f;
            float ds = p * (dp - D);
#pragma unroll
            for (int c = 0; c < NCH; c++) {
                float4 kk = k4[2 * c + hf];
                dq[4 * c] += ds * kk.x;
                dq[4 * c + 1] += ds * kk.y;
                dq[4 * c + 2] += ds * kk.z;
                dq[4 * c + 3] += ds * kk.w;
            }
        }
    }
    if (i < T) {
        X *row = dqkv + ((size_t)b * T + i) * C3 + (size_t)h * HS;
#pragma unroll
        for (int c = 0; c < NCH; c++)
#pragma unroll
            for (int e = 0; e < 4; e++) row[4 * (2 * c + hf) + e] = sm_fromf<X>(dq[4 * c + e] * scale);
    }
}

int sm_cu_attention_supports(int HS) { return HS == 32 || HS == 64; }

template <typename X, int HS>
static cudaError_t attn_fwd(X *out, float *lse, const X *qkv, int B, int T, int NH, cudaStream_t s) {
    dim3 grid(sm_ceil_div(T, ATT_BR), B * NH);
    k_attn_fwd<X, HS><<<grid, ATT_BR, 0, s>>>(out, lse, qkv, T, NH, 1.0f / sqrtf((float)HS));
    return cudaGetLastError();
}

template <typename X, int HS>
static cudaError_t attn_bwd(X *dqkv, float *delta, const X *dout, const X *out, const X *qkv, const float *lse,
                            int B, int T, int NH, int tc, cudaStream_t s) {
    float scale = 1.0f / sqrtf((float)HS);
    size_t rows = (size_t)B * T * NH;
    k_attn_delta<X, HS><<<sm_ceil_div(rows * 32, 256), 256, 0, s>>>(delta, dout, out, B, T, NH);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    if constexpr (std::is_same<X, bf16>::value) {
        if (tc) return sm_cu_attention_tc_bwd(dqkv, delta, dout, qkv, lse, B, T, NH, HS, s);
    }
    dim3 gk(sm_ceil_div(T, ATT_BC), B * NH), gq(sm_ceil_div(T, ATT_BR), B * NH);
    k_attn_bwd_dkdv<X, HS><<<gk, 2 * ATT_BC, 0, s>>>(dqkv, qkv, dout, lse, delta, T, NH, scale);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
    k_attn_bwd_dq<X, HS><<<gq, 2 * ATT_BR, 0, s>>>(dqkv, qkv, dout, lse, delta, T, NH, scale);
    return cudaGetLastError();
}

template <typename X>
cudaError_t sm_cu_attention_fwd(X *out, float *lse, const X *qkv, int B, int T, int NH, int HS, int tc,
                                cudaStream_t s) {
    if constexpr (std::is_same<X, bf16>::value) {
        if (tc) return sm_cu_attention_tc_fwd(out, lse, qkv, B, T, NH, HS, s);
    }
    switch (HS) {
    case 32: return attn_fwd<X, 32>(out, lse, qkv, B, T, NH, s);
    case 64: return attn_fwd<X, 64>(out, lse, qkv, B, T, NH, s);
    default: return cudaErrorInvalidValue;
    }
}

template <typename X>
cudaError_t sm_cu_attention_bwd(X *dqkv, float *delta, const X *dout, const X *out, const X *qkv,
                                const float *lse, int B, int T, int NH, int HS, int tc, cudaStream_t s) {
    switch (HS) {
    case 32: return attn_bwd<X, 32>(dqkv, delta, dout, out, qkv, lse, B, T, NH, tc, s);
    case 64: return attn_bwd<X, 64>(dqkv, delta, dout, out, qkv, lse, B, T, NH, tc, s);
    default: return cudaErrorInvalidValue;
    }
}

template cudaError_t sm_cu_attention_fwd<float>(float *, float *, const float *, int, int, int, int, int,
                                                cudaStream_t);
template cudaError_t sm_cu_attention_fwd<bf16>(bf16 *, float *, const bf16 *, int, int, int, int, int, cudaStream_t);
template cudaError_t sm_cu_attention_bwd<float>(float *, float *, const float *, const float *, const float *,
                                                const float *, int, int, int, int, int, cudaStream_t);
template cudaError_t sm_cu_attention_bwd<bf16>(bf16 *, float *, const bf16 *, const bf16 *, const bf16 *,
                                               const float *, int, int, int, int, int, cudaStream_t);
