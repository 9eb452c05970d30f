/* bench_gpt2_cuda.c - GPU training throughput of GPT-2 124M and 350M (bf16, T = 1024, the largest batch
 * that fits): tokens/s and MFU, FLOPs per token = 6N + 6LCT, against the 989 TFLOP/s bf16 datasheet peak
 * of an H100 SXM and against the bf16 ceiling measured here (an 8192^3 cuBLASLt product).
 * One training step = zero_grad + forward + backward + grad_norm + AdamW, as the trainer runs it.
 * Prints figures; asserts nothing. Exits 0 printing "no GPU: <reason>" where there is none.
 * The last line repeats 124M with SM_CUDA_TC_ATTENTION=0 (fp32 CUDA-core attention) to show what the
 * tensor-core attention buys.
 * usage: bench_gpt2_cuda [steps (10)] [max batch to try (128)] */
#include "model/sm_gpt2.h"
#include "model/cuda/sm_cuda_bench.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEAK_TFLOPS 989.0

static uint64_t rs = 0x2545F4914F6CDD1DULL;
static double urand(void) {
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return ((rs >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

typedef struct { const char *name; int L, NH, C; } model_spec;

static void bench_model(const sm_gpt2_backend_ops *ops, const model_spec *ms, int steps, int max_try, double gemm) {
    sm_gpt2_config c = {.max_seq_len = 1024, .vocab_size = 50257, .padded_vocab_size = 50304,
                        .num_layers = ms->L, .num_heads = ms->NH, .channels = ms->C};
    const int T = 1024;
    size_t sizes[16];
    size_t n = sm_gpt2_param_sizes(&c, sizes);
    float *p = malloc(n * sizeof(float));
    if (!p) { printf("%s: out of host memory\n", ms->name); return; }
    size_t o = 0;
    for (int t = 0; t < 16; t++) {
        int ln = t == 2 || t == 8 || t == 14, lnb = t == 3 || t == 9 || t == 15;
        for (size_t i = 0; i < sizes[t]; i++)
            p[o + i] = ln ? 1.0f : lnb ? 0.0f : (float)(0.04 * (urand() - 0.5));
        o += sizes[t];
    }
    static const int tries[] = {256, 192, 128, 96, 64, 48, 32, 24, 16, 12, 8, 4, 2, 1};
    sm_gpt2_backend *b = NULL;
    sm_error e = {0};
    int B = 0;
    for (size_t k = 0; k < sizeof tries / sizeof tries[0]; k++) {
        if (tries[k] > max_try) continue;
        int rc = ops->create(&b, &c, p, SM_DTYPE_BF16, tries[k], T, 0, &e);
        if (rc == SM_OK) { B = tries[k]; break; }
        if (rc != SM_ERR_NOMEM) { printf("%s: create failed: %s\n", ms->name, e.msg); free(p); return; }
    }
    free(p);
    if (!B) { printf("%s: does not fit even at B=1: %s\n", ms->name, e.msg); return; }
    uint64_t need = 0;
    if (ops->memory_need(&c, SM_DTYPE_BF16, B, T, &need, &e) == SM_OK)
        printf("%s: B=%d is the largest batch tried that fits; its memory plan is %.2f GiB\n", ms->name, B,
               need / 1073741824.0);
    int32_t *in = malloc((size_t)B * T * 4), *tg = malloc((size_t)B * T * 4);
    if (!in || !tg) { printf("%s: out of host memory\n", ms->name); ops->destroy(b); free(in); free(tg); return; }
    for (int i = 0; i < B * T; i++) { in[i] = (int32_t)(urand() * 50257); tg[i] = (int32_t)(urand() * 50257); }
    double fwd_s = 0, total = 0, t0 = 0, norm = 0;
    float loss = 0;
    int rc = 0;
    for (int s = 0; s < 2 + steps && !rc; s++) { /* two warmup steps: cuBLASLt heuristics, clocks */
        if (s == 2) t0 = sm_monotonic();
        double f0 = sm_monotonic();
        rc = ops->zero_grad(b, &e);
        if (!rc) rc = ops->forward(b, in, tg, B, T, &loss, NULL, &e);
        if (s >= 2) fwd_s += sm_monotonic() - f0;
        if (!rc) rc = ops->backward(b, 1.0f, &e);
        if (!rc) rc = ops->grad_norm(b, &norm, &e);
        if (!rc) rc = ops->adamw(b, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, s + 1, &e);
    }
    total = sm_monotonic() - t0;
    if (rc) { printf("%s: step failed: %s\n", ms->name, e.msg); }
    else {
        double tok_s = (double)B * T * steps / total, fpt = sm_gpt2_flops_per_token(&c, T);
        double tf = tok_s * fpt / 1e12;
        printf("%s (N=%zu, %.3g FLOP/token) B=%d T=%d: %.1f ms/step (forward %.1f ms), %.0f tokens/s, %.1f TFLOP/s, "
               "MFU %.1f%% of %.0f peak, %.1f%% of measured %.0f; loss %.4f, grad norm %.4g\n",
               ms->name, n, fpt, B, T, 1e3 * total / steps, 1e3 * fwd_s / steps, tok_s, tf, 100 * tf / PEAK_TFLOPS,
               PEAK_TFLOPS, gemm > 0 ? 100 * tf / gemm : NAN, gemm, loss, norm);
    }
    ops->destroy(b);
    free(in);
    free(tg);
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 10, max_try = argc > 2 ? atoi(argv[2]) : 128;
    if (steps < 1) steps = 10;
    char path[4200];
    snprintf(path, sizeof path, "%s/lib/libsm_cuda.so", sm_build_dir());
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) { printf("no GPU: cannot load %s: %s\n", path, dlerror()); return 0; }
    sm_gpt2_cuda_probe_fn probe = (sm_gpt2_cuda_probe_fn)dlsym(h, SM_GPT2_CUDA_PROBE);
    sm_gpt2_cuda_backend_fn entry = (sm_gpt2_cuda_backend_fn)dlsym(h, SM_GPT2_CUDA_ENTRY);
    sm_gpt2_cuda_gemm_fn gemm_fn = (sm_gpt2_cuda_gemm_fn)dlsym(h, SM_GPT2_CUDA_GEMM_BENCH);
    if (!probe || !entry) { printf("no GPU: %s lacks its entry points\n", path); dlclose(h); return 0; }
    int devices = 0;
    uint64_t fr = 0, tot = 0;
    sm_error e = {0};
    if (probe(&devices, &fr, &tot, &e) != SM_OK) { printf("no GPU: %s\n", e.msg); dlclose(h); return 0; }
    printf("%d device(s); current: %.1f of %.1f GiB free\n", devices, fr / 1073741824.0, tot / 1073741824.0);
    double gemm = 0;
    if (gemm_fn && gemm_fn(8192, 20, &gemm, &e) == SM_OK)
        printf("bf16 cuBLASLt 8192^3: %.1f TFLOP/s (%.1f%% of the %.0f datasheet peak)\n", gemm, 100 * gemm / PEAK_TFLOPS,
               PEAK_TFLOPS);
    else printf("bf16 gemm ceiling not measured: %s\n", gemm_fn ? e.msg : "symbol missing");
    const model_spec models[] = {{"gpt2-124M", 12, 12, 768}, {"gpt2-350M", 24, 16, 1024}};
    for (size_t i = 0; i < 2; i++) bench_model(entry(), &models[i], steps, max_try, gemm);
    /* what the tensor-core attention buys: the same 124M step with the fp32 CUDA-core attention kernels */
    setenv("SM_CUDA_TC_ATTENTION", "0", 1);
    const model_spec cc = {"gpt2-124M, CUDA-core attention", 12, 12, 768};
    bench_model(entry(), &cc, steps, max_try, gemm);
    dlclose(h);
    return 0;
}
