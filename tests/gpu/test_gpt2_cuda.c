/* test_gpt2_cuda.c - the CUDA backend (build/lib/libsm_cuda.so) against the CPU backend.
 * Without a GPU: the library loads with dlopen, exports its entry points, answers the probe with
 * SM_ERR_UNSUPPORTED and a reason, and create() refuses bad configurations and the missing device cleanly;
 * the GPU tests print "SKIP: name (no GPU: <reason>)". With a GPU: loss, per-position losses and every
 * gradient tensor against the CPU path on the same weights and batch (fp32 and bf16, GPT-2's real
 * vocabulary, full and ragged sequence lengths, both head sizes), gradient accumulation semantics,
 * AdamW and the gradient norm against a host reference, bitwise determinism, a short training run
 * tracking the CPU's losses, and resume == uninterrupted through the front end.
 * `test_gpt2_cuda --probe` exits 0 when a GPU is usable (for tests/gpu/memcheck.sh); SM_TEST_SMALL=1
 * shrinks the vocabulary (for runs under compute-sanitizer). */
#include "../sm_test.h"
#include "model/sm_gpt2.h"
#include "model/sm_shard.h"
#include "stages/sm_trainjob.h"
#include "gpt2_parity.h"

#include <dlfcn.h>
#include <stdint.h>
#include <unistd.h>

static void *lib;
static const sm_gpt2_backend_ops *cuda;
static sm_gpt2_cuda_probe_fn probe;
static char lib_path[4200], no_gpu[1100];
static int gpu_ok;
static char tmpdir[256];

static const char *tpath(const char *name) {
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* Loads the library and probes once; gpu_ok and no_gpu say what the GPU tests can do. */
static void setup(void) {
    snprintf(lib_path, sizeof lib_path, "%s/lib/libsm_cuda.so", sm_build_dir());
    lib = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!lib) {
        snprintf(no_gpu, sizeof no_gpu, "libsm_cuda.so not loadable: %s", dlerror());
        return;
    }
    probe = (sm_gpt2_cuda_probe_fn)dlsym(lib, SM_GPT2_CUDA_PROBE);
    sm_gpt2_cuda_backend_fn entry = (sm_gpt2_cuda_backend_fn)dlsym(lib, SM_GPT2_CUDA_ENTRY);
    cuda = entry ? entry() : NULL;
    if (!probe || !cuda) {
        snprintf(no_gpu, sizeof no_gpu, "libsm_cuda.so lacks its entry points");
        return;
    }
    int n = 0;
    uint64_t fr = 0, tot = 0;
    sm_error e = {0};
    if (probe(&n, &fr, &tot, &e) == SM_OK && n > 0) gpu_ok = 1;
    else snprintf(no_gpu, sizeof no_gpu, "%s", e.msg);
}

#define NEED_GPU() do { if (!gpu_ok) SKIP("no GPU: %.200s", no_gpu); } while (0)

/* ---------------------------------------------------------------- tests that run without a GPU */

TEST(library_loads_and_probe_answers) {
    if (!lib && access(lib_path, F_OK) != 0) SKIP("%.150s not built (no nvcc, or core/model/cuda/build.mk not included)", lib_path);
    CHECK_MSG(lib, "dlopen %s: %s", lib_path, no_gpu);
    CHECK(probe && cuda);
    CHECK_EQ_INT(cuda->struct_size, sizeof(sm_gpt2_backend_ops));
    CHECK_EQ_STR(cuda->name, "cuda");
    CHECK(cuda->create && cuda->destroy && cuda->forward && cuda->backward && cuda->zero_grad && cuda->grad_norm &&
          cuda->adamw && cuda->get_params && cuda->get_grads && cuda->get_moments && cuda->set_moments);
    int n = -1;
    uint64_t fr = 1, tot = 1;
    sm_error e = {0};
    int rc = probe(&n, &fr, &tot, &e);
    if (rc == SM_OK) {
        CHECK(n >= 1);
        CHECK(tot > 0 && fr <= tot);
        printf("  probe: %d device(s), %.2f of %.2f GiB free\n", n, fr / 1073741824.0, tot / 1073741824.0);
    } else {
        CHECK_EQ_INT(rc, SM_ERR_UNSUPPORTED);
        CHECK_EQ_INT(e.code, SM_ERR_UNSUPPORTED);
        CHECK(strlen(e.msg) > 10);
        CHECK(n == 0 && fr == 0 && tot == 0);
        printf("  probe: %s\n", e.msg);
    }
}

TEST(create_refuses_bad_input_cleanly) {
    if (!cuda) SKIP("libsm_cuda.so not loaded: %.200s", no_gpu);
    sm_gpt2_config c = {.max_seq_len = 64, .vocab_size = 500, .padded_vocab_size = 512, .num_layers = 2,
                        .num_heads = 2, .channels = 128};
    size_t sizes[16];
    size_t n = sm_gpt2_param_sizes(&c, sizes);
    float *p = calloc(n, sizeof(float));
    CHECK(p);
    sm_gpt2_backend *b = (sm_gpt2_backend *)0x1;
    sm_error e = {0};
    sm_gpt2_config bad = c;
    bad.channels = 96; /* head size 48: no attention kernel for it */
    CHECK_EQ_INT(cuda->create(&b, &bad, p, SM_DTYPE_FP32, 2, 64, 0, &e), SM_ERR_UNSUPPORTED);
    CHECK(b == NULL && strstr(e.msg, "head size"));
    CHECK_EQ_INT(cuda->create(&b, &c, p, SM_DTYPE_FP32, 2, 65, 0, &e), SM_ERR_ARG); /* T > max_seq_len */
    CHECK_EQ_INT(cuda->create(&b, &c, p, (sm_dtype)7, 2, 64, 0, &e), SM_ERR_ARG);
    bad = c;
    bad.padded_vocab_size = 499;
    CHECK_EQ_INT(cuda->create(&b, &bad, p, SM_DTYPE_FP32, 2, 64, 0, &e), SM_ERR_ARG);
    int ndev = 0;
    uint64_t free0 = 0, free1 = 0, total = 0, need = 0;
    if (gpu_ok) probe(&ndev, &free0, &total, &e);
    int rc = cuda->create(&b, &c, p, SM_DTYPE_BF16, 2, 64, 0, &e);
    if (gpu_ok) {
        CHECK_MSG(rc == SM_OK, "%s", e.msg);
        /* what the engine admits by is what create takes (cuBLASLt's handle and 2 MiB pages aside) */
        probe(&ndev, &free1, &total, &e);
        CHECK(cuda->memory_need(&c, SM_DTYPE_BF16, 2, 64, &need, &e) == SM_OK);
        printf("  create took %.2f MiB of device memory; memory_need says %.2f MiB\n", (free0 - free1) / 1048576.0,
               need / 1048576.0);
        CHECK(free0 - free1 >= need && free0 - free1 < need + (64ull << 20));
        int32_t in[2 * 64];
        for (int i = 0; i < 2 * 64; i++) in[i] = i % 500;
        in[77] = 500; /* out of vocabulary */
        float loss;
        CHECK_EQ_INT(cuda->forward(b, in, in, 2, 64, &loss, NULL, &e), SM_ERR_ARG);
        CHECK_EQ_INT(cuda->forward(b, in, in, 3, 64, &loss, NULL, &e), SM_ERR_ARG); /* B > max_B */
        CHECK_EQ_INT(cuda->backward(b, 1.0f, &e), SM_ERR_ARG); /* no forward with targets yet */
        CHECK_EQ_INT(cuda->adamw(b, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 0, &e), SM_ERR_ARG);
        cuda->destroy(b);
    } else {
        CHECK_EQ_INT(rc, SM_ERR_UNSUPPORTED);
        CHECK(b == NULL && strlen(e.msg) > 10);
    }
    free(p);
}

/* The memory plan in closed form (core/model/cuda/NOTES.md): 16 N (+ 2 N bf16 copy) for the parameters,
 * per token e * (C (12 L + 8) + Vp) + 4 (L (4 + NH) + NH + 3) + 20, and fixed scratch; every carve is
 * rounded up to 256 bytes, so the plan may exceed the formula by less than 256 bytes per carve. */
static uint64_t documented_need(const sm_gpt2_config *c, sm_dtype dt, uint64_t B, uint64_t T) {
    size_t sizes[16];
    uint64_t N = sm_gpt2_param_sizes(c, sizes), e = dt == SM_DTYPE_BF16 ? 2 : 4, L = c->num_layers, C = c->channels;
    uint64_t NH = c->num_heads, BT = B * T;
    uint64_t params = 16 * N + (dt == SM_DTYPE_BF16 ? 2 * N : 0);
    uint64_t per_token = e * (C * (12 * L + 8) + c->padded_vocab_size) + 4 * (L * (4 + NH) + NH + 3) + 20;
    return params + BT * per_token + 4 + (32ull << 20) + 512 * C * 4 + 512 * 8 + 8;
}

TEST(memory_need_follows_the_plan) {
    if (!cuda) SKIP("libsm_cuda.so not loaded: %.200s", no_gpu);
    sm_gpt2_config g124 = {.max_seq_len = 1024, .vocab_size = 50257, .padded_vocab_size = 50304, .num_layers = 12,
                           .num_heads = 12, .channels = 768};
    sm_gpt2_config g350 = {.max_seq_len = 1024, .vocab_size = 50257, .padded_vocab_size = 50304, .num_layers = 24,
                           .num_heads = 16, .channels = 1024};
    struct { const sm_gpt2_config *c; sm_dtype dt; int B, T; } cases[] = {
        {&g124, SM_DTYPE_BF16, 64, 1024}, {&g124, SM_DTYPE_FP32, 8, 1024}, {&g350, SM_DTYPE_BF16, 32, 1024},
        {&g124, SM_DTYPE_BF16, 1, 64}};
    sm_error e = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t need = 0, front = 0;
        CHECK_MSG(cuda->memory_need(cases[i].c, cases[i].dt, cases[i].B, cases[i].T, &need, &e) == SM_OK, "%s", e.msg);
        uint64_t doc = documented_need(cases[i].c, cases[i].dt, cases[i].B, cases[i].T);
        CHECK_MSG(need >= doc && need < doc + 64 * 256, "case %zu: plan %llu bytes, formula %llu", i,
                  (unsigned long long)need, (unsigned long long)doc);
        /* the front end asks the same library, no GPU needed */
        CHECK_MSG(sm_gpt2_memory_need(cases[i].c, cases[i].B, cases[i].T, cases[i].dt, SM_DEVICE_CUDA, &front, &e) == SM_OK,
                  "%s", e.msg);
        CHECK(front == need);
        printf("  L=%d C=%d %s B=%d T=%d: %.2f GiB of device memory\n", cases[i].c->num_layers, cases[i].c->channels,
               cases[i].dt == SM_DTYPE_BF16 ? "bf16" : "fp32", cases[i].B, cases[i].T, need / 1073741824.0);
    }
    uint64_t a = 0, b = 0;
    CHECK(cuda->memory_need(&g124, SM_DTYPE_BF16, 8, 1024, &a, &e) == SM_OK);
    CHECK(cuda->memory_need(&g124, SM_DTYPE_FP32, 8, 1024, &b, &e) == SM_OK);
    CHECK(b > a); /* fp32 activations outweigh the bf16 weight copy */
    sm_gpt2_config bad = g124;
    bad.channels = 720; /* head size 60 */
    CHECK_EQ_INT(cuda->memory_need(&bad, SM_DTYPE_BF16, 8, 1024, &a, &e), SM_ERR_UNSUPPORTED);
    CHECK(strstr(e.msg, "head size") != NULL);
    CHECK_EQ_INT(cuda->memory_need(&g124, SM_DTYPE_BF16, 8, 2048, &a, &e), SM_ERR_ARG);
    CHECK_EQ_INT(cuda->memory_need(&g124, SM_DTYPE_BF16, 6000, 1024, &a, &e), SM_ERR_ARG); /* B * NH > 65535 */
}

TEST(train_stage_declares_the_cuda_plan) {
    if (!cuda) SKIP("libsm_cuda.so not loaded: %.200s", no_gpu);
    const char *cuda_params = "{\"device\": \"cuda\", \"batch\": 16, "
                              "\"model\": {\"layers\": 12, \"heads\": 12, \"channels\": 768, \"seq\": 1024}}";
    sm_resources r = {.struct_size = sizeof r};
    sm_error e = {0};
    CHECK_MSG(sm_trainjob_resources(cuda_params, "{}", &r, &e) == SM_OK, "%s", e.msg);
    sm_gpt2_config g = {.max_seq_len = 1024, .vocab_size = 50257, .padded_vocab_size = 50304, .num_layers = 12,
                        .num_heads = 12, .channels = 768};
    uint64_t need = 0;
    CHECK(cuda->memory_need(&g, SM_DTYPE_BF16, 16, 1024, &need, &e) == SM_OK);
    CHECK(r.gpu == 1 && r.device_memory_bytes == need);
    sm_resources c = {.struct_size = sizeof c};
    CHECK(sm_trainjob_resources("{\"device\": \"cpu\", \"threads\": 2}", "{}", &c, &e) == SM_OK);
    CHECK(c.gpu == 0 && c.device_memory_bytes == 0 && c.threads == 2);
    /* a shape the CUDA kernels cannot run is refused before the stage is admitted */
    sm_resources bad = {.struct_size = sizeof bad};
    CHECK_EQ_INT(sm_trainjob_resources("{\"device\": \"cuda\", \"model\": {\"heads\": 2, \"channels\": 96}}", "{}",
                                       &bad, &e), SM_ERR_UNSUPPORTED);
    CHECK(strstr(e.msg, "head size") != NULL);
    /* auto: on a GPU machine such a shape runs on the CPU (as the model falls back), so it takes no GPU memory;
     * without a GPU auto never asks the CUDA library */
    sm_resources au = {.struct_size = sizeof au};
    CHECK(sm_trainjob_resources("{\"device\": \"auto\", \"model\": {\"heads\": 2, \"channels\": 96}}", "{}", &au, &e) ==
          SM_OK);
    CHECK(au.gpu == 0 && au.device_memory_bytes == 0);
    sm_resources au2 = {.struct_size = sizeof au2};
    CHECK(sm_trainjob_resources("{\"device\": \"auto\", \"batch\": 16, "
                                "\"model\": {\"layers\": 12, \"heads\": 12, \"channels\": 768, \"seq\": 1024}}",
                                "{}", &au2, &e) == SM_OK);
    CHECK(au2.gpu == gpu_ok && au2.device_memory_bytes == (gpu_ok ? need : 0));
}

TEST(front_end_cuda_request_without_gpu) {
    if (gpu_ok) SKIP("a GPU is present (this test covers machines without one)");
    sm_gpt2_config c = {.max_seq_len = 16, .vocab_size = 64, .padded_vocab_size = 128, .num_layers = 1,
                        .num_heads = 2, .channels = 64};
    sm_gpt2_opts o = {.device = SM_DEVICE_CUDA, .max_B = 2, .max_T = 16};
    sm_gpt2 *m = NULL;
    sm_error e = {0};
    CHECK_EQ_INT(sm_gpt2_create(&m, &c, 1, &o, &e), SM_ERR_UNSUPPORTED);
    CHECK(m == NULL && strlen(e.msg) > 10);
    printf("  front end: %s\n", e.msg);
}

/* ---------------------------------------------------------------- helpers for the GPU tests */

/* Random weights (see fill_random_params), malloc'd. */
static float *random_params(const sm_gpt2_config *c, size_t *n_out) {
    size_t s[16];
    size_t n = sm_gpt2_param_sizes(c, s);
    float *p = malloc(n * sizeof(float));
    if (p) fill_random_params(c, p);
    *n_out = n;
    return p;
}

static sm_gpt2_config parity_config(int heads) {
    sm_gpt2_config c = {.max_seq_len = 128, .vocab_size = 50257, .padded_vocab_size = 50304, .num_layers = 2,
                        .num_heads = heads, .channels = 128};
    if (getenv("SM_TEST_SMALL")) { c.vocab_size = 500; c.padded_vocab_size = 512; }
    return c;
}

/* Runs forward + backward on the CPU and the GPU from the same weights and batch and compares. */
static void parity(sm_dtype dtype, int heads, int B, int T, double loss_tol, double grad_tol) {
    sm_gpt2_config c = parity_config(heads);
    size_t n;
    float *p = random_params(&c, &n);
    CHECK(p);
    int32_t *in = malloc((size_t)B * T * 4), *tg = malloc((size_t)B * T * 4);
    float *lc = malloc((size_t)B * T * 4), *lg = malloc((size_t)B * T * 4);
    float *gc = malloc(n * 4), *gg = malloc(n * 4);
    CHECK(in && tg && lc && lg && gc && gg);
    for (int i = 0; i < B * T; i++) {
        in[i] = (int32_t)(urand() * c.vocab_size);
        tg[i] = (int32_t)(urand() * c.vocab_size);
    }
    const sm_gpt2_backend_ops *cpu = sm_gpt2_cpu_backend();
    sm_gpt2_backend *bc = NULL, *bg = NULL;
    sm_error e = {0};
    CHECK_MSG(cpu->create(&bc, &c, p, SM_DTYPE_FP32, B, T, 2, &e) == 0, "cpu create: %s", e.msg);
    CHECK_MSG(cuda->create(&bg, &c, p, dtype, B, T, 0, &e) == 0, "cuda create: %s", e.msg);
    float losc, losg;
    CHECK_MSG(cpu->forward(bc, in, tg, B, T, &losc, lc, &e) == 0, "%s", e.msg);
    CHECK_MSG(cuda->forward(bg, in, tg, B, T, &losg, lg, &e) == 0, "%s", e.msg);
    double worst_pos = 0;
    for (int i = 0; i < B * T; i++) {
        double r = fabs(lg[i] - lc[i]) / fabs(lc[i]);
        if (r > worst_pos) worst_pos = r;
    }
    printf("  %s HS=%d B=%d T=%d: loss cpu %.7f cuda %.7f (rel %.2e), worst position rel %.2e\n",
           dtype == SM_DTYPE_BF16 ? "bf16" : "fp32", c.channels / heads, B, T, losc, losg,
           fabs(losg - losc) / losc, worst_pos);
    CHECK(fabs(losg - losc) <= loss_tol * fabs(losc));
    CHECK(worst_pos <= 10 * loss_tol);
    CHECK(cpu->backward(bc, 1.0f, &e) == 0);
    CHECK_MSG(cuda->backward(bg, 1.0f, &e) == 0, "%s", e.msg);
    CHECK(cpu->get_grads(bc, gc, &e) == 0);
    CHECK(cuda->get_grads(bg, gg, &e) == 0);
    double w = worst_tensor_error(&c, gg, gc, "gradient rel. L2 error per tensor");
    CHECK_MSG(w <= grad_tol, "worst gradient tensor error %.3e > %.1e", w, grad_tol);
    cpu->destroy(bc);
    cuda->destroy(bg);
    free(p); free(in); free(tg); free(lc); free(lg); free(gc); free(gg);
}

/* ---------------------------------------------------------------- GPU tests */

TEST(parity_fp32) {
    NEED_GPU();
    parity(SM_DTYPE_FP32, 2, 3, 128, 1e-4, 1e-4); /* head size 64, two full query tiles */
    parity(SM_DTYPE_FP32, 2, 4, 50, 1e-4, 1e-4);  /* ragged: T not a multiple of the 64-row tiles */
    parity(SM_DTYPE_FP32, 4, 2, 97, 1e-4, 1e-4);  /* head size 32 */
}

TEST(parity_bf16) {
    NEED_GPU();
    parity(SM_DTYPE_BF16, 2, 3, 128, 1e-2, 5e-2); /* tensor-core attention (the default) */
    parity(SM_DTYPE_BF16, 4, 2, 97, 1e-2, 5e-2);
    setenv("SM_CUDA_TC_ATTENTION", "0", 1);      /* and the CUDA-core attention in bf16 */
    parity(SM_DTYPE_BF16, 2, 3, 128, 1e-2, 5e-2);
    unsetenv("SM_CUDA_TC_ATTENTION");
}

/* backward adds grads * grad_scale: two half-scaled passes equal one full one; zero_grad clears. */
TEST(gradient_accumulation_semantics) {
    NEED_GPU();
    sm_gpt2_config c = parity_config(2);
    size_t n;
    float *p = random_params(&c, &n);
    int B = 2, T = 64;
    int32_t in[128], tg[128];
    for (int i = 0; i < B * T; i++) { in[i] = (int32_t)(urand() * c.vocab_size); tg[i] = (int32_t)(urand() * c.vocab_size); }
    float *g1 = malloc(n * 4), *g2 = malloc(n * 4);
    CHECK(p && g1 && g2);
    sm_gpt2_backend *b = NULL;
    sm_error e = {0};
    CHECK_MSG(cuda->create(&b, &c, p, SM_DTYPE_FP32, B, T, 0, &e) == 0, "%s", e.msg);
    float loss;
    CHECK(cuda->forward(b, in, tg, B, T, &loss, NULL, &e) == 0);
    CHECK(cuda->backward(b, 1.0f, &e) == 0);
    CHECK(cuda->get_grads(b, g1, &e) == 0);
    CHECK(cuda->zero_grad(b, &e) == 0);
    CHECK(cuda->get_grads(b, g2, &e) == 0);
    for (size_t i = 0; i < n; i++) CHECK_MSG(g2[i] == 0.0f, "zero_grad left %g at %zu", g2[i], i);
    CHECK(cuda->forward(b, in, tg, B, T, &loss, NULL, &e) == 0);
    CHECK(cuda->backward(b, 0.5f, &e) == 0);
    CHECK(cuda->forward(b, in, tg, B, T, &loss, NULL, &e) == 0);
    CHECK(cuda->backward(b, 0.5f, &e) == 0);
    CHECK(cuda->get_grads(b, g2, &e) == 0);
    double w = worst_tensor_error(&c, g2, g1, "2 x 0.5 vs 1 x 1.0");
    CHECK(w <= 1e-6);
    cuda->destroy(b);
    free(p); free(g1); free(g2);
}

/* AdamW and the norm against a host computation from the GPU's own gradients and moments. */
TEST(adamw_and_grad_norm_match_host_reference) {
    NEED_GPU();
    for (int dt = 0; dt < 2; dt++) {
        sm_gpt2_config c = parity_config(2);
        size_t n;
        float *p = random_params(&c, &n);
        int B = 2, T = 64;
        int32_t in[128], tg[128];
        for (int i = 0; i < B * T; i++) { in[i] = (int32_t)(urand() * c.vocab_size); tg[i] = (int32_t)(urand() * c.vocab_size); }
        float *g = malloc(n * 4), *m = malloc(n * 4), *v = malloc(n * 4), *p2 = malloc(n * 4), *m2 = malloc(n * 4),
              *v2 = malloc(n * 4);
        CHECK(p && g && m && v && p2 && m2 && v2);
        for (size_t i = 0; i < n; i++) { m[i] = (float)(1e-3 * nrand()); v[i] = (float)(1e-6 * urand()); }
        sm_gpt2_backend *b = NULL;
        sm_error e = {0};
        CHECK_MSG(cuda->create(&b, &c, p, dt ? SM_DTYPE_BF16 : SM_DTYPE_FP32, B, T, 0, &e) == 0, "%s", e.msg);
        CHECK(cuda->set_moments(b, m, v, &e) == 0);
        float loss;
        CHECK(cuda->forward(b, in, tg, B, T, &loss, NULL, &e) == 0);
        CHECK(cuda->backward(b, 1.0f, &e) == 0);
        CHECK(cuda->get_grads(b, g, &e) == 0);
        double norm = 0, ss = 0;
        CHECK(cuda->grad_norm(b, &norm, &e) == 0);
        for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
        printf("  grad norm cuda %.12g host %.12g\n", norm, sqrt(ss));
        CHECK_NEAR(norm, sqrt(ss), 1e-9 * sqrt(ss));
        const float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gm = 0.7f;
        const int t = 3;
        CHECK(cuda->adamw(b, lr, b1, b2, eps, wd, gm, t, &e) == 0);
        CHECK(cuda->get_params(b, p2, &e) == 0);
        CHECK(cuda->get_moments(b, m2, v2, &e) == 0);
        size_t s[16];
        sm_gpt2_param_sizes(&c, s);
        static const int decay[16] = {1, 1, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0};
        float c1 = 1.0f - powf(b1, (float)t), c2 = 1.0f - powf(b2, (float)t);
        size_t o = 0, bad = 0;
        double worst = 0;
        for (int k = 0; k < 16; k++) {
            for (size_t i = o; i < o + s[k]; i++) {
                float gr = g[i] * gm;
                float mi = b1 * m[i] + (1.0f - b1) * gr, vi = b2 * v[i] + (1.0f - b2) * gr * gr;
                float pe = p[i] - lr * ((mi / c1) / (sqrtf(vi / c2) + eps) + (decay[k] ? wd : 0.0f) * p[i]);
                double r = fabs((double)p2[i] - pe) / (fabs(pe) + 1e-6);
                if (r > worst) worst = r;
                if (r > 1e-5 || fabsf(m2[i] - mi) > 1e-6f * fabsf(mi) + 1e-12f || fabsf(v2[i] - vi) > 1e-6f * vi + 1e-15f) bad++;
            }
            o += s[k];
        }
        printf("  adamw %s: worst parameter rel. error %.2e, %zu mismatches\n", dt ? "bf16" : "fp32", worst, bad);
        CHECK_EQ_INT(bad, 0);
        cuda->destroy(b);
        free(p); free(g); free(m); free(v); free(p2); free(m2); free(v2);
    }
}

/* Two identical runs give identical bits (no atomics, fixed reduction orders, fixed cuBLASLt algorithms). */
TEST(bitwise_deterministic) {
    NEED_GPU();
    for (int dt = 0; dt < 2; dt++) {
        sm_gpt2_config c = parity_config(2);
        size_t n;
        float *p = random_params(&c, &n);
        int B = 4, T = 128;
        int32_t *in = malloc(B * T * 4), *tg = malloc(B * T * 4);
        float *g[2] = {malloc(n * 4), malloc(n * 4)}, loss[2];
        CHECK(p && in && tg && g[0] && g[1]);
        for (int i = 0; i < B * T; i++) { in[i] = (int32_t)(urand() * 64); tg[i] = (int32_t)(urand() * c.vocab_size); }
        for (int r = 0; r < 2; r++) {
            sm_gpt2_backend *b = NULL;
            sm_error e = {0};
            CHECK_MSG(cuda->create(&b, &c, p, dt ? SM_DTYPE_BF16 : SM_DTYPE_FP32, B, T, 0, &e) == 0, "%s", e.msg);
            for (int step = 1; step <= 3; step++) {
                CHECK(cuda->zero_grad(b, &e) == 0);
                CHECK(cuda->forward(b, in, tg, B, T, &loss[r], NULL, &e) == 0);
                CHECK(cuda->backward(b, 1.0f, &e) == 0);
                CHECK(cuda->adamw(b, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, step, &e) == 0);
            }
            CHECK(cuda->get_grads(b, g[r], &e) == 0);
            cuda->destroy(b);
        }
        CHECK_MSG(memcmp(&loss[0], &loss[1], sizeof(float)) == 0, "losses %.9g vs %.9g", loss[0], loss[1]);
        CHECK_MSG(memcmp(g[0], g[1], n * 4) == 0, "%s gradients differ between identical runs", dt ? "bf16" : "fp32");
        free(p); free(in); free(tg); free(g[0]); free(g[1]);
    }
}

/* ---------------------------------------------------------------- front end: training and resume */

static void write_shard(const char *path, size_t n, uint32_t mul, uint32_t V) {
    uint32_t *tok = malloc(n * 4);
    CHECK(tok);
    for (size_t i = 0; i < n; i++) tok[i] = (uint32_t)((i * mul + i / 13) % V);
    sm_shard_writer w;
    sm_error e = {0};
    CHECK_MSG(sm_shard_writer_open(&w, path, &e) == 0, "%s", e.msg);
    CHECK(sm_shard_writer_append(&w, tok, n, &e) == 0);
    CHECK(sm_shard_writer_close(&w, &e) == 0);
    free(tok);
}

typedef struct { int n; double loss[256]; int cancel_at; } trace;

static int record(void *ud, const sm_train_event *ev) {
    trace *t = ud;
    if (t->n < 256) t->loss[t->n++] = ev->train_loss;
    return t->cancel_at && ev->step == t->cancel_at;
}

static const sm_gpt2_config train_cfg = {.max_seq_len = 64, .vocab_size = 500, .padded_vocab_size = 512,
                                         .num_layers = 2, .num_heads = 2, .channels = 128};

static int train(sm_device dev, sm_dtype dt, int steps, const char *resume, int cancel_at, trace *t, float *params) {
    const char *tr[2] = {tpath("a.bin"), tpath("b.bin")}, *va[2] = {tpath("a.bin"), tpath("b.bin")};
    sm_loader_domain d[2] = {{.name = "a", .train_paths = &tr[0], .ntrain = 1, .val_paths = &va[0], .nval = 1},
                             {.name = "b", .train_paths = &tr[1], .ntrain = 1, .val_paths = &va[1], .nval = 1}};
    sm_loader *ld = NULL;
    sm_error e = {0};
    if (sm_loader_open(&ld, d, 2, &e)) { fprintf(stderr, "  loader: %s\n", e.msg); return -100; }
    sm_gpt2_opts o = {.device = dev, .dtype = dt, .threads = 2, .max_B = 4, .max_T = 64};
    sm_gpt2 *m = NULL;
    int rc = sm_gpt2_create(&m, &train_cfg, 5, &o, &e);
    if (rc) { fprintf(stderr, "  create: %s\n", e.msg); sm_loader_free(ld); return rc; }
    sm_train_opts to;
    sm_train_opts_default(&to);
    to.B = 4; to.T = 64; to.steps = steps; to.grad_accum = 2; to.lr = 3e-3f; to.grad_clip = 1.0f;
    to.eval_every = 0; to.eval_batches = 1; to.resume_path = resume; to.checkpoint_every = resume ? 5 : 0;
    rc = sm_loader_set_weights(ld, (double[]){0.4, 0.6}, (double)steps * 2 * 4 * 64, 4, 64, 3, &e);
    if (!rc) {
        t->cancel_at = cancel_at;
        rc = sm_gpt2_train(m, ld, &to, record, t, &e);
        if (rc && rc != SM_ERR_CANCELLED) fprintf(stderr, "  train: %s\n", e.msg);
    }
    if (params && sm_gpt2_get_params(m, params, &e)) rc = rc ? rc : -101;
    sm_gpt2_free(m);
    sm_loader_free(ld);
    return rc;
}

TEST(training_tracks_cpu) {
    NEED_GPU();
    write_shard(tpath("a.bin"), 20000, 7, 500);
    write_shard(tpath("b.bin"), 20000, 11, 500);
    const int steps = 30;
    trace tc = {0}, tg = {0}, tb = {0};
    CHECK_EQ_INT(train(SM_DEVICE_CPU, SM_DTYPE_FP32, steps, NULL, 0, &tc, NULL), 0);
    CHECK_EQ_INT(train(SM_DEVICE_CUDA, SM_DTYPE_FP32, steps, NULL, 0, &tg, NULL), 0);
    CHECK_EQ_INT(train(SM_DEVICE_CUDA, SM_DTYPE_BF16, steps, NULL, 0, &tb, NULL), 0);
    CHECK(tc.n == steps && tg.n == steps && tb.n == steps);
    double w32 = 0, w16 = 0;
    for (int i = 0; i < steps; i++) {
        double r32 = fabs(tg.loss[i] - tc.loss[i]) / tc.loss[i], r16 = fabs(tb.loss[i] - tc.loss[i]) / tc.loss[i];
        if (r32 > w32) w32 = r32;
        if (r16 > w16) w16 = r16;
    }
    printf("  losses step 1 / %d: cpu %.5f / %.5f, cuda fp32 %.5f / %.5f, cuda bf16 %.5f / %.5f\n", steps, tc.loss[0],
           tc.loss[steps - 1], tg.loss[0], tg.loss[steps - 1], tb.loss[0], tb.loss[steps - 1]);
    printf("  worst relative loss gap to the CPU: fp32 %.2e, bf16 %.2e\n", w32, w16);
    CHECK(tc.loss[steps - 1] < tc.loss[0] - 0.5); /* it learns */
    CHECK(w32 <= 1e-3);
    CHECK(w16 <= 3e-2);
}

TEST(resume_equals_uninterrupted) {
    NEED_GPU();
    const int steps = 12, cut = 7;
    size_t n = sm_gpt2_num_params(&train_cfg);
    float *pa = malloc(n * 4), *pb = malloc(n * 4);
    CHECK(pa && pb);
    for (int dt = 0; dt < 2; dt++) {
        sm_dtype dtype = dt ? SM_DTYPE_BF16 : SM_DTYPE_FP32;
        trace full = {0}, part1 = {0}, part2 = {0};
        unlink(tpath("resume.state"));
        CHECK_EQ_INT(train(SM_DEVICE_CUDA, dtype, steps, NULL, 0, &full, pa), 0);
        CHECK_EQ_INT(train(SM_DEVICE_CUDA, dtype, steps, tpath("resume.state"), cut, &part1, pb), SM_ERR_CANCELLED);
        CHECK_EQ_INT(part1.n, cut);
        CHECK_EQ_INT(train(SM_DEVICE_CUDA, dtype, steps, tpath("resume.state"), 0, &part2, pb), 0);
        CHECK_EQ_INT(part2.n, steps - cut);
        for (int i = 0; i < steps - cut; i++)
            CHECK_MSG(memcmp(&part2.loss[i], &full.loss[cut + i], sizeof(double)) == 0,
                      "%s step %d: resumed %.17g vs uninterrupted %.17g", dt ? "bf16" : "fp32", cut + 1 + i,
                      part2.loss[i], full.loss[cut + i]);
        CHECK_MSG(memcmp(pa, pb, n * 4) == 0, "%s final weights differ", dt ? "bf16" : "fp32");
    }
    free(pa);
    free(pb);
}

int main(int argc, char **argv) {
    setup();
    if (argc > 1 && !strcmp(argv[1], "--probe")) {
        if (!gpu_ok) printf("no GPU: %s\n", no_gpu);
        return gpu_ok ? 0 : 2;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sm-test-cuda.XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(library_loads_and_probe_answers);
    RUN(create_refuses_bad_input_cleanly);
    RUN(memory_need_follows_the_plan);
    RUN(train_stage_declares_the_cuda_plan);
    RUN(front_end_cuda_request_without_gpu);
    RUN(parity_fp32);
    RUN(parity_bf16);
    RUN(gradient_accumulation_semantics);
    RUN(adamw_and_grad_norm_match_host_reference);
    RUN(bitwise_deterministic);
    RUN(training_tracks_cpu);
    RUN(resume_equals_uninterrupted);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmpdir);
    if (lib) dlclose(lib);
    TEST_EXIT();
}
