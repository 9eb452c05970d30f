// sm_cuda_backend.cu - the CUDA implementation of sm_gpt2_backend_ops (core/model/sm_gpt2_backend.h) and
// the two symbols libsm_cuda.so exports: sm_gpt2_cuda_backend (the ops table) and sm_gpt2_cuda_probe.
//
// State per model: fp32 master weights, gradients and AdamW moments (checkpoint order, one array each),
// a compute copy of the weights in the activation type (bf16 mode; in fp32 mode the master weights are
// used directly), and every activation the backward pass needs, all carved out of ONE device allocation
// made at create time for the largest batch. Work runs on the model's own stream, so several models can
// share a GPU. The library is self-contained (it does not call into libscalemix), so a program that
// dlopens it needs to export nothing.
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "model/sm_gpt2_backend.h"
}
#include "sm_cuda_kernels.cuh"
#include "sm_cuda_matmul.cuh"

#define SM_EXPORT extern "C" __attribute__((visibility("default")))
#define LT_WORKSPACE_BYTES ((size_t)32 << 20)

static int fail(sm_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(sm_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

static int cuda_fail(sm_error *err, cudaError_t e, const char *what, int line) {
    return fail(err, e == cudaErrorMemoryAllocation ? SM_ERR_NOMEM : SM_ERR_INTERNAL,
                "cuda backend: %s failed (sm_cuda_backend.cu:%d): %s (%s); a kernel fault leaves the GPU context "
                "unusable: free the model and rerun, with compute-sanitizer to locate it",
                what, line, cudaGetErrorString(e), cudaGetErrorName(e));
}
#define CK(call)                                                                                         \
    do {                                                                                                 \
        cudaError_t e_ = (call);                                                                         \
        if (e_ != cudaSuccess) return cuda_fail(err, e_, #call, __LINE__);                               \
    } while (0)

enum { P_WTE, P_WPE, P_LN1W, P_LN1B, P_QKVW, P_QKVB, P_ATTPROJW, P_ATTPROJB, P_LN2W, P_LN2B, P_FCW, P_FCB,
       P_FCPROJW, P_FCPROJB, P_LNFW, P_LNFB, P_COUNT };

struct sm_gpt2_backend {
    sm_gpt2_config cfg;
    sm_dtype dtype;
    int device, max_B, max_T;
    int L, C, NH, HS, V, Vp;
    size_t sizes[P_COUNT], offs[P_COUNT], nparams;
    cudaStream_t stream;
    sm_cu_mm mm;
    void *arena;
    size_t arena_bytes;
    float *params, *grads, *m, *v;
    void *wx; // weights in the activation type (== params in fp32 mode)
    // activations, type X; per-layer arrays have a stride of max_B*max_T rows
    void *encoded, *ln1, *qkv, *atty, *res2, *ln2, *fch, *res3, *lnf, *logits, *scr_big, *scr_c, *dres;
    float *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd, *lnf_mean, *lnf_rstd, *lse, *delta, *losses, *colsum;
    double *norm_partials, *norm_out;
    int32_t *d_inputs, *d_targets, *d_uniq, *d_offs, *d_pos;
    // host side
    int32_t *h_cursor, *h_uniq, *h_offs, *h_pos;
    float *h_losses;
    int nuniq, last_B, last_T, grad_ready, gelu_fusion, tc_attention;
};

// Sizes of the 16 tensors in llm.c checkpoint order (kept here so the library needs nothing from the engine).
static size_t param_sizes(const sm_gpt2_config *c, size_t s[P_COUNT]) {
    size_t C = c->channels, L = c->num_layers;
    s[P_WTE] = (size_t)c->padded_vocab_size * C;
    s[P_WPE] = (size_t)c->max_seq_len * C;
    s[P_LN1W] = s[P_LN1B] = L * C;
    s[P_QKVW] = L * 3 * C * C;
    s[P_QKVB] = L * 3 * C;
    s[P_ATTPROJW] = L * C * C;
    s[P_ATTPROJB] = L * C;
    s[P_LN2W] = s[P_LN2B] = L * C;
    s[P_FCW] = L * 4 * C * C;
    s[P_FCB] = L * 4 * C;
    s[P_FCPROJW] = L * C * 4 * C;
    s[P_FCPROJB] = L * C;
    s[P_LNFW] = s[P_LNFB] = C;
    size_t n = 0;
    for (int i = 0; i < P_COUNT; i++) n += s[i];
    return n;
}

// ------------------------------------------------------------------------------------------ memory plan
struct carver {
    uintptr_t base;
    size_t used;
    void *take(size_t bytes) {
        void *p = (void *)(base + used);
        used += (bytes + 255) & ~(size_t)255; // 256-byte alignment suits cuBLASLt and vector loads
        return p;
    }
};

// Assigns every device pointer from base (0: only measures) and returns the bytes needed.
static size_t plan(sm_gpt2_backend *b, uintptr_t base) {
    carver k = {base, 0};
    size_t esz = b->dtype == SM_DTYPE_BF16 ? 2 : 4;
    size_t BT = (size_t)b->max_B * b->max_T, C = b->C, L = b->L;
    b->params = (float *)k.take(b->nparams * 4);
    b->grads = (float *)k.take(b->nparams * 4);
    b->m = (float *)k.take(b->nparams * 4);
    b->v = (float *)k.take(b->nparams * 4);
    b->wx = b->dtype == SM_DTYPE_BF16 ? k.take(b->nparams * 2) : (void *)b->params;
    b->encoded = k.take(BT * C * esz);
    b->ln1 = k.take(L * BT * C * esz);
    b->qkv = k.take(L * BT * 3 * C * esz);
    b->atty = k.take(L * BT * C * esz);
    b->res2 = k.take(L * BT * C * esz);
    b->ln2 = k.take(L * BT * C * esz);
    b->fch = k.take(L * BT * 4 * C * esz);
    b->res3 = k.take(L * BT * C * esz);
    b->lnf = k.take(BT * C * esz);
    b->logits = k.take(BT * b->Vp * esz);
    b->scr_big = k.take(BT * 4 * C * esz);
    b->scr_c = k.take(BT * C * esz);
    b->dres = k.take(BT * C * esz);
    b->ln1_mean = (float *)k.take(L * BT * 4);
    b->ln1_rstd = (float *)k.take(L * BT * 4);
    b->ln2_mean = (float *)k.take(L * BT * 4);
    b->ln2_rstd = (float *)k.take(L * BT * 4);
    b->lnf_mean = (float *)k.take(BT * 4);
    b->lnf_rstd = (float *)k.take(BT * 4);
    b->lse = (float *)k.take(L * BT * b->NH * 4);
    b->delta = (float *)k.take(BT * b->NH * 4);
    b->losses = (float *)k.take(BT * 4);
    b->colsum = (float *)k.take(sm_cu_colsum_scratch(4 * b->C) * 4);
    b->norm_partials = (double *)k.take(SM_CU_NORM_BLOCKS * 8);
    b->norm_out = (double *)k.take(8);
    b->d_inputs = (int32_t *)k.take(BT * 4);
    b->d_targets = (int32_t *)k.take(BT * 4);
    b->d_uniq = (int32_t *)k.take(BT * 4);
    b->d_offs = (int32_t *)k.take((BT + 1) * 4);
    b->d_pos = (int32_t *)k.take(BT * 4);
    b->mm.workspace = k.take(LT_WORKSPACE_BYTES);
    b->mm.workspace_bytes = LT_WORKSPACE_BYTES;
    return k.used;
}

// ------------------------------------------------------------------------------------------ helpers
template <typename X> struct dt;
template <> struct dt<float> { static const cudaDataType_t v = CUDA_R_32F; };
template <> struct dt<bf16> { static const cudaDataType_t v = CUDA_R_16BF; };

template <typename X> static X *W(sm_gpt2_backend *b, int i, size_t layer_elems = 0, int l = 0) {
    return (X *)b->wx + b->offs[i] + (size_t)l * layer_elems;
}
static float *G(sm_gpt2_backend *b, int i, size_t layer_elems = 0, int l = 0) {
    return b->grads + b->offs[i] + (size_t)l * layer_elems;
}
template <typename X> static X *A(void *base, size_t layer_elems, int l) { return (X *)base + (size_t)l * layer_elems; }

static int mm_call(sm_gpt2_backend *b, const sm_cu_mm_args *a, sm_error *err) {
    char why[512];
    int rc = sm_cu_matmul(&b->mm, a, why, sizeof why);
    if (rc == -2) return fail(err, SM_ERR_UNSUPPORTED, "cuda backend: %s", why);
    if (rc) return fail(err, SM_ERR_INTERNAL, "cuda backend: %s", why);
    return SM_OK;
}

// out (N x OC) = inp (N x K) w^T (+ bias); with pre != NULL, out = gelu(pre) and pre = the biased product.
template <typename X>
static int mm_fwd(sm_gpt2_backend *b, X *out, const X *inp, const X *w, const X *bias, int N, int K, int OC, X *pre,
                  sm_error *err) {
    sm_cu_mm_args a = {1, 0, OC, N, K, w, K, inp, K, out, OC, dt<X>::v, dt<X>::v, 1.0f, 0.0f,
                       bias ? (pre ? SM_MM_GELU_AUX_BIAS : SM_MM_BIAS) : SM_MM_NONE, bias, pre, OC};
    return mm_call(b, &a, err);
}
// dinp (N x K) = alpha * dout (N x OC) w (OC x K).
template <typename X>
static int mm_dinp(sm_gpt2_backend *b, X *dinp, const X *dout, const X *w, int N, int K, int OC, float alpha,
                   sm_error *err) {
    sm_cu_mm_args a = {0, 0, K, N, OC, w, K, dout, OC, dinp, K, dt<X>::v, dt<X>::v, alpha, 0.0f, SM_MM_NONE,
                       nullptr, nullptr, 0};
    return mm_call(b, &a, err);
}
// dw (OC x K, fp32) += alpha * dout^T (OC x N) inp (N x K).
template <typename X>
static int mm_dw(sm_gpt2_backend *b, float *dw, const X *inp, const X *dout, int N, int K, int OC, float alpha,
                 sm_error *err) {
    sm_cu_mm_args a = {0, 1, K, OC, N, inp, K, dout, OC, dw, K, dt<X>::v, CUDA_R_32F, alpha, 1.0f, SM_MM_NONE,
                       nullptr, nullptr, 0};
    return mm_call(b, &a, err);
}

#define TRY(call)                                                                                        \
    do {                                                                                                 \
        int rc_ = (call);                                                                                \
        if (rc_) return rc_;                                                                             \
    } while (0)

// ------------------------------------------------------------------------------------------ forward
template <typename X> static int forward_impl(sm_gpt2_backend *b, int B, int T, int with_targets, sm_error *err) {
    const int L = b->L, C = b->C, NH = b->NH, BT = B * T;
    const size_t S = (size_t)b->max_B * b->max_T; // rows per layer slot
    cudaStream_t s = b->stream;
    X *enc = (X *)b->encoded, *scr_c = (X *)b->scr_c, *scr_big = (X *)b->scr_big;

    CK(sm_cu_encoder_fwd<X>(enc, b->d_inputs, W<X>(b, P_WTE), W<X>(b, P_WPE), B, T, C, s));
    for (int l = 0; l < L; l++) {
        X *res1 = l == 0 ? enc : A<X>(b->res3, S * C, l - 1);
        X *ln1 = A<X>(b->ln1, S * C, l), *qkv = A<X>(b->qkv, S * 3 * C, l), *atty = A<X>(b->atty, S * C, l);
        X *res2 = A<X>(b->res2, S * C, l), *ln2 = A<X>(b->ln2, S * C, l), *fch = A<X>(b->fch, S * 4 * C, l);
        float *m1 = b->ln1_mean + l * S, *r1 = b->ln1_rstd + l * S, *m2 = b->ln2_mean + l * S,
              *r2 = b->ln2_rstd + l * S;
        if (l == 0)
            CK(sm_cu_residual_layernorm_fwd<X>(nullptr, ln1, m1, r1, enc, nullptr, W<X>(b, P_LN1W, C, l),
                                               W<X>(b, P_LN1B, C, l), BT, C, s));
        else // res3 of the previous layer = its res2 + its MLP output (still in scr_c)
            CK(sm_cu_residual_layernorm_fwd<X>(res1, ln1, m1, r1, A<X>(b->res2, S * C, l - 1), scr_c,
                                               W<X>(b, P_LN1W, C, l), W<X>(b, P_LN1B, C, l), BT, C, s));
        TRY(mm_fwd<X>(b, qkv, ln1, W<X>(b, P_QKVW, (size_t)3 * C * C, l), W<X>(b, P_QKVB, 3 * C, l), BT, C, 3 * C,
                      nullptr, err));
        CK(sm_cu_attention_fwd<X>(atty, b->lse + l * S * NH, qkv, B, T, NH, b->HS, b->tc_attention, s));
        TRY(mm_fwd<X>(b, scr_c, atty, W<X>(b, P_ATTPROJW, (size_t)C * C, l), W<X>(b, P_ATTPROJB, C, l), BT, C, C,
                      nullptr, err));
        CK(sm_cu_residual_layernorm_fwd<X>(res2, ln2, m2, r2, res1, scr_c, W<X>(b, P_LN2W, C, l),
                                           W<X>(b, P_LN2B, C, l), BT, C, s));
        const X *fcw = W<X>(b, P_FCW, (size_t)4 * C * C, l), *fcb = W<X>(b, P_FCB, 4 * C, l);
        int fused = 0;
        if (b->gelu_fusion) {
            int rc = mm_fwd<X>(b, scr_big, ln2, fcw, fcb, BT, C, 4 * C, fch, err);
            if (rc == SM_OK) fused = 1;
            else if (rc == SM_ERR_UNSUPPORTED) b->gelu_fusion = 0; // no fused algorithm here: unfused from now on
            else return rc;
        }
        if (!fused) {
            TRY(mm_fwd<X>(b, fch, ln2, fcw, fcb, BT, C, 4 * C, nullptr, err));
            CK(sm_cu_gelu_fwd<X>(scr_big, fch, (size_t)BT * 4 * C, s));
        }
        TRY(mm_fwd<X>(b, scr_c, scr_big, W<X>(b, P_FCPROJW, (size_t)4 * C * C, l), W<X>(b, P_FCPROJB, C, l), BT,
                      4 * C, C, nullptr, err));
    }
    X *resL = A<X>(b->res3, S * C, L - 1);
    CK(sm_cu_residual_layernorm_fwd<X>(resL, (X *)b->lnf, b->lnf_mean, b->lnf_rstd, A<X>(b->res2, S * C, L - 1), scr_c,
                                       W<X>(b, P_LNFW), W<X>(b, P_LNFB), BT, C, s));
    TRY(mm_fwd<X>(b, (X *)b->logits, (const X *)b->lnf, W<X>(b, P_WTE), (const X *)nullptr, BT, C, b->Vp, nullptr,
                  err));
    if (with_targets)
        CK(sm_cu_classifier_fwd<X>((X *)b->logits, b->losses, b->d_targets, BT, b->V, b->Vp, 1, s));
    return SM_OK;
}

// ------------------------------------------------------------------------------------------ backward
template <typename X> static int backward_impl(sm_gpt2_backend *b, float grad_scale, sm_error *err) {
    const int L = b->L, C = b->C, NH = b->NH, B = b->last_B, T = b->last_T, BT = B * T;
    const size_t S = (size_t)b->max_B * b->max_T;
    cudaStream_t s = b->stream;
    X *enc = (X *)b->encoded, *scr_c = (X *)b->scr_c, *scr_big = (X *)b->scr_big, *dres = (X *)b->dres;
    X *logits = (X *)b->logits, *lnf = (X *)b->lnf;
    // The logits buffer holds softmax - onehot; d(mean loss)/dlogits * grad_scale is that times alpha.
    const float alpha = grad_scale / (float)BT;

    TRY(mm_dinp<X>(b, scr_c, logits, W<X>(b, P_WTE), BT, C, b->Vp, alpha, err));
    TRY(mm_dw<X>(b, G(b, P_WTE), lnf, logits, BT, C, b->Vp, alpha, err));
    X *resL = A<X>(b->res3, S * C, L - 1);
    CK(sm_cu_layernorm_bwd_dx<X>(dres, scr_c, resL, b->lnf_mean, b->lnf_rstd, W<X>(b, P_LNFW), BT, C, 0, s));
    CK(sm_cu_layernorm_bwd_params<X>(G(b, P_LNFW), G(b, P_LNFB), b->colsum, scr_c, resL, b->lnf_mean, b->lnf_rstd,
                                     BT, C, s));
    for (int l = L - 1; l >= 0; l--) {
        X *res1 = l == 0 ? enc : A<X>(b->res3, S * C, l - 1);
        X *ln1 = A<X>(b->ln1, S * C, l), *qkv = A<X>(b->qkv, S * 3 * C, l), *atty = A<X>(b->atty, S * C, l);
        X *res2 = A<X>(b->res2, S * C, l), *ln2 = A<X>(b->ln2, S * C, l), *fch = A<X>(b->fch, S * 4 * C, l);
        float *m1 = b->ln1_mean + l * S, *r1 = b->ln1_rstd + l * S, *m2 = b->ln2_mean + l * S,
              *r2 = b->ln2_rstd + l * S;
        // MLP: dres is d(res3) here.
        CK(sm_cu_gelu_fwd<X>(scr_big, fch, (size_t)BT * 4 * C, s)); // recomputed instead of stored per layer
        TRY(mm_dw<X>(b, G(b, P_FCPROJW, (size_t)4 * C * C, l), scr_big, dres, BT, 4 * C, C, 1.0f, err));
        CK(sm_cu_bias_bwd<X>(G(b, P_FCPROJB, C, l), b->colsum, dres, BT, C, s));
        TRY(mm_dinp<X>(b, scr_big, dres, W<X>(b, P_FCPROJW, (size_t)4 * C * C, l), BT, 4 * C, C, 1.0f, err));
        CK(sm_cu_gelu_bwd_inplace<X>(scr_big, fch, (size_t)BT * 4 * C, s));
        TRY(mm_dw<X>(b, G(b, P_FCW, (size_t)4 * C * C, l), ln2, scr_big, BT, C, 4 * C, 1.0f, err));
        CK(sm_cu_bias_bwd<X>(G(b, P_FCB, 4 * C, l), b->colsum, scr_big, BT, 4 * C, s));
        TRY(mm_dinp<X>(b, scr_c, scr_big, W<X>(b, P_FCW, (size_t)4 * C * C, l), BT, C, 4 * C, 1.0f, err));
        CK(sm_cu_layernorm_bwd_dx<X>(dres, scr_c, res2, m2, r2, W<X>(b, P_LN2W, C, l), BT, C, 1, s));
        CK(sm_cu_layernorm_bwd_params<X>(G(b, P_LN2W, C, l), G(b, P_LN2B, C, l), b->colsum, scr_c, res2, m2, r2, BT,
                                         C, s));
        // Attention: dres is d(res2) now.
        TRY(mm_dw<X>(b, G(b, P_ATTPROJW, (size_t)C * C, l), atty, dres, BT, C, C, 1.0f, err));
        CK(sm_cu_bias_bwd<X>(G(b, P_ATTPROJB, C, l), b->colsum, dres, BT, C, s));
        TRY(mm_dinp<X>(b, scr_c, dres, W<X>(b, P_ATTPROJW, (size_t)C * C, l), BT, C, C, 1.0f, err));
        CK(sm_cu_attention_bwd<X>(scr_big, b->delta, scr_c, atty, qkv, b->lse + l * S * NH, B, T, NH, b->HS,
                                  b->tc_attention, s));
        TRY(mm_dw<X>(b, G(b, P_QKVW, (size_t)3 * C * C, l), ln1, scr_big, BT, C, 3 * C, 1.0f, err));
        CK(sm_cu_bias_bwd<X>(G(b, P_QKVB, 3 * C, l), b->colsum, scr_big, BT, 3 * C, s));
        TRY(mm_dinp<X>(b, scr_c, scr_big, W<X>(b, P_QKVW, (size_t)3 * C * C, l), BT, C, 3 * C, 1.0f, err));
        CK(sm_cu_layernorm_bwd_dx<X>(dres, scr_c, res1, m1, r1, W<X>(b, P_LN1W, C, l), BT, C, 1, s));
        CK(sm_cu_layernorm_bwd_params<X>(G(b, P_LN1W, C, l), G(b, P_LN1B, C, l), b->colsum, scr_c, res1, m1, r1, BT,
                                         C, s));
    }
    CK(sm_cu_encoder_bwd_wte<X>(G(b, P_WTE), dres, b->d_uniq, b->d_offs, b->d_pos, b->nuniq, C, s));
    CK(sm_cu_encoder_bwd_wpe<X>(G(b, P_WPE), dres, B, T, C, s));
    return SM_OK;
}

// ------------------------------------------------------------------------------------------ ops
static void cu_destroy(sm_gpt2_backend *b) {
    if (!b) return;
    cudaSetDevice(b->device);
    if (b->stream) cudaStreamSynchronize(b->stream);
    if (b->mm.lt) cublasLtDestroy(b->mm.lt);
    if (b->arena) cudaFree(b->arena);
    if (b->stream) cudaStreamDestroy(b->stream);
    free(b->h_cursor);
    free(b->h_uniq);
    free(b->h_offs);
    free(b->h_pos);
    free(b->h_losses);
    free(b);
}

static int usable_devices(int *n, sm_error *err) {
    cudaError_t e = cudaGetDeviceCount(n);
    if (e != cudaSuccess) {
        cudaGetLastError(); // not sticky, but leave no trace for later calls
        *n = 0;
        return fail(err, SM_ERR_UNSUPPORTED, "no usable CUDA device: %s (%s)", cudaGetErrorString(e),
                    cudaGetErrorName(e));
    }
    if (*n == 0) {
        const char *vis = getenv("CUDA_VISIBLE_DEVICES");
        return fail(err, SM_ERR_UNSUPPORTED, "no CUDA device visible (CUDA_VISIBLE_DEVICES=%s)", vis ? vis : "unset");
    }
    return SM_OK;
}

// The argument checks shared by create() and memory_need().
static int check_args(const sm_gpt2_config *c, sm_dtype dtype, int max_B, int max_T, sm_error *err) {
    if (c->num_layers < 1 || c->num_heads < 1 || c->channels < 1 || c->vocab_size < 1 || c->max_seq_len < 1 ||
        c->padded_vocab_size < c->vocab_size)
        return fail(err, SM_ERR_ARG, "cuda backend: invalid config (L=%d NH=%d C=%d V=%d Vp=%d maxT=%d)",
                    c->num_layers, c->num_heads, c->channels, c->vocab_size, c->padded_vocab_size, c->max_seq_len);
    if (c->channels % c->num_heads || !sm_cu_attention_supports(c->channels / c->num_heads))
        return fail(err, SM_ERR_UNSUPPORTED,
                    "cuda backend: head size C/NH = %d/%d is not supported (the attention kernels are built for 32 "
                    "and 64; GPT-2 uses 64)", c->channels, c->num_heads);
    if (c->channels % 8 || c->padded_vocab_size % 8)
        return fail(err, SM_ERR_UNSUPPORTED,
                    "cuda backend: C (%d) and Vp (%d) must be multiples of 8 (16-byte aligned rows for cuBLASLt)",
                    c->channels, c->padded_vocab_size);
    if (max_B < 1 || max_T < 1 || max_T > c->max_seq_len)
        return fail(err, SM_ERR_ARG, "cuda backend: max batch %d x %d invalid (max_seq_len %d)", max_B, max_T,
                    c->max_seq_len);
    if (dtype != SM_DTYPE_FP32 && dtype != SM_DTYPE_BF16)
        return fail(err, SM_ERR_ARG, "cuda backend: unknown dtype %d", (int)dtype);
    if ((size_t)max_B * c->num_heads > 65535) // attention grids put B*NH in gridDim.y
        return fail(err, SM_ERR_ARG, "cuda backend: max batch %d x %d heads exceeds 65535", max_B, c->num_heads);
    if ((size_t)max_B * max_T > (size_t)INT32_MAX / 4)
        return fail(err, SM_ERR_ARG, "cuda backend: batch %d x %d too large", max_B, max_T);
    return SM_OK;
}

// Fills the fields plan() reads.
static void shape(sm_gpt2_backend *b, const sm_gpt2_config *c, sm_dtype dtype, int max_B, int max_T) {
    b->cfg = *c;
    b->dtype = dtype;
    b->max_B = max_B;
    b->max_T = max_T;
    b->L = c->num_layers;
    b->C = c->channels;
    b->NH = c->num_heads;
    b->HS = c->channels / c->num_heads;
    b->V = c->vocab_size;
    b->Vp = c->padded_vocab_size;
    b->nparams = param_sizes(c, b->sizes);
}

static int cu_memory_need(const sm_gpt2_config *cfg, sm_dtype dtype, int max_B, int max_T, uint64_t *bytes,
                          sm_error *err) {
    if (!cfg || !bytes) return fail(err, SM_ERR_ARG, "cuda backend: memory_need needs cfg and bytes");
    int rc = check_args(cfg, dtype, max_B, max_T, err);
    if (rc) return rc;
    sm_gpt2_backend b = {};
    shape(&b, cfg, dtype, max_B, max_T);
    *bytes = plan(&b, 0);
    return SM_OK;
}

static int cu_create(sm_gpt2_backend **out, const sm_gpt2_config *cfg, const float *params, sm_dtype dtype, int max_B,
                     int max_T, int threads, sm_error *err) {
    (void)threads;
    if (!out || !cfg || !params) return fail(err, SM_ERR_ARG, "cuda backend: create needs out, cfg and params");
    *out = NULL;
    int rc = check_args(cfg, dtype, max_B, max_T, err);
    if (rc) return rc;
    int ndev = 0;
    rc = usable_devices(&ndev, err);
    if (rc) return rc;

    sm_gpt2_backend *b = (sm_gpt2_backend *)calloc(1, sizeof *b);
    if (!b) return fail(err, SM_ERR_NOMEM, "cuda backend: out of host memory");
    shape(b, cfg, dtype, max_B, max_T);
    size_t o = 0;
    for (int i = 0; i < P_COUNT; i++) {
        b->offs[i] = o;
        o += b->sizes[i];
    }
    // the calling thread's device: the first one CUDA_VISIBLE_DEVICES leaves (scalemix run --gpu sets it)
    cudaError_t dev_e = cudaGetDevice(&b->device);
    if (dev_e != cudaSuccess) {
        free(b);
        return cuda_fail(err, dev_e, "cudaGetDevice", __LINE__);
    }
    const char *fuse = getenv("SM_CUDA_GELU_FUSION");
    b->gelu_fusion = dtype == SM_DTYPE_BF16 && !(fuse && !strcmp(fuse, "0"));
    const char *tc = getenv("SM_CUDA_TC_ATTENTION"); // bf16 only; 0 selects the CUDA-core kernels
    b->tc_attention = dtype == SM_DTYPE_BF16 && !(tc && !strcmp(tc, "0"));

    size_t BT = (size_t)max_B * max_T;
    b->h_cursor = (int32_t *)malloc((size_t)b->V * sizeof(int32_t));
    b->h_uniq = (int32_t *)malloc(BT * sizeof(int32_t));
    b->h_offs = (int32_t *)malloc((BT + 1) * sizeof(int32_t));
    b->h_pos = (int32_t *)malloc(BT * sizeof(int32_t));
    b->h_losses = (float *)malloc(BT * sizeof(float));
    if (!b->h_cursor || !b->h_uniq || !b->h_offs || !b->h_pos || !b->h_losses) {
        cu_destroy(b);
        return fail(err, SM_ERR_NOMEM, "cuda backend: out of host memory");
    }
#define CKD(call)                                                                                        \
    do {                                                                                                 \
        cudaError_t e_ = (call);                                                                         \
        if (e_ != cudaSuccess) {                                                                         \
            int r_ = cuda_fail(err, e_, #call, __LINE__);                                                \
            cu_destroy(b);                                                                               \
            return r_;                                                                                   \
        }                                                                                                \
    } while (0)
    CKD(cudaSetDevice(b->device));
    if (b->tc_attention) CKD(sm_cu_attention_tc_init(b->HS));
    CKD(cudaStreamCreateWithFlags(&b->stream, cudaStreamNonBlocking));
    cublasStatus_t st = cublasLtCreate(&b->mm.lt);
    if (st != CUBLAS_STATUS_SUCCESS) {
        cu_destroy(b);
        return fail(err, SM_ERR_INTERNAL, "cuda backend: cublasLtCreate failed: %s", cublasGetStatusString(st));
    }
    b->mm.stream = b->stream;
    b->arena_bytes = plan(b, 0);
    if (cudaMalloc(&b->arena, b->arena_bytes) != cudaSuccess) {
        cudaGetLastError();
        b->arena = NULL;
        size_t fr = 0, tot = 0, need = b->arena_bytes;
        cudaMemGetInfo(&fr, &tot);
        cu_destroy(b);
        return fail(err, SM_ERR_NOMEM,
                    "cuda backend: a %d x %d batch needs %.2f GiB of device memory, %.2f GiB of %.2f GiB are free; "
                    "use a smaller batch or wait for other runs to finish",
                    max_B, max_T, (double)need / (1 << 30), (double)fr / (1 << 30),
                    (double)tot / (1 << 30));
    }
    plan(b, (uintptr_t)b->arena);
    CKD(cudaMemcpyAsync(b->params, params, b->nparams * 4, cudaMemcpyHostToDevice, b->stream));
    if (dtype == SM_DTYPE_BF16) CKD(sm_cu_cast<bf16>((bf16 *)b->wx, b->params, b->nparams, b->stream));
    CKD(cudaMemsetAsync(b->grads, 0, b->nparams * 4, b->stream));
    CKD(cudaMemsetAsync(b->m, 0, b->nparams * 4, b->stream));
    CKD(cudaMemsetAsync(b->v, 0, b->nparams * 4, b->stream));
    CKD(cudaStreamSynchronize(b->stream));
#undef CKD
    *out = b;
    return SM_OK;
}

// Groups the batch's positions by input token (ascending token, then position) so the embedding backward
// can sum each token's rows in a fixed order without atomics. O(B*T + V) on the host.
static void group_tokens(sm_gpt2_backend *b, const int32_t *inputs, int BT) {
    memset(b->h_cursor, 0, (size_t)b->V * sizeof(int32_t));
    for (int i = 0; i < BT; i++) b->h_cursor[inputs[i]]++;
    int nu = 0, run = 0;
    for (int v = 0; v < b->V; v++) {
        int cnt = b->h_cursor[v];
        if (!cnt) continue;
        b->h_uniq[nu] = v;
        b->h_offs[nu++] = run;
        b->h_cursor[v] = run;
        run += cnt;
    }
    b->h_offs[nu] = run;
    for (int i = 0; i < BT; i++) b->h_pos[b->h_cursor[inputs[i]]++] = i;
    b->nuniq = nu;
}

static int cu_forward(sm_gpt2_backend *b, const int32_t *inputs, const int32_t *targets, int B, int T, float *loss,
                      float *losses, sm_error *err) {
    if (!b || !inputs) return fail(err, SM_ERR_ARG, "cuda backend: forward needs a model and inputs");
    if (B < 1 || T < 1 || B > b->max_B || T > b->max_T)
        return fail(err, SM_ERR_ARG, "cuda backend: batch %d x %d exceeds the %d x %d the model was created for", B, T,
                    b->max_B, b->max_T);
    const int BT = B * T;
    for (int i = 0; i < BT; i++)
        if (inputs[i] < 0 || inputs[i] >= b->V)
            return fail(err, SM_ERR_ARG, "cuda backend: input token %d at position %d is outside [0, %d)", inputs[i], i,
                        b->V);
    if (targets)
        for (int i = 0; i < BT; i++)
            if (targets[i] < 0 || targets[i] >= b->V)
                return fail(err, SM_ERR_ARG, "cuda backend: target token %d at position %d is outside [0, %d)",
                            targets[i], i, b->V);
    b->grad_ready = 0;
    CK(cudaSetDevice(b->device));
    cudaStream_t s = b->stream;
    CK(cudaMemcpyAsync(b->d_inputs, inputs, (size_t)BT * 4, cudaMemcpyHostToDevice, s));
    if (targets) {
        CK(cudaMemcpyAsync(b->d_targets, targets, (size_t)BT * 4, cudaMemcpyHostToDevice, s));
        group_tokens(b, inputs, BT);
        CK(cudaMemcpyAsync(b->d_uniq, b->h_uniq, (size_t)b->nuniq * 4, cudaMemcpyHostToDevice, s));
        CK(cudaMemcpyAsync(b->d_offs, b->h_offs, (size_t)(b->nuniq + 1) * 4, cudaMemcpyHostToDevice, s));
        CK(cudaMemcpyAsync(b->d_pos, b->h_pos, (size_t)BT * 4, cudaMemcpyHostToDevice, s));
    }
    int rc = b->dtype == SM_DTYPE_BF16 ? forward_impl<bf16>(b, B, T, targets != NULL, err)
                                       : forward_impl<float>(b, B, T, targets != NULL, err);
    if (rc) return rc;
    if (targets) {
        CK(cudaMemcpyAsync(b->h_losses, b->losses, (size_t)BT * 4, cudaMemcpyDeviceToHost, s));
        CK(cudaStreamSynchronize(s));
        double sum = 0.0; // fixed order on the host: reproducible
        for (int i = 0; i < BT; i++) sum += b->h_losses[i];
        if (!isfinite(sum))
            return fail(err, SM_ERR_INTERNAL, "cuda backend: the loss is not finite (%g): the model has diverged",
                        sum);
        if (loss) *loss = (float)(sum / BT);
        if (losses) memcpy(losses, b->h_losses, (size_t)BT * sizeof(float));
        b->last_B = B;
        b->last_T = T;
        b->grad_ready = 1;
    } else {
        CK(cudaStreamSynchronize(s));
    }
    return SM_OK;
}

static int cu_backward(sm_gpt2_backend *b, float grad_scale, sm_error *err) {
    if (!b) return fail(err, SM_ERR_ARG, "cuda backend: backward needs a model");
    if (!b->grad_ready)
        return fail(err, SM_ERR_ARG, "cuda backend: backward needs a preceding forward pass with targets");
    CK(cudaSetDevice(b->device));
    int rc = b->dtype == SM_DTYPE_BF16 ? backward_impl<bf16>(b, grad_scale, err)
                                       : backward_impl<float>(b, grad_scale, err);
    if (rc) return rc;
    CK(cudaStreamSynchronize(b->stream));
    return SM_OK;
}

static int cu_zero_grad(sm_gpt2_backend *b, sm_error *err) {
    if (!b) return fail(err, SM_ERR_ARG, "cuda backend: zero_grad needs a model");
    CK(cudaSetDevice(b->device));
    CK(cudaMemsetAsync(b->grads, 0, b->nparams * 4, b->stream));
    CK(cudaStreamSynchronize(b->stream));
    return SM_OK;
}

static int cu_grad_norm(sm_gpt2_backend *b, double *norm, sm_error *err) {
    if (!b || !norm) return fail(err, SM_ERR_ARG, "cuda backend: grad_norm needs a model and an output");
    CK(cudaSetDevice(b->device));
    CK(sm_cu_sumsq(b->norm_out, b->norm_partials, b->grads, b->nparams, b->stream));
    double ss = 0.0;
    CK(cudaMemcpyAsync(&ss, b->norm_out, sizeof ss, cudaMemcpyDeviceToHost, b->stream));
    CK(cudaStreamSynchronize(b->stream));
    *norm = sqrt(ss);
    return SM_OK;
}

static int cu_adamw(sm_gpt2_backend *b, float lr, float beta1, float beta2, float eps, float weight_decay,
                    float grad_mult, int t, sm_error *err) {
    if (!b) return fail(err, SM_ERR_ARG, "cuda backend: adamw needs a model");
    if (t < 1) return fail(err, SM_ERR_ARG, "cuda backend: adamw step %d must be >= 1", t);
    CK(cudaSetDevice(b->device));
    float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t); // as the CPU backend
    for (int i = 0; i < P_COUNT; i++) {
        int matrix = i == P_WTE || i == P_WPE || i == P_QKVW || i == P_ATTPROJW || i == P_FCW || i == P_FCPROJW;
        float wd = matrix ? weight_decay : 0.0f;
        size_t o = b->offs[i];
        if (b->dtype == SM_DTYPE_BF16)
            CK(sm_cu_adamw<bf16>(b->params + o, (bf16 *)b->wx + o, b->grads + o, b->m + o, b->v + o, b->sizes[i], lr,
                                 beta1, beta2, eps, wd, grad_mult, bc1, bc2, b->stream));
        else
            CK(sm_cu_adamw<float>(b->params + o, (float *)nullptr, b->grads + o, b->m + o, b->v + o, b->sizes[i], lr,
                                  beta1, beta2, eps, wd, grad_mult, bc1, bc2, b->stream));
    }
    CK(cudaStreamSynchronize(b->stream));
    return SM_OK;
}

static int copy_out(sm_gpt2_backend *b, float *dst, const float *src, sm_error *err) {
    if (!b || !dst) return fail(err, SM_ERR_ARG, "cuda backend: copy needs a model and a destination");
    CK(cudaSetDevice(b->device));
    CK(cudaMemcpyAsync(dst, src, b->nparams * 4, cudaMemcpyDeviceToHost, b->stream));
    CK(cudaStreamSynchronize(b->stream));
    return SM_OK;
}
static int cu_get_params(sm_gpt2_backend *b, float *dst, sm_error *err) { return copy_out(b, dst, b ? b->params : 0, err); }
static int cu_get_grads(sm_gpt2_backend *b, float *dst, sm_error *err) { return copy_out(b, dst, b ? b->grads : 0, err); }
static int cu_get_moments(sm_gpt2_backend *b, float *m, float *v, sm_error *err) {
    int rc = copy_out(b, m, b ? b->m : 0, err);
    return rc ? rc : copy_out(b, v, b ? b->v : 0, err);
}
static int cu_set_moments(sm_gpt2_backend *b, const float *m, const float *v, sm_error *err) {
    if (!b || !m || !v) return fail(err, SM_ERR_ARG, "cuda backend: set_moments needs a model and both moments");
    CK(cudaSetDevice(b->device));
    CK(cudaMemcpyAsync(b->m, m, b->nparams * 4, cudaMemcpyHostToDevice, b->stream));
    CK(cudaMemcpyAsync(b->v, v, b->nparams * 4, cudaMemcpyHostToDevice, b->stream));
    CK(cudaStreamSynchronize(b->stream));
    return SM_OK;
}

static const sm_gpt2_backend_ops cuda_ops = {
    (uint32_t)sizeof(sm_gpt2_backend_ops), "cuda", cu_create, cu_destroy, cu_forward, cu_backward, cu_zero_grad,
    cu_grad_norm, cu_adamw, cu_get_params, cu_get_grads, cu_get_moments, cu_set_moments, cu_memory_need,
    NULL /* evaluate: the front end evaluates with forward */};

SM_EXPORT const sm_gpt2_backend_ops *sm_gpt2_cuda_backend(void) { return &cuda_ops; }

SM_EXPORT int sm_gpt2_cuda_probe(int *devices, uint64_t *free_bytes, uint64_t *total_bytes, sm_error *err) {
    int n = 0;
    if (devices) *devices = 0;
    if (free_bytes) *free_bytes = 0;
    if (total_bytes) *total_bytes = 0;
    int rc = usable_devices(&n, err);
    if (rc) return rc;
    size_t fr = 0, tot = 0;
    cudaError_t e = cudaMemGetInfo(&fr, &tot);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return fail(err, SM_ERR_UNSUPPORTED, "CUDA device present but unusable: %s (%s)", cudaGetErrorString(e),
                    cudaGetErrorName(e));
    }
    if (devices) *devices = n;
    if (free_bytes) *free_bytes = fr;
    if (total_bytes) *total_bytes = tot;
    return SM_OK;
}
