/* test_gpt2_cls.c - the CPU backend's fused classifier against a double-precision softmax cross-entropy:
 * every kernel the CPU runs (AVX-512, AVX2, baseline), 1 to 3 threads, batches that do not fill a strip,
 * vocabularies that do not fill a block, and logits spread so wide that the kernel's reference is raised
 * and a block lies far below its position's log-sum-exp. */
#include "../sm_test.h"
#include "model/sm_gpt2_internal.h"

#include <stdint.h>

static uint64_t rs = 0x9E3779B97F4A7C15ULL;
static double urand(void) { /* xorshift64 in [0,1) */
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return (rs >> 11) * (1.0 / 9007199254740992.0);
}

typedef struct {
    size_t BT, C, V;
    float *x, *wte;
    int32_t *tg;
    /* the reference and, per output, the sum of the absolute values of its terms (the scale of its
     * rounding error; see make) */
    double *lse, *loss, *dwte, *dx, *dwte_abs, *dx_abs;
} problem;

/* Random x and wte (logits of sd spread sqrt(C) / 12); with far, each position i < BT / 2 gets a
 * vocabulary row in the last block equal to 80 x_i (a logit near 80 |x_i|^2 ~ 210, where the others have
 * sd ~19 at spread 40, C 32), so at least one block of its chunk lies more than 87 under its log-sum-exp. */
static problem make(size_t BT, size_t C, size_t V, double spread, int far) {
    problem p = {.BT = BT, .C = C, .V = V};
    p.x = malloc(BT * C * sizeof(float));
    p.wte = malloc(V * C * sizeof(float));
    p.tg = malloc(BT * sizeof(int32_t));
    for (size_t i = 0; i < BT * C; i++) p.x[i] = (float)(urand() - 0.5);
    for (size_t i = 0; i < V * C; i++) p.wte[i] = (float)((urand() - 0.5) * spread);
    for (size_t i = 0; i < BT; i++) p.tg[i] = (int32_t)(urand() * V);
    for (size_t i = 0; far && i < BT / 2; i++) {
        size_t v = V - 1 - i % 40;
        for (size_t c = 0; c < C; c++) p.wte[v * C + c] = 80.0f * p.x[i * C + c];
    }
    p.lse = calloc(BT, sizeof(double));
    p.loss = calloc(BT, sizeof(double));
    p.dwte = calloc(V * C, sizeof(double));
    p.dx = calloc(BT * C, sizeof(double));
    p.dwte_abs = calloc(V * C, sizeof(double));
    p.dx_abs = calloc(BT * C, sizeof(double));
    double *z = malloc(V * sizeof(double)), dscale = 1.0 / (double)BT;
    for (size_t i = 0; i < BT; i++) {
        double mx = -INFINITY, sum = 0;
        for (size_t v = 0; v < V; v++) {
            double s = 0;
            for (size_t c = 0; c < C; c++) s += (double)p.x[i * C + c] * p.wte[v * C + c];
            z[v] = s;
            mx = s > mx ? s : mx;
        }
        for (size_t v = 0; v < V; v++) sum += exp(z[v] - mx);
        p.lse[i] = mx + log(sum);
        p.loss[i] = p.lse[i] - z[p.tg[i]];
        for (size_t v = 0; v < V; v++) {
            /* g = (p - onehot) dscale; float computes p with a relative error, so p - 1 at the target
             * (near 0 where the target dominates) carries an error of the size of p, not of p - 1 */
            double pr = exp(z[v] - p.lse[i]), g = (pr - (v == (size_t)p.tg[i])) * dscale, ga = fabs(g) + pr * dscale;
            for (size_t c = 0; c < C; c++) {
                p.dwte[v * C + c] += g * p.x[i * C + c];
                p.dwte_abs[v * C + c] += ga * fabs(p.x[i * C + c]);
                p.dx[i * C + c] += g * p.wte[v * C + c];
                p.dx_abs[i * C + c] += ga * fabs(p.wte[v * C + c]);
            }
        }
    }
    free(z);
    return p;
}

static void drop(problem *p) {
    free(p->x); free(p->wte); free(p->tg); free(p->lse); free(p->loss);
    free(p->dwte); free(p->dx); free(p->dwte_abs); free(p->dx_abs);
}

static float *zeros(size_t n) {
    float *f = aligned_alloc(64, (n * sizeof(float) + 63) & ~(size_t)63);
    memset(f, 0, n * sizeof(float));
    return f;
}

/* Largest error of got against want in units of tol * (the terms' absolute sum + tiny); > 1 fails. */
static double worst(const float *got, const double *want, const double *scale, size_t n, double tol, size_t *at) {
    double w = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs(got[i] - want[i]) / (tol * (scale[i] + 1e-30));
        if (isnan(r)) { /* a NaN is the worst */
            *at = i;
            return r;
        }
        if (r > w) { w = r; *at = i; }
    }
    return w;
}

/* Trains (forward keeping the exps, backward) and evaluates p on nt threads with the current kernel;
 * checks every output against the reference. tol: the relative error allowed on the terms' sum. */
static void check_problem(const problem *p, int nt, double tol, const char *what) {
    size_t BT = p->BT, C = p->C, V = p->V, at = 0;
    float *scratch = zeros(sm_gpt2_cls_scratch_floats(nt, BT, C, V)), *keep = zeros(sm_gpt2_cls_keep_floats(BT, V));
    float *lse = zeros(BT), *loss = zeros(BT), *eloss = zeros(BT), *elsev = zeros(BT);
    float *dwte = zeros(V * C), *dx = zeros(BT * C);
    sm_gpt2_cls_forward(nt, scratch, keep, p->x, p->wte, p->tg, BT, C, V, lse, loss);
    sm_gpt2_cls_backward(nt, scratch, keep, p->x, p->wte, p->tg, lse, 1.0f / (float)BT, BT, C, V, dwte, dx);
    sm_gpt2_cls_forward(nt, scratch, NULL, p->x, p->wte, p->tg, BT, C, V, elsev, eloss);
    const char *isa = sm_gpt2_cls_isa();
    for (size_t i = 0; i < BT; i++) {
        /* log-sum-exp and loss: float logits near |z| carry errors near 1e-7 |z| C */
        double zt = fabs(p->lse[i]) + fabs(p->lse[i] - p->loss[i]) + 1.0;
        CHECK_MSG(fabs(lse[i] - p->lse[i]) <= 4e-6 * zt && fabs(elsev[i] - p->lse[i]) <= 4e-6 * zt,
                  "%s, %s, %d threads, position %zu: lse %.7g (evaluate %.7g), reference %.7g", what, isa, nt, i,
                  lse[i], elsev[i], p->lse[i]);
        CHECK_MSG(fabs(loss[i] - p->loss[i]) <= 4e-6 * zt && fabs(eloss[i] - p->loss[i]) <= 4e-6 * zt,
                  "%s, %s, %d threads, position %zu: loss %.7g (evaluate %.7g), reference %.7g", what, isa, nt, i,
                  loss[i], eloss[i], p->loss[i]);
    }
    double w = worst(dwte, p->dwte, p->dwte_abs, V * C, tol, &at);
    CHECK_MSG(w <= 1.0, "%s, %s, %d threads: dwte[%zu][%zu] = %.7g, reference %.7g (terms' sum %.3g): %.1f x tol",
              what, isa, nt, at / C, at % C, dwte[at], p->dwte[at], p->dwte_abs[at], w);
    w = worst(dx, p->dx, p->dx_abs, BT * C, tol, &at);
    CHECK_MSG(w <= 1.0, "%s, %s, %d threads: dx[%zu][%zu] = %.7g, reference %.7g (terms' sum %.3g): %.1f x tol",
              what, isa, nt, at / C, at % C, dx[at], p->dx[at], p->dx_abs[at], w);
    free(scratch); free(keep); free(lse); free(loss); free(eloss); free(elsev); free(dwte); free(dx);
}

static const char *const isas[] = {"x86-64-v4", "x86-64-v3", "baseline"};

/* Each kernel the CPU runs; the best of them is the default, and the baseline always runs. */
static int for_each_kernel(void (*body)(const char *isa)) {
    const char *best = sm_gpt2_cls_isa();
    int ran = 0, ran_best = 0;
    for (size_t k = 0; k < sizeof isas / sizeof isas[0]; k++) {
        if (sm_gpt2_cls_use_isa(isas[k]) != 0) {
            printf("  kernel %s: not run (this CPU lacks it)\n", isas[k]);
            continue;
        }
        body(isas[k]);
        ran++;
        ran_best |= !strcmp(isas[k], best);
        sm_gpt2_cls_use_isa(NULL);
    }
    CHECK_EQ_STR(sm_gpt2_cls_isa(), best);
    CHECK_MSG(ran_best && ran >= 1, "the default kernel %s did not run", best);
    return ran;
}

static void moderate(const char *isa) {
    (void)isa;
    /* positions x channels x vocabulary: a strip and a part x two blocks and a part; one position x fewer
     * rows than a micro-tile; a strip and one x a block and one row */
    static const size_t shapes[][3] = {{45, 48, 300}, {1, 3, 5}, {33, 7, 129}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        problem p = make(shapes[k][0], shapes[k][1], shapes[k][2], 0.6, 0);
        char what[96];
        snprintf(what, sizeof what, "moderate logits, BT %zu C %zu V %zu", shapes[k][0], shapes[k][1], shapes[k][2]);
        for (int nt = 1; nt <= 3; nt++) check_problem(&p, nt, 1e-4, what);
        drop(&p);
    }
}

static void wide(const char *isa) {
    (void)isa;
    /* logits of sd ~19 and a far row per position (its block redone against a raised reference) */
    problem p = make(37, 32, 700, 40.0, 1);
    double gap = 0;
    for (size_t i = 0; i < p.BT; i++) {
        double first = -INFINITY; /* position i's max over the first block, which one thread's chunk starts with */
        for (size_t v = 0; v < 128; v++) {
            double s = 0;
            for (size_t c = 0; c < p.C; c++) s += (double)p.x[i * p.C + c] * p.wte[v * p.C + c];
            first = s > first ? s : first;
        }
        gap = p.lse[i] - first > gap ? p.lse[i] - first : gap;
    }
    CHECK_MSG(gap > 100, "the far rows do not lie far enough over the first block: gap %g", gap);
    for (int nt = 1; nt <= 3; nt++) check_problem(&p, nt, 1e-4, "wide logits");
    drop(&p);
}

TEST(classifier_matches_double_reference_moderate_logits) { printf("  %d kernels\n", for_each_kernel(moderate)); }

TEST(classifier_matches_double_reference_wide_logits) { printf("  %d kernels\n", for_each_kernel(wide)); }

/* A NaN in one position's input makes that position's loss NaN and leaves the others' alone (lanes never
 * mix); nothing crashes or hangs. */
TEST(classifier_nan_stays_in_its_position) {
    problem p = make(20, 16, 200, 0.6, 0);
    p.x[3 * 16 + 5] = NAN;
    size_t BT = p.BT, C = p.C, V = p.V;
    float *scratch = zeros(sm_gpt2_cls_scratch_floats(2, BT, C, V)), *lse = zeros(BT), *loss = zeros(BT);
    sm_gpt2_cls_forward(2, scratch, NULL, p.x, p.wte, p.tg, BT, C, V, lse, loss);
    for (size_t i = 0; i < BT; i++)
        CHECK_MSG(i == 3 ? isnan(loss[i]) : isfinite(loss[i]), "position %zu: loss %g", i, loss[i]);
    free(scratch); free(lse); free(loss);
    drop(&p);
}

TEST(kernel_selection_rejects_unknown) {
    CHECK(sm_gpt2_cls_use_isa("avx9000") == -1);
    CHECK(sm_gpt2_cls_use_isa("baseline") == 0);
    CHECK_EQ_STR(sm_gpt2_cls_isa(), "baseline");
    CHECK(sm_gpt2_cls_use_isa(NULL) == 0);
}

int main(void) {
    printf("  default kernel: %s\n", sm_gpt2_cls_isa());
    RUN(classifier_matches_double_reference_moderate_logits);
    RUN(classifier_matches_double_reference_wide_logits);
    RUN(classifier_nan_stays_in_its_position);
    RUN(kernel_selection_rejects_unknown);
    TEST_EXIT();
}
