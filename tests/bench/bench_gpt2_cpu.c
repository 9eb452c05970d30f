/* bench_gpt2_cpu.c - CPU training and evaluation throughput of GPT-2 beside the sgemm throughput measured
 * in the same run. Prints figures; asserts nothing.
 *
 * usage: bench_gpt2_cpu [--layers L --heads H --channels C --seq T --batch B] [--max-seq N] [--steps S]
 *                       [--threads N] [--concurrent K]
 * Without a shape it runs the three shapes of issue 13: the demo proxy (L2 H2 C64, T64, B8), L4 H4 C256
 * (T128, B4) and GPT-2 124M (T64, B4). One training step = zero grad, forward, backward, grad norm, AdamW;
 * evaluation = the forward pass with targets (what per-domain evaluation runs). The sgemm bound is the
 * FLOPs per token (6N + 6LCT) at OpenBLAS's own threaded 2048^3 sgemm on the same threads (best of 3,
 * measured right before and after each shape). --concurrent K also runs K models at once, one thread each
 * (what a job training proxies side by side does), and compares them with one K-thread run. Like scalemix, it
 * restarts itself with passive OpenMP waits unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is set
 * (GOMP_SPINCOUNT=300000 measures libgomp's default). */
#include "model/sm_gpt2.h"
#include "model/sm_gpt2_internal.h"
#include "model/sm_omp_env.h"

#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

typedef struct shape {
    const char *label;
    sm_gpt2_config cfg;
    int B, T;
} shape;

typedef struct run {
    const shape *s;
    int steps, threads;
    double train_tps, eval_tps, step_s, gemm_share, wall, cpu_tps;
    float loss;
    char err[256];
} run;

static double sgemm_gflops(int n, int reps) {
    float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4), *c = malloc((size_t)n * n * 4);
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)(i % 7) * 0.01f;
        b[i] = (float)(i % 5) * 0.01f;
    }
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double t0 = sm_monotonic();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        double dt = sm_monotonic() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * n / best / 1e9;
}

/* OpenBLAS's own threaded sgemm on threads threads: the peak the model's products are measured against. */
static double sgemm_peak(int threads) {
    openblas_set_num_threads(threads);
    double g = sgemm_gflops(2048, 3);
    openblas_set_num_threads(1);
    return g;
}

static double loadavg1(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

/* CPU seconds of this thread (one-thread runs) or of the process: on a loaded machine, tokens per CPU
 * second of a one-thread run still compare code fairly where wall-clock figures do not. */
static double cpu_seconds(int whole_process) {
    struct rusage ru;
    getrusage(whole_process ? RUSAGE_SELF : RUSAGE_THREAD, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static void tokens(const shape *s, int32_t *in, int32_t *tg) {
    int n = s->B * s->T;
    uint64_t x = 1;
    for (int i = 0; i < n; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        in[i] = (int32_t)((x >> 33) % (uint64_t)s->cfg.vocab_size);
    }
    for (int i = 0; i < n; i++) tg[i] = in[(i + 1) % n];
}

/* Trains steps steps after one warmup, then evaluates as many batches; fills r. */
static void *run_model(void *arg) {
    run *r = arg;
    const shape *s = r->s;
    double w0 = sm_monotonic();
    sm_gpt2 *m;
    sm_error e = {0};
    sm_gpt2_opts o = {.device = SM_DEVICE_CPU, .threads = r->threads, .max_B = s->B, .max_T = s->T};
    if (sm_gpt2_create(&m, &s->cfg, 1, &o, &e)) {
        snprintf(r->err, sizeof r->err, "create: %.200s", e.msg);
        return NULL;
    }
    sm_train_opts to;
    sm_train_opts_default(&to);
    int32_t *in = malloc((size_t)s->B * s->T * 4), *tg = malloc((size_t)s->B * s->T * 4);
    tokens(s, in, tg);
    double tot = 0, gs0 = 0, gf0 = 0, gs1, gf1, tf, c0 = 0;
    for (int it = 0; it < r->steps + 1 && !r->err[0]; it++) {
        double t0 = sm_monotonic();
        if (sm_gpt2_step_batch(m, in, tg, s->B, s->T, &to, 1e-4, &r->loss, &tf, &e))
            snprintf(r->err, sizeof r->err, "step: %.200s", e.msg);
        if (it == 0) { /* warmup */
            sm_gpt2_cpu_gemm_stats(&gs0, &gf0);
            c0 = cpu_seconds(r->threads > 1);
        } else
            tot += sm_monotonic() - t0;
    }
    sm_gpt2_cpu_gemm_stats(&gs1, &gf1);
    r->cpu_tps = (double)s->B * s->T * r->steps / (cpu_seconds(r->threads > 1) - c0);
    double ev = 0;
    float l;
    for (int it = 0; it < r->steps + 1 && !r->err[0]; it++) {
        double t0 = sm_monotonic();
        if (sm_gpt2_loss(m, in, tg, s->B, s->T, &l, &e)) snprintf(r->err, sizeof r->err, "eval: %.200s", e.msg);
        if (it > 0) ev += sm_monotonic() - t0;
    }
    r->step_s = tot / r->steps;
    r->train_tps = (double)s->B * s->T * r->steps / tot;
    r->eval_tps = (double)s->B * s->T * r->steps / ev;
    r->gemm_share = (gs1 - gs0) / tot;
    free(in);
    free(tg);
    sm_gpt2_free(m);
    r->wall = sm_monotonic() - w0;
    return NULL;
}

static void shape_name(const shape *s, char *buf, size_t n) {
    snprintf(buf, n, "%s L%d H%d C%d T%d B%d", s->label, s->cfg.num_layers, s->cfg.num_heads, s->cfg.channels, s->T, s->B);
}

static void bench_shape(const shape *s, int steps, int threads, int concurrent) {
    char name[128];
    shape_name(s, name, sizeof name);
    double load0 = loadavg1(), peak0 = sgemm_peak(threads);
    run r = {.s = s, .steps = steps, .threads = threads};
    run_model(&r);
    double peak1 = sgemm_peak(threads), peak = 0.5 * (peak0 + peak1);
    if (r.err[0]) {
        printf("%s: %s\n", name, r.err);
        return;
    }
    double fpt = sm_gpt2_flops_per_token(&s->cfg, s->T), gf = fpt * r.train_tps / 1e9;
    printf("%s threads %d: step %.4f s (products %.0f%%), loss %.3f; eval %.0f tokens/s (%.2fx training); %.1f GFLOP/s = "
           "%.1f%% of sgemm %.1f GFLOP/s (%.1f/%.1f; bound %.0f tokens/s); %.0f tokens per CPU second; load %.2f; "
           "tokens/s %.0f\n",
           name, threads, r.step_s, 100.0 * r.gemm_share, r.loss, r.eval_tps, r.eval_tps / r.train_tps, gf, 100.0 * gf / peak,
           peak, peak0, peak1, peak * 1e9 / fpt, r.cpu_tps, load0, r.train_tps);
    fflush(stdout);
    if (concurrent < 2) return;
    run *rs = calloc((size_t)concurrent, sizeof *rs);
    pthread_t *th = calloc((size_t)concurrent, sizeof *th);
    double w0 = sm_monotonic();
    for (int k = 0; k < concurrent; k++) {
        rs[k] = (run){.s = s, .steps = steps, .threads = 1};
        pthread_create(&th[k], NULL, run_model, &rs[k]);
    }
    double sum = 0, esum = 0, csum = 0;
    for (int k = 0; k < concurrent; k++) {
        pthread_join(th[k], NULL);
        if (rs[k].err[0]) printf("%s concurrent run %d: %s\n", name, k, rs[k].err);
        sum += rs[k].train_tps;
        esum += rs[k].eval_tps;
        csum += rs[k].cpu_tps;
    }
    double wall = sm_monotonic() - w0;
    printf("%s %d concurrent runs x 1 thread: %.1f%% of the %d-thread run (training side by side, per run", name, concurrent,
           100.0 * sum / r.train_tps, threads);
    for (int k = 0; k < concurrent; k++) printf(" %.0f", rs[k].train_tps);
    printf("), eval %.0f tokens/s together, %.0f tokens per CPU second per run, wall %.1f s; tokens/s %.0f\n", esum,
           csum / concurrent, wall, sum);
    fflush(stdout);
    free(rs);
    free(th);
}

static int usage(void) {
    fprintf(stderr, "usage: bench_gpt2_cpu [--layers L --heads H --channels C --seq T --batch B] [--max-seq N] "
                    "[--steps S] [--threads N] [--concurrent K]\n");
    return 2;
}

int main(int argc, char **argv) {
    sm_omp_env_reexec(argv); /* the OpenMP wait policy scalemix itself runs with */
    int L = 0, H = 0, C = 0, T = 0, B = 0, maxT = 0, steps = 5, threads = omp_get_max_threads(), concurrent = 0;
    for (int i = 1; i < argc; i++) {
        int *dst = NULL;
        if (!strcmp(argv[i], "--layers")) dst = &L;
        else if (!strcmp(argv[i], "--heads")) dst = &H;
        else if (!strcmp(argv[i], "--channels")) dst = &C;
        else if (!strcmp(argv[i], "--seq")) dst = &T;
        else if (!strcmp(argv[i], "--batch")) dst = &B;
        else if (!strcmp(argv[i], "--max-seq")) dst = &maxT;
        else if (!strcmp(argv[i], "--steps")) dst = &steps;
        else if (!strcmp(argv[i], "--threads")) dst = &threads;
        else if (!strcmp(argv[i], "--concurrent")) dst = &concurrent;
        if (!dst || i + 1 >= argc) return usage();
        char *end;
        long v = strtol(argv[++i], &end, 10);
        if (*end || v < 0 || v > 1 << 20) return usage();
        *dst = (int)v;
    }
    int custom = L || H || C || T || B;
    if (custom && !(L && H && C && T && B)) {
        fprintf(stderr, "bench_gpt2_cpu: a shape needs all of --layers --heads --channels --seq --batch\n");
        return usage();
    }
    if (steps < 1 || threads < 1) return usage();
    const char *wait = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
    printf("OpenBLAS %s; %d threads, %d timed steps after 1 warmup; OMP_WAIT_POLICY %s, GOMP_SPINCOUNT %s; load "
           "average %.2f\n", openblas_get_config(), threads, steps, wait ? wait : "(unset)", spin ? spin : "(unset)",
           loadavg1());
    const sm_gpt2_config gpt = {.vocab_size = 50257, .padded_vocab_size = 50304};
    shape shapes[3] = {
        {"demo-proxy", gpt, 8, 64}, {"L4-C256", gpt, 4, 128}, {"gpt2-124M", gpt, 4, 64}};
    int dims[3][4] = {{2, 2, 64, 64}, {4, 4, 256, 128}, {12, 12, 768, 1024}};
    int n = 3;
    if (custom) {
        shapes[0] = (shape){"shape", gpt, B, T};
        dims[0][0] = L, dims[0][1] = H, dims[0][2] = C, dims[0][3] = maxT ? maxT : T;
        n = 1;
    }
    for (int i = 0; i < n; i++) {
        shapes[i].cfg.num_layers = dims[i][0];
        shapes[i].cfg.num_heads = dims[i][1];
        shapes[i].cfg.channels = dims[i][2];
        shapes[i].cfg.max_seq_len = dims[i][3];
        bench_shape(&shapes[i], steps, threads, concurrent);
    }
    return 0;
}
