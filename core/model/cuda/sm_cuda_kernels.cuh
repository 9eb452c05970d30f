// sm_cuda_kernels.cuh - launchers of the CUDA backend's own kernels. X is the activation type (float or
// bf16); parameters used in compute have type X too, gradients, moments and master weights are fp32.
// Each launcher enqueues on stream s and returns cudaGetLastError(). Row-major throughout: N rows of C.
// No launcher uses atomics: every reduction has a fixed order, so runs are bitwise reproducible.
#ifndef SM_CUDA_KERNELS_CUH
#define SM_CUDA_KERNELS_CUH

#include "sm_cuda_common.cuh"

// out[b,t,:] = wte[inp[b,t],:] + wpe[t,:].
template <typename X>
cudaError_t sm_cu_encoder_fwd(X *out, const int32_t *inp, const X *wte, const X *wpe, int B, int T, int C,
                              cudaStream_t s);
// dwpe[t,:] += sum over b (in order) of dout[b,t,:].
template <typename X>
cudaError_t sm_cu_encoder_bwd_wpe(float *dwpe, const X *dout, int B, int T, int C, cudaStream_t s);
// dwte[uniq[u],:] += sum of dout[pos[k],:] for k in offs[u]..offs[u+1]-1 (positions grouped by token on
// the host, ascending, so the sum order is fixed without atomics).
template <typename X>
cudaError_t sm_cu_encoder_bwd_wte(float *dwte, const X *dout, const int32_t *uniq, const int32_t *offs,
                                  const int32_t *pos, int nuniq, int C, cudaStream_t s);

// res = a + b (skipped when b is NULL: the LayerNorm then reads a), ln = LayerNorm(res) * w + bias with
// eps 1e-5; mean and rstd (fp32, N) are kept for the backward pass.
template <typename X>
cudaError_t sm_cu_residual_layernorm_fwd(X *res, X *ln, float *mean, float *rstd, const X *a, const X *b,
                                         const X *w, const X *bias, int N, int C, cudaStream_t s);
// dx (+)= the LayerNorm input gradient for upstream dout; accumulate=0 overwrites dx.
template <typename X>
cudaError_t sm_cu_layernorm_bwd_dx(X *dx, const X *dout, const X *x, const float *mean, const float *rstd,
                                   const X *w, int N, int C, int accumulate, cudaStream_t s);
// dw += sum_rows dout * xhat, db += sum_rows dout (xhat from x, mean, rstd); scratch: sm_cu_colsum_scratch.
template <typename X>
cudaError_t sm_cu_layernorm_bwd_params(float *dw, float *db, float *scratch, const X *dout, const X *x,
                                       const float *mean, const float *rstd, int N, int C, cudaStream_t s);
// db += column sums of dout (N x C), in a fixed order.
template <typename X>
cudaError_t sm_cu_bias_bwd(float *db, float *scratch, const X *dout, int N, int C, cudaStream_t s);
// Floats of scratch the two column reductions above need for up to C columns.
size_t sm_cu_colsum_scratch(int C);

template <typename X> cudaError_t sm_cu_gelu_fwd(X *out, const X *in, size_t n, cudaStream_t s);
// d[i] *= gelu'(pre[i]).
template <typename X> cudaError_t sm_cu_gelu_bwd_inplace(X *d, const X *pre, size_t n, cudaStream_t s);

// Causal self-attention over qkv (B*T rows of 3C: q, k, v, head h at columns h*HS.. of each); out (B*T
// rows of C); lse (B, NH, T) the log-sum-exp of each query's scaled scores, kept for the backward pass.
// Flash-style: tiles of K and V pass through shared memory, nothing of size T x T touches device memory.
// tc: in bf16, use the tensor-core kernels (sm_cuda_attention_tc.cu) instead of the fp32 CUDA-core ones.
template <typename X>
cudaError_t sm_cu_attention_fwd(X *out, float *lse, const X *qkv, int B, int T, int NH, int HS, int tc,
                                cudaStream_t s);
// dqkv (overwritten) from dout; recomputes the probabilities from qkv and lse. delta: B*NH*T floats scratch.
template <typename X>
cudaError_t sm_cu_attention_bwd(X *dqkv, float *delta, const X *dout, const X *out, const X *qkv,
                                const float *lse, int B, int T, int NH, int HS, int tc, cudaStream_t s);
// Allows the tensor-core kernels for head size HS their shared memory on the current device (once, at setup).
cudaError_t sm_cu_attention_tc_init(int HS);
cudaError_t sm_cu_attention_tc_fwd(bf16 *out, float *lse, const bf16 *qkv, int B, int T, int NH, int HS,
                                   cudaStream_t s);
cudaError_t sm_cu_attention_tc_bwd(bf16 *dqkv, const float *delta, const bf16 *dout, const bf16 *qkv,
                                   const float *lse, int B, int T, int NH, int HS, cudaStream_t s);
// Head sizes the attention kernels are compiled for.
int sm_cu_attention_supports(int HS);

// Per row of logits (N rows of Vp, first V real): losses[row] = logsumexp - logit[target]; with
// write_grad, the row is overwritten in place by softmax - onehot(target) (0 in the padding columns).
template <typename X>
cudaError_t sm_cu_classifier_fwd(X *logits, float *losses, const int32_t *targets, int N, int V, int Vp,
                                 int write_grad, cudaStream_t s);

// AdamW on n parameters (see sm_gpt2_backend.h); pcopy (may be NULL) receives the updated weights in X.
template <typename X>
cudaError_t sm_cu_adamw(float *p, X *pcopy, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                        float beta2, float eps, float wd, float grad_mult, float bc1, float bc2, cudaStream_t s);
// out[0] = sum of g[i]^2 (double), two fixed-shape passes; partials: SM_CU_NORM_BLOCKS doubles.
#define SM_CU_NORM_BLOCKS 512
cudaError_t sm_cu_sumsq(double *out, double *partials, const float *g, size_t n, cudaStream_t s);
// dst[i] = (X)src[i].
template <typename X> cudaError_t sm_cu_cast(X *dst, const float *src, size_t n, cudaStream_t s);

#endif
