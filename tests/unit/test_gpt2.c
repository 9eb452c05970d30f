/* test_gpt2.c - the GPT-2 model library on the CPU: gradients against finite differences of an independent
 * double-precision forward pass, checkpoint loss against that forward and against numpy, overfitting,
 * bit-identical resume, checkpoint formats and their rejection of corrupt files. */
#include "../sm_test.h"
#include "model/sm_gpt2.h"
#include "model/sm_shard.h"
#include "sm_commands.h"

#include <stdint.h>
#include <unistd.h>

static char tmpdir[256];

static const char *tpath(const char *name) {
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static uint64_t rs = 88172645463325252ULL;
static double urand(void) { /* xorshift64 in [0,1) */
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return (rs >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- independent double-precision GPT-2 forward (written from the format description) ---- */

typedef struct { const double *wte, *wpe, *ln1w, *ln1b, *qkvw, *qkvb, *apw, *apb, *ln2w, *ln2b, *fcw, *fcb, *fpw, *fpb, *lnfw, *lnfb; } refp;

static void ref_split(const sm_gpt2_config *c, const double *p, refp *r) {
    size_t s[16];
    sm_gpt2_param_sizes(c, s);
    const double **f[16] = {&r->wte, &r->wpe, &r->ln1w, &r->ln1b, &r->qkvw, &r->qkvb, &r->apw, &r->apb,
                            &r->ln2w, &r->ln2b, &r->fcw, &r->fcb, &r->fpw, &r->fpb, &r->lnfw, &r->lnfb};
    for (int i = 0; i < 16; i++) { *f[i] = p; p += s[i]; }
}

static void ref_ln(double *out, const double *x, const double *w, const double *b, int C) {
    double mu = 0, var = 0;
    for (int i = 0; i < C; i++) mu += x[i];
    mu /= C;
    for (int i = 0; i < C; i++) var += (x[i] - mu) * (x[i] - mu);
    var /= C;
    double r = 1.0 / sqrt(var + 1e-5);
    for (int i = 0; i < C; i++) out[i] = (x[i] - mu) * r * w[i] + b[i];
}

/* y[o] = b[o] + sum_i W[o][i] x[i] */
static void ref_lin(double *y, const double *x, const double *W, const double *b, int in, int out) {
    for (int o = 0; o < out; o++) {
        double s = b ? b[o] : 0.0;
        for (int i = 0; i < in; i++) s += W[(size_t)o * in + i] * x[i];
        y[o] = s;
    }
}

static double ref_loss(const sm_gpt2_config *c, const double *params, const int32_t *in, const int32_t *tg, int B, int T) {
    refp r;
    ref_split(c, params, &r);
    int C = c->channels, L = c->num_layers, NH = c->num_heads, V = c->vocab_size, hs = C / NH;
    double *x = calloc((size_t)T * C, sizeof(double)), *h = calloc((size_t)4 * C, sizeof(double));
    double *qkv = calloc((size_t)T * 3 * C, sizeof(double)), *y = calloc((size_t)T * C, sizeof(double));
    double *n = calloc(C, sizeof(double)), *o = calloc(C, sizeof(double)), *lg = calloc(V, sizeof(double));
    double total = 0;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++)
            for (int i = 0; i < C; i++) x[t * C + i] = r.wte[(size_t)in[b * T + t] * C + i] + r.wpe[t * C + i];
        for (int l = 0; l < L; l++) {
            for (int t = 0; t < T; t++) {
                ref_ln(n, x + t * C, r.ln1w + l * C, r.ln1b + l * C, C);
                ref_lin(qkv + t * 3 * C, n, r.qkvw + (size_t)l * 3 * C * C, r.qkvb + l * 3 * C, C, 3 * C);
            }
            for (int hd = 0; hd < NH; hd++)
                for (int t = 0; t < T; t++) {
                    double sc[256], mx = -1e300, sum = 0;
                    for (int u = 0; u <= t; u++) {
                        double s = 0;
                        for (int i = 0; i < hs; i++) s += qkv[t * 3 * C + hd * hs + i] * qkv[u * 3 * C + C + hd * hs + i];
                        sc[u] = s / sqrt((double)hs);
                        if (sc[u] > mx) mx = sc[u];
                    }
                    for (int u = 0; u <= t; u++) { sc[u] = exp(sc[u] - mx); sum += sc[u]; }
                    for (int i = 0; i < hs; i++) {
                        double s = 0;
                        for (int u = 0; u <= t; u++) s += sc[u] / sum * qkv[u * 3 * C + 2 * C + hd * hs + i];
                        y[t * C + hd * hs + i] = s;
                    }
                }
            for (int t = 0; t < T; t++) {
                ref_lin(o, y + t * C, r.apw + (size_t)l * C * C, r.apb + l * C, C, C);
                for (int i = 0; i < C; i++) x[t * C + i] += o[i];
                ref_ln(n, x + t * C, r.ln2w + l * C, r.ln2b + l * C, C);
                ref_lin(h, n, r.fcw + (size_t)l * 4 * C * C, r.fcb + l * 4 * C, C, 4 * C);
                for (int i = 0; i < 4 * C; i++) {
                    double v = h[i];
                    h[i] = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
                }
                ref_lin(o, h, r.fpw + (size_t)l * 4 * C * C, r.fpb + l * C, 4 * C, C);
                for (int i = 0; i < C; i++) x[t * C + i] += o[i];
            }
        }
        for (int t = 0; t < T; t++) {
            ref_ln(n, x + t * C, r.lnfw, r.lnfb, C);
            ref_lin(lg, n, r.wte, NULL, C, V);
            double mx = -1e300, s = 0;
            for (int v = 0; v < V; v++) mx = lg[v] > mx ? lg[v] : mx;
            for (int v = 0; v < V; v++) s += exp(lg[v] - mx);
            total += log(s) + mx - lg[tg[b * T + t]];
        }
    }
    free(x); free(h); free(qkv); free(y); free(n); free(o); free(lg);
    return total / (B * T);
}

/* ---- helpers ---- */

static void write_ckpt_raw(const char *path, const sm_gpt2_config *c, int version, const float *p, size_t n, long extra) {
    FILE *f = fopen(path, "wb");
    int32_t h[256] = {20240326, version, c->max_seq_len, c->vocab_size, c->num_layers, c->num_heads, c->channels,
                      c->padded_vocab_size};
    fwrite(h, sizeof h, 1, f);
    if (version == 3) fwrite(p, 4, n, f);
    else for (size_t i = 0; i < n; i++) { uint32_t u; memcpy(&u, &p[i], 4); uint16_t b = (uint16_t)(u >> 16); fwrite(&b, 2, 1, f); }
    for (long i = 0; i < extra; i++) fputc(0, f);
    fclose(f);
}

static float *random_params(const sm_gpt2_config *c, size_t *n_out, double scale) {
    size_t s[16];
    size_t n = sm_gpt2_param_sizes(c, s);
    float *p = malloc(n * sizeof(float));
    size_t o = 0;
    for (int k = 0; k < 16; k++) {
        int is_lnw = k == 2 || k == 8 || k == 14;
        for (size_t i = 0; i < s[k]; i++) p[o + i] = (float)(is_lnw ? 1.0 + (urand() - 0.5) * 0.4 : (urand() - 0.5) * 2 * scale);
        o += s[k];
    }
    /* padded vocabulary rows are zero, as llm.c writes them */
    memset(p + (size_t)c->vocab_size * c->channels, 0, (size_t)(c->padded_vocab_size - c->vocab_size) * c->channels * 4);
    *n_out = n;
    return p;
}

static void write_shard(const char *path, const uint32_t *tok, size_t n) {
    sm_shard_writer w;
    sm_error e = {0};
    CHECK(sm_shard_writer_open(&w, path, &e) == 0);
    CHECK(sm_shard_writer_append(&w, tok, n, &e) == 0);
    CHECK(sm_shard_writer_close(&w, &e) == 0);
}

static const sm_gpt2_config tiny = {.max_seq_len = 6, .vocab_size = 13, .padded_vocab_size = 16, .num_layers = 2,
                                    .num_heads = 2, .channels = 8};

/* ---- tests ---- */

TEST(gradients_match_finite_differences) {
    size_t n;
    float *p = random_params(&tiny, &n, 0.3);
    int B = 2, T = 5;
    int32_t in[10], tg[10];
    for (int i = 0; i < B * T; i++) { in[i] = (int32_t)(urand() * tiny.vocab_size); tg[i] = (int32_t)(urand() * tiny.vocab_size); }
    const sm_gpt2_backend_ops *ops = sm_gpt2_cpu_backend();
    sm_gpt2_backend *be;
    sm_error e = {0};
    CHECK_MSG(ops->create(&be, &tiny, p, SM_DTYPE_FP32, B, T, 1, &e) == 0, "%s", e.msg);
    float loss;
    CHECK(ops->zero_grad(be, &e) == 0);
    CHECK(ops->forward(be, in, tg, B, T, &loss, NULL, &e) == 0);
    CHECK(ops->backward(be, 1.0f, &e) == 0);
    float *g = malloc(n * 4);
    CHECK(ops->get_grads(be, g, &e) == 0);
    double *dp = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) dp[i] = p[i];
    double l0 = ref_loss(&tiny, dp, in, tg, B, T);
    CHECK_NEAR(loss, l0, 1e-5 * fabs(l0) + 1e-6);
    size_t s[16];
    sm_gpt2_param_sizes(&tiny, s);
    static const char *names[16] = {"wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb", "ln2w", "ln2b",
                                    "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"};
    size_t o = 0;
    for (int k = 0; k < 16; k++) {
        double maxabs = 0, maxerr = 0;
        double *fd = malloc(s[k] * sizeof(double));
        for (size_t i = 0; i < s[k]; i++) {
            double h = 1e-5, keep = dp[o + i];
            dp[o + i] = keep + h;
            double lp = ref_loss(&tiny, dp, in, tg, B, T);
            dp[o + i] = keep - h;
            double lm = ref_loss(&tiny, dp, in, tg, B, T);
            dp[o + i] = keep;
            fd[i] = (lp - lm) / (2 * h);
            if (fabs(fd[i]) > maxabs) maxabs = fabs(fd[i]);
        }
        for (size_t i = 0; i < s[k]; i++) {
            double d = fabs(g[o + i] - fd[i]);
            if (d > maxerr) maxerr = d;
        }
        CHECK_MSG(maxabs > 1e-6, "tensor %s has an all-zero gradient; the check would be vacuous", names[k]);
        CHECK_MSG(maxerr <= 2e-3 * maxabs + 1e-6, "tensor %s: max |analytic - finite difference| %.3g vs max |grad| %.3g",
                  names[k], maxerr, maxabs);
        free(fd);
        o += s[k];
    }
    /* padded vocabulary rows: never predicted, zero gradient */
    for (size_t i = (size_t)tiny.vocab_size * tiny.channels; i < (size_t)tiny.padded_vocab_size * tiny.channels; i++)
        CHECK_MSG(g[i] == 0.0f, "padded wte entry %zu has gradient %g", i, g[i]);
    /* backward adds scaled gradients: a second pass with scale 0.5 gives 1.5x */
    float *g2 = malloc(n * 4);
    CHECK(ops->forward(be, in, tg, B, T, &loss, NULL, &e) == 0);
    CHECK(ops->backward(be, 0.5f, &e) == 0);
    CHECK(ops->get_grads(be, g2, &e) == 0);
    for (size_t i = 0; i < n; i++) CHECK_NEAR(g2[i], 1.5 * g[i], 1e-5 * fabs(g[i]) + 1e-7);
    ops->destroy(be);
    free(g); free(g2); free(dp); free(p);
}

/* The finite-difference check runs on one thread (tiny shapes); here shapes large enough for the
 * multi-threaded paths (split matrix products, channel-partitioned reductions) must agree with the
 * double reference and with one thread. */
TEST(threaded_paths_match_single_thread) {
    sm_gpt2_config c = {.max_seq_len = 64, .vocab_size = 1000, .padded_vocab_size = 1024, .num_layers = 2, .num_heads = 4, .channels = 128};
    size_t n;
    float *p = random_params(&c, &n, 0.05);
    int B = 4, T = 64;
    int32_t *in = malloc(B * T * 4), *tg = malloc(B * T * 4);
    for (int i = 0; i < B * T; i++) { in[i] = (int32_t)(urand() * 1000); tg[i] = (int32_t)(urand() * 1000); }
    const sm_gpt2_backend_ops *ops = sm_gpt2_cpu_backend();
    float *g[2], loss[2];
    sm_error e = {0};
    for (int k = 0; k < 2; k++) {
        sm_gpt2_backend *be;
        CHECK_MSG(ops->create(&be, &c, p, SM_DTYPE_FP32, B, T, k + 1, &e) == 0, "%s", e.msg);
        CHECK(ops->zero_grad(be, &e) == 0);
        CHECK(ops->forward(be, in, tg, B, T, &loss[k], NULL, &e) == 0);
        CHECK(ops->backward(be, 1.0f, &e) == 0);
        g[k] = malloc(n * 4);
        CHECK(ops->get_grads(be, g[k], &e) == 0);
        ops->destroy(be);
    }
    double *dp = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) dp[i] = p[i];
    double want = ref_loss(&c, dp, in, tg, B, T);
    CHECK_NEAR(loss[0], want, 2e-5 * want);
    CHECK_NEAR(loss[1], want, 2e-5 * want);
    double maxg = 0, maxd = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(g[0][i]) > maxg) maxg = fabs(g[0][i]);
        if (fabs(g[0][i] - g[1][i]) > maxd) maxd = fabs(g[0][i] - g[1][i]);
    }
    CHECK_MSG(maxd <= 1e-4 * maxg, "gradients on 1 and 2 threads differ by %g (max %g)", maxd, maxg);
    free(g[0]); free(g[1]); free(dp); free(p); free(in); free(tg);
}

/* Evaluation keeps no logits: the same losses as a training forward within float rounding (the training
 * forward also keeps its exps for backward, summed against another reference), and no backward after it. */
TEST(evaluate_matches_forward_and_keeps_nothing) {
    sm_gpt2_config c = {.max_seq_len = 32, .vocab_size = 1000, .padded_vocab_size = 1024, .num_layers = 1, .num_heads = 2, .channels = 32};
    size_t n;
    float *p = random_params(&c, &n, 0.2);
    int B = 3, T = 32;
    int32_t in[96], tg[96];
    for (int i = 0; i < B * T; i++) { in[i] = (int32_t)(urand() * 1000); tg[i] = (int32_t)(urand() * 1000); }
    const sm_gpt2_backend_ops *ops = sm_gpt2_cpu_backend();
    CHECK(ops->evaluate != NULL);
    sm_gpt2_backend *be;
    sm_error e = {0};
    CHECK_MSG(ops->create(&be, &c, p, SM_DTYPE_FP32, B, T, 2, &e) == 0, "%s", e.msg);
    float lf, le, pf[96], pe[96];
    CHECK(ops->forward(be, in, tg, B, T, &lf, pf, &e) == 0);
    CHECK(ops->evaluate(be, in, tg, B, T, &le, pe, &e) == 0);
    CHECK_NEAR(le, lf, 1e-6 * fabs(lf));
    for (int i = 0; i < B * T; i++)
        CHECK_MSG(fabs(pf[i] - pe[i]) <= 1e-5 * fabs(pf[i]), "position %d: forward %g, evaluate %g", i, pf[i], pe[i]);
    CHECK(ops->backward(be, 1.0f, &e) == SM_ERR_ARG);
    CHECK(ops->evaluate(be, in, NULL, B, T, &le, NULL, &e) == SM_ERR_ARG);
    ops->destroy(be);
    free(p);
}

/* Evaluation takes positions a strip at a time (the last strip padded), raises a logit more than 87 below
 * its position's reference to it, and does a block again where its max is more than 64 over the reference:
 * a batch of 21 positions whose logits spread over ~100 units (wte scaled up), on 1 and 2 threads, against
 * the double-precision reference through the whole model (the classifier alone: test_gpt2_cls.c). */
TEST(evaluate_odd_batch_wide_logits_matches_double_reference) {
    sm_gpt2_config c = {.max_seq_len = 8, .vocab_size = 700, .padded_vocab_size = 704, .num_layers = 1, .num_heads = 2, .channels = 32};
    size_t n;
    float *p = random_params(&c, &n, 0.1);
    for (size_t i = 0; i < (size_t)c.vocab_size * c.channels; i++) p[i] *= 60.0f; /* wte: the first tensor */
    double *dp = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) dp[i] = p[i];
    int B = 3, T = 7;
    int32_t in[21], tg[21];
    for (int i = 0; i < B * T; i++) { in[i] = (int32_t)(urand() * 700); tg[i] = (int32_t)(urand() * 700); }
    double want = ref_loss(&c, dp, in, tg, B, T);
    CHECK_MSG(want > 20, "logits not spread wide enough to test the bounds: reference loss %g", want);
    const sm_gpt2_backend_ops *ops = sm_gpt2_cpu_backend();
    for (int nt = 1; nt <= 2; nt++) {
        sm_gpt2_backend *be;
        sm_error e = {0};
        CHECK_MSG(ops->create(&be, &c, p, SM_DTYPE_FP32, B, T, nt, &e) == 0, "%s", e.msg);
        float le = 0;
        CHECK_MSG(ops->evaluate(be, in, tg, B, T, &le, NULL, &e) == 0, "%s", e.msg);
        CHECK_MSG(fabs(le - want) <= 1e-5 * want, "%d threads: evaluate %.7g, reference %.7g", nt, le, want);
        ops->destroy(be);
    }
    free(dp);
    free(p);
}

TEST(checkpoint_loss_matches_double_reference) {
    sm_gpt2_config c = {.max_seq_len = 16, .vocab_size = 50, .padded_vocab_size = 128, .num_layers = 3, .num_heads = 4, .channels = 32};
    size_t n;
    float *p = random_params(&c, &n, 0.1);
    write_ckpt_raw(tpath("ref.bin"), &c, 3, p, n, 0);
    sm_gpt2 *m;
    sm_error e = {0};
    sm_gpt2_opts o = {.device = SM_DEVICE_CPU, .threads = 2};
    CHECK_MSG(sm_gpt2_load(&m, tpath("ref.bin"), &o, &e) == 0, "%s", e.msg);
    int B = 3, T = 16;
    int32_t in[48], tg[48];
    for (int i = 0; i < B * T; i++) { in[i] = (int32_t)(urand() * 50); tg[i] = (int32_t)(urand() * 50); }
    float loss;
    CHECK_MSG(sm_gpt2_loss(m, in, tg, B, T, &loss, &e) == 0, "%s", e.msg);
    double *dp = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) dp[i] = p[i];
    double want = ref_loss(&c, dp, in, tg, B, T);
    CHECK_NEAR(loss, want, 2e-5 * want);
    /* out-of-vocabulary inputs are an error, not a read past wte */
    in[3] = 50;
    CHECK(sm_gpt2_loss(m, in, tg, B, T, &loss, &e) == SM_ERR_ARG);
    sm_gpt2_free(m);
    free(dp);
    free(p);
}

TEST(checkpoint_loss_matches_numpy) {
    const char *root = getenv("SM_ROOT") ? getenv("SM_ROOT") : ".";
    char script[1024];
    snprintf(script, sizeof script, "%s/tests/unit/gpt2_ref.py", root);
    CHECK_MSG(access(script, R_OK) == 0, "missing %s", script);
    /* Debian's python3-numpy lives under /usr/bin/python3; a python3 earlier on PATH may lack it */
    const char *py = NULL;
    static const char *cands[] = {"python3", "/usr/bin/python3"};
    for (int i = 0; i < 2 && !py; i++) {
        char probe[256];
        snprintf(probe, sizeof probe, "%s -c 'import numpy' >/dev/null 2>&1", cands[i]);
        if (system(probe) == 0) py = cands[i];
    }
    if (!py) SKIP("python3-numpy is not installed");
    sm_gpt2_config c = {.max_seq_len = 32, .vocab_size = 300, .padded_vocab_size = 384, .num_layers = 2, .num_heads = 4, .channels = 32};
    size_t n;
    float *p = random_params(&c, &n, 0.1);
    for (int version = 3; version <= 5; version += 2) {
        const char *ck = tpath(version == 3 ? "np3.bin" : "np5.bin");
        write_ckpt_raw(ck, &c, version, p, n, 0);
        uint32_t tok[4 * 32 + 1];
        for (size_t i = 0; i < SM_ARRAY_LEN(tok); i++) tok[i] = (uint32_t)(urand() * 300);
        write_shard(tpath("np.shard"), tok, SM_ARRAY_LEN(tok));
        sm_gpt2 *m;
        sm_error e = {0};
        sm_gpt2_opts o = {.device = SM_DEVICE_CPU};
        CHECK_MSG(sm_gpt2_load(&m, ck, &o, &e) == 0, "%s", e.msg);
        int32_t in[128], tg[128];
        for (int i = 0; i < 128; i++) { in[i] = (int32_t)tok[i]; tg[i] = (int32_t)tok[i + 1]; }
        float loss;
        CHECK_MSG(sm_gpt2_loss(m, in, tg, 4, 32, &loss, &e) == 0, "%s", e.msg);
        sm_gpt2_free(m);
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "%s %s %s %s 4 32", py, script, ck, tpath("np.shard"));
        FILE *f = popen(cmd, "r");
        CHECK(f);
        double np_loss = NAN;
        int got = fscanf(f, "%lf", &np_loss);
        int st = pclose(f);
        CHECK_MSG(got == 1 && st == 0, "numpy reference failed (status %d)", st);
        CHECK_NEAR(loss, np_loss, 1e-5 * np_loss);
        /* the CLI prints the same number */
        char *argv[] = {"eval", "--model", (char *)ck, "--data", (char *)tpath("np.shard"), "--batch", "4", "--seq", "32",
                        "--device", "cpu", NULL};
        fflush(stdout);
        int saved = dup(1);
        FILE *cap = fopen(tpath("cli.out"), "w");
        dup2(fileno(cap), 1);
        int rc = sm_cmd_eval(11, argv);
        fflush(stdout);
        dup2(saved, 1);
        close(saved);
        fclose(cap);
        CHECK_EQ_INT(rc, 0);
        cap = fopen(tpath("cli.out"), "r");
        double cli_loss = NAN;
        CHECK(fscanf(cap, "%lf", &cli_loss) == 1);
        fclose(cap);
        CHECK_NEAR(cli_loss, loss, 1e-6 + 1e-6 * loss);
    }
    free(p);
}

TEST(eval_cli_rejects_bad_usage) {
    char *a1[] = {"eval", "--model", "x.bin", NULL};
    CHECK_EQ_INT(sm_cmd_eval(3, a1), 2);
    char *a2[] = {"eval", "--model", "/nonexistent/x.bin", "--data", "/nonexistent/s.bin", NULL};
    CHECK_EQ_INT(sm_cmd_eval(5, a2), 1);
    char *a3[] = {"eval", "--model", "a", "--data", "b", "--batch", "zero", NULL};
    CHECK_EQ_INT(sm_cmd_eval(7, a3), 2);
    char *a4[] = {"eval", "--model", "a", "--data", "b", "--device", "tpu", NULL};
    CHECK_EQ_INT(sm_cmd_eval(7, a4), 2);
}

static int expect_format_error(const char *path, const char *needle) {
    sm_gpt2 *m = NULL;
    sm_error e = {0};
    sm_gpt2_opts o = {.device = SM_DEVICE_CPU};
    int rc = sm_gpt2_load(&m, path, &o, &e);
    if (m) sm_gpt2_free(m);
    if (rc != SM_ERR_FORMAT) { fprintf(stderr, "  %s: rc %d (%s)\n", path, rc, e.msg); return 0; }
    if (!strstr(e.msg, path) || (needle && !strstr(e.msg, needle))) { fprintf(stderr, "  message: %s\n", e.msg); return 0; }
    return 1;
}

TEST(corrupt_and_truncated_checkpoints_rejected) {
    size_t n;
    float *p = random_params(&tiny, &n, 0.1);
    write_ckpt_raw(tpath("trunc.bin"), &tiny, 3, p, n - 1, 0);
    CHECK(expect_format_error(tpath("trunc.bin"), "truncated"));
    write_ckpt_raw(tpath("long.bin"), &tiny, 3, p, n, 3);
    CHECK(expect_format_error(tpath("long.bin"), "bytes"));
    write_ckpt_raw(tpath("v5wrong.bin"), &tiny, 5, p, n - 2, 0);
    CHECK(expect_format_error(tpath("v5wrong.bin"), "truncated"));
    write_ckpt_raw(tpath("ver.bin"), &tiny, 4, p, n, 0);
    CHECK(expect_format_error(tpath("ver.bin"), "version"));
    FILE *f = fopen(tpath("short.bin"), "wb");
    fwrite("hello", 1, 5, f);
    fclose(f);
    CHECK(expect_format_error(tpath("short.bin"), "header"));
    write_ckpt_raw(tpath("magic.bin"), &tiny, 3, p, n, 0);
    f = fopen(tpath("magic.bin"), "r+b");
    int32_t bad = 20240520; /* a shard's magic */
    fwrite(&bad, 4, 1, f);
    fclose(f);
    CHECK(expect_format_error(tpath("magic.bin"), "magic"));
    sm_gpt2_config odd = tiny;
    odd.num_heads = 3; /* 8 channels do not split into 3 heads */
    write_ckpt_raw(tpath("heads.bin"), &odd, 3, p, n, 0);
    CHECK(expect_format_error(tpath("heads.bin"), "divisible"));
    sm_gpt2_config huge = tiny;
    huge.num_layers = 1 << 30; /* parameter count would overflow: must be refused, not wrapped */
    write_ckpt_raw(tpath("huge.bin"), &huge, 3, p, n, 0);
    CHECK(expect_format_error(tpath("huge.bin"), "too large"));
    sm_gpt2 *m = NULL;
    sm_error e = {0};
    CHECK(sm_gpt2_load(&m, tpath("missing.bin"), NULL, &e) == SM_ERR_IO);
    free(p);
}

static uint16_t to_bf16(float x) { /* round to nearest even (finite inputs) */
    uint32_t u;
    memcpy(&u, &x, 4);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

TEST(save_load_round_trip) {
    sm_gpt2_config c = {.max_seq_len = 8, .vocab_size = 40, .padded_vocab_size = 128, .num_layers = 2, .num_heads = 2, .channels = 16};
    sm_gpt2 *m, *m3, *m5;
    sm_error e = {0};
    sm_gpt2_opts o = {.device = SM_DEVICE_CPU};
    CHECK_MSG(sm_gpt2_create(&m, &c, 42, &o, &e) == 0, "%s", e.msg);
    size_t n = sm_gpt2_num_params(&c);
    float *a = malloc(n * 4), *b = malloc(n * 4);
    CHECK(sm_gpt2_get_params(m, a, &e) == 0);
    /* GPT-2 init: LayerNorm weights 1, biases 0, padded rows 0, std about 0.02 */
    size_t s[16];
    sm_gpt2_param_sizes(&c, s);
    CHECK(a[s[0] + s[1]] == 1.0f && a[s[0] + s[1] + s[2]] == 0.0f);
    CHECK(a[(size_t)c.vocab_size * c.channels] == 0.0f && a[s[0] - 1] == 0.0f);
    double ss = 0;
    for (size_t i = 0; i < (size_t)c.vocab_size * c.channels; i++) ss += (double)a[i] * a[i];
    CHECK_NEAR(sqrt(ss / (c.vocab_size * c.channels)), 0.02, 0.002);
    CHECK_MSG(sm_gpt2_save(m, tpath("rt3.bin"), 3, &e) == 0, "%s", e.msg);
    CHECK_MSG(sm_gpt2_save(m, tpath("rt5.bin"), 5, &e) == 0, "%s", e.msg);
    CHECK(sm_gpt2_save(m, tpath("rt4.bin"), 4, &e) == SM_ERR_ARG);
    CHECK(access(tpath("rt4.bin"), F_OK) != 0);
    CHECK_MSG(sm_gpt2_load(&m3, tpath("rt3.bin"), &o, &e) == 0, "%s", e.msg);
    CHECK(sm_gpt2_get_params(m3, b, &e) == 0);
    CHECK(memcmp(a, b, n * 4) == 0);
    CHECK(memcmp(sm_gpt2_get_config(m3), &c, sizeof c) == 0);
    CHECK_MSG(sm_gpt2_load(&m5, tpath("rt5.bin"), &o, &e) == 0, "%s", e.msg);
    CHECK(sm_gpt2_get_params(m5, b, &e) == 0);
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)to_bf16(a[i]) << 16;
        float want;
        memcpy(&want, &u, 4);
        CHECK_MSG(b[i] == want, "param %zu: %g loaded from bf16, want %g", i, b[i], want);
        CHECK(fabsf(b[i] - a[i]) <= fabsf(a[i]) * (1.0f / 256));
    }
    /* same seed, same model; another seed, another model */
    sm_gpt2 *m2;
    CHECK(sm_gpt2_create(&m2, &c, 42, &o, &e) == 0);
    CHECK(sm_gpt2_get_params(m2, b, &e) == 0);
    CHECK(memcmp(a, b, n * 4) == 0);
    sm_gpt2_free(m2);
    CHECK(sm_gpt2_create(&m2, &c, 43, &o, &e) == 0);
    CHECK(sm_gpt2_get_params(m2, b, &e) == 0);
    CHECK(memcmp(a, b, n * 4) != 0);
    sm_gpt2_free(m2);
    /* bf16 compute is rejected on the CPU */
    sm_gpt2_opts ob = {.device = SM_DEVICE_CPU, .dtype = SM_DTYPE_BF16};
    CHECK(sm_gpt2_create(&m2, &c, 1, &ob, &e) == SM_ERR_UNSUPPORTED);
    sm_gpt2_free(m);
    sm_gpt2_free(m3);
    sm_gpt2_free(m5);
    free(a);
    free(b);
}

TEST(figures) {
    sm_gpt2_config g = {.max_seq_len = 1024, .vocab_size = 50257, .padded_vocab_size = 50304, .num_layers = 12, .num_heads = 12, .channels = 768};
    CHECK_EQ_INT(sm_gpt2_num_params(&g), 124475904);
    CHECK_NEAR(sm_gpt2_flops_per_token(&g, 1024) / 1e8, 8.03, 0.01);
    uint64_t mem = 0, mem2 = 0;
    sm_error e = {0};
    CHECK_MSG(sm_gpt2_memory_need(&g, 4, 64, SM_DTYPE_FP32, SM_DEVICE_CPU, &mem, &e) == SM_OK, "%s", e.msg);
    CHECK(mem > 124475904ull * 16 && mem < 124475904ull * 16 + (1ull << 30));
    /* activations grow with the batch: twice the tokens, more than the parameters' share added */
    CHECK(sm_gpt2_memory_need(&g, 8, 64, SM_DTYPE_FP32, SM_DEVICE_CPU, &mem2, &e) == SM_OK);
    CHECK(mem2 > mem && mem2 - mem == mem - 124475904ull * 16);
    /* the CPU computes in fp32 only, and the need is asked of a named device */
    CHECK(sm_gpt2_memory_need(&g, 4, 64, SM_DTYPE_BF16, SM_DEVICE_CPU, &mem2, &e) == SM_ERR_UNSUPPORTED);
    CHECK(sm_gpt2_memory_need(&g, 4, 64, SM_DTYPE_FP32, SM_DEVICE_AUTO, &mem2, &e) == SM_ERR_ARG);
    CHECK(sm_gpt2_memory_need(&g, 4, 2048, SM_DTYPE_FP32, SM_DEVICE_CPU, &mem2, &e) == SM_ERR_ARG);
    CHECK(strstr(e.msg, "max_seq_len 1024") != NULL);
    sm_device d;
    CHECK(sm_device_parse("cuda", &d, &e) == 0 && d == SM_DEVICE_CUDA);
    CHECK(sm_device_parse("auto", &d, &e) == 0 && d == SM_DEVICE_AUTO);
    CHECK(sm_device_parse("gpu", &d, &e) == SM_ERR_ARG);
}

TEST(device_selection) {
    sm_gpt2 *m = NULL;
    sm_error e = {0};
    sm_gpt2_opts o = {.device = SM_DEVICE_AUTO};
    CHECK_MSG(sm_gpt2_create(&m, &tiny, 1, &o, &e) == 0, "%s", e.msg);
    const char *name = sm_gpt2_device_name(m);
    CHECK(!strcmp(name, "cpu") || !strcmp(name, "cuda"));
    sm_gpt2_free(m);
    /* bf16 with AUTO always gives a model: bf16 on a GPU, fp32 on the CPU */
    sm_gpt2_opts ob = {.device = SM_DEVICE_AUTO, .dtype = SM_DTYPE_BF16};
    CHECK_MSG(sm_gpt2_create(&m, &tiny, 1, &ob, &e) == 0, "%s", e.msg);
    sm_gpt2_free(m);
    o.device = SM_DEVICE_CUDA;
    int rc = sm_gpt2_create(&m, &tiny, 1, &o, &e);
    if (rc == 0) {
        CHECK_EQ_STR(sm_gpt2_device_name(m), "cuda");
        sm_gpt2_free(m);
    } else {
        CHECK_EQ_INT(rc, SM_ERR_UNSUPPORTED);
        CHECK(strlen(e.msg) > 10);
    }
}

/* ---- training ---- */

static sm_loader *open_loader(const char **train, const char **val, int nd) {
    sm_loader_domain d[4];
    static const char *names[4] = {"alpha", "beta", "gamma", "delta"};
    for (int i = 0; i < nd; i++) {
        d[i] = (sm_loader_domain){.name = names[i], .train_paths = &train[i], .ntrain = 1, .val_paths = &val[i], .nval = 1};
    }
    sm_loader *ld = NULL;
    sm_error e = {0};
    int rc = sm_loader_open(&ld, d, (size_t)nd, &e);
    if (rc) fprintf(stderr, "  loader: %s\n", e.msg);
    return ld;
}

typedef struct { int n; double loss[512]; double lr[512]; int evals; double last_eval[4]; int cancel_at, nd; } trace;

static int record(void *ud, const sm_train_event *ev) {
    trace *t = ud;
    if (t->n < 512) { t->loss[t->n] = ev->train_loss; t->lr[t->n] = ev->lr; t->n++; }
    if (ev->eval) { t->evals++; memcpy(t->last_eval, ev->domain_losses, (size_t)t->nd * sizeof(double)); }
    return t->cancel_at && ev->step == t->cancel_at;
}

TEST(tiny_model_overfits_tiny_shard) {
    uint32_t tok[4000];
    for (size_t i = 0; i < SM_ARRAY_LEN(tok); i++) tok[i] = (uint32_t)((i * 7) % 40); /* each token fixes the next */
    write_shard(tpath("fit.bin"), tok, SM_ARRAY_LEN(tok));
    const char *tr[1] = {tpath("fit.bin")}, *va[1] = {tpath("fit.bin")};
    sm_loader *ld = open_loader(tr, va, 1);
    CHECK(ld);
    sm_gpt2_config c = {.max_seq_len = 16, .vocab_size = 64, .padded_vocab_size = 128, .num_layers = 2, .num_heads = 2, .channels = 32};
    sm_gpt2 *m;
    sm_error e = {0};
    sm_gpt2_opts o = {.device = SM_DEVICE_CPU};
    CHECK(sm_gpt2_create(&m, &c, 7, &o, &e) == 0);
    sm_train_opts to;
    sm_train_opts_default(&to);
    to.B = 4; to.T = 16; to.steps = 120; to.lr = 1e-2f; to.eval_batches = 2;
    CHECK_MSG(sm_loader_set_tokens(ld, (double[]){120.0 * 4 * 16}, 4, 16, 1, &e) == 0, "%s", e.msg);
    trace t = {.nd = 1};
    CHECK_MSG(sm_gpt2_train(m, ld, &to, record, &t, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(t.n, 120);
    CHECK_EQ_INT(sm_gpt2_step(m), 120);
    CHECK_MSG(t.loss[0] > 3.5, "first loss %g, want about ln(64) = 4.16", t.loss[0]);
    CHECK_MSG(t.loss[119] < 0.1, "final loss %g after 120 steps on a deterministic sequence", t.loss[119]);
    CHECK_EQ_INT(t.evals, 1);
    CHECK_MSG(t.last_eval[0] < 0.1, "validation loss %g", t.last_eval[0]);
    /* warmup 10% then cosine to 10% */
    CHECK_NEAR(t.lr[0], 1e-2 / 12, 1e-9);
    CHECK_NEAR(t.lr[11], 1e-2, 1e-9);
    CHECK_NEAR(t.lr[119], 1e-3, 1e-9);
    uint64_t served;
    double ep;
    sm_loader_served(ld, &served, &ep);
    CHECK_EQ_INT(served, 120 * 4 * 16);
    CHECK_NEAR(ep, 120.0 * 4 / ((4000 - 1) / 16) - 1, 1e-9);
    /* asking for more than the stream holds is an error */
    to.steps = 200;
    CHECK(sm_gpt2_train(m, ld, &to, NULL, NULL, &e) == SM_ERR_ARG);
    sm_gpt2_free(m);
    sm_loader_free(ld);
}

static void run_training(const char *resume, int cancel_at, int steps, trace *t, float *final_params, int *rc_out) {
    const char *tr[2] = {tpath("rA.bin"), tpath("rB.bin")}, *va[2] = {tpath("vA.bin"), tpath("vB.bin")};
    sm_loader *ld = open_loader(tr, va, 2);
    CHECK(ld);
    sm_gpt2_config c = {.max_seq_len = 16, .vocab_size = 64, .padded_vocab_size = 128, .num_layers = 2, .num_heads = 2, .channels = 32};
    sm_gpt2 *m;
    sm_error e = {0};
    sm_gpt2_opts o = {.device = SM_DEVICE_CPU, .threads = 2};
    CHECK(sm_gpt2_create(&m, &c, 11, &o, &e) == 0);
    sm_train_opts to;
    sm_train_opts_default(&to);
    to.B = 2; to.T = 16; to.steps = steps; to.grad_accum = 2; to.lr = 1e-2f; to.grad_clip = 0.5f;
    to.eval_every = 4; to.eval_batches = 1; to.resume_path = resume; to.checkpoint_every = resume ? 5 : 0;
    CHECK(sm_loader_set_weights(ld, (double[]){0.3, 0.7}, 12.0 * 2 * 2 * 16, 2, 16, 99, &e) == 0);
    t->cancel_at = cancel_at;
    t->nd = 2;
    *rc_out = sm_gpt2_train(m, ld, &to, record, t, &e);
    if (*rc_out && *rc_out != SM_ERR_CANCELLED) fprintf(stderr, "  train: %s\n", e.msg);
    CHECK(sm_gpt2_get_params(m, final_params, &e) == 0);
    sm_gpt2_free(m);
    sm_loader_free(ld);
}

TEST(resume_equals_uninterrupted) {
    uint32_t a[3000], b[2000];
    for (size_t i = 0; i < 3000; i++) a[i] = (uint32_t)(urand() * 64);
    for (size_t i = 0; i < 2000; i++) b[i] = (uint32_t)((i * 5) % 64);
    write_shard(tpath("rA.bin"), a, 3000);
    write_shard(tpath("rB.bin"), b, 2000);
    write_shard(tpath("vA.bin"), a + 1000, 500);
    write_shard(tpath("vB.bin"), b + 7, 500);
    size_t n = sm_gpt2_num_params(&(sm_gpt2_config){.max_seq_len = 16, .vocab_size = 64, .padded_vocab_size = 128,
                                                    .num_layers = 2, .num_heads = 2, .channels = 32});
    float *p1 = malloc(n * 4), *p2 = malloc(n * 4);
    trace full = {0}, part1 = {0}, part2 = {0};
    int rc;
    run_training(NULL, 0, 12, &full, p1, &rc);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(full.n, 12);
    CHECK_EQ_INT(full.evals, 3);
    unlink(tpath("resume.state"));
    run_training(tpath("resume.state"), 7, 12, &part1, p2, &rc);
    CHECK_EQ_INT(rc, SM_ERR_CANCELLED);
    CHECK_EQ_INT(part1.n, 7);
    run_training(tpath("resume.state"), 0, 12, &part2, p2, &rc);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(part2.n, 5);
    for (int i = 0; i < 7; i++) CHECK_MSG(memcmp(&part1.loss[i], &full.loss[i], 8) == 0, "step %d: %.17g vs %.17g", i + 1, part1.loss[i], full.loss[i]);
    for (int i = 0; i < 5; i++)
        CHECK_MSG(memcmp(&part2.loss[i], &full.loss[7 + i], 8) == 0, "step %d: resumed %.17g vs uninterrupted %.17g", 8 + i,
                  part2.loss[i], full.loss[7 + i]);
    CHECK(memcmp(p1, p2, n * 4) == 0);
    CHECK(memcmp(part2.last_eval, full.last_eval, 2 * sizeof(double)) == 0);
    CHECK(full.loss[11] < full.loss[0]);
    /* A resume file that does not verify (truncated; one byte flipped in the weights, the size unchanged) is
     * set aside and training restarts from step 0, ending exactly where the uninterrupted run did. */
    for (int damage = 0; damage < 2; damage++) {
        trace tc = {0}, t3 = {0};
        unlink(tpath("resume.state"));
        run_training(tpath("resume.state"), 7, 12, &tc, p2, &rc);
        CHECK_EQ_INT(rc, SM_ERR_CANCELLED);
        FILE *f = fopen(tpath("resume.state"), "r+b");
        CHECK(f);
        if (damage == 0) CHECK(ftruncate(fileno(f), 100) == 0);
        else {
            int c;
            CHECK(fseek(f, 4000, SEEK_SET) == 0 && (c = fgetc(f)) != EOF);
            CHECK(fseek(f, 4000, SEEK_SET) == 0 && fputc(c ^ 0x10, f) != EOF);
        }
        fclose(f);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -f %s.corrupt-*", tpath("resume.state"));
        CHECK(system(cmd) == 0);
        run_training(tpath("resume.state"), 0, 12, &t3, p2, &rc);
        CHECK_EQ_INT(rc, 0);
        CHECK_MSG(t3.n == 12, "damage %d: %d steps after the bad resume file, want all 12", damage, t3.n);
        CHECK_MSG(memcmp(p1, p2, n * 4) == 0, "damage %d: the restarted run differs from the uninterrupted one", damage);
        snprintf(cmd, sizeof cmd, "ls %s.corrupt-* >/dev/null 2>&1", tpath("resume.state"));
        CHECK_MSG(system(cmd) == 0, "damage %d: the bad resume file was not set aside", damage);
    }
    free(p1);
    free(p2);
}

TEST(eval_domains_per_domain_mean) {
    sm_gpt2_config c = {.max_seq_len = 8, .vocab_size = 20, .padded_vocab_size = 128, .num_layers = 1, .num_heads = 2, .channels = 8};
    uint32_t va[41], vb[20], vc[3];
    for (int i = 0; i < 41; i++) va[i] = (uint32_t)(urand() * 20);
    for (int i = 0; i < 20; i++) vb[i] = (uint32_t)(urand() * 20);
    for (int i = 0; i < 3; i++) vc[i] = 1;
    write_shard(tpath("eA.bin"), va, 41);
    write_shard(tpath("eB.bin"), vb, 20);
    write_shard(tpath("eC.bin"), vc, 3);
    const char *tr[3] = {tpath("eA.bin"), tpath("eB.bin"), tpath("eA.bin")}, *vl[3] = {tpath("eA.bin"), tpath("eB.bin"), tpath("eC.bin")};
    sm_loader *ld = open_loader(tr, vl, 3);
    CHECK(ld);
    sm_gpt2 *m;
    sm_error e = {0};
    sm_gpt2_opts o = {.device = SM_DEVICE_CPU};
    CHECK(sm_gpt2_create(&m, &c, 5, &o, &e) == 0);
    double l[3];
    CHECK_MSG(sm_gpt2_eval_domains(m, ld, 2, 8, 2, l, &e) == 0, "%s", e.msg);
    /* domain A: a sample of 4 of its 5 rows of 8, spread (rows 0, 1, 3, 4; two batches of 2); domain B: its 2
     * rows (19 tokens); domain C: too short */
    int32_t in[32], tg[32];
    const int rows[4] = {0, 1, 3, 4};
    for (int i = 0; i < 32; i++) { in[i] = (int32_t)va[rows[i / 8] * 8 + i % 8]; tg[i] = (int32_t)va[rows[i / 8] * 8 + i % 8 + 1]; }
    float la;
    CHECK(sm_gpt2_loss(m, in, tg, 4, 8, &la, &e) == 0);
    CHECK_NEAR(l[0], la, 1e-6);
    for (int i = 0; i < 16; i++) { in[i] = (int32_t)vb[i]; tg[i] = (int32_t)vb[i + 1]; }
    CHECK(sm_gpt2_loss(m, in, tg, 2, 8, &la, &e) == 0);
    CHECK_NEAR(l[1], la, 1e-6);
    CHECK(isnan(l[2]));
    sm_gpt2_free(m);
    sm_loader_free(ld);
}

/* Two threads split the layer stack by sequences (units taken dynamically) and the classifier's vocabulary
 * into chunks taken dynamically: whichever thread ran which unit or chunk, two runs give bitwise the same
 * loss and gradients, within float rounding of one thread's, also for a batch of 3 sequences (3 units). */
TEST(dynamic_split_is_deterministic) {
    sm_gpt2_config c = {.max_seq_len = 16, .vocab_size = 3000, .padded_vocab_size = 3008, .num_layers = 2, .num_heads = 2, .channels = 32};
    size_t n;
    float *p = random_params(&c, &n, 0.1);
    int B = 3, T = 16;
    int32_t in[48], tg[48];
    for (int i = 0; i < B * T; i++) { in[i] = (int32_t)(urand() * 3000); tg[i] = (int32_t)(urand() * 3000); }
    const sm_gpt2_backend_ops *ops = sm_gpt2_cpu_backend();
    float *g[3], loss[3];
    sm_error e = {0};
    for (int k = 0; k < 3; k++) {
        sm_gpt2_backend *be;
        CHECK_MSG(ops->create(&be, &c, p, SM_DTYPE_FP32, B, T, k == 0 ? 1 : 2, &e) == 0, "%s", e.msg);
        CHECK(ops->forward(be, in, tg, B, T, &loss[k], NULL, &e) == 0);
        CHECK(ops->backward(be, 1.0f, &e) == 0);
        g[k] = malloc(n * 4);
        CHECK(ops->get_grads(be, g[k], &e) == 0);
        ops->destroy(be);
    }
    CHECK(loss[1] == loss[2]);
    CHECK(memcmp(g[1], g[2], n * 4) == 0);
    CHECK_NEAR(loss[1], loss[0], 1e-6 * loss[0]);
    double maxg = 0, maxd = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(g[0][i]) > maxg) maxg = fabs(g[0][i]);
        if (fabs(g[0][i] - g[1][i]) > maxd) maxd = fabs(g[0][i] - g[1][i]);
    }
    CHECK_MSG(maxd <= 1e-5 * maxg, "gradients on 1 and 2 threads differ by %g (max %g)", maxd, maxg);
    free(g[0]); free(g[1]); free(g[2]); free(p);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sm-test-gpt2.XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(gradients_match_finite_differences);
    RUN(threaded_paths_match_single_thread);
    RUN(checkpoint_loss_matches_double_reference);
    RUN(checkpoint_loss_matches_numpy);
    RUN(eval_cli_rejects_bad_usage);
    RUN(corrupt_and_truncated_checkpoints_rejected);
    RUN(save_load_round_trip);
    RUN(figures);
    RUN(device_selection);
    RUN(tiny_model_overfits_tiny_shard);
    RUN(resume_equals_uninterrupted);
    RUN(eval_domains_per_domain_mean);
    RUN(evaluate_matches_forward_and_keeps_nothing);
    RUN(evaluate_odd_batch_wide_logits_matches_double_reference);
    RUN(dynamic_split_is_deterministic);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmpdir);
    TEST_EXIT();
}
