/* bench_gpt2_cpu.c - CPU training throughput of GPT-2 (forward + backward + AdamW) beside the sgemm
 * throughput measured on this machine. Prints figures; asserts nothing.
 * usage: bench_gpt2_cpu [steps] [threads] */
#include "model/sm_gpt2.h"
#include "model/sm_gpt2_internal.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static double sgemm_gflops(int M, int N, int K, int transb, int reps) {
    float *a = malloc((size_t)M * K * 4), *b = malloc((size_t)K * N * 4), *c = malloc((size_t)M * N * 4);
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 7) * 0.01f;
    for (size_t i = 0; i < (size_t)K * N; i++) b[i] = (float)(i % 5) * 0.01f;
    int ldb = transb ? K : N;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transb ? CblasTrans : CblasNoTrans, M, N, K, 1, a, K, b, ldb, 0, c, N);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = sm_monotonic();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, transb ? CblasTrans : CblasNoTrans, M, N, K, 1, a, K, b, ldb, 0, c, N);
        double dt = sm_monotonic() - t0;
        if (dt < best) best = dt;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * M * N * K / best / 1e9;
}

static void loadavg(const char *when) {
    char buf[128] = "?";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(buf, sizeof buf, f)) strcpy(buf, "?\n");
        fclose(f);
    }
    printf("  load average %s: %s", when, buf);
}

/* The reference: OpenBLAS's own threaded sgemm on a 2048^3 product (best of 3), measured right before
 * and after each model so both see the same machine conditions. */
static double reference(int threads) {
    openblas_set_num_threads(threads);
    double g = sgemm_gflops(2048, 2048, 2048, 0, 3);
    openblas_set_num_threads(1);
    return g;
}

static void bench_model(const char *label, const sm_gpt2_config *cfg, int B, int T, int steps, int threads) {
    loadavg("before");
    double ref0 = reference(threads);
    sm_gpt2 *m;
    sm_error e = {0};
    sm_gpt2_opts o = {.device = SM_DEVICE_CPU, .threads = threads, .max_B = B, .max_T = T};
    if (sm_gpt2_create(&m, cfg, 1, &o, &e)) {
        printf("%s: create failed: %s\n", label, e.msg);
        return;
    }
    sm_train_opts to;
    sm_train_opts_default(&to);
    int32_t *in = malloc((size_t)B * T * 4), *tg = malloc((size_t)B * T * 4);
    uint64_t s = 1;
    for (int i = 0; i < B * T; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        in[i] = (int32_t)((s >> 33) % (uint64_t)cfg->vocab_size);
    }
    for (int i = 0; i < B * T; i++) tg[i] = in[(i + 1) % (B * T)];
    double fwd = 0, tot = 0, gs0 = 0, gf0 = 0;
    int n = 0;
    float loss = 0;
    for (int it = 0; it < steps + 1; it++) {
        double t0 = sm_monotonic();
        double tf;
        if (sm_gpt2_step_batch(m, in, tg, B, T, &to, 1e-4, &loss, &tf, &e)) {
            printf("%s: step failed: %s\n", label, e.msg);
            break;
        }
        double dt = sm_monotonic() - t0;
        if (it == 0) { /* warmup */
            sm_gpt2_cpu_gemm_stats(&gs0, &gf0);
            continue;
        }
        tot += dt;
        fwd += tf;
        n++;
    }
    double gs1, gf1;
    sm_gpt2_cpu_gemm_stats(&gs1, &gf1);
    double ref1 = reference(threads), ref = 0.5 * (ref0 + ref1);
    loadavg("after");
    if (n > 0) {
        double step_s = tot / n, tps = (double)B * T / step_s;
        double gf = sm_gpt2_flops_per_token(cfg, T) * tps / 1e9;
        uint64_t need = 0;
        sm_error merr = {0};
        if (sm_gpt2_memory_need(cfg, B, T, SM_DTYPE_FP32, SM_DEVICE_CPU, &need, &merr))
            fprintf(stderr, "memory need: %s\n", merr.msg);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("%s: L=%d C=%d NH=%d V=%d (Vp %d) B=%d T=%d, %zu params, threads %d\n", label, cfg->num_layers,
               cfg->channels, cfg->num_heads, cfg->vocab_size, cfg->padded_vocab_size, B, T, sm_gpt2_num_params(cfg),
               threads);
        printf("  step %.3f s (forward %.3f s) over %d steps after 1 warmup, loss %.4f\n", step_s, fwd / n, n, loss);
        printf("  %.1f tokens/s, %.1f GFLOP/s achieved (6N+6LCT = %.3g FLOP/token) = %.1f%% of the sgemm reference\n",
               tps, gf, sm_gpt2_flops_per_token(cfg, T), 100.0 * gf / ref);
        printf("  sgemm reference (OpenBLAS threaded 2048^3): %.1f GFLOP/s before, %.1f after, mean %.1f\n", ref0, ref1, ref);
        printf("  inside the step: matrix products %.3f s/step at %.1f GFLOP/s (%.1f%% of step time), everything else %.3f s/step\n",
               (gs1 - gs0) / n, (gf1 - gf0) / (gs1 - gs0) / 1e9, 100.0 * (gs1 - gs0) / tot, step_s - (gs1 - gs0) / n);
        printf("  memory: params x 16 = %.1f MiB, + activations = %.1f MiB (memory_need); peak RSS of this process so far %.1f MiB\n",
               sm_gpt2_num_params(cfg) * 16.0 / 1048576.0, need / 1048576.0, ru.ru_maxrss / 1024.0);
    }
    free(in);
    free(tg);
    sm_gpt2_free(m);
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 3;
    int threads = argc > 2 ? atoi(argv[2]) : omp_get_max_threads();
    if (steps < 1) steps = 1;
    openblas_set_num_threads(threads);
    printf("OpenBLAS: %s; threads %d\n", openblas_get_config(), threads);
    printf("sgemm (best of 3, row-major):\n");
    double best = 0;
    int sq[] = {1024, 2048, 4096};
    for (int i = 0; i < 3; i++) {
        double g = sgemm_gflops(sq[i], sq[i], sq[i], 0, 3);
        if (g > best) best = g;
        printf("  %5d^3 square               %7.1f GFLOP/s\n", sq[i], g);
    }
    printf("  124M shapes at B*T=256:\n");
    printf("    qkv    256x2304x768 (NT)   %7.1f GFLOP/s\n", sgemm_gflops(256, 2304, 768, 1, 5));
    printf("    fc     256x3072x768 (NT)   %7.1f GFLOP/s\n", sgemm_gflops(256, 3072, 768, 1, 5));
    printf("    fcproj 256x768x3072 (NT)   %7.1f GFLOP/s\n", sgemm_gflops(256, 768, 3072, 1, 5));
    printf("    logits 256x50257x768 (NT)  %7.1f GFLOP/s\n", sgemm_gflops(256, 50257, 768, 1, 2));
    printf("reference: best square sgemm %.1f GFLOP/s\n\n", best);
    sm_gpt2_config g124 = {.max_seq_len = 1024, .vocab_size = 50257, .padded_vocab_size = 50304, .num_layers = 12,
                           .num_heads = 12, .channels = 768};
    bench_model("gpt2-124M", &g124, 4, 64, steps, threads);
    sm_gpt2_config demo = {.max_seq_len = 128, .vocab_size = 50257, .padded_vocab_size = 50304, .num_layers = 4,
                           .num_heads = 4, .channels = 256};
    bench_model("demo", &demo, 4, 128, steps + 2, threads);
    return 0;
}
