/* bench_gpt2_cls.c - the CPU classifier alone (sm_gpt2_classifier.c): milliseconds per training forward
 * (exps kept), backward and evaluation (forward without keeping), per kernel the CPU runs, on 1 and 2
 * threads. Prints figures; asserts nothing.
 *
 * usage: bench_gpt2_cls [--positions BT] [--channels C] [--vocab V] [--reps R] [--threads N]
 *                       [--isa x86-64-v4|x86-64-v3|baseline]
 * Defaults: the demo proxy's classifier (BT 512 = B8 x T64, C 64, V 50257), 10 timed calls after a warmup,
 * threads 1 and 2, every kernel. */
#include "model/sm_gpt2_internal.h"

#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *floats(size_t n) {
    float *f = aligned_alloc(64, (n * sizeof(float) + 63) & ~(size_t)63);
    if (!f) {
        fprintf(stderr, "bench_gpt2_cls: out of memory (%zu floats)\n", n);
        exit(1);
    }
    memset(f, 0, n * sizeof(float));
    return f;
}

static double uniform(uint64_t *s) { /* an LCG's top bits in [0, 1) */
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) * (1.0 / 9007199254740992.0);
}

static long arg_long(const char *name, const char *v, long lo, long hi) {
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < lo || x > hi) {
        fprintf(stderr, "bench_gpt2_cls: %s must be an integer in [%ld, %ld] (got '%s')\n", name, lo, hi, v);
        exit(2);
    }
    return x;
}

static void run(const char *isa, int nt, size_t BT, size_t C, size_t V, int reps) {
    float *x = floats(BT * C), *wte = floats(V * C), *dwte = floats(V * C), *dx = floats(BT * C);
    float *lse = floats(BT), *loss = floats(BT), *scratch = floats(sm_gpt2_cls_scratch_floats(nt, BT, C, V));
    float *keep = floats(sm_gpt2_cls_keep_floats(BT, V));
    int32_t *tg = malloc(BT * sizeof(int32_t));
    uint64_t s = 1;
    for (size_t i = 0; i < BT * C; i++) x[i] = (float)(uniform(&s) - 0.5);
    for (size_t i = 0; i < V * C; i++) wte[i] = (float)((uniform(&s) - 0.5) * 0.2);
    for (size_t i = 0; i < BT; i++) tg[i] = (int32_t)(uniform(&s) * (double)V);
    double tf = 0, tb = 0, te = 0;
    for (int r = 0; r <= reps; r++) {
        double t0 = now_s();
        sm_gpt2_cls_forward(nt, scratch, keep, x, wte, tg, BT, C, V, lse, loss);
        double t1 = now_s();
        sm_gpt2_cls_backward(nt, scratch, keep, x, wte, tg, lse, 1.0f / (float)BT, BT, C, V, dwte, dx);
        double t2 = now_s();
        sm_gpt2_cls_forward(nt, scratch, NULL, x, wte, tg, BT, C, V, lse, loss);
        double t3 = now_s();
        if (r) { tf += t1 - t0; tb += t2 - t1; te += t3 - t2; } /* the first call is the warmup */
    }
    double gf = 2.0 * (double)BT * V * C / 1e9;
    tf /= reps; tb /= reps; te /= reps;
    printf("classifier BT %zu C %zu V %zu, kernel %s, %d thread%s: forward %.2f ms (%.0f GFLOP/s), backward %.2f ms "
           "(%.0f GFLOP/s), evaluation %.2f ms (%.0f GFLOP/s); training %.2f ms\n",
           BT, C, V, isa, nt, nt > 1 ? "s" : "", tf * 1e3, gf / tf, tb * 1e3, 2 * gf / tb, te * 1e3, gf / te,
           (tf + tb) * 1e3);
    free(x); free(wte); free(dwte); free(dx); free(lse); free(loss); free(scratch); free(keep); free(tg);
}

int main(int argc, char **argv) {
    size_t BT = 512, C = 64, V = 50257;
    int reps = 10, threads = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "usage: bench_gpt2_cls [--positions BT] [--channels C] [--vocab V] [--reps R] "
                            "[--threads N] [--isa x86-64-v4|x86-64-v3|baseline]\n");
            return 2;
        }
        i++;
        if (!strcmp(a, "--positions")) BT = (size_t)arg_long(a, v, 1, 1 << 20);
        else if (!strcmp(a, "--channels")) C = (size_t)arg_long(a, v, 1, 1 << 14);
        else if (!strcmp(a, "--vocab")) V = (size_t)arg_long(a, v, 1, 1 << 22);
        else if (!strcmp(a, "--reps")) reps = (int)arg_long(a, v, 1, 100000);
        else if (!strcmp(a, "--threads")) threads = (int)arg_long(a, v, 1, 1024);
        else if (!strcmp(a, "--isa")) only = v;
        else {
            fprintf(stderr, "bench_gpt2_cls: unknown option %s\n", a);
            return 2;
        }
    }
    openblas_set_num_threads(1); /* as the CPU backend: OpenMP splits the work, each call runs on one thread */
    static const char *const isas[] = {"x86-64-v4", "x86-64-v3", "baseline"};
    int ran = 0;
    for (size_t k = 0; k < sizeof isas / sizeof isas[0]; k++) {
        if (only && strcmp(only, isas[k])) continue;
        if (sm_gpt2_cls_use_isa(isas[k])) {
            printf("kernel %s: not run (this CPU lacks it)\n", isas[k]);
            continue;
        }
        for (int nt = threads ? threads : 1; nt <= (threads ? threads : 2); nt++) run(isas[k], nt, BT, C, V, reps);
        ran++;
    }
    if (!ran) {
        fprintf(stderr, "bench_gpt2_cls: no kernel ran (--isa %s unknown or not supported here)\n", only ? only : "");
        return 1;
    }
    sm_gpt2_cls_use_isa(NULL);
    printf("default kernel here: %s\n", sm_gpt2_cls_isa());
    return 0;
}
