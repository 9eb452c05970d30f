/* sm_gpt2_classifier.c - the CPU backend's fused classifier: logits -> softmax -> cross-entropy (forward)
 * and dlogits -> dwte, dx (backward), tile by tile.
 *
 * The vocabulary is cut into blocks of VB rows of wte, grouped in chunks the threads take dynamically; a
 * tile is up to ROWS positions x VB logits (256 KiB, stays in L2). Forward folds each tile into its chunk's
 * running (max, sum of exp) pairs, combined in chunk order into the log-sum-exp. An evaluation writes no logits
 * anywhere but the thread's tile, which holds EB blocks and is vocabulary-major (wte . x^T): 16 positions
 * per vector, each folding its own logits (a row-major fold ends every 128-logit row with two 16-lane
 * reductions and sets up its constants per row). A training forward computes its tiles in place in `keep` (B*T x V
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

enum { VB = 128, EB = 2, ROWS = 512, LANES = 16 };

/* Evaluation: folds LANES positions of a vocabulary-major tile (w logits per position, stride ld between
 * vocabulary rows; lane k is position k) into their running max m[k] and sum s[k] of exp(z - m[k]). Each
 * lane's exps are taken against the max already known (its first logit here for its first block) and the
 * lane's max found on the way; only a lane whose max exceeds that reference by more than 64 (e^64 still
 * far from overflow) is summed again against its own max. Lanes never mix: no reduction across them. */
SM_CLONES static void fold_lanes(const float *tile, size_t w, size_t ld, float *m, float *s) {
    float ref[LANES], lo[LANES], hi[LANES], mx[LANES], acc[LANES];
    for (int k = 0; k < LANES; k++) {
        ref[k] = m[k] == -INFINITY ? tile[k] : m[k];
        lo[k] = ref[k] - 87.0f;
        hi[k] = ref[k] + 88.0f;
        mx[k] = -INFINITY;
        acc[k] = 0.0f;
    }
    /* exp_core's bounds, as exp_poly's clamps but against the lane's reference: z is kept within
     * [ref - 87, ref + 88] (e^-87 ~ 1.6e-38 stands for 0; a lane that reaches the upper bound is more than
     * 64 over its reference and summed again below; a NaN passes, as maxps and minps keep their second
     * operand). With variable bounds gcc emits one max and one min per logit; with exp_poly's constant ones
     * it made compares, mask logic and a blend. */
    for (size_t v = 0; v < w; v++)
        for (int k = 0; k < LANES; k++) {
            float z = tile[v * ld + k];
            mx[k] = z > mx[k] ? z : mx[k];
            float b = lo[k] > z ? lo[k] : z;
            acc[k] += exp_core((hi[k] < b ? hi[k] : b) - ref[k]);
        }
    int again = 0;
    for (int k = 0; k < LANES; k++) again |= mx[k] > ref[k] + 64.0f;
    if (again) {
        for (int k = 0; k < LANES; k++) {
            ref[k] = mx[k] > ref[k] + 64.0f ? mx[k] : ref[k];
            lo[k] = ref[k] - 87.0f;
            hi[k] = ref[k] + 88.0f;
            acc[k] = 0.0f;
        }
        for (size_t v = 0; v < w; v++)
            for (int k = 0; k < LANES; k++) {
                float z = tile[v * ld + k], b = lo[k] > z ? lo[k] : z;
                acc[k] += exp_core((hi[k] < b ? hi[k] : b) - ref[k]);
            }
    }
    for (int k = 0; k < LANES; k++) {
        float nm = mx[k] > m[k] ? mx[k] : m[k];
        s[k] = s[k] * exp_poly(m[k] - nm) + acc[k] * exp_poly(ref[k] - nm);
        m[k] = nm;
    }
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

/* Whole cache lines (threads never share one), which are also whole groups of LANES positions. */
static size_t lines(size_t floats) { return (floats + 15) & ~(size_t)15; }

/* One tile: at most ROWS positions (fewer for a smaller batch, so memory stays proportional to it), padded
 * to whole lanes for the evaluation's vocabulary-major tiles. */
static size_t tile_floats(size_t BT) { return lines(BT < ROWS ? BT : ROWS) * EB * VB; }

/* The vocabulary is cut into chunks of whole blocks that the threads take dynamically (a thread the
 * machine holds up takes fewer); each chunk folds into its own (max, sum) per row and its own partial of
 * dx, combined in chunk order, so results depend on the chunk count (fixed by the thread count), not on
 * which thread ran which chunk. One thread: one chunk. Training takes 4 chunks per thread; an evaluation,
 * whose chunks carry no dx partial and are short (about 3 ms each at the demo proxy's shape on 2 threads),
 * takes 16, so a thread waits less for the last one. */
static size_t chunks(int nt, size_t V, int eval) {
    size_t nb = (V + VB - 1) / VB, k = nt > 1 ? (eval ? 16 : 4) * (size_t)nt : 1;
    return k < nb ? k : nb;
}

/* Scratch layout: nt tiles, then per chunk its max and sum per row (each padded to whole lanes) and, in
 * training, its dx partial (BT x C). */
static size_t chunk_floats(size_t BT, size_t C, int eval) { return 2 * lines(BT) + (eval ? 0 : lines(BT * C)); }

size_t sm_gpt2_cls_scratch_floats(int nt, size_t BT, size_t C, size_t V) {
    size_t train = chunks(nt, V, 0) * chunk_floats(BT, C, 0), eval = chunks(nt, V, 1) * chunk_floats(BT, C, 1);
    return (size_t)nt * lines(tile_floats(BT)) + (train > eval ? train : eval);
}

static inline int cls_threads(int nt, size_t nk) { return (size_t)nt < nk ? nt : (int)nk; }

/* tile (rows x w, stride VB) = x[r0 .. r0+rows) . wte[v0 .. v0+w)^T */
static void logits_tile(float *tile, const float *x, const float *wte, size_t r0, size_t rows, size_t v0, size_t w,
                        size_t C) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)w, (int)C, 1.0f, x + r0 * C, (int)C,
                wte + v0 * C, (int)C, 0.0f, tile, VB);
}

/* Kept: the tiles' exps (vocabulary block-major, VB x BT floats each), then each block's per-row ref. */
size_t sm_gpt2_cls_keep_floats(size_t BT, size_t V) { return (V + VB - 1) / VB * (VB + 1) * BT; }

/* Evaluation of vocabulary rows [v0, v0 + w) for positions [r0, r0 + rows): the logits in the thread's
 * tile, vocabulary-major (w x ld, the positions padded with zeros to whole lanes), folded LANES positions
 * at a time into m, s; losses[i] gets the target's logit where the target is in these rows (one writer). */
static void eval_tile(float *tile, const float *x, const float *wte, const int32_t *targets, size_t r0, size_t rows,
                      size_t v0, size_t w, size_t C, float *m, float *s, float *losses) {
    size_t ld = lines(rows);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)w, (int)rows, (int)C, 1.0f, wte + v0 * C, (int)C,
                x + r0 * C, (int)C, 0.0f, tile, (int)ld);
    if (ld > rows)
        for (size_t v = 0; v < w; v++) memset(tile + v * ld + rows, 0, (ld - rows) * sizeof(float));
    for (size_t i = 0; i < rows; i++) {
        size_t tg = (size_t)targets[r0 + i];
        if (tg >= v0 && tg < v0 + w) losses[r0 + i] = tile[(tg - v0) * ld + i];
    }
    for (size_t g = 0; g < ld; g += LANES) fold_lanes(tile + g, w, ld, m + r0 + g, s + r0 + g);
}

void sm_gpt2_cls_forward(int nt, float *scratch, float *keep, const float *x, const float *wte, const int32_t *targets,
                         size_t BT, size_t C, size_t V, float *lse, float *losses) {
    int eval = keep == NULL;
    size_t nb = (V + VB - 1) / VB, nk = chunks(nt, V, eval), cf = chunk_floats(BT, C, eval);
    float *chunk0 = scratch + (size_t)nt * lines(tile_floats(BT));
#pragma omp parallel num_threads(cls_threads(nt, nk))
    {
        float *tile = scratch + (size_t)omp_get_thread_num() * lines(tile_floats(BT));
#pragma omp for schedule(dynamic)
        for (size_t k = 0; k < nk; k++) {
            float *m = chunk0 + k * cf, *s = m + lines(BT);
            for (size_t i = 0; i < lines(BT); i++) { m[i] = -INFINITY; s[i] = 0.0f; }
            size_t b1 = nb * (k + 1) / nk, step = keep ? 1 : EB;
            for (size_t vb = nb * k / nk; vb < b1; vb += step) {
                size_t v0 = vb * VB, v1 = (vb + step < b1 ? vb + step : b1) * VB, w = (v1 < V ? v1 : V) - v0;
                for (size_t r0 = 0; r0 < BT; r0 += ROWS) {
                    size_t rows = BT - r0 < ROWS ? BT - r0 : ROWS;
                    if (!keep) {
                        eval_tile(tile, x, wte, targets, r0, rows, v0, w, C, m, s, losses);
                        continue;
                    }
                    float *tl = keep + vb * VB * BT + r0 * VB;
                    logits_tile(tl, x, wte, r0, rows, v0, w, C);
                    for (size_t i = 0; i < rows; i++) {
                        size_t tg = (size_t)targets[r0 + i];
                        if (tg >= v0 && tg < v0 + w) losses[r0 + i] = tl[i * VB + tg - v0]; /* the target's logit, one writer */
                        keep[nb * VB * BT + vb * BT + r0 + i] = fold_store_row(tl + i * VB, w, &m[r0 + i], &s[r0 + i]);
                    }
                }
            }
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
            sum += mk[lines(BT) + i] * expf(mk[i] - mx);
        }
        lse[i] = mx + logf(sum);
        losses[i] = lse[i] - losses[i];
    }
}

void sm_gpt2_cls_backward(int nt, float *scratch, float *keep, const float *x, const float *wte, const int32_t *targets,
                          const float *lse, float dscale, size_t BT, size_t C, size_t V, float *dwte, float *dx) {
    size_t nb = (V + VB - 1) / VB, nk = chunks(nt, V, 0), cf = chunk_floats(BT, C, 0);
    float *chunk0 = scratch + (size_t)nt * lines(tile_floats(BT));
#pragma omp parallel num_threads(cls_threads(nt, nk))
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
#pragma omp for schedule(dynamic)
        for (size_t k = 0; k < nk; k++) {
            float *part = k == 0 ? dx : chunk0 + k * cf + 2 * lines(BT);
            memset(part, 0, BT * C * sizeof(float));
            for (size_t vb = nb * k / nk; vb < nb * (k + 1) / nk; vb++) {
                size_t v0 = vb * VB, w = V - v0 < VB ? V - v0 : VB;
                for (size_t r0 = 0; r0 < BT; r0 += ROWS) {
                    size_t rows = BT - r0 < ROWS ? BT - r0 : ROWS;
                    float *tl = keep + vb * VB * BT + r0 * VB;
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
            const float *p = chunk0 + k * cf + 2 * lines(BT);
            for (size_t i = i0; i < i1; i++) dx[i] += p[i];
        }
    }
}
