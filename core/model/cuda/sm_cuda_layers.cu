// sm_cuda_layers.cu - embedding, LayerNorm (with the residual add fused), bias and LayerNorm parameter
// gradients (deterministic column sums), GELU. Memory-bound kernels: each reads and writes its rows once
// from DRAM; repeated passes over a row (LayerNorm statistics) hit L1/L2.
#include "sm_cuda_kernels.cuh"

// ---------------------------------------------------------------- embedding
template <typename X>
__global__ void k_encoder_fwd(X *out, const int32_t *inp, const X *wte, const X *wpe, int T, int C, size_t total) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    size_t bt = i / C;
    int c = (int)(i % C), t = (int)(bt % T);
    out[i] = sm_fromf<X>(sm_tof(wte[(size_t)inp[bt] * C + c]) + sm_tof(wpe[(size_t)t * C + c]));
}

template <typename X>
cudaError_t sm_cu_encoder_fwd(X *out, const int32_t *inp, const X *wte, const X *wpe, int B, int T, int C,
                              cudaStream_t s) {
    size_t total = (size_t)B * T * C;
    k_encoder_fwd<X><<<sm_ceil_div(total, 256), 256, 0, s>>>(out, inp, wte, wpe, T, C, total);
    return cudaGetLastError();
}

template <typename X>
__global__ void k_encoder_bwd_wpe(float *dwpe, const X *dout, int B, int T, int C) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)T * C) return;
    float acc = 0.0f;
    for (int b = 0; b < B; b++) acc += sm_tof(dout[(size_t)b * T * C + i]);
    dwpe[i] += acc;
}

template <typename X>
cudaError_t sm_cu_encoder_bwd_wpe(float *dwpe, const X *dout, int B, int T, int C, cudaStream_t s) {
    k_encoder_bwd_wpe<X><<<sm_ceil_div((size_t)T * C, 256), 256, 0, s>>>(dwpe, dout, B, T, C);
    return cudaGetLastError();
}

// One block per distinct token; its threads walk the channels, each summing the token's positions in order.
template <typename X>
__global__ void k_encoder_bwd_wte(float *dwte, const X *dout, const int32_t *uniq, const int32_t *offs,
                                  const int32_t *pos, int C) {
    int u = blockIdx.x;
    int tok = uniq[u], k0 = offs[u], k1 = offs[u + 1];
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = 0.0f;
        for (int k = k0; k < k1; k++) acc += sm_tof(dout[(size_t)pos[k] * C + c]);
        dwte[(size_t)tok * C + c] += acc;
    }
}

template <typename X>
cudaError_t sm_cu_encoder_bwd_wte(float *dwte, const X *dout, const int32_t *uniq, const int32_t *offs,
                                  const int32_t *pos, int nuniq, int C, cudaStream_t s) {
    if (nuniq <= 0) return cudaSuccess;
    k_encoder_bwd_wte<X><<<nuniq, C < 256 ? 128 : 256, 0, s>>>(dwte, dout, uniq, offs, pos, C);
    return cudaGetLastError();
}

// ---------------------------------------------------------------- LayerNorm
// One warp per row. The statistics are taken over the stored (rounded) residual so that the backward
// pass, which reads the same stored values, differentiates exactly what the forward pass normalised.
template <typename X>
__global__ void k_residual_layernorm_fwd(X *res, X *ln, float *mean, float *rstd, const X *a, const X *b,
                                         const X *w, const X *bias, int N, int C) {
    int row = (int)(((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32), lane = threadIdx.x % 32;
    if (row >= N) return;
    size_t off = (size_t)row * C;
    const X *x = a + off;
    if (b) {
        X *r = res + off;
        for (int c = lane; c < C; c += 32) r[c] = sm_fromf<X>(sm_tof(x[c]) + sm_tof(b[off + c]));
        x = r; // each lane re-reads only the entries it wrote
    }
    float sum = 0.0f;
    for (int c = lane; c < C; c += 32) sum += sm_tof(x[c]);
    float m = sm_warp_sum(sum) / C;
    float sq = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float d = sm_tof(x[c]) - m;
        sq += d * d;
    }
    float r = rsqrtf(sm_warp_sum(sq) / C + 1e-5f);
    X *o = ln + off;
    for (int c = lane; c < C; c += 32) o[c] = sm_fromf<X>((sm_tof(x[c]) - m) * r * sm_tof(w[c]) + sm_tof(bias[c]));
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
}

template <typename X>
cudaError_t sm_cu_residual_layernorm_fwd(X *res, X *ln, float *mean, float *rstd, const X *a, const X *b,
                                         const X *w, const X *bias, int N, int C, cudaStream_t s) {
    k_residual_layernorm_fwd<X><<<sm_ceil_div((size_t)N * 32, 256), 256, 0, s>>>(res, ln, mean, rstd, a, b, w,
                                                                               bias, N, C);
    return cudaGetLastError();
}

template <typename X>
__global__ void k_layernorm_bwd_dx(X *dx, const X *dout, const X *x, const float *mean, const float *rstd,
                                   const X *w, int N, int C, int accumulate) {
    int row = (int)(((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32), lane = threadIdx.x % 32;
    if (row >= N) return;
    size_t off = (size_t)row * C;
    float m = mean[row], r = rstd[row];
    float s1 = 0.0f, s2 = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float dn = sm_tof(dout[off + c]) * sm_tof(w[c]);
        s1 += dn;
        s2 += dn * (sm_tof(x[off + c]) - m) * r;
    }
    float dmean = sm_warp_sum(s1) / C, dnx = sm_warp_sum(s2) / C;
    for (int c = lane; c < C; c += 32) {
        float xh = (sm_tof(x[off + c]) - m) * r;
        float d = (sm_tof(dout[off + c]) * sm_tof(w[c]) - dmean - xh * dnx) * r;
        if (accumulate) d += sm_tof(dx[off + c]);
        dx[off + c] = sm_fromf<X>(d);
    }
}

template <typename X>
cudaError_t sm_cu_layernorm_bwd_dx(X *dx, const X *dout, const X *x, const float *mean, const float *rstd,
                                   const X *w, int N, int C, int accumulate, cudaStream_t s) {
    k_layernorm_bwd_dx<X><<<sm_ceil_div((size_t)N * 32, 256), 256, 0, s>>>(dx, dout, x, mean, rstd, w, N, C,
                                                                         accumulate);
    return cudaGetLastError();
}

// ---------------------------------------------------------------- deterministic column sums
// Rows are split into at most COLSUM_CHUNKS fixed chunks (a function of N only); block (tile, chunk) sums
// 32 columns of its chunk with 8 warps in a fixed interleave, combines the warps in order and writes one
// partial per column; a second kernel adds the chunks' partials in order. No atomics, same bits every run.
#define COLSUM_CHUNKS 64
#define COLSUM_WARPS 8

size_t sm_cu_colsum_scratch(int C) { return (size_t)COLSUM_CHUNKS * 2 * C; }

template <typename X, bool LN>
__global__ void k_colsum_partial(float *partial, const X *dout, const X *x, const float *mean, const float *rstd,
                                 int N, int C, int rows_per_chunk) {
    __shared__ float sb[COLSUM_WARPS][32], sw[COLSUM_WARPS][32];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int col = blockIdx.x * 32 + lane, chunk = blockIdx.y;
    int r0 = chunk * rows_per_chunk, r1 = min(N, r0 + rows_per_chunk);
    float ab = 0.0f, aw = 0.0f;
    if (col < C) {
        for (int r = r0 + warp; r < r1; r += COLSUM_WARPS) {
            float d = sm_tof(dout[(size_t)r * C + col]);
            ab += d;
            if (LN) aw += d * (sm_tof(x[(size_t)r * C + col]) - mean[r]) * rstd[r];
        }
    }
    sb[warp][lane] = ab;
    sw[warp][lane] = aw;
    __syncthreads();
    if (warp == 0 && col < C) {
        float tb = 0.0f, tw = 0.0f;
        for (int k = 0; k < COLSUM_WARPS; k++) {
            tb += sb[k][lane];
            tw += sw[k][lane];
        }
        partial[(size_t)chunk * 2 * C + col] = tb;
        if (LN) partial[(size_t)chunk * 2 * C + C + col] = tw;
    }
}

__global__ void k_colsum_final(float *db, float *dw, const float *partial, int chunks, int C) {
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= C) return;
    float tb = 0.0f, tw = 0.0f;
    for (int k = 0; k < chunks; k++) {
        tb += partial[(size_t)k * 2 * C + col];
        if (dw) tw += partial[(size_t)k * 2 * C + C + col];
    }
    db[col] += tb;
    if (dw) dw[col] += tw;
}

template <typename X, bool LN>
static cudaError_t colsum(float *db, float *dw, float *scratch, const X *dout, const X *x, const float *mean,
                          const float *rstd, int N, int C, cudaStream_t s) {
    int rows_per_chunk = (N + COLSUM_CHUNKS - 1) / COLSUM_CHUNKS;
    int chunks = (N + rows_per_chunk - 1) / rows_per_chunk;
    dim3 grid(sm_ceil_div(C, 32), chunks);
    k_colsum_partial<X, LN><<<grid, 32 * COLSUM_WARPS, 0, s>>>(scratch, dout, x, mean, rstd, N, C, rows_per_chunk);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    k_colsum_final<<<sm_ceil_div(C, 256), 256, 0, s>>>(db, LN ? dw : nullptr, scratch, chunks, C);
    return cudaGetLastError();
}

template <typename X>
cudaError_t sm_cu_layernorm_bwd_params(float *dw, float *db, float *scratch, const X *dout, const X *x,
                                       const float *mean, const float *rstd, int N, int C, cudaStream_t s) {
    return colsum<X, true>(db, dw, scratch, dout, x, mean, rstd, N, C, s);
}

template <typename X>
cudaError_t sm_cu_bias_bwd(float *db, float *scratch, const X *dout, int N, int C, cudaStream_t s) {
    return colsum<X, false>(db, nullptr, scratch, dout, nullptr, nullptr, nullptr, N, C, s);
}

// ---------------------------------------------------------------- GELU
template <typename X> __global__ void k_gelu_fwd(X *out, const X *in, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = sm_fromf<X>(sm_gelu(sm_tof(in[i])));
}
template <typename X> __global__ void k_gelu_bwd(X *d, const X *pre, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) d[i] = sm_fromf<X>(sm_tof(d[i]) * sm_gelu_grad(sm_tof(pre[i])));
}
template <typename X> cudaError_t sm_cu_gelu_fwd(X *out, const X *in, size_t n, cudaStream_t s) {
    k_gelu_fwd<X><<<sm_ceil_div(n, 256), 256, 0, s>>>(out, in, n);
    return cudaGetLastError();
}
template <typename X> cudaError_t sm_cu_gelu_bwd_inplace(X *d, const X *pre, size_t n, cudaStream_t s) {
    k_gelu_bwd<X><<<sm_ceil_div(n, 256), 256, 0, s>>>(d, pre, n);
    return cudaGetLastError();
}

// ---------------------------------------------------------------- instantiations
#define SM_INST(X)                                                                                              \
    template cudaError_t sm_cu_encoder_fwd<X>(X *, const int32_t *, const X *, const X *, int, int, int,       \
                                              cudaStream_t);                                                   \
    template cudaError_t sm_cu_encoder_bwd_wpe<X>(float *, const X *, int, int, int, cudaStream_t);            \
    template cudaError_t sm_cu_encoder_bwd_wte<X>(float *, const X *, const int32_t *, const int32_t *,        \
                                                  const int32_t *, int, int, cudaStream_t);                    \
    template cudaError_t sm_cu_residual_layernorm_fwd<X>(X *, X *, float *, float *, const X *, const X *,     \
                                                         const X *, const X *, int, int, cudaStream_t);        \
    template cudaError_t sm_cu_layernorm_bwd_dx<X>(X *, const X *, const X *, const float *, const float *,    \
                                                   const X *, int, int, int, cudaStream_t);                    \
    template cudaError_t sm_cu_layernorm_bwd_params<X>(float *, float *, float *, const X *, const X *,        \
                                                       const float *, const float *, int, int, cudaStream_t);  \
    template cudaError_t sm_cu_bias_bwd<X>(float *, float *, const X *, int, int, cudaStream_t);               \
    template cudaError_t sm_cu_gelu_fwd<X>(X *, const X *, size_t, cudaStream_t);                              \
    template cudaError_t sm_cu_gelu_bwd_inplace<X>(X *, const X *, size_t, cudaStream_t);
SM_INST(float)
SM_INST(bf16)
