/* sm_gpt2_cpu.c - the CPU backend of GPT-2: fp32, matrix products through OpenBLAS sgemm, everything
 * else plain loops parallelised with OpenMP.
 *
 * Determinism: every parallel loop partitions its work statically and every reduction across threads
 * goes through fixed-size chunks summed in a fixed order, so results depend only on the inputs (and,
 * through OpenBLAS's own blocking, the thread count). bf16 compute is not emulated on the CPU: asking
 * for SM_DTYPE_BF16 returns SM_ERR_UNSUPPORTED (checkpoints in bf16 still load; they are widened).
 * AdamW consumes the gradients: it clears them as it updates (saving zero_grad a pass over memory), so
 * get_grads after adamw reads zeros. */
#include "sm_gpt2_backend.h"
#include "sm_gpt2_internal.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

struct sm_gpt2_backend {
    sm_gpt2_config cfg;
    int maxB, maxT, threads;
    size_t nparams, sizes[16], off[16];
    float *params, *grads, *m, *v;
    float *arena;
    /* activations (per-layer ones stacked L times, each maxB*maxT rows) */
    float *encoded, *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *atty, *res2, *ln2, *ln2_mean, *ln2_rstd;
    float *fch, *fch_gelu, *res3, *lnf, *lnf_mean, *lnf_rstd, *lse, *losses;
    float *cls; /* the fused classifier's per-thread scratch */
    float *keep; /* a training forward's logits, tile by tile, for backward */
    float *gpart; /* per unit of sequences, the layers' parameter gradients (seq_units) */
    /* backward scratch */
    float *dres, *dbig, *dmid, *dqkv;
    int32_t *inputs, *targets;
    int B, T, have_targets;
    int grads_zero; /* the gradient buffer is known to be all zero (AdamW clears it as it goes) */
};

static const int decay_tensor[16] = {1, 1, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0};

size_t sm_gpt2_param_sizes(const sm_gpt2_config *cfg, size_t sizes[16]) {
    size_t C = (size_t)cfg->channels, L = (size_t)cfg->num_layers;
    sizes[0] = (size_t)cfg->padded_vocab_size * C;
    sizes[1] = (size_t)cfg->max_seq_len * C;
    sizes[2] = L * C;
    sizes[3] = L * C;
    sizes[4] = L * 3 * C * C;
    sizes[5] = L * 3 * C;
    sizes[6] = L * C * C;
    sizes[7] = L * C;
    sizes[8] = L * C;
    sizes[9] = L * C;
    sizes[10] = L * 4 * C * C;
    sizes[11] = L * 4 * C;
    sizes[12] = L * C * 4 * C;
    sizes[13] = L * C;
    sizes[14] = C;
    sizes[15] = C;
    size_t n = 0;
    for (int i = 0; i < 16; i++) n += sizes[i];
    return n;
}

/* Largest per-layer weights (bytes) for which the layer stack is split by sequences (seq_units). */
#define SEQ_SPLIT_WEIGHT_BYTES (1u << 20)

/* Work units (groups of whole sequences) the layer stack is split into: one parallel region for all of it
 * instead of a fork and join per op (~70 per step at the demo proxy's shape), units taken dynamically (a
 * thread the machine holds up does fewer; a sequence computes the same whichever thread runs it), each
 * unit's parameter gradients in its own partial summed in unit order (deterministic). 1: split each op over
 * the threads instead. Only small models: each unit reads all the layer weights and backward keeps a
 * partial of them per unit, which for large C costs more memory traffic than the joins. */
static int seq_units(const sm_gpt2_config *cfg, int nt, int B) {
    size_t C = (size_t)cfg->channels;
    if (nt < 2 || B < nt || 12 * C * C * sizeof(float) > SEQ_SPLIT_WEIGHT_BYTES) return 1;
    return B < 4 * nt ? B : 4 * nt;
}

/* Floats of the layers' parameter gradients (tensors 2..15). */
static size_t layer_param_floats(const sm_gpt2_config *cfg) {
    size_t sizes[16];
    return sm_gpt2_param_sizes(cfg, sizes) - sizes[0] - sizes[1];
}

/* Floats of activations and backward scratch for B x T on threads threads; shared with sm_gpt2_memory_need. */
size_t sm_gpt2_cpu_act_floats(const sm_gpt2_config *cfg, int B, int T, int threads) {
    size_t BT = (size_t)B * T, C = (size_t)cfg->channels, L = (size_t)cfg->num_layers;
    size_t NH = (size_t)cfg->num_heads;
    size_t per_layer = BT * (C + 2 + 3 * C + C + C + C + 2 + 4 * C + 4 * C + C) + (size_t)B * NH * T * T;
    size_t head = BT * C + L * per_layer + BT * (C + 2) + 2 * BT + BT * (C + 4 * C + C + 3 * C);
    int units = seq_units(cfg, threads, B);
    return ((head + 15) & ~(size_t)15) + sm_gpt2_cls_scratch_floats(threads, BT, C, (size_t)cfg->vocab_size) +
           sm_gpt2_cls_keep_floats(BT, (size_t)cfg->vocab_size) + (units > 1 ? units * layer_param_floats(cfg) : 0);
}

static int cpu_destroy_internal(sm_gpt2_backend *b) {
    if (!b) return 0;
    free(b->params);
    free(b->grads);
    free(b->m);
    free(b->v);
    free(b->arena);
    free(b->inputs);
    free(b->targets);
    free(b);
    return 0;
}

static void cpu_destroy(sm_gpt2_backend *b) { cpu_destroy_internal(b); }

static float *xalloc(size_t n) {
    void *p = NULL;
    if (n == 0) n = 1;
    if (posix_memalign(&p, 64, n * sizeof(float)) != 0) return NULL;
    return p;
}

static int cpu_check_args(const sm_gpt2_config *cfg, sm_dtype dtype, int max_B, int max_T, sm_error *err) {
    if (dtype != SM_DTYPE_FP32)
        return sm_error_set(err, SM_ERR_UNSUPPORTED,
                            "the CPU backend computes in fp32 only; use dtype fp32 on the CPU (bf16 is for CUDA)");
    int rc = sm_gpt2_config_check(cfg, err);
    if (rc) return rc;
    if (max_B < 1 || max_T < 1 || max_T > cfg->max_seq_len)
        return sm_error_set(err, SM_ERR_ARG, "batch %d x %d invalid (need B >= 1, 1 <= T <= max_seq_len %d)", max_B,
                            max_T, cfg->max_seq_len);
    return SM_OK;
}

static int cpu_memory_need(const sm_gpt2_config *cfg, sm_dtype dtype, int max_B, int max_T, uint64_t *bytes,
                           sm_error *err) {
    int rc = cpu_check_args(cfg, dtype, max_B, max_T, err);
    if (rc) return rc;
    size_t sizes[16];
    /* create() with threads = 0 (the default) uses the OpenMP default */
    *bytes = (uint64_t)sm_gpt2_param_sizes(cfg, sizes) * 16u +
             (uint64_t)sm_gpt2_cpu_act_floats(cfg, max_B, max_T, omp_get_max_threads()) * 4u +
             (uint64_t)max_B * max_T * 2u * sizeof(int32_t);
    return SM_OK;
}

static int cpu_create(sm_gpt2_backend **out, const sm_gpt2_config *cfg, const float *params, sm_dtype dtype,
                      int max_B, int max_T, int threads, sm_error *err) {
    *out = NULL;
    int rc = cpu_check_args(cfg, dtype, max_B, max_T, err);
    if (rc) return rc;
    sm_gpt2_backend *b = calloc(1, sizeof *b);
    if (!b) return sm_error_set(err, SM_ERR_NOMEM, "out of memory for the CPU backend");
    b->cfg = *cfg;
    b->maxB = max_B;
    b->maxT = max_T;
    b->threads = threads > 0 ? threads : omp_get_max_threads();
    openblas_set_num_threads(1);
    b->nparams = sm_gpt2_param_sizes(cfg, b->sizes);
    size_t o = 0;
    for (int i = 0; i < 16; i++) { b->off[i] = o; o += b->sizes[i]; }
    size_t nact = sm_gpt2_cpu_act_floats(cfg, max_B, max_T, b->threads);
    size_t BT = (size_t)max_B * max_T;
    /* calloc: the kernel hands out zero pages lazily, so creation does not touch 12 bytes per parameter
     * while the caller still holds its own copy of the parameters (keeps peak memory near params x 16) */
    b->params = xalloc(b->nparams);
    b->grads = calloc(b->nparams, sizeof(float));
    b->m = calloc(b->nparams, sizeof(float));
    b->v = calloc(b->nparams, sizeof(float));
    b->arena = xalloc(nact);
    b->inputs = malloc(BT * sizeof(int32_t));
    b->targets = malloc(BT * sizeof(int32_t));
    if (!b->params || !b->grads || !b->m || !b->v || !b->arena || !b->inputs || !b->targets) {
        uint64_t need = 0;
        cpu_memory_need(cfg, dtype, max_B, max_T, &need, err);
        cpu_destroy_internal(b);
        return sm_error_set(err, SM_ERR_NOMEM, "out of memory: the CPU backend needs %.1f MiB", need / 1048576.0);
    }
    memcpy(b->params, params, b->nparams * sizeof(float));
    b->grads_zero = 1;
    size_t C = cfg->channels, L = cfg->num_layers, NH = cfg->num_heads;
    float *p = b->arena;
#define TAKE(field, n) do { b->field = p; p += (n); } while (0)
    TAKE(encoded, BT * C);
    TAKE(ln1, L * BT * C);
    TAKE(ln1_mean, L * BT);
    TAKE(ln1_rstd, L * BT);
    TAKE(qkv, L * BT * 3 * C);
    TAKE(att, L * (size_t)max_B * NH * max_T * max_T);
    TAKE(atty, L * BT * C);
    TAKE(res2, L * BT * C);
    TAKE(ln2, L * BT * C);
    TAKE(ln2_mean, L * BT);
    TAKE(ln2_rstd, L * BT);
    TAKE(fch, L * BT * 4 * C);
    TAKE(fch_gelu, L * BT * 4 * C);
    TAKE(res3, L * BT * C);
    TAKE(lnf, BT * C);
    TAKE(lnf_mean, BT);
    TAKE(lnf_rstd, BT);
    TAKE(lse, BT);
    TAKE(losses, BT);
    TAKE(dres, BT * C);
    TAKE(dbig, BT * 4 * C);
    TAKE(dmid, BT * C);
    TAKE(dqkv, BT * 3 * C);
    p = b->arena + (((size_t)(p - b->arena) + 15) & ~(size_t)15);
    TAKE(cls, sm_gpt2_cls_scratch_floats(b->threads, BT, C, (size_t)cfg->vocab_size));
    TAKE(keep, sm_gpt2_cls_keep_floats(BT, (size_t)cfg->vocab_size));
    int units = seq_units(cfg, b->threads, max_B);
    TAKE(gpart, units > 1 ? units * layer_param_floats(cfg) : 0);
#undef TAKE
    if ((size_t)(p - b->arena) != nact) {
        cpu_destroy_internal(b);
        return sm_error_set(err, SM_ERR_INTERNAL, "CPU backend arena layout mismatch");
    }
    *out = b;
    return SM_OK;
}

/* ---- kernels ---- */

/* Threads for a loop over work elements: small loops run on one thread, where a fork/join would cost
 * more than it saves (and stalls badly when the machine is oversubscribed). */
static inline int thr(int nt, size_t work) { return work >= 32768 ? nt : 1; }

/* Row-major sgemm split across the OpenMP threads by blocks of C (along N, or along M when M is larger),
 * each block one single-threaded OpenBLAS call. One thread pool (OpenMP) does all the work: OpenBLAS's
 * own pthread pool would spin against OpenMP's between calls. Each output element is computed by one
 * call with a fixed partition, so results are deterministic for a thread count. */
/* totals for benchmarks (sm_gpt2_cpu_gemm_stats); per thread, as models may train on several threads (a
 * forward split by sequences counts the calling thread's own units: its share of the wall time) */
static _Thread_local double gemm_seconds, gemm_flops;

void sm_gpt2_cpu_gemm_stats(double *seconds, double *flops) {
    *seconds = gemm_seconds;
    *flops = gemm_flops;
}

/* The fused classifier counts as matrix products: its time (exps included) and its 2 (forward: logits)
 * or 4 (backward: dwte, dx) x BT x V x C FLOPs. */
static void cls_stat(double seconds, double flops) {
    gemm_seconds += seconds;
    gemm_flops += flops;
}

static void gemm(int nt, int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                 float beta, float *Cm, int ldc) {
    double t0 = sm_monotonic();
    int byN = N >= M;
    int D = byN ? N : M;
    int parts = nt;
    if (parts > 1 && D < 64 * parts) parts = D / 64 > 1 ? D / 64 : 1;
    if ((double)M * N * K < 1e6) parts = 1;
#pragma omp parallel for num_threads(parts) schedule(static)
    for (int t = 0; t < parts; t++) {
        int d0 = (int)(((int64_t)D * t / parts) & ~15), d1 = t == parts - 1 ? D : (int)(((int64_t)D * (t + 1) / parts) & ~15);
        if (d1 <= d0) continue;
        const float *a = A, *b = B;
        float *c;
        int m = M, n = N;
        if (byN) {
            b = tb ? B + (size_t)d0 * ldb : B + d0;
            c = Cm + d0;
            n = d1 - d0;
        } else {
            a = ta ? A + d0 : A + (size_t)d0 * lda;
            c = Cm + (size_t)d0 * ldc;
            m = d1 - d0;
        }
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, K, 1.0f, a, lda,
                    b, ldb, beta, c, ldc);
    }
    gemm_seconds += sm_monotonic() - t0;
    gemm_flops += 2.0 * M * N * K;
}

static void layernorm_fwd(int nt, float *out, float *mean, float *rstd, const float *inp, const float *w,
                          const float *bias, size_t N, size_t C) {
#pragma omp parallel for num_threads(thr(nt, N * C)) schedule(static)
    for (size_t i = 0; i < N; i++) {
        const float *x = inp + i * C;
        float s = 0.0f;
        for (size_t c = 0; c < C; c++) s += x[c];
        float mu = s / C;
        float v = 0.0f;
        for (size_t c = 0; c < C; c++) { float d = x[c] - mu; v += d * d; }
        float r = 1.0f / sqrtf(v / C + 1e-5f);
        float *o = out + i * C;
        for (size_t c = 0; c < C; c++) o[c] = (x[c] - mu) * r * w[c] + bias[c];
        mean[i] = mu;
        rstd[i] = r;
    }
}

/* dinp += LN'(dout); dw += sum(dout * xhat); db += sum(dout). */
static void layernorm_bwd(int nt, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                          const float *w, const float *mean, const float *rstd, size_t N, size_t C) {
#pragma omp parallel for num_threads(thr(nt, N * C)) schedule(static)
    for (size_t i = 0; i < N; i++) {
        const float *x = inp + i * C, *g = dout + i * C;
        float mu = mean[i], r = rstd[i];
        float a = 0.0f, bsum = 0.0f;
        for (size_t c = 0; c < C; c++) {
            float xh = (x[c] - mu) * r, dn = g[c] * w[c];
            a += dn;
            bsum += dn * xh;
        }
        a /= C;
        bsum /= C;
        float *d = dinp + i * C;
        for (size_t c = 0; c < C; c++) {
            float xh = (x[c] - mu) * r, dn = g[c] * w[c];
            d[c] += (dn - a - xh * bsum) * r;
        }
    }
    /* Parameter gradients: each thread owns a range of channels and walks the rows in order. */
#pragma omp parallel num_threads(thr(nt, N * C))
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        size_t c0 = C * t / n, c1 = C * (t + 1) / n;
        for (size_t i = 0; i < N; i++) {
            const float *x = inp + i * C, *g = dout + i * C;
            float mu = mean[i], r = rstd[i];
            for (size_t c = c0; c < c1; c++) {
                dw[c] += g[c] * (x[c] - mu) * r;
                db[c] += g[c];
            }
        }
    }
}

/* out (N x OC) = inp (N x IC) . w^T (w is OC x IC) + bias; with accumulate, out already holds a residual
 * to which the product and bias are added. */
static void matmul_fwd(int nt, float *out, const float *inp, const float *w, const float *bias, size_t N, size_t IC,
                       size_t OC, int accumulate) {
    if (bias) {
#pragma omp parallel for num_threads(thr(nt, N * OC)) schedule(static)
        for (size_t i = 0; i < N; i++) {
            float *o = out + i * OC;
            if (accumulate)
                for (size_t j = 0; j < OC; j++) o[j] += bias[j];
            else
                memcpy(o, bias, OC * sizeof(float));
        }
    }
    gemm(nt, 0, 1, (int)N, (int)OC, (int)IC, inp, (int)IC, w, (int)IC, (bias || accumulate) ? 1.0f : 0.0f, out, (int)OC);
}

/* dinp (= or +=) dout . w; dw += dout^T . inp; dbias += column sums of dout. */
static void matmul_bwd(int nt, float *dinp, int dinp_accumulate, float *dw, float *dbias, const float *dout,
                       const float *inp, const float *w, size_t N, size_t IC, size_t OC) {
    gemm(nt, 0, 0, (int)N, (int)IC, (int)OC, dout, (int)OC, w, (int)IC, dinp_accumulate ? 1.0f : 0.0f, dinp, (int)IC);
    gemm(nt, 1, 0, (int)OC, (int)IC, (int)N, dout, (int)OC, inp, (int)IC, 1.0f, dw, (int)IC);
    if (dbias) {
#pragma omp parallel num_threads(thr(nt, N * OC))
        {
            int t = omp_get_thread_num(), n = omp_get_num_threads();
            size_t j0 = OC * t / n, j1 = OC * (t + 1) / n;
            for (size_t i = 0; i < N; i++) {
                const float *g = dout + i * OC;
                for (size_t j = j0; j < j1; j++) dbias[j] += g[j];
            }
        }
    }
}

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

/* GPT-2's tanh GELU as x * sigmoid(2u), since 0.5 (1 + tanh u) = 1 / (1 + e^-2u): one vectorised exp per
 * element instead of libm's scalar tanhf (6% of an evaluation at the demo proxy's width), and no
 * cancellation where tanh u is near -1. */
SM_CLONES static void gelu_span(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = x / (1.0f + exp_poly(-2.0f * GELU_K * (x + 0.044715f * x * x * x)));
    }
}

static void gelu_fwd(int nt, float *out, const float *inp, size_t n) {
    int t = thr(nt, n);
#pragma omp parallel for num_threads(t) schedule(static)
    for (int k = 0; k < t; k++) {
        size_t i0 = n * k / t, i1 = n * (k + 1) / t;
        gelu_span(out + i0, inp + i0, i1 - i0);
    }
}

/* d (in place: dgelu -> dpre) */
static void gelu_bwd(int nt, float *d, const float *inp, size_t n) {
#pragma omp parallel for num_threads(thr(nt, n)) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_K * (x + 0.044715f * x * x * x);
        float th = tanhf(u);
        float sech2 = 1.0f - th * th;
        float g = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        d[i] *= g;
    }
}

static void attention_fwd(int nt, float *out, float *att, const float *qkv, int B, int T, int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    size_t C3 = (size_t)C * 3;
#pragma omp parallel for collapse(3) num_threads(thr(nt, (size_t)B * T * T * C)) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const float *q = qkv + ((size_t)b * T + t) * C3 + (size_t)h * hs;
                float *a = att + (((size_t)b * NH + h) * T + t) * T;
                float mx = -INFINITY;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *k = qkv + ((size_t)b * T + t2) * C3 + C + (size_t)h * hs;
                    float s = 0.0f;
                    for (int i = 0; i < hs; i++) s += q[i] * k[i];
                    s *= scale;
                    a[t2] = s;
                    if (s > mx) mx = s;
                }
                float sum = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) { a[t2] = expf(a[t2] - mx); sum += a[t2]; }
                float inv = 1.0f / sum;
                for (int t2 = 0; t2 <= t; t2++) a[t2] *= inv;
                for (int t2 = t + 1; t2 < T; t2++) a[t2] = 0.0f;
                float *o = out + ((size_t)b * T + t) * C + (size_t)h * hs;
                for (int i = 0; i < hs; i++) o[i] = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *v = qkv + ((size_t)b * T + t2) * C3 + 2 * (size_t)C + (size_t)h * hs;
                    float w = a[t2];
                    for (int i = 0; i < hs; i++) o[i] += w * v[i];
                }
            }
}

/* dqkv is overwritten. Each (b, h) writes a disjoint slice, so the loop is race free. */
static void attention_bwd(int nt, float *dqkv, const float *dout, const float *qkv, const float *att, int B, int T,
                          int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    size_t C3 = (size_t)C * 3;
#pragma omp parallel for collapse(2) num_threads(thr(nt, (size_t)B * T * T * C)) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            float datt[T];
            for (int t = 0; t < T; t++) {
                float *dq = dqkv + ((size_t)b * T + t) * C3 + (size_t)h * hs;
                for (int i = 0; i < hs; i++) dq[i] = 0.0f;
                for (int i = 0; i < hs; i++) dq[C + i] = 0.0f;
                for (int i = 0; i < hs; i++) dq[2 * C + i] = 0.0f;
            }
            for (int t = 0; t < T; t++) {
                const float *a = att + (((size_t)b * NH + h) * T + t) * T;
                const float *go = dout + ((size_t)b * T + t) * C + (size_t)h * hs;
                const float *q = qkv + ((size_t)b * T + t) * C3 + (size_t)h * hs;
                float *dq = dqkv + ((size_t)b * T + t) * C3 + (size_t)h * hs;
                float dot = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *v = qkv + ((size_t)b * T + t2) * C3 + 2 * (size_t)C + (size_t)h * hs;
                    float *dv = dqkv + ((size_t)b * T + t2) * C3 + 2 * (size_t)C + (size_t)h * hs;
                    float s = 0.0f;
                    float w = a[t2];
                    for (int i = 0; i < hs; i++) { s += go[i] * v[i]; dv[i] += w * go[i]; }
                    datt[t2] = s;
                    dot += w * s;
                }
                for (int t2 = 0; t2 <= t; t2++) {
                    float dp = a[t2] * (datt[t2] - dot) * scale;
                    const float *k = qkv + ((size_t)b * T + t2) * C3 + C + (size_t)h * hs;
                    float *dk = dqkv + ((size_t)b * T + t2) * C3 + C + (size_t)h * hs;
                    for (int i = 0; i < hs; i++) { dq[i] += dp * k[i]; dk[i] += dp * q[i]; }
                }
            }
        }
}

/* ---- ops ---- */

static int check_batch(sm_gpt2_backend *b, const int32_t *tok, const int32_t *tgt, int B, int T, sm_error *err) {
    if (B < 1 || T < 1 || B > b->maxB || T > b->maxT)
        return sm_error_set(err, SM_ERR_ARG, "batch %d x %d exceeds the model's largest batch %d x %d (set max_B/max_T)",
                            B, T, b->maxB, b->maxT);
    int V = b->cfg.vocab_size;
    for (size_t i = 0; i < (size_t)B * T; i++) {
        if (tok[i] < 0 || tok[i] >= V)
            return sm_error_set(err, SM_ERR_ARG, "input token %d at position %zu is outside the vocabulary [0, %d)",
                                tok[i], i, V);
        if (tgt && (tgt[i] < 0 || tgt[i] >= V))
            return sm_error_set(err, SM_ERR_ARG, "target token %d at position %zu is outside the vocabulary [0, %d)",
                                tgt[i], i, V);
    }
    return SM_OK;
}

#define PAR(i) (b->params + b->off[i])
#define GRD(i) (b->grads + b->off[i])

/* Embeddings, the layer stack and the final LayerNorm for sequences [s0, s1) of the batch in b->inputs
 * (B x T as set by the forward), on nt threads per op. */
static void layers_fwd(sm_gpt2_backend *b, int nt, int s0, int s1) {
    size_t T = (size_t)b->T, C = b->cfg.channels, L = b->cfg.num_layers, NH = b->cfg.num_heads;
    size_t r0 = (size_t)s0 * T, N = (size_t)(s1 - s0) * T;
    size_t mBT = (size_t)b->maxB * b->maxT, attsz = (size_t)b->maxB * NH * b->maxT * b->maxT;
    const float *wte = PAR(0), *wpe = PAR(1);
    const int32_t *inputs = b->inputs + r0;
    float *enc = b->encoded + r0 * C;
#pragma omp parallel for num_threads(thr(nt, N * C)) schedule(static)
    for (size_t i = 0; i < N; i++) {
        const float *e = wte + (size_t)inputs[i] * C, *p = wpe + (i % T) * C;
        float *o = enc + i * C;
        for (size_t c = 0; c < C; c++) o[c] = e[c] + p[c];
    }
    for (size_t l = 0; l < L; l++) {
        size_t ro = l * mBT + r0; /* this layer's rows of the stacked activations */
        const float *res = l == 0 ? enc : b->res3 + (ro - mBT) * C;
        float *ln1 = b->ln1 + ro * C, *qkv = b->qkv + ro * 3 * C, *att = b->att + l * attsz + (size_t)s0 * NH * T * T;
        float *atty = b->atty + ro * C, *res2 = b->res2 + ro * C, *ln2 = b->ln2 + ro * C;
        float *fch = b->fch + ro * 4 * C, *gel = b->fch_gelu + ro * 4 * C, *res3 = b->res3 + ro * C;
        layernorm_fwd(nt, ln1, b->ln1_mean + ro, b->ln1_rstd + ro, res, PAR(2) + l * C, PAR(3) + l * C, N, C);
        matmul_fwd(nt, qkv, ln1, PAR(4) + l * 3 * C * C, PAR(5) + l * 3 * C, N, C, 3 * C, 0);
        attention_fwd(nt, atty, att, qkv, s1 - s0, (int)T, (int)C, (int)NH);
        memcpy(res2, res, N * C * sizeof(float));
        matmul_fwd(nt, res2, atty, PAR(6) + l * C * C, PAR(7) + l * C, N, C, C, 1);
        layernorm_fwd(nt, ln2, b->ln2_mean + ro, b->ln2_rstd + ro, res2, PAR(8) + l * C, PAR(9) + l * C, N, C);
        matmul_fwd(nt, fch, ln2, PAR(10) + l * 4 * C * C, PAR(11) + l * 4 * C, N, C, 4 * C, 0);
        gelu_fwd(nt, gel, fch, N * 4 * C);
        memcpy(res3, res2, N * C * sizeof(float));
        matmul_fwd(nt, res3, gel, PAR(12) + l * 4 * C * C, PAR(13) + l * C, N, 4 * C, C, 1);
    }
    const float *last = (L ? b->res3 + (L - 1) * mBT * C : b->encoded) + r0 * C;
    layernorm_fwd(nt, b->lnf + r0 * C, b->lnf_mean + r0, b->lnf_rstd + r0, last, PAR(14), PAR(15), N, C);
}

/* train: keep the logits for backward (forward); otherwise only the losses (evaluate). */
static int cpu_run_forward(sm_gpt2_backend *b, const int32_t *inputs, const int32_t *targets, int B, int T, float *loss,
                           float *losses, int train, sm_error *err) {
    int rc = check_batch(b, inputs, targets, B, T, err);
    if (rc) return rc;
    int nt = b->threads;
    openblas_set_num_threads(1);
    size_t BT = (size_t)B * T, C = b->cfg.channels, V = b->cfg.vocab_size;
    memcpy(b->inputs, inputs, BT * sizeof(int32_t));
    if (targets) memcpy(b->targets, targets, BT * sizeof(int32_t));
    b->B = B;
    b->T = T;
    b->have_targets = train && targets != NULL;
    int units = seq_units(&b->cfg, nt, B);
    if (units > 1) {
#pragma omp parallel for num_threads(nt) schedule(dynamic)
        for (int u = 0; u < units; u++) layers_fwd(b, 1, B * u / units, B * (u + 1) / units);
    } else
        layers_fwd(b, nt, 0, B);
    const float *wte = PAR(0);
    if (!targets) return SM_OK; /* nothing reads logits without targets: the classifier is skipped */
    /* Logits over the first V rows of wte only (padded rows are never predicted), fused with the
     * softmax and cross-entropy per tile; a training forward keeps the raw logits (written once, tile by
     * tile) for backward, an evaluation keeps nothing. */
    double tc = sm_monotonic();
    sm_gpt2_cls_forward(nt, b->cls, train ? b->keep : NULL, b->lnf, wte, targets, BT, C, V, b->lse, b->losses);
    cls_stat(sm_monotonic() - tc, 2.0 * BT * V * C);
    double sum = 0.0;
    for (size_t i = 0; i < BT; i++) sum += b->losses[i];
    if (loss) *loss = (float)(sum / (double)BT);
    if (losses) memcpy(losses, b->losses, BT * sizeof(float));
    return SM_OK;
}

static int cpu_forward(sm_gpt2_backend *b, const int32_t *inputs, const int32_t *targets, int B, int T, float *loss,
                       float *losses, sm_error *err) {
    return cpu_run_forward(b, inputs, targets, B, T, loss, losses, 1, err);
}

static int cpu_evaluate(sm_gpt2_backend *b, const int32_t *inputs, const int32_t *targets, int B, int T, float *loss,
                        float *losses, sm_error *err) {
    if (!targets) return sm_error_set(err, SM_ERR_ARG, "evaluate needs targets");
    return cpu_run_forward(b, inputs, targets, B, T, loss, losses, 0, err);
}

/* Backward through the final LayerNorm and the layer stack for sequences [s0, s1), from dlogits' dx in
 * b->dmid to the embeddings' gradient in b->dres (these rows); tensor k's parameter gradients are added at
 * g + off[k] - base (b->grads with base 0, or a unit's partial of tensors 2..15 with base off[2]). */
static void layers_bwd(sm_gpt2_backend *b, int nt, int s0, int s1, float *g, size_t base) {
    size_t T = (size_t)b->T, C = b->cfg.channels, L = b->cfg.num_layers, NH = b->cfg.num_heads;
    size_t r0 = (size_t)s0 * T, N = (size_t)(s1 - s0) * T;
    size_t mBT = (size_t)b->maxB * b->maxT, attsz = (size_t)b->maxB * NH * b->maxT * b->maxT;
    float *dres = b->dres + r0 * C, *dmid = b->dmid + r0 * C, *dbig = b->dbig + r0 * 4 * C, *dqkv = b->dqkv + r0 * 3 * C;
#define G(i) (g + (b->off[i] - base))
    memset(dres, 0, N * C * sizeof(float));
    const float *last = (L ? b->res3 + (L - 1) * mBT * C : b->encoded) + r0 * C;
    layernorm_bwd(nt, dres, G(14), G(15), dmid, last, PAR(14), b->lnf_mean + r0, b->lnf_rstd + r0, N, C);
    for (size_t l = L; l-- > 0;) {
        size_t ro = l * mBT + r0;
        const float *res = l == 0 ? b->encoded + r0 * C : b->res3 + (ro - mBT) * C;
        float *ln1 = b->ln1 + ro * C, *qkv = b->qkv + ro * 3 * C, *att = b->att + l * attsz + (size_t)s0 * NH * T * T;
        float *atty = b->atty + ro * C, *res2 = b->res2 + ro * C, *ln2 = b->ln2 + ro * C;
        float *fch = b->fch + ro * 4 * C, *gel = b->fch_gelu + ro * 4 * C;
        /* MLP */
        matmul_bwd(nt, dbig, 0, G(12) + l * 4 * C * C, G(13) + l * C, dres, gel, PAR(12) + l * 4 * C * C, N, 4 * C, C);
        gelu_bwd(nt, dbig, fch, N * 4 * C);
        matmul_bwd(nt, dmid, 0, G(10) + l * 4 * C * C, G(11) + l * 4 * C, dbig, ln2, PAR(10) + l * 4 * C * C, N, C, 4 * C);
        layernorm_bwd(nt, dres, G(8) + l * C, G(9) + l * C, dmid, res2, PAR(8) + l * C, b->ln2_mean + ro, b->ln2_rstd + ro,
                      N, C);
        /* attention */
        matmul_bwd(nt, dmid, 0, G(6) + l * C * C, G(7) + l * C, dres, atty, PAR(6) + l * C * C, N, C, C);
        attention_bwd(nt, dqkv, dmid, qkv, att, s1 - s0, (int)T, (int)C, (int)NH);
        matmul_bwd(nt, dmid, 0, G(4) + l * 3 * C * C, G(5) + l * 3 * C, dqkv, ln1, PAR(4) + l * 3 * C * C, N, C, 3 * C);
        layernorm_bwd(nt, dres, G(2) + l * C, G(3) + l * C, dmid, res, PAR(2) + l * C, b->ln1_mean + ro, b->ln1_rstd + ro,
                      N, C);
    }
#undef G
}

/* The embeddings' gradients from b->dres, thread t of n: threads own channel ranges and walk the rows in
 * order (deterministic, race free). */
static void embed_bwd(sm_gpt2_backend *b, int t, int n) {
    size_t BT = (size_t)b->B * b->T, C = b->cfg.channels, T = (size_t)b->T;
    size_t c0 = C * t / n, c1 = C * (t + 1) / n;
    float *dwte = GRD(0), *dwpe = GRD(1);
    for (size_t i = 0; i < BT; i++) {
        const float *g = b->dres + i * C;
        float *de = dwte + (size_t)b->inputs[i] * C, *dp = dwpe + (i % T) * C;
        for (size_t c = c0; c < c1; c++) { de[c] += g[c]; dp[c] += g[c]; }
    }
}

static int cpu_backward(sm_gpt2_backend *b, float grad_scale, sm_error *err) {
    if (!b->have_targets)
        return sm_error_set(err, SM_ERR_ARG, "backward needs a preceding forward pass with targets");
    b->grads_zero = 0;
    int nt = b->threads;
    openblas_set_num_threads(1);
    int B = b->B, T = b->T;
    size_t BT = (size_t)B * T, C = b->cfg.channels, V = b->cfg.vocab_size;
    float dscale = grad_scale / (float)BT;
    double tc = sm_monotonic();
    sm_gpt2_cls_backward(nt, b->cls, b->keep, b->lnf, PAR(0), b->targets, b->lse, dscale, BT, C, V, GRD(0), b->dmid);
    cls_stat(sm_monotonic() - tc, 4.0 * BT * V * C);
    int units = seq_units(&b->cfg, nt, B);
    if (units > 1) {
        /* each unit of sequences adds its layers' gradients to its own partial, summed in unit order */
        size_t lo = b->off[2], nl = b->off[15] + b->sizes[15] - lo;
#pragma omp parallel num_threads(nt)
        {
#pragma omp for schedule(dynamic)
            for (int u = 0; u < units; u++) {
                float *part = b->gpart + (size_t)u * nl;
                memset(part, 0, nl * sizeof(float));
                layers_bwd(b, 1, B * u / units, B * (u + 1) / units, part, lo);
            }
#pragma omp for schedule(static)
            for (size_t i = 0; i < nl; i++) {
                float g = 0.0f;
                for (int u = 0; u < units; u++) g += b->gpart[(size_t)u * nl + i];
                b->grads[lo + i] += g;
            }
            embed_bwd(b, omp_get_thread_num(), omp_get_num_threads());
        }
    } else {
        layers_bwd(b, nt, 0, B, b->grads, 0);
#pragma omp parallel num_threads(thr(nt, BT * C))
        embed_bwd(b, omp_get_thread_num(), omp_get_num_threads());
    }
    return SM_OK;
}

static int cpu_zero_grad(sm_gpt2_backend *b, sm_error *err) {
    (void)err;
    if (!b->grads_zero) memset(b->grads, 0, b->nparams * sizeof(float));
    b->grads_zero = 1;
    return SM_OK;
}

#define NCHUNK 256

static int cpu_grad_norm(sm_gpt2_backend *b, double *norm, sm_error *err) {
    (void)err;
    double part[NCHUNK];
    size_t n = b->nparams;
#pragma omp parallel for num_threads(thr(b->threads, b->nparams)) schedule(static)
    for (int k = 0; k < NCHUNK; k++) {
        size_t i0 = n * k / NCHUNK, i1 = n * (k + 1) / NCHUNK;
        double s = 0.0;
        for (size_t i = i0; i < i1; i++) s += (double)b->grads[i] * b->grads[i];
        part[k] = s;
    }
    double s = 0.0;
    for (int k = 0; k < NCHUNK; k++) s += part[k];
    *norm = sqrt(s);
    return SM_OK;
}

static int cpu_adamw(sm_gpt2_backend *b, float lr, float beta1, float beta2, float eps, float weight_decay,
                     float grad_mult, int t, sm_error *err) {
    if (t < 1) return sm_error_set(err, SM_ERR_ARG, "AdamW step must be >= 1 (got %d)", t);
    float c1 = 1.0f - powf(beta1, (float)t), c2 = 1.0f - powf(beta2, (float)t);
    /* one parallel region for all 16 tensors (no barrier between them: each element is independent) */
#pragma omp parallel num_threads(thr(b->threads, b->nparams))
    for (int k = 0; k < 16; k++) {
        float wd = decay_tensor[k] ? weight_decay : 0.0f;
        float *p = b->params + b->off[k], *g = b->grads + b->off[k], *m = b->m + b->off[k], *v = b->v + b->off[k];
        size_t n = b->sizes[k];
#pragma omp for schedule(static) nowait
        for (size_t i = 0; i < n; i++) {
            float gr = g[i] * grad_mult;
            float mi = beta1 * m[i] + (1.0f - beta1) * gr;
            float vi = beta2 * v[i] + (1.0f - beta2) * gr * gr;
            m[i] = mi;
            v[i] = vi;
            float mh = mi / c1, vh = vi / c2;
            p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
            g[i] = 0.0f; /* consumed: saves zero_grad a pass over memory */
        }
    }
    b->grads_zero = 1;
    return SM_OK;
}

static int cpu_get_params(sm_gpt2_backend *b, float *dst, sm_error *err) {
    (void)err;
    memcpy(dst, b->params, b->nparams * sizeof(float));
    return SM_OK;
}

static int cpu_get_grads(sm_gpt2_backend *b, float *dst, sm_error *err) {
    (void)err;
    memcpy(dst, b->grads, b->nparams * sizeof(float));
    return SM_OK;
}

static int cpu_get_moments(sm_gpt2_backend *b, float *m, float *v, sm_error *err) {
    (void)err;
    memcpy(m, b->m, b->nparams * sizeof(float));
    memcpy(v, b->v, b->nparams * sizeof(float));
    return SM_OK;
}

static int cpu_set_moments(sm_gpt2_backend *b, const float *m, const float *v, sm_error *err) {
    (void)err;
    memcpy(b->m, m, b->nparams * sizeof(float));
    memcpy(b->v, v, b->nparams * sizeof(float));
    return SM_OK;
}

static const sm_gpt2_backend_ops cpu_ops = {
    .struct_size = sizeof(sm_gpt2_backend_ops),
    .name = "cpu",
    .create = cpu_create,
    .destroy = cpu_destroy,
    .forward = cpu_forward,
    .backward = cpu_backward,
    .zero_grad = cpu_zero_grad,
    .grad_norm = cpu_grad_norm,
    .adamw = cpu_adamw,
    .get_params = cpu_get_params,
    .get_grads = cpu_get_grads,
    .get_moments = cpu_get_moments,
    .set_moments = cpu_set_moments,
    .memory_need = cpu_memory_need,
    .evaluate = cpu_evaluate,
};

const sm_gpt2_backend_ops *sm_gpt2_cpu_backend(void) { return &cpu_ops; }
