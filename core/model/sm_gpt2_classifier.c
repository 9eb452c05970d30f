/* sm_gpt2_classifier.c - the CPU backend's fused classifier: logits -> softmax -> cross-entropy (forward)
 * and dlogits -> dwte, dx (backward).
 *
 * Forward runs our own kernel (sm_gpt2_cls_kernel.inc): the positions, transposed once per call (C x ld,
 * padded with zeros to whole strips), against blocks of VB rows of wte, grouped in chunks the threads take
 * dynamically. Each micro-tile's logits stay in registers: their exps against a reference per position are
 * taken there, summed and, in training, stored; no logit is ever written. The reference is the chunk's
 * running max, raised on the block's first micro-tile to that tile's max and raised again (the block done
 * over) where the block's max exceeds it by more than 64, so an exp never overflows and the sums fold into
 * each chunk's running (max, sum of exp) per position, combined in chunk order into the log-sum-exp.
 * OpenBLAS's sgemm at K = C = 64 wrote each tile of logits (zeroing it first), the exps pass read and
 * rewrote it; at the demo proxy's shape the kernel took the classifier's forward from 29.5-33.9 to
 * 20.5-21.2 ms on 2 threads (tests/bench/bench_gpt2_cls, core/model/NOTES.md). A training forward keeps
 * the exps vocabulary-major (block by block, VB x ld) with each block's reference per position; backward
 * turns a kept tile into dlogits in place (scaling position i by exp(ref_i - lse_i) times the gradient
 * scale, minus it at the target: no exps again) and adds its share of dwte (rows of the chunk's own blocks:
 * race free) and of dx (a per-chunk partial, summed in chunk order) with OpenBLAS, whose kernels run these
 * two products at large K near their peak. Keeping beat recomputing the logits in backward at all three
 * shapes of issue 13 (measured with the earlier sgemm forward).
 *
 * The kernel is instantiated for AVX-512, AVX2+FMA and baseline x86-64 (GCC vector extensions) and picked
 * by what the CPU supports (the baseline, for CPUs without AVX2 and FMA, ran the forward in 200-240 ms on
 * one thread at the demo proxy's shape, where the previous sgemm path with OpenBLAS's SSE kernel forced
 * (OPENBLAS_CORETYPE=Nehalem) took 150 ms: slower on such CPUs; the AVX2 kernel took 60 ms against 73 with
 * OpenBLAS's Haswell kernel); the file is built with -ffp-contract=fast, so the AVX-512 and AVX2 kernels fuse
 * the exp polynomial's multiply-adds and their results differ in the last bits from the baseline's, as
 * OpenBLAS's sgemm kernels already differ between CPUs. For a CPU, results depend only on the inputs and the
 * thread count (through the chunk count), not on which thread ran which chunk. */
#include "sm_gpt2_internal.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* VB: vocabulary rows per block; EB: blocks per kernel call in an evaluation (nothing kept); ROWS:
 * positions per backward tile (VB x ROWS floats, 256 KiB, stays in L2 for its two products); STRIP: the
 * widest kernel's positions per strip, to which every per-position array is padded. */
enum { VB = 128, EB = 2, ROWS = 512, STRIP = 32 };

/* The kernel's instantiations (the .inc undefines its parameters after each): P x NV accumulators, plus NV
 * loads and a broadcast, within 32 registers (AVX-512) or 16 (AVX2, SSE2). */
#if defined(__x86_64__)
#define KFENCE() _mm_sfence()
#define KERNEL block_v4
#define TARGET __attribute__((target("arch=x86-64-v4")))
#define W 16
#define NV 2
#define P 8
#define KSTORE(a, e) _mm512_stream_ps((a), (__m512)(e))
#include "sm_gpt2_cls_kernel.inc"
#define KERNEL block_v3
#define TARGET __attribute__((target("arch=x86-64-v3")))
#define W 8
#define NV 2
#define P 4
#define KSTORE(a, e) _mm256_stream_ps((a), (__m256)(e))
#include "sm_gpt2_cls_kernel.inc"
#define KSTORE(a, e) _mm_stream_ps((a), (__m128)(e))
#else
#define KSTORE(a, e) (*(__typeof__(e) *)(a) = (e))
#define KFENCE() ((void)0)
#endif
#define KERNEL block_v1
#define TARGET
#define W 4
#define NV 2
#define P 4
#include "sm_gpt2_cls_kernel.inc"
#undef KFENCE

typedef void (*block_fn)(const float *, size_t, const float *, size_t, size_t, float *, float *, float *, float *);
static const struct {
    const char *isa;
    block_fn fn;
} kernels[] = {
#if defined(__x86_64__)
    {"x86-64-v4", block_v4},
    {"x86-64-v3", block_v3},
#endif
    {"baseline", block_v1},
};
enum { NKERNELS = sizeof kernels / sizeof kernels[0] };
static int forced = -1; /* sm_gpt2_cls_use_isa */

static int isa_supported(int k) {
#if defined(__x86_64__)
    if (k == 0) return __builtin_cpu_supports("x86-64-v4");
    if (k == 1) return __builtin_cpu_supports("x86-64-v3");
#endif
    return k == NKERNELS - 1;
}

static int pick_kernel(void) {
    if (forced >= 0) return forced;
    int k = 0;
    while (!isa_supported(k)) k++;
    return k;
}

const char *sm_gpt2_cls_isa(void) { return kernels[pick_kernel()].isa; }

int sm_gpt2_cls_use_isa(const char *isa) {
    if (!isa) {
        forced = -1;
        return 0;
    }
    for (int k = 0; k < NKERNELS; k++)
        if (!strcmp(isa, kernels[k].isa)) {
            if (!isa_supported(k)) return -1;
            forced = k;
            return 0;
        }
    return -1;
}

/* t[v][i] *= sc[i] for w rows of n positions (stride ld): kept exps to dlogits' probability part. */
SM_CLONES static void scale_cols(float *t, size_t w, size_t ld, const float *sc, size_t n) {
    for (size_t v = 0; v < w; v++)
        for (size_t i = 0; i < n; i++) t[v * ld + i] *= sc[i];
}

/* Whole cache lines (threads never share one). */
static size_t lines(size_t floats) { return (floats + 15) & ~(size_t)15; }
/* Whole strips of the widest kernel (also whole cache lines). */
static size_t lanes(size_t n) { return (n + STRIP - 1) & ~(size_t)(STRIP - 1); }

/* The vocabulary is cut into chunks of whole blocks that the threads take dynamically (a thread the
 * machine holds up takes fewer); each chunk folds into its own (max, sum) per position and its own partial
 * of dx, combined in chunk order, so results depend on the chunk count (fixed by the thread count), not on
 * which thread ran which chunk. One thread: one chunk. Training takes 4 chunks per thread; an evaluation,
 * whose chunks carry no dx partial and are short, takes 16, so a thread waits less for the last one. */
static size_t chunks(int nt, size_t V, int eval) {
    size_t nb = (V + VB - 1) / VB, k = nt > 1 ? (eval ? 16 : 4) * (size_t)nt : 1;
    return k < nb ? k : nb;
}
/* Scratch layout: the transposed positions (C x lanes(BT)), then per chunk its max and sum per position and,
 * in training, its dx partial (BT x C). */
static size_t chunk_floats(size_t BT, size_t C, int eval) { return 2 * lanes(BT) + (eval ? 0 : lines(BT * C)); }

size_t sm_gpt2_cls_scratch_floats(int nt, size_t BT, size_t C, size_t V) {
    size_t train = chunks(nt, V, 0) * chunk_floats(BT, C, 0), eval = chunks(nt, V, 1) * chunk_floats(BT, C, 1);
    return C * lanes(BT) + (train > eval ? train : eval);
}
static inline int cls_threads(int nt, size_t nk) { return (size_t)nt < nk ? nt : (int)nk; }
/* Kept: each block's exps (VB x lanes(BT), vocabulary-major), then each block's reference per position. */
size_t sm_gpt2_cls_keep_floats(size_t BT, size_t V) { return (V + VB - 1) / VB * (VB + 1) * lanes(BT); }

void sm_gpt2_cls_forward(int nt, float *scratch, float *keep, const float *x, const float *wte, const int32_t *targets,
                         size_t BT, size_t C, size_t V, float *lse, float *losses) {
    assert(((uintptr_t)scratch & 63) == 0 && ((uintptr_t)keep & 63) == 0); /* streaming stores need it */
    block_fn block = kernels[pick_kernel()].fn;
    int eval = keep == NULL;
    size_t nb = (V + VB - 1) / VB, nk = chunks(nt, V, eval), cf = chunk_floats(BT, C, eval), ld = lanes(BT);
    float *xT = scratch, *chunk0 = scratch + C * ld;
    for (size_t c = 0; c < C; c++) { /* 128 KiB at C = 64, BT = 512: once per call, serial */
        for (size_t i = 0; i < BT; i++) xT[c * ld + i] = x[i * C + c];
        for (size_t i = BT; i < ld; i++) xT[c * ld + i] = 0.0f;
    }
#pragma omp parallel for num_threads(cls_threads(nt, nk)) schedule(dynamic)
    for (size_t k = 0; k < nk; k++) {
        float *m = chunk0 + k * cf, *s = m + ld;
        for (size_t i = 0; i < ld; i++) { m[i] = -INFINITY; s[i] = 0.0f; }
        size_t b1 = nb * (k + 1) / nk, step = keep ? 1 : EB;
        for (size_t vb = nb * k / nk; vb < b1; vb += step) {
            size_t v0 = vb * VB, v1 = (vb + step < b1 ? vb + step : b1) * VB, w = (v1 < V ? v1 : V) - v0;
            block(wte + v0 * C, w, xT, ld, C, keep ? keep + vb * VB * ld : NULL, m, s,
                  keep ? keep + nb * VB * ld + vb * ld : NULL);
        }
    }
    for (size_t i = 0; i < BT; i++) {
        float mx = -INFINITY;
        for (size_t k = 0; k < nk; k++) {
            float mk = chunk0[k * cf + i];
            mx = mk > mx ? mk : mx;
        }
        float sum = 0.0f;
        for (size_t k = 0; k < nk; k++) {
            const float *mk = chunk0 + k * cf;
            sum += mk[ld + i] * expf(mk[i] - mx);
        }
        lse[i] = mx + logf(sum);
        const float *xi = x + i * C, *wt = wte + (size_t)targets[i] * C; /* the target's logit, once */
        float z = 0.0f;
        for (size_t c = 0; c < C; c++) z += xi[c] * wt[c];
        losses[i] = lse[i] - z;
    }
}

void sm_gpt2_cls_backward(int nt, float *scratch, float *keep, const float *x, const float *wte, const int32_t *targets,
                          const float *lse, float dscale, size_t BT, size_t C, size_t V, float *dwte, float *dx) {
    size_t nb = (V + VB - 1) / VB, nk = chunks(nt, V, 0), cf = chunk_floats(BT, C, 0), ld = lanes(BT);
    float *chunk0 = scratch + C * ld;
#pragma omp parallel num_threads(cls_threads(nt, nk))
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        float sc[ROWS];
        int far[ROWS];
#pragma omp for schedule(dynamic)
        for (size_t k = 0; k < nk; k++) {
            float *part = k == 0 ? dx : chunk0 + k * cf + 2 * ld;
            memset(part, 0, BT * C * sizeof(float));
            for (size_t vb = nb * k / nk; vb < nb * (k + 1) / nk; vb++) {
                size_t v0 = vb * VB, w = V - v0 < VB ? V - v0 : VB;
                float *tb = keep + vb * VB * ld;
                const float *refs = keep + nb * VB * ld + vb * ld;
                for (size_t r0 = 0; r0 < BT; r0 += ROWS) {
                    size_t rows = BT - r0 < ROWS ? BT - r0 : ROWS;
                    for (size_t i = 0; i < rows; i++) {
                        /* a reference more than 87 under the log-sum-exp (the position's max came in a later
                         * block) scales exps up to e^64: (e e^(d + 64)) e^-64, as exp_poly clamps at -87 */
                        float d = refs[r0 + i] - lse[r0 + i];
                        far[i] = d < -87.0f;
                        sc[i] = exp_poly(far[i] ? d + 64.0f : d) * dscale;
                    }
                    scale_cols(tb + r0, w, ld, sc, rows);
                    for (size_t i = 0; i < rows; i++)
                        for (size_t v = 0; far[i] && v < w; v++) tb[v * ld + r0 + i] *= 1.60381089e-28f; /* e^-64 */
                    for (size_t i = 0; i < rows; i++) {
                        size_t tg = (size_t)targets[r0 + i];
                        if (tg >= v0 && tg < v0 + w) tb[(tg - v0) * ld + r0 + i] -= dscale;
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)w, (int)C, (int)rows, 1.0f, tb + r0,
                                (int)ld, x + r0 * C, (int)C, 1.0f, dwte + v0 * C, (int)C);
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)rows, (int)C, (int)w, 1.0f, tb + r0,
                                (int)ld, wte + v0 * C, (int)C, 1.0f, part + r0 * C, (int)C);
                }
            }
        }
        /* dx += the other chunks' partials, in chunk order; each thread sums a slice of the rows (the loop
         * above ends in a barrier) */
        size_t i0 = BT * t / n * C, i1 = BT * (t + 1) / n * C;
        for (size_t k = 1; k < nk; k++) {
            const float *p = chunk0 + k * cf + 2 * ld;
            for (size_t i = i0; i < i1; i++) dx[i] += p[i];
        }
    }
}
