/* sm_gpt2_classifier.c - the CPU backend's fused classifier: logits -> softmax -> cross-entropy (forward)
 * and dlogits -> dwte, dx (backward), tile by tile.
 *
 * The vocabulary is cut into blocks of VB rows of wte, grouped in chunks the threads take dynamically; a
 * tile is up to ROWS positions x VB logits (256 KiB, stays in L2). Forward folds each tile into its chunk's
 * running (max, sum of exp) pairs, combined in chunk order into the log-sum-exp. An evaluation writes no logits
 * anywhere but the thread's tile. A training forward computes its tiles in place in `keep` (B*T x V
 * floats, tile-major, written once) and leaves exp(z - ref) there, ref being the row's running max at that
 * block (kept too); backward turns each kept tile into dlogits in place (scaling by exp(ref - lse) times
 * the gradient scale, minus it at the target: no exps again) and adds the tile's share of dwte (rows of
 * the chunk's own blocks: race free) and of dx (a per-chunk partial, summed in chunk order). Keeping beat recomputing the logits in
 * backward (one more K=C product) at all three shapes of issue 13: measured in tokens per CPU second on
 * one thread, C64 +5-20%, C256 +15% (recomputing was 4-8% slower than the old unfused code at C256/C768).
 * exp is a Cephes-style polynomial in plain C that the compiler vectorises; the hot loops are cloned for
 * AVX-512, AVX2 and baseline x86-64 and picked at load time. The file is built with -ffp-contract=fast: the
 * AVX-512/AVX2 clones fuse the polynomial's multiply-adds (fewer operations per exp, which the evaluation
 * of a C64 proxy spends a third of its time in), so the exps differ in the last bit from the baseline
 * clone's, as OpenBLAS's sgemm kernels already differ between CPUs. For a CPU, results depend only on the
 * inputs and the thread count (through the chunk count), not on which thread ran which chunk. */
#include "sm_gpt2_internal.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

enum { VB = 128, ROWS = 512, LANES = 16 };

#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define SM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SM_CLONES
#endif

/* e^x, within ~2 ulp for x in [-87, 88] (clamped there: below, e^-87 ~ 1.6e-38 stands for 0). */
static inline float exp_poly(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Sum of exp(z - ref) over n logits and their max, in one pass (16 lanes, fixed order). */
SM_CLONES static float exp_sum(const float *z, size_t n, float ref, float *max) {
    float mx[LANES], acc[LANES];
    for (int k = 0; k < LANES; k++) { mx[k] = -INFINITY; acc[k] = 0.0f; }
    size_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int k = 0; k < LANES; k++) {
            mx[k] = z[j + k] > mx[k] ? z[j + k] : mx[k];
            acc[k] += exp_poly(z[j + k] - ref);
        }
    float bm = -INFINITY, sum = 0.0f;
    for (; j < n; j++) {
        bm = z[j] > bm ? z[j] : bm;
        sum += exp_poly(z[j] - ref);
    }
    for (int k = 0; k < LANES; k++) {
        bm = mx[k] > bm ? mx[k] : bm;
        sum += acc[k];
    }
    *max = bm;
    return sum;
}

/* Folds n logits into a running max *m and sum *s of exp(z - *m). The exps are taken against the
 * running max already known (the row's first logit for its first block) and the block's max found on the
 * way; only when that max exceeds the reference by more than 64 (e^64 still far from overflow) is the
 * block summed again against its own max. */
static void fold_row(const float *z, size_t n, float *m, float *s) {
    float ref = *m == -INFINITY ? z[0] : *m, bm;
    float sum = exp_sum(z, n, ref, &bm);
    if (bm > ref + 64.0f) {
        ref = bm;
        sum = exp_sum(z, n, ref, &bm);
    }
    float nm = bm > *m ? bm : *m;
    *s = *s * exp_poly(*m - nm) + sum * exp_poly(ref - nm);
    *m = nm;
}

/* Training forward: z = exp(z - ref) in place with ref = max(*m, the row's max), folded into (*m, *s);
 * returns ref, which backward needs to turn the kept exps into probabilities. */
SM_CLONES static float fold_store_row(float *z, size_t n, float *m, float *s) {
    float mx[LANES], acc[LANES];
    for (int k = 0; k < LANES; k++) { mx[k] = -INFINITY; acc[k] = 0.0f; }
    size_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int k = 0; k < LANES; k++) mx[k] = z[j + k] > mx[k] ? z[j + k] : mx[k];
    float ref = *m;
    for (size_t i = j; i < n; i++) ref = z[i] > ref ? z[i] : ref;
    for (int k = 0; k < LANES; k++) ref = mx[k] > ref ? mx[k] : ref;
    for (j = 0; j + LANES <= n; j += LANES)
        for (int k = 0; k < LANES; k++) {
            float e = exp_poly(z[j + k] - ref);
            z[j + k] = e;
            acc[k] += e;
        }
    float sum = 0.0f;
    for (; j < n; j++) {
        z[j] = exp_poly(z[j] - ref);
        sum += z[j];
    }
    for (int k = 0; k < LANES; k++) sum += acc[k];
    *s = *s * exp_poly(*m - ref) + sum;
    *m = ref;
    return ref;
}

/* z *= scale in place (kept exps to probabilities times the gradient scale). */
SM_CLONES static void scale_row(float *z, size_t n, float scale) {
    for (size_t j = 0; j < n; j++) z[j] *= scale;
}

/* One tile: at most ROWS positions (fewer for a smaller batch, so memory stays proportional to it). */
static size_t tile_floats(size_t BT) { return (BT < ROWS ? BT : ROWS) * VB; }

/* Whole cache lines: threads never share one. */
static size_t lines(size_t floats) { return (floats + 15) & ~(size_t)15; }

/* The vocabulary is cut into chunks of whole blocks that the threads take dynamically (a thread the
 * machine holds up takes fewer); each chunk folds into its own (max, sum) per row and its own partial of
 * dx, combined in chunk order, so results depend on the chunk count (fixed by the thread count), not on
 * which thread ran which chunk. One thread: one chunk. */
static size_t chunks(int nt, size_t V) {
    size_t nb = (V + VB - 1) / VB, k = nt > 1 ? 4 * (size_t)nt : 1;
    return k < nb ? k : nb;
}

/* Scratch layout: nt tiles, then per chunk its max and sum per row and its dx partial (BT x C). */
static size_t chunk_floats(size_t BT, size_t C) { return lines(2 * BT + BT * C); }

size_t sm_gpt2_cls_scratch_floats(int nt, size_t BT, size_t C, size_t V) {
    return (size_t)nt * lines(tile_floats(BT)) + chunks(nt, V) * chunk_floats(BT, C);
}

static inline int cls_threads(int nt, size_t V) {
    size_t k = chunks(nt, V);
    return (size_t)nt < k ? nt : (int)k;
}

/* tile (rows x w, stride VB) = x[r0 .. r0+rows) . wte[v0 .. v0+w)^T */
static void logits_tile(float *tile, const float *x, const float *wte, size_t r0, size_t rows, size_t v0, size_t w,
                        size_t C) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)w, (int)C, 1.0f, x + r0 * C, (int)C,
                wte + v0 * C, (int)C, 0.0f, tile, VB);
}

/* Kept: the tiles' exps (vocabulary block-major, VB x BT floats each), then each block's per-row ref. */
size_t sm_gpt2_cls_keep_floats(size_t BT, size_t V) { return (V + VB - 1) / VB * (VB + 1) * BT; }

/* The tile of vocabulary block vb and rows from r0: in keep (a training forward, and backward), or the
 * thread's scratch (evaluation). */
static float *tile_at(float *tile, float *keep, size_t BT, size_t vb, size_t r0) {
    return keep ? keep + vb * VB * BT + r0 * VB : tile;
}

void sm_gpt2_cls_forward(int nt, float *scratch, float *keep, const float *x, const float *wte, const int32_t *targets,
                         size_t BT, size_t C, size_t V, float *lse, float *losses) {
    size_t nb = (V + VB - 1) / VB, nk = chunks(nt, V);
    float *chunk0 = scratch + (size_t)nt * lines(tile_floats(BT));
#pragma omp parallel num_threads(cls_threads(nt, V))
    {
        float *tile = scratch + (size_t)omp_get_thread_num() * lines(tile_floats(BT));
#pragma omp for schedule(dynamic)
        for (size_t k = 0; k < nk; k++) {
            float *m = chunk0 + k * chunk_floats(BT, C), *s = m + BT;
            for (size_t i = 0; i < BT; i++) { m[i] = -INFINITY; s[i] = 0.0f; }
            for (size_t vb = nb * k / nk; vb < nb * (k + 1) / nk; vb++) {
                size_t v0 = vb * VB, w = V - v0 < VB ? V - v0 : VB;
                for (size_t r0 = 0; r0 < BT; r0 += ROWS) {
                    size_t rows = BT - r0 < ROWS ? BT - r0 : ROWS;
                    float *tl = tile_at(tile, keep, BT, vb, r0);
                    logits_tile(tl, x, wte, r0, rows, v0, w, C);
                    for (size_t i = 0; i < rows; i++) {
                        const float *z = tl + i * VB;
                        size_t tg = (size_t)targets[r0 + i];
                        if (tg >= v0 && tg < v0 + w) losses[r0 + i] = z[tg - v0]; /* the target's logit, one writer */
                        if (keep)
                            keep[nb * VB * BT + vb * BT + r0 + i] = fold_store_row(tl + i * VB, w, &m[r0 + i], &s[r0 + i]);
                        else
                            fold_row(z, w, &m[r0 + i], &s[r0 + i]);
                    }
                }
            }
        }
    }
    for (size_t i = 0; i < BT; i++) {
        float mx = -INFINITY;
        for (size_t k = 0; k < nk; k++) {
            float mk = chunk0[k * chunk_floats(BT, C) + i];
            mx = mk > mx ? mk : mx;
        }
        float sum = 0.0f;
        for (size_t k = 0; k < nk; k++) {
            const float *mk = chunk0 + k * chunk_floats(BT, C);
            sum += mk[BT + i] * expf(mk[i] - mx);
        }
        lse[i] = mx + logf(sum);
        losses[i] = lse[i] - losses[i];
    }
}

void sm_gpt2_cls_backward(int nt, float *scratch, float *keep, const float *x, const float *wte, const int32_t *targets,
                          const float *lse, float dscale, size_t BT, size_t C, size_t V, float *dwte, float *dx) {
    size_t nb = (V + VB - 1) / VB, nk = chunks(nt, V);
    float *chunk0 = scratch + (size_t)nt * lines(tile_floats(BT));
#pragma omp parallel num_threads(cls_threads(nt, V))
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        float *tile = scratch + (size_t)t * lines(tile_floats(BT));
#pragma omp for schedule(dynamic)
        for (size_t k = 0; k < nk; k++) {
            float *part = k == 0 ? dx : chunk0 + k * chunk_floats(BT, C) + 2 * BT;
            memset(part, 0, BT * C * sizeof(float));
            for (size_t vb = nb * k / nk; vb < nb * (k + 1) / nk; vb++) {
                size_t v0 = vb * VB, w = V - v0 < VB ? V - v0 : VB;
                for (size_t r0 = 0; r0 < BT; r0 += ROWS) {
                    size_t rows = BT - r0 < ROWS ? BT - r0 : ROWS;
                    float *tl = tile_at(tile, keep, BT, vb, r0);
                    for (size_t i = 0; i < rows; i++) {
                        float *z = tl + i * VB;
                        scale_row(z, w, exp_poly(keep[nb * VB * BT + vb * BT + r0 + i] - lse[r0 + i]) * dscale);
                        size_t tg = (size_t)targets[r0 + i];
                        if (tg >= v0 && tg < v0 + w) z[tg - v0] -= dscale;
                    }
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)w, (int)C, (int)rows, 1.0f, tl, VB,
                                x + r0 * C, (int)C, 1.0f, dwte + v0 * C, (int)C);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)C, (int)w, 1.0f, tl, VB,
                                wte + v0 * C, (int)C, 1.0f, part + r0 * C, (int)C);
                }
            }
        }
        /* dx += the other chunks' partials, in chunk order; each thread sums a slice of the rows (the loop
         * above ends in a barrier) */
        size_t i0 = BT * t / n * C, i1 = BT * (t + 1) / n * C;
        for (size_t k = 1; k < nk; k++) {
            const float *p = chunk0 + k * chunk_floats(BT, C) + 2 * BT;
            for (size_t i = i0; i < i1; i++) dx[i] += p[i];
        }
    }
}
