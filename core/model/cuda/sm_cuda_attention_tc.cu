// sm_cuda_attention_tc.cu - the bf16 attention on tensor cores (WMMA 16x16x16, fp32 accumulation): the
// same flash-style algorithm and the same two-kernel, atomics-free backward as sm_cuda_attention.cu, with
// the five products per tile (Q K^T, P V forward; K Q^T, V dO^T, P^T dO, dS^T Q for dK/dV; Q K^T, dO V^T,
// dS K for dQ) on the tensor cores. Each warp owns 16 rows of a 64-row tile; scores go through shared
// memory between the products and the row-wise softmax (2 lanes per row). The output accumulator of the
// forward pass lives in shared memory, because the online softmax rescales it row by row; the backward
// accumulators (no rescaling) stay in fragments. P and dS are rounded to bf16 as the products' inputs.
#include <math.h>
#include <mma.h>
#include "sm_cuda_kernels.cuh"

using namespace nvcuda;

#define TC_TILE 64
#define TC_THREADS 128 /* 4 warps x 16 rows */

template <int HS> struct tc_dims {
    static constexpr int LDH = HS + 8;      // bf16 Q/K/V/dO rows (+16 bytes against bank conflicts)
    static constexpr int LDS = TC_TILE + 4; // fp32 score rows
    static constexpr int LDP = TC_TILE + 8; // bf16 P / dS rows
    static constexpr int LDO = HS + 4;      // fp32 output rows
};

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> frag_a;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> frag_b_row;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> frag_b_col;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_c;

// Copies rows r0..r0+63 (HS bf16 each, row stride `stride` elements in global memory) into a tile of
// LDH-strided rows, 16 bytes at a time; rows at or beyond T are zero.
template <int HS>
__device__ __forceinline__ void tc_load_tile(bf16 *dst, const bf16 *src, size_t stride, int r0, int T) {
    constexpr int CH = HS / 8; // 16-byte chunks per row
    for (int e = threadIdx.x; e < TC_TILE * CH; e += TC_THREADS) {
        int r = e / CH, c = e % CH;
        uint4 v = {0u, 0u, 0u, 0u};
        if (r0 + r < T) v = reinterpret_cast<const uint4 *>(src + (size_t)(r0 + r) * stride)[c];
        reinterpret_cast<uint4 *>(dst + r * tc_dims<HS>::LDH)[c] = v;
    }
}

// S (16 x 64, fp32, row stride LDS) = A (16 x HS, from `a` fragments) times the 64 rows of `rows` transposed.
template <int HS>
__device__ __forceinline__ void tc_scores(float *S, const frag_a *a, const bf16 *rows) {
    for (int nb = 0; nb < TC_TILE / 16; nb++) {
        frag_c acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int kk = 0; kk < HS / 16; kk++) {
            frag_b_col bt;
            wmma::load_matrix_sync(bt, rows + nb * 16 * tc_dims<HS>::LDH + kk * 16, tc_dims<HS>::LDH);
            wmma::mma_sync(acc, a[kk], bt, acc);
        }
        wmma::store_matrix_sync(S + nb * 16, acc, tc_dims<HS>::LDS, wmma::mem_row_major);
    }
}

template <int HS> static size_t tc_fwd_smem() {
    typedef tc_dims<HS> D;
    return 3 * TC_TILE * D::LDH * 2 + TC_TILE * D::LDS * 4 + TC_TILE * D::LDP * 2 + TC_TILE * D::LDO * 4 + TC_TILE * 4;
}
template <int HS> static size_t tc_bwd_smem() {
    typedef tc_dims<HS> D;
    return 4 * TC_TILE * D::LDH * 2 + 2 * TC_TILE * D::LDS * 4 + 2 * TC_TILE * D::LDP * 2 + 2 * TC_TILE * 4;
}

template <int HS>
__global__ void __launch_bounds__(TC_THREADS) k_tc_attn_fwd(bf16 *out, float *lse, const bf16 *qkv, int T, int NH,
                                                            float scale) {
    typedef tc_dims<HS> D;
    SM_DYNAMIC_SHARED(smem);
    bf16 *Qs = reinterpret_cast<bf16 *>(smem), *Ks = Qs + TC_TILE * D::LDH, *Vs = Ks + TC_TILE * D::LDH;
    float *Ss = reinterpret_cast<float *>(Vs + TC_TILE * D::LDH);
    bf16 *Ps = reinterpret_cast<bf16 *>(Ss + TC_TILE * D::LDS);
    float *Os = reinterpret_cast<float *>(Ps + TC_TILE * D::LDP), *corr = Os + TC_TILE * D::LDO;
    const int tile = gridDim.x - 1 - blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int C = NH * HS, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t C3 = 3 * (size_t)C;
    const bf16 *base = qkv + (size_t)b * T * C3 + (size_t)h * HS;
    const int q0 = tile * TC_TILE, r = warp * 16 + lane / 2, half = lane & 1, i = q0 + r;

    tc_load_tile<HS>(Qs, base, C3, q0, T);
    for (int e = threadIdx.x; e < TC_TILE * D::LDO; e += TC_THREADS) Os[e] = 0.0f;
    __syncthreads();
    frag_a qa[HS / 16];
    for (int kk = 0; kk < HS / 16; kk++) wmma::load_matrix_sync(qa[kk], Qs + warp * 16 * D::LDH + kk * 16, D::LDH);
    float m = -INFINITY, l = 0.0f;
    float *Sw = Ss + warp * 16 * D::LDS, *srow = Ss + r * D::LDS, *orow = Os + r * D::LDO;
    bf16 *prow = Ps + r * D::LDP;
    const int kend = min(T, q0 + TC_TILE);
    for (int j0 = 0; j0 < kend; j0 += TC_TILE) {
        __syncthreads(); // every warp is done with the previous K/V tile
        tc_load_tile<HS>(Ks, base + C, C3, j0, T);
        tc_load_tile<HS>(Vs, base + 2 * C, C3, j0, T);
        __syncthreads();
        tc_scores<HS>(Sw, qa, Ks);
        __syncwarp();
        float mx = -INFINITY;
        for (int c = half * 32; c < half * 32 + 32; c++) {
            float s = (j0 + c <= i && i < T) ? srow[c] * scale : -INFINITY;
            srow[c] = s;
            mx = fmaxf(mx, s);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        float mnew = fmaxf(m, mx);
        float cr = mnew == -INFINITY ? 1.0f : __expf(m - mnew);
        float sum = 0.0f;
        for (int c = half * 32; c < half * 32 + 32; c++) {
            float p = srow[c] == -INFINITY ? 0.0f : __expf(srow[c] - mnew);
            prow[c] = __float2bfloat16_rn(p);
            sum += p;
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        l = l * cr + sum;
        m = mnew;
        if (half == 0) corr[r] = cr;
        __syncwarp();
        for (int db = 0; db < HS / 16; db++) { // P V (16 x HS) into the score rows, then O = O * corr + P V
            frag_c acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kb = 0; kb < TC_TILE / 16; kb++) {
                frag_a pa;
                frag_b_row vb;
                wmma::load_matrix_sync(pa, Ps + warp * 16 * D::LDP + kb * 16, D::LDP);
                wmma::load_matrix_sync(vb, Vs + kb * 16 * D::LDH + db * 16, D::LDH);
                wmma::mma_sync(acc, pa, vb, acc);
            }
            wmma::store_matrix_sync(Sw + db * 16, acc, D::LDS, wmma::mem_row_major);
        }
        __syncwarp();
        for (int d = half * (HS / 2); d < (half + 1) * (HS / 2); d++) orow[d] = orow[d] * corr[r] + srow[d];
        __syncwarp();
    }
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int d = half * (HS / 2); d < (half + 1) * (HS / 2); d++) orow[d] *= inv;
    if (half == 0 && i < T) lse[(size_t)bh * T + i] = m + logf(l);
    __syncthreads();
    for (int e = threadIdx.x; e < TC_TILE * HS; e += TC_THREADS) {
        int rr = e / HS, d = e % HS;
        if (q0 + rr < T) out[((size_t)b * T + q0 + rr) * C + (size_t)h * HS + d] = __float2bfloat16_rn(Os[rr * D::LDO + d]);
    }
}

// dK, dV for one tile of 64 keys (warp w: keys 16w..16w+15), looping over the query tiles at or after it.
template <int HS>
__global__ void __launch_bounds__(TC_THREADS) k_tc_attn_bwd_dkdv(bf16 *dqkv, const bf16 *qkv, const bf16 *dout,
                                                                 const float *lse, const float *delta, int T, int NH,
                                                                 float scale) {
    typedef tc_dims<HS> D;
    SM_DYNAMIC_SHARED(smem);
    bf16 *Ks = reinterpret_cast<bf16 *>(smem), *Vs = Ks + TC_TILE * D::LDH, *Qs = Vs + TC_TILE * D::LDH,
         *Gs = Qs + TC_TILE * D::LDH; // Gs: the dout tile
    float *St = reinterpret_cast<float *>(Gs + TC_TILE * D::LDH), *dPt = St + TC_TILE * D::LDS;
    bf16 *Pt = reinterpret_cast<bf16 *>(dPt + TC_TILE * D::LDS), *dSt = Pt + TC_TILE * D::LDP;
    float *Ls = reinterpret_cast<float *>(dSt + TC_TILE * D::LDP), *Ds = Ls + TC_TILE;
    const int ktile = blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int C = NH * HS, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t C3 = 3 * (size_t)C;
    const bf16 *base = qkv + (size_t)b * T * C3 + (size_t)h * HS, *gbase = dout + (size_t)b * T * C + (size_t)h * HS;
    const int j0 = ktile * TC_TILE, r = warp * 16 + lane / 2, half = lane & 1, j = j0 + r;

    tc_load_tile<HS>(Ks, base + C, C3, j0, T);
    tc_load_tile<HS>(Vs, base + 2 * C, C3, j0, T);
    __syncthreads();
    frag_a ka[HS / 16], va[HS / 16];
    frag_c dk[HS / 16], dv[HS / 16];
    for (int kk = 0; kk < HS / 16; kk++) {
        wmma::load_matrix_sync(ka[kk], Ks + warp * 16 * D::LDH + kk * 16, D::LDH);
        wmma::load_matrix_sync(va[kk], Vs + warp * 16 * D::LDH + kk * 16, D::LDH);
        wmma::fill_fragment(dk[kk], 0.0f);
        wmma::fill_fragment(dv[kk], 0.0f);
    }
    float *Sw = St + warp * 16 * D::LDS, *dPw = dPt + warp * 16 * D::LDS;
    for (int i0 = j0; i0 < T; i0 += TC_TILE) {
        __syncthreads();
        tc_load_tile<HS>(Qs, base, C3, i0, T);
        tc_load_tile<HS>(Gs, gbase, C, i0, T);
        for (int rr = threadIdx.x; rr < TC_TILE; rr += TC_THREADS) {
            Ls[rr] = i0 + rr < T ? lse[(size_t)bh * T + i0 + rr] : 0.0f;
            Ds[rr] = i0 + rr < T ? delta[(size_t)bh * T + i0 + rr] : 0.0f;
        }
        __syncthreads();
        tc_scores<HS>(Sw, ka, Qs);  // S^T: keys x queries
        tc_scores<HS>(dPw, va, Gs); // dP^T = V dO^T
        __syncwarp();
        for (int c = half * 32; c < half * 32 + 32; c++) {
            int i = i0 + c;
            bool valid = j < T && i < T && i >= j;
            float p = valid ? __expf(St[r * D::LDS + c] * scale - Ls[c]) : 0.0f;
            float ds = p * (dPt[r * D::LDS + c] - Ds[c]);
            Pt[r * D::LDP + c] = __float2bfloat16_rn(p);
            dSt[r * D::LDP + c] = __float2bfloat16_rn(ds);
        }
        __syncwarp();
        for (int db = 0; db < HS / 16; db++)
            for (int kb = 0; kb < TC_TILE / 16; kb++) {
                frag_a pa, sa;
                frag_b_row gb, qb;
                wmma::load_matrix_sync(pa, Pt + warp * 16 * D::LDP + kb * 16, D::LDP);
                wmma::load_matrix_sync(gb, Gs + kb * 16 * D::LDH + db * 16, D::LDH);
                wmma::mma_sync(dv[db], pa, gb, dv[db]);
                wmma::load_matrix_sync(sa, dSt + warp * 16 * D::LDP + kb * 16, D::LDP);
                wmma::load_matrix_sync(qb, Qs + kb * 16 * D::LDH + db * 16, D::LDH);
                wmma::mma_sync(dk[db], sa, qb, dk[db]);
            }
    }
    __syncthreads();
    for (int db = 0; db < HS / 16; db++) {
        wmma::store_matrix_sync(Sw + db * 16, dk[db], D::LDS, wmma::mem_row_major);
        wmma::store_matrix_sync(dPw + db * 16, dv[db], D::LDS, wmma::mem_row_major);
    }
    __syncthreads();
    for (int e = threadIdx.x; e < TC_TILE * HS; e += TC_THREADS) {
        int rr = e / HS, d = e % HS;
        if (j0 + rr >= T) continue;
        bf16 *row = dqkv + ((size_t)b * T + j0 + rr) * C3 + (size_t)h * HS;
        row[C + d] = __float2bfloat16_rn(St[rr * D::LDS + d] * scale);
        row[2 * C + d] = __float2bfloat16_rn(dPt[rr * D::LDS + d]);
    }
}

// dQ for one tile of 64 queries, looping over the key tiles up to it.
template <int HS>
__global__ void __launch_bounds__(TC_THREADS) k_tc_attn_bwd_dq(bf16 *dqkv, const bf16 *qkv, const bf16 *dout,
                                                               const float *lse, const float *delta, int T, int NH,
                                                               float scale) {
    typedef tc_dims<HS> D;
    SM_DYNAMIC_SHARED(smem);
    bf16 *Qs = reinterpret_cast<bf16 *>(smem), *Gs = Qs + TC_TILE * D::LDH, *Ks = Gs + TC_TILE * D::LDH,
         *Vs = Ks + TC_TILE * D::LDH;
    float *S = reinterpret_cast<float *>(Vs + TC_TILE * D::LDH), *dP = S + TC_TILE * D::LDS;
    bf16 *dS = reinterpret_cast<bf16 *>(dP + TC_TILE * D::LDS);
    float *Lq = reinterpret_cast<float *>(dS + 2 * TC_TILE * D::LDP), *Dq = Lq + TC_TILE;
    const int qtile = gridDim.x - 1 - blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int C = NH * HS, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t C3 = 3 * (size_t)C;
    const bf16 *base = qkv + (size_t)b * T * C3 + (size_t)h * HS, *gbase = dout + (size_t)b * T * C + (size_t)h * HS;
    const int q0 = qtile * TC_TILE, r = warp * 16 + lane / 2, half = lane & 1, i = q0 + r;

    tc_load_tile<HS>(Qs, base, C3, q0, T);
    tc_load_tile<HS>(Gs, gbase, C, q0, T);
    for (int rr = threadIdx.x; rr < TC_TILE; rr += TC_THREADS) {
        Lq[rr] = q0 + rr < T ? lse[(size_t)bh * T + q0 + rr] : 0.0f;
        Dq[rr] = q0 + rr < T ? delta[(size_t)bh * T + q0 + rr] : 0.0f;
    }
    __syncthreads();
    frag_a qa[HS / 16], ga[HS / 16];
    frag_c dq[HS / 16];
    for (int kk = 0; kk < HS / 16; kk++) {
        wmma::load_matrix_sync(qa[kk], Qs + warp * 16 * D::LDH + kk * 16, D::LDH);
        wmma::load_matrix_sync(ga[kk], Gs + warp * 16 * D::LDH + kk * 16, D::LDH);
        wmma::fill_fragment(dq[kk], 0.0f);
    }
    float *Sw = S + warp * 16 * D::LDS, *dPw = dP + warp * 16 * D::LDS;
    const int kend = min(T, q0 + TC_TILE);
    for (int j0 = 0; j0 < kend; j0 += TC_TILE) {
        __syncthreads();
        tc_load_tile<HS>(Ks, base + C, C3, j0, T);
        tc_load_tile<HS>(Vs, base + 2 * C, C3, j0, T);
        __syncthreads();
        tc_scores<HS>(Sw, qa, Ks);
        tc_scores<HS>(dPw, ga, Vs);
        __syncwarp();
        for (int c = half * 32; c < half * 32 + 32; c++) {
            bool valid = i < T && j0 + c <= i;
            float p = valid ? __expf(S[r * D::LDS + c] * scale - Lq[r]) : 0.0f;
            dS[r * D::LDP + c] = __float2bfloat16_rn(p * (dP[r * D::LDS + c] - Dq[r]));
        }
        __syncwarp();
        for (int db = 0; db < HS / 16; db++)
            for (int kb = 0; kb < TC_TILE / 16; kb++) {
                frag_a sa;
                frag_b_row kb_;
                wmma::load_matrix_sync(sa, dS + warp * 16 * D::LDP + kb * 16, D::LDP);
                wmma::load_matrix_sync(kb_, Ks + kb * 16 * D::LDH + db * 16, D::LDH);
                wmma::mma_sync(dq[db], sa, kb_, dq[db]);
            }
    }
    __syncthreads();
    for (int db = 0; db < HS / 16; db++) wmma::store_matrix_sync(Sw + db * 16, dq[db], D::LDS, wmma::mem_row_major);
    __syncthreads();
    for (int e = threadIdx.x; e < TC_TILE * HS; e += TC_THREADS) {
        int rr = e / HS, d = e % HS;
        if (q0 + rr < T)
            dqkv[((size_t)b * T + q0 + rr) * C3 + (size_t)h * HS + d] = __float2bfloat16_rn(S[rr * D::LDS + d] * scale);
    }
}

template <int HS>
static cudaError_t tc_fwd(bf16 *out, float *lse, const bf16 *qkv, int B, int T, int NH, cudaStream_t s) {
    size_t sm = tc_fwd_smem<HS>();
    dim3 grid(sm_ceil_div(T, TC_TILE), B * NH);
    k_tc_attn_fwd<HS><<<grid, TC_THREADS, sm, s>>>(out, lse, qkv, T, NH, 1.0f / sqrtf((float)HS));
    return cudaGetLastError();
}

template <int HS>
static cudaError_t tc_bwd(bf16 *dqkv, const float *delta, const bf16 *dout, const bf16 *qkv, const float *lse, int B,
                          int T, int NH, cudaStream_t s) {
    size_t sm = tc_bwd_smem<HS>();
    cudaError_t e;
    float scale = 1.0f / sqrtf((float)HS);
    dim3 grid(sm_ceil_div(T, TC_TILE), B * NH);
    k_tc_attn_bwd_dkdv<HS><<<grid, TC_THREADS, sm, s>>>(dqkv, qkv, dout, lse, delta, T, NH, scale);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
    k_tc_attn_bwd_dq<HS><<<grid, TC_THREADS, sm, s>>>(dqkv, qkv, dout, lse, delta, T, NH, scale);
    return cudaGetLastError();
}

// The kernels use more than 48 KiB of dynamic shared memory, which each must be allowed once per device.
template <int HS> static cudaError_t tc_init() {
    const int f = (int)tc_fwd_smem<HS>(), b = (int)tc_bwd_smem<HS>();
    cudaError_t e = cudaFuncSetAttribute(k_tc_attn_fwd<HS>, cudaFuncAttributeMaxDynamicSharedMemorySize, f);
    if (e == cudaSuccess) e = cudaFuncSetAttribute(k_tc_attn_bwd_dkdv<HS>, cudaFuncAttributeMaxDynamicSharedMemorySize, b);
    if (e == cudaSuccess) e = cudaFuncSetAttribute(k_tc_attn_bwd_dq<HS>, cudaFuncAttributeMaxDynamicSharedMemorySize, b);
    return e;
}

cudaError_t sm_cu_attention_tc_init(int HS) {
    switch (HS) {
    case 32: return tc_init<32>();
    case 64: return tc_init<64>();
    default: return cudaErrorInvalidValue;
    }
}

cudaError_t sm_cu_attention_tc_fwd(bf16 *out, float *lse, const bf16 *qkv, int B, int T, int NH, int HS,
                                   cudaStream_t s) {
    switch (HS) {
    case 32: return tc_fwd<32>(out, lse, qkv, B, T, NH, s);
    case 64: return tc_fwd<64>(out, lse, qkv, B, T, NH, s);
    default: return cudaErrorInvalidValue;
    }
}

cudaError_t sm_cu_attention_tc_bwd(bf16 *dqkv, const float *delta, const bf16 *dout, const bf16 *qkv, const float *lse,
                                   int B, int T, int NH, int HS, cudaStream_t s) {
    switch (HS) {
    case 32: return tc_bwd<32>(dqkv, delta, dout, qkv, lse, B, T, NH, s);
    case 64: return tc_bwd<64>(dqkv, delta, dout, qkv, lse, B, T, NH, s);
    default: return cudaErrorInvalidValue;
    }
}
