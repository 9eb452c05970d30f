/* test_autoscale_plugins.c - the fit, extrapolate, compare and plot plugins, loaded from the build's
 * plugins/ directory and run against a fake host that captures what they report. */
#include "../sm_test.h"

#include <dlfcn.h>
#include <jansson.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autoscale/sm_fit.h"
#include "autoscale/sm_stats.h"
#include "autoscale/sm_waterfill.h"
#include "sm_plugin.h"
#include "test_autoscale_xml.h"

/* ---- the fake host */
struct sm_host {
    char *result;
    int nf64;
    char f64_name[8][32];
    double f64[8][16];
    size_t f64_n[8];
    int nmix;
    char mix_method[4][32];
    double mix_budget[4], mix_w[4][16], mix_t[4][16];
    size_t mix_n[4];
    char mix_dom[4][16][32];
    int nfits;
    char fit_dom[16][32];
    double fit_abc[16][4];
    int nmetrics;
    char metric_name[32][64];
    double metric_v[32];
    int64_t metric_step[32];
    int warns;
    char log[4096]; /* every line logged since the last call, for checks on what the user is told */
    char outdir[256], committed[512], committed_kind[32], committed_name[128], committed_meta[256];
    int ncommit;
};

static void h_log(sm_host *h, int level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "  [plugin log %d] %s\n", level, line);
    size_t used = strlen(h->log);
    snprintf(h->log + used, sizeof h->log - used, "%s\n", line);
    if (level == SM_LOG_WARN) h->warns++;
}
static void h_progress(sm_host *h, double d, double t, const char *u) { (void)h; (void)d; (void)t; (void)u; }
static int h_cancelled(sm_host *h) { (void)h; return 0; }
static int h_threads(sm_host *h) { (void)h; return 1; }
static int h_output_path(sm_host *h, const char *name, char *out, size_t cap) {
    int w = snprintf(out, cap, "%s/%s.tmp", h->outdir, name);
    return w < 0 || (size_t)w >= cap ? SM_ERR_ARG : SM_OK;
}
static int h_output_commit(sm_host *h, const char *name, const char *tmp, const char *kind, const char *meta,
                           char digest[65]) {
    uint64_t bytes;
    if (sm_sha256_file(tmp, digest, &bytes, NULL)) return SM_ERR_IO;
    snprintf(h->committed, sizeof h->committed, "%s/%s", h->outdir, name);
    if (rename(tmp, h->committed)) return SM_ERR_IO;
    snprintf(h->committed_kind, sizeof h->committed_kind, "%s", kind);
    snprintf(h->committed_name, sizeof h->committed_name, "%s", name);
    snprintf(h->committed_meta, sizeof h->committed_meta, "%s", meta ? meta : "");
    h->ncommit++;
    return SM_OK;
}
static const char *h_scratch(sm_host *h) { return h->outdir; }
static int h_metric(sm_host *h, const char *name, int64_t step, const char *domain, double v) {
    (void)domain;
    if (h->nmetrics < 32) {
        snprintf(h->metric_name[h->nmetrics], 64, "%s", name);
        h->metric_v[h->nmetrics] = v;
        h->metric_step[h->nmetrics] = step;
        h->nmetrics++;
    }
    return SM_OK;
}
static int h_result(sm_host *h, const char *json) {
    free(h->result);
    h->result = strdup(json);
    return SM_OK;
}
static int h_result_f64(sm_host *h, const char *name, const double *v, size_t n) {
    if (h->nf64 >= 8 || n > 16) return SM_ERR_ARG;
    snprintf(h->f64_name[h->nf64], 32, "%s", name);
    memcpy(h->f64[h->nf64], v, n * sizeof *v);
    h->f64_n[h->nf64++] = n;
    return SM_OK;
}
static int h_mixture(sm_host *h, const char *method, double budget, size_t n, const char *const *d, const double *w,
                     const double *t) {
    if (h->nmix >= 4 || n > 16) return SM_ERR_ARG;
    int k = h->nmix++;
    snprintf(h->mix_method[k], 32, "%s", method);
    h->mix_budget[k] = budget;
    h->mix_n[k] = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(h->mix_dom[k][i], 32, "%s", d[i]);
        h->mix_w[k][i] = w[i];
        h->mix_t[k][i] = t[i];
    }
    return SM_OK;
}
static int h_fit(sm_host *h, const char *domain, double a, double b, double c, double rmse) {
    if (h->nfits >= 16) return SM_ERR_ARG;
    snprintf(h->fit_dom[h->nfits], 32, "%s", domain);
    h->fit_abc[h->nfits][0] = a;
    h->fit_abc[h->nfits][1] = b;
    h->fit_abc[h->nfits][2] = c;
    h->fit_abc[h->nfits][3] = rmse;
    h->nfits++;
    return SM_OK;
}

static const sm_host_api API = {
    .struct_size = sizeof(sm_host_api), .abi_major = SM_PLUGIN_ABI_MAJOR, .abi_minor = SM_PLUGIN_ABI_MINOR,
    .log = h_log, .progress = h_progress, .cancelled = h_cancelled, .threads = h_threads,
    .output_path = h_output_path, .output_commit = h_output_commit, .scratch_dir = h_scratch, .metric = h_metric,
    .result = h_result, .result_f64 = h_result_f64, .mixture = h_mixture, .fit = h_fit,
};

static void host_reset(sm_host *h) {
    free(h->result);
    memset(h, 0, sizeof *h);
    snprintf(h->outdir, sizeof h->outdir, "/tmp/sm-as-plugin-test-%d", (int)getpid());
    mkdir(h->outdir, 0755);
}

static const sm_plugin_desc *load(const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/plugins/%s.so", sm_build_dir(), name);
    void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!so) FAILF("cannot load %s (%s): build the plugins first", path, dlerror());
    sm_plugin_describe_fn fn = (sm_plugin_describe_fn)dlsym(so, SM_PLUGIN_ENTRY);
    if (!fn) FAILF("%s exports no %s", path, SM_PLUGIN_ENTRY);
    const sm_plugin_desc *d = fn();
    CHECK(d && d->abi_major == SM_PLUGIN_ABI_MAJOR && d->abi_minor <= SM_PLUGIN_ABI_MINOR);
    CHECK_EQ_STR(d->name, name);
    return d;
}

static sm_host H;

/* runs the plugin with params (a JSON text); returns its code; *res is the parsed result or NULL */
static int call(const sm_plugin_desc *d, const char *params, json_t **res, sm_error *e) {
    host_reset(&H);
    memset(e, 0, sizeof *e);
    int rc = d->run(&API, &H, params, "{}", e);
    *res = NULL;
    if (H.result) {
        json_error_t je;
        *res = json_loads(H.result, 0, &je);
        if (!*res) FAILF("result is not JSON: %s", je.text);
    }
    return rc;
}

static double num(json_t *o, const char *path1, const char *path2) {
    json_t *v = json_object_get(o, path1);
    if (path2) v = json_object_get(v, path2);
    if (!json_is_number(v)) FAILF("result has no number at %s%s%s", path1, path2 ? "." : "", path2 ? path2 : "");
    return json_number_value(v);
}

TEST(schemas_declare_the_contract) {
    static const char *names[] = {"fit", "extrapolate", "compare", "plot"};
    static const char *params[][12] = {{"domains", "base", "runs", "lower", "budget", "interpolant", "on_bad_fit", "noise",
                                        "noise_pool", "on_noise", "boot", "seed"},
                                       {"from", "budget", "steps", "actual"},
                                       {"curves", "target", "metric"},
                                       {"kind", "title", "data", "file"}};
    for (int i = 0; i < 4; i++) {
        const sm_plugin_desc *d = load(names[i]);
        json_error_t je;
        json_t *s = json_loads(d->params_schema, 0, &je);
        CHECK_MSG(json_is_object(s), "%s: schema is not a JSON object: %s", names[i], je.text);
        size_t n = 0;
        for (int k = 0; k < 12 && params[i][k]; k++, n++) {
            json_t *p = json_object_get(s, params[i][k]);
            CHECK_MSG(json_is_object(p) && json_is_string(json_object_get(p, "type")), "%s: no parameter %s", names[i],
                      params[i][k]);
        }
        CHECK_EQ_INT(json_object_size(s), n);
        json_decref(s);
        CHECK(d->version && d->description && d->cache_salt && d->run);
    }
}

/* synthetic truth: normalized responses y_d(x) = (x + a)^-b + c with c chosen so that y_d(1) = 1 */
static const char *DOMS[3] = {"books", "code", "web"};
static const double TRUTH[3][2] = {{0.5, 0.3}, {0.1, 0.6}, {1.0, 0.15}};
static const double BASE_TOK[3] = {1e6, 5e5, 2e6}, BASE_METRIC = 25.0;
static double truth_y(int d, double x) {
    double a = TRUTH[d][0], b = TRUTH[d][1], c = 1 - pow(1 + a, -b);
    return sm_fit_eval(a, b, c, x);
}

/* the fit's parameters as JSON text: domains, base {tokens, metric}, runs, then extra (a JSON object) merged in;
 * takes the references */
static char *fit_params_json(json_t *doms, json_t *tok, json_t *base_metric, json_t *runs, const char *extra) {
    json_t *p = json_object();
    json_object_set_new(p, "domains", doms);
    json_object_set_new(p, "base", json_pack("{s:o,s:o}", "tokens", tok, "metric", base_metric));
    json_object_set_new(p, "runs", runs);
    if (extra) {
        json_t *x = json_loads(extra, 0, NULL);
        json_object_update(p, x);
        json_decref(x);
    }
    char *s = json_dumps(p, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(p);
    return s;
}

static char *fit_params(const double *factors, int nf, const char *extra) {
    json_t *doms = json_array(), *tok = json_object(), *runs = json_array();
    for (int d = 0; d < 3; d++) {
        json_array_append_new(doms, json_string(DOMS[d]));
        json_object_set_new(tok, DOMS[d], json_real(BASE_TOK[d]));
        for (int k = 0; k < nf; k++)
            json_array_append_new(runs, json_pack("{s:s,s:f,s:f}", "domain", DOMS[d], "factor", factors[k], "metric",
                                                  BASE_METRIC * truth_y(d, factors[k])));
    }
    return fit_params_json(doms, tok, json_real(BASE_METRIC), runs, extra);
}

TEST(fit_recovers_truth_and_optimum) {
    const sm_plugin_desc *d = load("fit");
    double factors[2] = {0.2, 3.0};
    /* the truths have the smaller exponent of the two exact interpolants: "power" */
    char *params = fit_params(factors, 2, "{\"lower\": null, \"budget\": null, \"interpolant\": \"power\"}");
    json_t *r;
    sm_error e;
    CHECK_MSG(call(d, params, &r, &e) == 0, "%s", e.msg);
    free(params);
    CHECK(r);
    CHECK_NEAR(num(r, "lower", NULL), 0.2, 0);      /* default: the smallest factor */
    CHECK_NEAR(num(r, "budget", NULL), 3.5e6, 1e-6); /* default: the base total */
    double a[3], b[3], wsum = 0, tsum = 0;
    for (int k = 0; k < 3; k++) {
        json_t *pk = json_object_get(json_object_get(r, "params"), DOMS[k]);
        a[k] = num(pk, "a", NULL);
        b[k] = num(pk, "b", NULL);
        CHECK_NEAR(a[k], TRUTH[k][0], 1e-9);
        CHECK_NEAR(b[k], TRUTH[k][1], 1e-9);
        CHECK_NEAR(num(pk, "c", NULL), 1 - pow(1 + TRUTH[k][0], -TRUTH[k][1]), 1e-9);
        CHECK(num(r, "rmse", DOMS[k]) < 1e-12);
        CHECK_EQ_INT(json_array_size(json_object_get(json_object_get(r, "flags"), DOMS[k])), 0);
        CHECK_EQ_INT(json_array_size(json_object_get(json_object_get(r, "points"), DOMS[k])), 3);
        wsum += num(r, "weights", DOMS[k]);
        tsum += num(r, "tokens", DOMS[k]);
    }
    CHECK_NEAR(wsum, 1, 1e-14);
    CHECK_NEAR(tsum, 3.5e6, 1e-6);
    CHECK(num(r, "kkt", "max_violation") < 1e-10);
    /* the optimum of the true curves, solved here directly */
    double n[3];
    sm_wf_problem p = {3, a, b, BASE_TOK, 0.2, 3.5e6};
    CHECK_EQ_INT(sm_wf_solve(&p, n, NULL, NULL), 0);
    for (int k = 0; k < 3; k++) CHECK_NEAR(num(r, "tokens", DOMS[k]), n[k] * BASE_TOK[k], 1e-3);
    /* lineage: three fits and one DDO mixture, plus f64 arrays in domain order */
    CHECK_EQ_INT(H.nfits, 3);
    CHECK_EQ_STR(H.fit_dom[1], "code");
    CHECK_NEAR(H.fit_abc[1][1], 0.6, 1e-9);
    CHECK_EQ_INT(H.nmix, 1);
    CHECK_EQ_STR(H.mix_method[0], "ddo");
    CHECK_NEAR(H.mix_budget[0], 3.5e6, 1e-6);
    CHECK_EQ_STR(H.mix_dom[0][2], "web");
    CHECK_NEAR(H.mix_w[0][2], num(r, "weights", "web"), 1e-15);
    CHECK_EQ_INT(H.nf64, 2);
    CHECK_EQ_STR(H.f64_name[0], "weights");
    CHECK_NEAR(H.f64[0][0], num(r, "weights", "books"), 1e-15);
    json_decref(r);
}

/* The default is the authors' curve ("saturating", the larger exponent); "power" on request. Both pass through
 * the same points, and each result carries the other's curves and optimum. */
TEST(fit_saturating_interpolant) {
    const sm_plugin_desc *d = load("fit");
    double factors[2] = {0.2, 3.0};
    char *params = fit_params(factors, 2, "{\"interpolant\": \"power\"}");
    json_t *r1, *r2;
    sm_error e;
    CHECK_MSG(call(d, params, &r1, &e) == 0, "%s", e.msg);
    free(params);
    params = fit_params(factors, 2, NULL);
    CHECK_MSG(call(d, params, &r2, &e) == 0, "%s", e.msg);
    free(params);
    CHECK_EQ_STR(json_string_value(json_object_get(r2, "interpolant")), "saturating");
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(r2, "other"), "interpolant")), "power");
    for (int k = 0; k < 3; k++) {
        json_t *alt1 = json_object_get(json_object_get(r1, "alternatives"), DOMS[k]);
        json_t *p2 = json_object_get(json_object_get(r2, "params"), DOMS[k]);
        CHECK(json_is_object(alt1));
        CHECK_NEAR(num(p2, "b", NULL), num(alt1, "b", NULL), 1e-12);
        CHECK(num(p2, "b", NULL) > num(json_object_get(r1, "params"), DOMS[k], "b"));
        CHECK(num(r2, "max_residual", DOMS[k]) < 1e-10);
        /* the default's "other" is exactly what "power" gives */
        json_t *o = json_object_get(r2, "other");
        CHECK_NEAR(num(json_object_get(o, "params"), DOMS[k], "b"), num(json_object_get(r1, "params"), DOMS[k], "b"), 0);
        CHECK_NEAR(num(o, "weights", DOMS[k]), num(r1, "weights", DOMS[k]), 0);
        CHECK_NEAR(num(json_object_get(r1, "other"), "weights", DOMS[k]), num(r2, "weights", DOMS[k]), 0);
    }
    CHECK(num(r2, "kkt", "max_violation") < 1e-10);
    CHECK(fabs(num(r2, "weights", "books") - num(r1, "weights", "books")) > 1e-6); /* a different curve, a different optimum */
    json_decref(r1);
    json_decref(r2);
    CHECK_EQ_INT(call(d, "{\"domains\": [\"a\"], \"interpolant\": \"cubic\", \"base\": {\"tokens\": {\"a\": 1e6}, \"metric\": 20},"
                         " \"runs\": [{\"domain\": \"a\", \"factor\": 0.2, \"metric\": 21}, {\"domain\": \"a\", \"factor\": 3, \"metric\": 19}]}",
                      &r1, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "interpolant"));
}

/* The authors' own DDO matrix: GPT-2 Large at 1.2B tokens, validation perplexity averaged over the 7
 * RedPajama domains (last column of `resmat`), base run with uniform weights, then each domain at 1/5 and at
 * 3 times its base quantity. Numbers copied from feiyang-k/AutoScale, algorithms/DDO_example.ipynb (cells
 * "resmat", the curve_fit output, and the projected-gradient optimum `nvec`, GitHub at the 0.2 bound). */
static const char *AUTH_DOMS[7] = {"common_crawl", "github", "books", "wiki", "c4", "stackexchange", "arxiv"};
static const double AUTH_BASE = 28.11373645;
static const double AUTH_FIFTH[7] = {30.11152249, 28.37687875, 29.85955983, 29.90195668, 30.37704005, 29.23766591, 28.92552215};
static const double AUTH_THREE[7] = {25.78619752, 27.68033216, 26.25833879, 26.47376351, 25.49797272, 27.01485416, 27.24200395};
static const double AUTH_ABC[7][3] = {{2.6658731959247985, 1.2492023890295736, 0.8026540600177617},
                                      {6.616175591939301, 1.4360012483967404, 0.9458217913242287},
                                      {2.673602759483928, 1.5362602612056064, 0.8645212064449814},
                                      {2.4631072679557477, 1.8287307258995613, 0.8968517051583392},
                                      {2.518384099486731, 1.1858721474138574, 0.775039246658818},
                                      {2.889957893044303, 1.9536275987550742, 0.9296170669705276},
                                      {3.31917392337233, 1.926671000555819, 0.9403250708425615}};
static const double AUTH_N[7] = {1.62475352, 0.2, 1.27415166, 1.17979573, 1.8518998, 0.63716376, 0.23223551};

static char *authors_params(void) {
    json_t *doms = json_array(), *tok = json_object(), *runs = json_array();
    for (int d = 0; d < 7; d++) {
        json_array_append_new(doms, json_string(AUTH_DOMS[d]));
        json_object_set_new(tok, AUTH_DOMS[d], json_real(1.2e9 / 7));
        json_array_append_new(runs, json_pack("{s:s,s:f,s:f}", "domain", AUTH_DOMS[d], "factor", 0.2, "metric", AUTH_FIFTH[d]));
        json_array_append_new(runs, json_pack("{s:s,s:f,s:f}", "domain", AUTH_DOMS[d], "factor", 3.0, "metric", AUTH_THREE[d]));
    }
    return fit_params_json(doms, tok, json_real(AUTH_BASE), runs, NULL);
}

TEST(fit_authors_matrix_gives_authors_optimum_by_default) {
    const sm_plugin_desc *d = load("fit");
    char *params = authors_params();
    json_t *r;
    sm_error e;
    CHECK_MSG(call(d, params, &r, &e) == 0, "%s", e.msg);
    free(params);
    double maxdw = 0, maxdw_other = 0;
    for (int k = 0; k < 7; k++) {
        json_t *pk = json_object_get(json_object_get(r, "params"), AUTH_DOMS[k]);
        CHECK_NEAR(num(pk, "a", NULL), AUTH_ABC[k][0], 1e-4 * AUTH_ABC[k][0]);
        CHECK_NEAR(num(pk, "b", NULL), AUTH_ABC[k][1], 1e-4 * AUTH_ABC[k][1]);
        CHECK_NEAR(num(pk, "c", NULL), AUTH_ABC[k][2], 1e-4);
        double dw = fabs(num(r, "weights", AUTH_DOMS[k]) - AUTH_N[k] / 7);
        double dwo = fabs(num(json_object_get(r, "other"), "weights", AUTH_DOMS[k]) - AUTH_N[k] / 7);
        if (dw > maxdw) maxdw = dw;
        if (dwo > maxdw_other) maxdw_other = dwo;
    }
    printf("  authors' matrix: max |weight - authors'| %.2e by default, %.2e with the other interpolant\n", maxdw, maxdw_other);
    CHECK(maxdw < 1e-6);
    CHECK(maxdw_other > 1e-3); /* the other curve is a different answer: the default matters */
    CHECK_NEAR(num(r, "n", "github"), 0.2, 1e-12); /* at the lower bound, as in the notebook */
    CHECK_EQ_STR(json_string_value(json_object_get(r, "noise_source")), "unknown");
    CHECK(json_is_null(json_object_get(json_object_get(r, "ci"), "github")));
    json_decref(r);
}

/* ---- recovery of known truth with noise: normalised responses from known curves, every run's metric
 * multiplied by exp(sigma z); the base run repeated REPS times, the perturbed runs once. */
#define STR_(x) #x
#define STR(x) STR_(x)
#define NOISE_BOOT 100
enum { NOISE_REPS = 4, NOISE_SEEDS = 100 };

/* the truths as the default (saturating) interpolant returns them: the noise-free fit of the 3 points */
static void noise_free_truth(double abc[3][3], double w[3]) {
    const sm_plugin_desc *d = load("fit");
    double factors[2] = {0.2, 3.0};
    char *params = fit_params(factors, 2, NULL);
    json_t *r;
    sm_error e;
    CHECK_MSG(call(d, params, &r, &e) == 0, "%s", e.msg);
    free(params);
    for (int k = 0; k < 3; k++) {
        json_t *pk = json_object_get(json_object_get(r, "params"), DOMS[k]);
        abc[k][0] = num(pk, "a", NULL), abc[k][1] = num(pk, "b", NULL), abc[k][2] = num(pk, "c", NULL);
        w[k] = num(r, "weights", DOMS[k]);
    }
    json_decref(r);
}

/* effect[k] scales domain k's departure from the base run (1: the curve itself, small: nearly flat) */
static char *noisy_params(const double abc[3][3], const double *effect, double sigma, sm_rng *rng, const char *extra) {
    static const double f[2] = {0.2, 3.0};
    json_t *doms = json_array(), *tok = json_object(), *runs = json_array(), *base = json_array();
    for (int r = 0; r < NOISE_REPS; r++) json_array_append_new(base, json_real(BASE_METRIC * exp(sigma * sm_rng_normal(rng))));
    for (int d = 0; d < 3; d++) {
        json_array_append_new(doms, json_string(DOMS[d]));
        json_object_set_new(tok, DOMS[d], json_real(BASE_TOK[d]));
        for (int k = 0; k < 2; k++) {
            double y = 1 + effect[d] * (sm_fit_eval(abc[d][0], abc[d][1], abc[d][2], f[k]) - 1);
            json_array_append_new(runs, json_pack("{s:s,s:f,s:[f]}", "domain", DOMS[d], "factor", f[k], "metric",
                                                  BASE_METRIC * y * exp(sigma * sm_rng_normal(rng))));
        }
    }
    return fit_params_json(doms, tok, base, runs, extra);
}

static int has_flag(json_t *r, const char *dom, const char *flag) {
    json_t *fl = json_object_get(json_object_get(r, "flags"), dom);
    for (size_t i = 0; i < json_array_size(fl); i++)
        if (!strcmp(json_string_value(json_array_get(fl, i)), flag)) return 1;
    return 0;
}

/* The 90% intervals cover the true optimum's weights at about their nominal rate, and the noise estimate
 * is about the noise put in. */
TEST(fit_intervals_cover_the_truth) {
    const sm_plugin_desc *d = load("fit");
    double abc[3][3], wtrue[3], effect[3] = {1, 1, 1}, sigma = 0.01;
    noise_free_truth(abc, wtrue);
    sm_rng *rng = sm_rng_new(7);
    int covered[3] = {0}, runs = 0;
    double noise_sum = 0, width_sum = 0;
    for (int s = 0; s < NOISE_SEEDS; s++) {
        char *params = noisy_params(abc, effect, sigma, rng, "{\"boot\": " STR(NOISE_BOOT) "}");
        json_t *r;
        sm_error e;
        CHECK_MSG(call(d, params, &r, &e) == 0, "%s", e.msg);
        free(params);
        CHECK_EQ_STR(json_string_value(json_object_get(r, "noise_source")), "repeats");
        noise_sum += num(r, "noise", "books");
        for (int k = 0; k < 3; k++) {
            json_t *ci = json_object_get(json_object_get(r, "ci"), DOMS[k]);
            double lo = num(ci, "lo", NULL), hi = num(ci, "hi", NULL);
            CHECK(lo <= hi);
            covered[k] += lo <= wtrue[k] && wtrue[k] <= hi;
            width_sum += hi - lo;
            CHECK(!has_flag(r, DOMS[k], "within_noise")); /* effects far above the noise */
        }
        CHECK_EQ_INT(json_array_size(json_object_get(r, "boot")), NOISE_BOOT);
        runs++;
        json_decref(r);
    }
    sm_rng_free(rng);
    printf("  coverage of the true weights by the 90%% intervals over %d seeds (sigma %.2g): books %.3f, code %.3f, web %.3f;"
           " mean width %.4f; mean noise estimate %.4f\n", runs, sigma, covered[0] / (double)runs, covered[1] / (double)runs,
           covered[2] / (double)runs, width_sum / (3.0 * runs), noise_sum / runs);
    /* books and code are off the lower bound; web's true optimum is at it (0.2 x its base share), where every
     * interval reaches the bound */
    CHECK_NEAR(wtrue[2], 0.2 * BASE_TOK[2] / 3.5e6, 1e-12);
    CHECK_EQ_INT(covered[2], runs);
    for (int k = 0; k < 2; k++) {
        CHECK(covered[k] >= 0.8 * runs);
        CHECK(covered[k] <= 0.97 * runs);
    }
    CHECK(noise_sum / runs > 0.7 * sigma && noise_sum / runs < 1.2 * sigma);
}

/* A domain whose effect is below the noise is flagged within_noise (and held at its base quantity unless
 * on_noise = "fit"); one far above it is not. */
TEST(fit_within_noise_flags_the_weak_domain_only) {
    const sm_plugin_desc *d = load("fit");
    double abc[3][3], wtrue[3], effect[3] = {1, 0.005, 1}, sigma = 0.01;
    noise_free_truth(abc, wtrue);
    sm_rng *rng = sm_rng_new(11);
    int weak = 0, strong = 0, n = 100;
    for (int s = 0; s < n; s++) {
        char *params = noisy_params(abc, effect, sigma, rng, "{\"boot\": 0}");
        json_t *r;
        sm_error e;
        CHECK_MSG(call(d, params, &r, &e) == 0, "%s", e.msg);
        free(params);
        if (has_flag(r, "code", "within_noise")) {
            weak++;
            CHECK(has_flag(r, "code", "held_at_base"));
            CHECK_NEAR(num(r, "n", "code"), 1, 0);
        }
        strong += has_flag(r, "books", "within_noise") + has_flag(r, "web", "within_noise");
        CHECK(num(r, "snr", "books") > 3);
        json_decref(r);
    }
    printf("  within_noise: the weak domain (effect ~%.1f%% at x = 0.2, noise sd 1%%) flagged in %d of %d seeds, the strong "
           "ones in %d of %d\n", 100 * effect[1] * (sm_fit_eval(abc[1][0], abc[1][1], abc[1][2], 0.2) - 1), weak, n, strong, 2 * n);
    CHECK(weak >= 0.8 * n);
    CHECK_EQ_INT(strong, 0);
    /* on_noise = "fit": flagged but optimised (a flat domain, the noise given instead of measured) */
    effect[1] = 0;
    char *params = noisy_params(abc, effect, 0, rng, "{\"boot\": 0, \"on_noise\": \"fit\", \"noise\": 0.01}");
    json_t *r;
    sm_error e;
    CHECK_MSG(call(d, params, &r, &e) == 0, "%s", e.msg);
    free(params);
    CHECK_EQ_STR(json_string_value(json_object_get(r, "noise_source")), "given");
    CHECK(has_flag(r, "code", "within_noise") && !has_flag(r, "code", "held_at_base"));
    json_decref(r);
    sm_rng_free(rng);
}

/* Common random numbers: every run of seed r shares the seed's effect (sd SEED_SD in log(metric), the
 * initialisation and data order) and adds its own noise (sd RUN_SD); every run, base and perturbed, has the
 * same PAIRED_REPS seeds. with_seeds = 0 leaves the seeds out, so the same data is analysed as independent runs. */
#define SEED_SD 0.03
#define RUN_SD 0.007
enum { PAIRED_REPS = 3, PAIRED_SEEDS = 200, UNPAIRED_TOO = 30 };
static char *paired_params(const double abc[3][3], const double *effect, sm_rng *rng, int with_seeds, const char *extra) {
    static const double f[2] = {0.2, 3.0};
    double seed_effect[PAIRED_REPS];
    json_t *seeds = json_array(), *base = json_array(), *doms = json_array(), *tok = json_object(), *runs = json_array();
    for (int r = 0; r < PAIRED_REPS; r++) {
        seed_effect[r] = SEED_SD * sm_rng_normal(rng);
        json_array_append_new(seeds, json_integer(r + 1));
        json_array_append_new(base, json_real(BASE_METRIC * exp(seed_effect[r] + RUN_SD * sm_rng_normal(rng))));
    }
    for (int d = 0; d < 3; d++) {
        json_array_append_new(doms, json_string(DOMS[d]));
        json_object_set_new(tok, DOMS[d], json_real(BASE_TOK[d]));
        for (int k = 0; k < 2; k++) {
            double y = 1 + effect[d] * (sm_fit_eval(abc[d][0], abc[d][1], abc[d][2], f[k]) - 1);
            json_t *v = json_array();
            for (int r = 0; r < PAIRED_REPS; r++)
                json_array_append_new(v, json_real(BASE_METRIC * y * exp(seed_effect[r] + RUN_SD * sm_rng_normal(rng))));
            json_t *run = json_pack("{s:s,s:f,s:o}", "domain", DOMS[d], "factor", f[k], "metric", v);
            if (with_seeds) json_object_set(run, "seeds", seeds);
            json_array_append_new(runs, run);
        }
    }
    char *s = fit_params_json(doms, tok, base, runs, extra);
    if (with_seeds) { /* the base run's seeds too */
        json_t *p = json_loads(s, 0, NULL);
        json_object_set(json_object_get(p, "base"), "seeds", seeds);
        free(s);
        s = json_dumps(p, JSON_COMPACT | JSON_REAL_PRECISION(17));
        json_decref(p);
    }
    json_decref(seeds);
    return s;
}

/* Paired by seed, the contrasts' noise is the runs' own (sqrt(2) RUN_SD), not the seeds' (SEED_SD): the
 * intervals cover the true weights at about their nominal rate and are several times narrower than the same
 * data analysed as independent runs; a weak domain is flagged within noise, the strong ones are not. */
TEST(fit_paired_by_seed_cover_the_truth_and_flag_the_weak) {
    const sm_plugin_desc *d = load("fit");
    double abc[3][3], wtrue[3], strong[3] = {1, 1, 1}, weak[3] = {1, 0.002, 1};
    noise_free_truth(abc, wtrue);
    sm_rng *rng = sm_rng_new(23);
    int covered[3] = {0}, runs = 0, flagged_weak = 0, flagged_strong = 0;
    double width[2] = {0}, noise_sum = 0;
    for (int s = 0; s < PAIRED_SEEDS; s++) {
        for (int with_seeds = 1; with_seeds >= (s < UNPAIRED_TOO ? 0 : 1); with_seeds--) {
            sm_rng *twin = sm_rng_new(1000 + (unsigned long)s); /* the same data both ways */
            char *params = paired_params(abc, strong, twin, with_seeds, "{\"boot\": " STR(NOISE_BOOT) "}");
            sm_rng_free(twin);
            json_t *r;
            sm_error e;
            CHECK_MSG(call(d, params, &r, &e) == 0, "%s", e.msg);
            free(params);
            CHECK(json_is_true(json_object_get(r, "paired")) == with_seeds);
            for (int k = 0; k < 3; k++) {
                json_t *ci = json_object_get(json_object_get(r, "ci"), DOMS[k]);
                double lo = num(ci, "lo", NULL), hi = num(ci, "hi", NULL);
                if (with_seeds) covered[k] += lo <= wtrue[k] && wtrue[k] <= hi;
                if (s < UNPAIRED_TOO) width[with_seeds] += hi - lo;
            }
            if (with_seeds) noise_sum += num(r, "noise", "books"), runs++;
            json_decref(r);
        }
        char *params = paired_params(abc, weak, rng, 1, "{\"boot\": 0}");
        json_t *r;
        sm_error e;
        CHECK_MSG(call(d, params, &r, &e) == 0, "%s", e.msg);
        free(params);
        flagged_weak += has_flag(r, "code", "within_noise");
        flagged_strong += has_flag(r, "books", "within_noise") + has_flag(r, "web", "within_noise");
        json_decref(r);
    }
    sm_rng_free(rng);
    printf("  paired by seed (seed sd %.2g, run sd %.2g, %d seeds): coverage books %.3f, code %.3f, web %.3f; mean width "
           "%.4f paired vs %.4f as independent runs (first %d); mean noise estimate %.4f (sqrt(2) run sd %.4f); within_noise: weak "
           "%d of %d, strong %d of %d\n", SEED_SD, RUN_SD, PAIRED_REPS, covered[0] / (double)runs, covered[1] / (double)runs,
           covered[2] / (double)runs, width[1] / (3.0 * UNPAIRED_TOO), width[0] / (3.0 * UNPAIRED_TOO), UNPAIRED_TOO, noise_sum / runs, sqrt(2) * RUN_SD,
           flagged_weak, runs, flagged_strong, 2 * runs);
    CHECK_EQ_INT(covered[2], runs); /* web's optimum is at the lower bound */
    for (int k = 0; k < 2; k++) {
        CHECK(covered[k] >= 0.8 * runs);
        CHECK(covered[k] <= 0.98 * runs);
    }
    CHECK(width[1] < 0.5 * width[0]);
    CHECK(noise_sum / runs > 0.8 * sqrt(2) * RUN_SD && noise_sum / runs < 1.2 * sqrt(2) * RUN_SD);
    CHECK(flagged_weak >= 0.8 * runs);
    CHECK_EQ_INT(flagged_strong, 0);
}

/* Seeds that cannot pair: said in the log and the runs treated as independent; malformed seeds refused. */
TEST(fit_seeds_pairing_rules_and_errors) {
    const sm_plugin_desc *d = load("fit");
    json_t *r;
    sm_error e;
    const char *head = "{\"domains\": [\"a\"], \"base\": {\"tokens\": {\"a\": 1e6}, \"metric\": [20, 20.4], \"seeds\": [1, 2]}, ";
    char buf[512];
    snprintf(buf, sizeof buf, "%s\"runs\": [{\"domain\": \"a\", \"factor\": 0.2, \"metric\": [21, 21.5], \"seeds\": [1, 2]},"
                              " {\"domain\": \"a\", \"factor\": 3, \"metric\": 19, \"seeds\": [1]}]}", head);
    CHECK_MSG(call(d, buf, &r, &e) == 0, "%s", e.msg);
    CHECK(json_is_false(json_object_get(r, "paired")));
    CHECK(strstr(H.log, "not paired by seed") && strstr(H.log, "runs[1]") && strstr(H.log, "one seed"));
    json_decref(r);
    snprintf(buf, sizeof buf, "%s\"runs\": [{\"domain\": \"a\", \"factor\": 0.2, \"metric\": [21, 21.5], \"seeds\": [1, 2]},"
                              " {\"domain\": \"a\", \"factor\": 3, \"metric\": [19, 19.2], \"seeds\": [2, 1]}]}", head);
    CHECK_MSG(call(d, buf, &r, &e) == 0, "%s", e.msg);
    CHECK(json_is_true(json_object_get(r, "paired")));
    /* paired: x3's contrast is the mean of log(19.2/20) and log(19/20.4) (its seeds in another order) */
    json_t *pt = json_array_get(json_object_get(json_object_get(r, "points"), "a"), 2);
    CHECK_NEAR(json_real_value(json_array_get(pt, 1)), exp(0.5 * (log(19.2 / 20) + log(19 / 20.4))), 1e-12);
    json_decref(r);
    snprintf(buf, sizeof buf, "%s\"runs\": [{\"domain\": \"a\", \"factor\": 0.2, \"metric\": [21, 21.5], \"seeds\": [1, 3]},"
                              " {\"domain\": \"a\", \"factor\": 3, \"metric\": [19, 19.2], \"seeds\": [1, 2]}]}", head);
    CHECK_MSG(call(d, buf, &r, &e) == 0, "%s", e.msg);
    CHECK(json_is_false(json_object_get(r, "paired")) && strstr(H.log, "a seed the base run does not"));
    json_decref(r);
    snprintf(buf, sizeof buf, "%s\"runs\": [{\"domain\": \"a\", \"factor\": 0.2, \"metric\": [21, 21.5], \"seeds\": [1]}]}", head);
    CHECK_EQ_INT(call(d, buf, &r, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "runs[0] has 2 metric(s), so 'seeds' must be a list of 2"));
    snprintf(buf, sizeof buf, "%s\"runs\": [{\"domain\": \"a\", \"factor\": 0.2, \"metric\": [21, 21.5], \"seeds\": [1, 1.5]}]}", head);
    CHECK_EQ_INT(call(d, buf, &r, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "seeds[1] that is not a whole number"));
    snprintf(buf, sizeof buf, "%s\"runs\": [{\"domain\": \"a\", \"factor\": 0.2, \"metric\": [21, 21.5], \"seeds\": [2, 2]}]}", head);
    CHECK_EQ_INT(call(d, buf, &r, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "lists seed 2 twice"));
}

TEST(fit_least_squares_with_more_factors_and_budget) {
    const sm_plugin_desc *d = load("fit");
    double factors[4] = {0.2, 0.5, 2.0, 3.0};
    char *params = fit_params(factors, 4, "{\"lower\": 0.3, \"budget\": 1e7}");
    json_t *r;
    sm_error e;
    CHECK_MSG(call(d, params, &r, &e) == 0, "%s", e.msg);
    free(params);
    CHECK_NEAR(num(r, "lower", NULL), 0.3, 0);
    CHECK_NEAR(num(r, "budget", NULL), 1e7, 0);
    for (int k = 0; k < 3; k++) {
        CHECK_NEAR(num(json_object_get(r, "params"), DOMS[k], "b"), TRUTH[k][1], 1e-7);
        CHECK(json_is_false(json_object_get(json_object_get(r, "exact"), DOMS[k])));
        CHECK(num(r, "n", DOMS[k]) >= 0.3);
    }
    CHECK(num(r, "kkt", "max_violation") < 1e-10);
    json_decref(r);
}

TEST(fit_flags_bad_data) {
    const sm_plugin_desc *d = load("fit");
    /* web gets worse with more web data */
    const char *params =
        "{\"domains\": [\"code\", \"web\"], \"base\": {\"tokens\": {\"code\": 1e6, \"web\": 1e6}, \"metric\": 20},"
        " \"runs\": [{\"domain\": \"code\", \"factor\": 0.2, \"metric\": 21.6}, {\"domain\": \"code\", \"factor\": 3, \"metric\": 19.2},"
        "          {\"domain\": \"web\", \"factor\": 0.2, \"metric\": 19.5}, {\"domain\": \"web\", \"factor\": 3, \"metric\": 20.4}],"
        " \"lower\": null, \"budget\": null}";
    json_t *r;
    sm_error e;
    CHECK_MSG(call(d, params, &r, &e) == 0, "%s", e.msg);
    json_t *fl = json_object_get(json_object_get(r, "flags"), "web");
    CHECK(json_array_size(fl) >= 2);
    int nm = 0, ne = 0;
    for (size_t i = 0; i < json_array_size(fl); i++) {
        const char *s = json_string_value(json_array_get(fl, i));
        nm += s && !strcmp(s, "non_monotone");
        ne += s && !strcmp(s, "non_positive_exponent");
    }
    CHECK(nm == 1 && ne == 1);
    CHECK_EQ_INT(json_array_size(json_object_get(json_object_get(r, "flags"), "code")), 0);
    CHECK(H.warns >= 1);
    /* the domain that does not benefit stays at the bound */
    CHECK_NEAR(num(r, "n", "web"), 0.2, 1e-15);
    json_decref(r);
}

TEST(fit_param_errors) {
    const sm_plugin_desc *d = load("fit");
    json_t *r;
    sm_error e;
    CHECK_EQ_INT(call(d, "{\"domains\": [\"a\"], \"runs\": []}", &r, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "'base' is missing"));
    CHECK(r == NULL);
    CHECK_EQ_INT(call(d, "{\"domains\": [\"a\"], \"base\": {\"tokens\": {\"a\": 1e6}, \"metric\": 20},"
                         " \"runs\": [{\"domain\": \"a\", \"factor\": 0.2, \"metric\": 21}]}", &r, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "'a' has 2 point(s)") && strstr(e.msg, "at least 3"));
    CHECK_EQ_INT(call(d, "{\"domains\": [\"a\"], \"base\": {\"tokens\": {\"a\": 1e6}, \"metric\": 20},"
                         " \"runs\": [{\"domain\": \"zz\", \"factor\": 0.2, \"metric\": 21}]}", &r, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "unknown domain 'zz'"));
    CHECK_EQ_INT(call(d, "{\"domains\": [\"a\", \"b\"], \"base\": {\"tokens\": {\"a\": 1e6}, \"metric\": 20}, \"runs\": []}", &r,
                      &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "no entry for domain 'b'"));
    CHECK_EQ_INT(call(d, "{\"domains\": [\"a\", \"a\"]}", &r, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "twice"));
    CHECK_EQ_INT(call(d, "[1, 2", &r, &e), SM_ERR_ARG);
    CHECK_EQ_INT(call(d, "{\"domains\": [\"a\"], \"base\": {\"tokens\": {\"a\": 1e6}, \"metric\": -3}, \"runs\": []}", &r, &e),
                 SM_ERR_ARG);
    CHECK(strstr(e.msg, "positive"));
    double factors[2] = {0.2, 3.0};
    char *params = fit_params(factors, 2, "{\"budget\": 1000}");
    CHECK_EQ_INT(call(d, params, &r, &e), SM_ERR_ARG);
    free(params);
    CHECK(strstr(e.msg, "below the lower bound"));
}

/* DDO optima of loss = sum beta_i N_i^-gamma_i at lambda1 q^k */
static const double BETA[3] = {3.0, 1.5, 0.8}, GAMMA[3] = {0.3, 0.5, 0.15};
static void model_opt(double lambda, double *n) {
    for (int i = 0; i < 3; i++) n[i] = pow(BETA[i] * GAMMA[i] / lambda, 1 / (GAMMA[i] + 1));
}
static json_t *tok_obj(const double *n) {
    return json_pack("{s:f,s:f,s:f}", DOMS[0], n[0], DOMS[1], n[1], DOMS[2], n[2]);
}
static char *ex_params(const double *n1, const double *n2, const char *extra, const double *actual) {
    json_t *p = json_object();
    json_object_set_new(p, "from", json_pack("[{s:f,s:o},{s:f,s:o}]", "budget", n1[0] + n1[1] + n1[2], "tokens", tok_obj(n1),
                                             "budget", n2[0] + n2[1] + n2[2], "tokens", tok_obj(n2)));
    if (actual) json_object_set_new(p, "actual", json_pack("{s:o}", "tokens", tok_obj(actual)));
    if (extra) {
        json_t *x = json_loads(extra, 0, NULL);
        json_object_update(p, x);
        json_decref(x);
    }
    char *s = json_dumps(p, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(p);
    return s;
}

TEST(extrapolate_steps_budget_and_validation) {
    const sm_plugin_desc *d = load("extrapolate");
    double n1[3], n2[3], n3[3], nh[3];
    model_opt(1e-7, n1);
    model_opt(2.5e-8, n2);
    model_opt(2.5e-8 / 4, n3);
    model_opt(1e-7 / 2, nh); /* t = 1/2 */
    json_t *r;
    sm_error e;
    char *p = ex_params(n1, n2, "{\"steps\": 1, \"budget\": null}", NULL);
    CHECK_MSG(call(d, p, &r, &e) == 0, "%s", e.msg);
    free(p);
    double b3 = n3[0] + n3[1] + n3[2];
    for (int i = 0; i < 3; i++) CHECK_NEAR(num(r, "tokens", DOMS[i]) / n3[i], 1, 1e-13);
    CHECK_NEAR(num(r, "budget", NULL) / b3, 1, 1e-13);
    CHECK_NEAR(num(r, "t", NULL), 2, 0);
    CHECK(json_is_null(json_object_get(r, "validation")));
    CHECK_EQ_INT(H.nmix, 1);
    CHECK_EQ_STR(H.mix_method[0], "autoscale");
    json_decref(r);
    /* the continuous form at the same budget, and at an arbitrary one */
    char extra[128];
    snprintf(extra, sizeof extra, "{\"budget\": %.17g}", b3);
    p = ex_params(n1, n2, extra, NULL);
    CHECK_MSG(call(d, p, &r, &e) == 0, "%s", e.msg);
    free(p);
    CHECK_NEAR(num(r, "t", NULL), 2, 1e-12);
    for (int i = 0; i < 3; i++) CHECK_NEAR(num(r, "tokens", DOMS[i]) / n3[i], 1, 1e-12);
    json_decref(r);
    p = ex_params(n1, n2, "{\"budget\": 123456789}", NULL);
    CHECK_MSG(call(d, p, &r, &e) == 0, "%s", e.msg);
    free(p);
    double s = 0, ws = 0;
    for (int i = 0; i < 3; i++) { s += num(r, "tokens", DOMS[i]); ws += num(r, "weights", DOMS[i]); }
    CHECK_NEAR(s, 123456789, 1e-6);
    CHECK_NEAR(ws, 1, 1e-14);
    json_decref(r);
    /* validation: the model's optimum at the geometric-mean budget is predicted exactly ... */
    p = ex_params(n1, n2, NULL, nh);
    CHECK_MSG(call(d, p, &r, &e) == 0, "%s", e.msg);
    free(p);
    json_t *v = json_object_get(r, "validation");
    CHECK(json_is_object(v));
    CHECK_NEAR(num(r, "t", NULL), 0.5, 1e-10);
    CHECK(num(v, "l1", NULL) < 1e-12);
    CHECK(num(v, "max_abs_weight_err", NULL) < 1e-12);
    CHECK(H.nmetrics >= 2);
    json_decref(r);
    /* ... and a different actual optimum shows up as an error */
    double off[3] = {nh[0] * 1.2, nh[1], nh[2] * 0.9};
    p = ex_params(n1, n2, NULL, off);
    CHECK_MSG(call(d, p, &r, &e) == 0, "%s", e.msg);
    free(p);
    v = json_object_get(r, "validation");
    CHECK(num(v, "l1", NULL) > 1e-3);
    CHECK_NEAR(num(v, "token_rel_err", "books"), num(r, "tokens", "books") / off[0] - 1, 1e-14);
    CHECK_NEAR(num(v, "budget", NULL), off[0] + off[1] + off[2], 1e-6);
    CHECK_NEAR(num(v, "weight_abs_err", "books") + num(v, "weight_abs_err", "code") + num(v, "weight_abs_err", "web"), 0,
               1e-14);
    json_decref(r);
}

/* Intervals carried through the extrapolation: the rule applied to each pair of replicates (the second fit's
 * columns in another order), and a weight under the lowest measured share flagged. */
TEST(extrapolate_propagates_replicates_and_flags_the_measured_range) {
    const sm_plugin_desc *d = load("extrapolate");
    json_t *r;
    sm_error e;
    CHECK_MSG(call(d, "{\"steps\": 1, \"from\": ["
                      "{\"budget\": 100, \"tokens\": {\"a\": 70, \"b\": 30}, \"domains\": [\"a\", \"b\"],"
                      " \"boot\": [[0.7, 0.3], [0.72, 0.28], [0.68, 0.32]], \"base_tokens\": {\"a\": 50, \"b\": 50}, \"min_factor\": 0.2},"
                      "{\"budget\": 200, \"tokens\": {\"a\": 180, \"b\": 20}, \"domains\": [\"b\", \"a\"],"
                      " \"boot\": [[0.1, 0.9], [0.09, 0.91], [0.11, 0.89], [0.1, 0.9]], \"base_tokens\": {\"a\": 100, \"b\": 100},"
                      " \"min_factor\": 0.2}]}", &r, &e) == 0, "%s", e.msg);
    double wb = num(r, "weights", "b"), nb = 400.0 / 30, na = 180.0 * 180 / 70;
    CHECK_NEAR(wb, nb / (na + nb), 1e-12);
    json_t *boot = json_object_get(r, "boot");
    CHECK_EQ_INT(json_array_size(boot), 3); /* pairs: the shorter list */
    CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(r, "domains"), 1)), "b");
    CHECK_NEAR(json_number_value(json_array_get(json_array_get(boot, 0), 1)), wb, 1e-12); /* replicate 0 is the estimate */
    double nb1 = 0.09 * 0.09 * 200 * 200 / 28, na1 = 0.91 * 0.91 * 200 * 200 / 72;
    CHECK_NEAR(json_number_value(json_array_get(json_array_get(boot, 1), 1)), nb1 / (na1 + nb1), 1e-12);
    json_t *ci = json_object_get(json_object_get(r, "ci"), "b");
    CHECK(num(ci, "lo", NULL) < wb && wb < num(ci, "hi", NULL));
    /* 0.2 x half the base: 0.1; b's extrapolated weight (0.028) is under it, a's is not */
    CHECK_NEAR(num(r, "measured_floor", "b"), 0.1, 1e-15);
    json_t *left = json_object_get(r, "left_measured_range");
    CHECK_EQ_INT(json_array_size(left), 1);
    CHECK_EQ_STR(json_string_value(json_array_get(left, 0)), "b");
    CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(json_object_get(r, "flags"), "b"), 0)), "below_measured_range");
    CHECK_EQ_INT(json_array_size(json_object_get(json_object_get(r, "flags"), "a")), 0);
    json_decref(r);
    /* a boot list whose columns are not named is refused */
    CHECK_EQ_INT(call(d, "{\"steps\": 1, \"from\": [{\"tokens\": {\"a\": 70, \"b\": 30}, \"boot\": [[0.7, 0.3]]},"
                         " {\"tokens\": {\"a\": 180, \"b\": 20}}]}", &r, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "domains"));
}

TEST(extrapolate_param_errors) {
    const sm_plugin_desc *d = load("extrapolate");
    double n1[3], n2[3];
    model_opt(1e-7, n1);
    model_opt(2.5e-8, n2);
    json_t *r;
    sm_error e;
    char *p = ex_params(n1, n2, "{\"steps\": 1, \"budget\": 1e9}", NULL);
    CHECK_EQ_INT(call(d, p, &r, &e), SM_ERR_ARG);
    free(p);
    CHECK(strstr(e.msg, "not both"));
    p = ex_params(n1, n2, NULL, NULL);
    CHECK_EQ_INT(call(d, p, &r, &e), SM_ERR_ARG);
    free(p);
    CHECK(strstr(e.msg, "'budget'"));
    p = ex_params(n2, n1, "{\"steps\": 1}", NULL);
    CHECK_EQ_INT(call(d, p, &r, &e), SM_ERR_ARG);
    free(p);
    CHECK(strstr(e.msg, "smaller budget first"));
    p = ex_params(n1, n2, "{\"steps\": 1.5}", NULL);
    CHECK_EQ_INT(call(d, p, &r, &e), SM_ERR_ARG);
    free(p);
    CHECK_EQ_INT(call(d, "{\"from\": [{\"tokens\": {\"a\": 1, \"b\": 2}}, {\"tokens\": {\"a\": 2, \"c\": 3}}], \"steps\": 1}", &r,
                      &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "domain 'b'"));
    CHECK_EQ_INT(call(d, "{\"from\": [{\"tokens\": {\"a\": 1}}], \"steps\": 1}", &r, &e), SM_ERR_ARG);
}

TEST(compare_speedups) {
    const sm_plugin_desc *d = load("compare");
    const char *params =
        "{\"curves\": {\"autoscale\": {\"steps\": [200, 400, 500, 600, 1000], \"values\": [35, 25, 22, 18, 15], \"final\": 15},"
        "             \"uniform\": {\"steps\": [250, 500, 750, 1000], \"values\": [40, 30, 24, 20], \"final\": 20},"
        "             \"strong\": {\"steps\": [500, 1000], \"values\": [20, 14], \"final\": 14}},"
        " \"target\": \"autoscale\", \"metric\": \"perplexity\"}";
    json_t *r;
    sm_error e;
    CHECK_MSG(call(d, params, &r, &e) == 0, "%s", e.msg);
    CHECK_NEAR(num(r, "speedup", "uniform"), 0.45, 1e-15);
    CHECK_NEAR(num(r, "steps_to_reach", "uniform"), 550, 1e-12);
    CHECK(json_is_null(json_object_get(json_object_get(r, "speedup"), "strong")));
    CHECK(json_is_null(json_object_get(json_object_get(r, "steps_to_reach"), "strong")));
    CHECK_NEAR(num(r, "final", "strong"), 14, 0);
    CHECK_NEAR(num(r, "final", "autoscale"), 15, 0);
    CHECK_EQ_INT(H.nmetrics, 1);
    CHECK_EQ_STR(H.metric_name[0], "speedup_vs_uniform");
    CHECK_NEAR(H.metric_v[0], 0.45, 1e-15);
    CHECK_EQ_INT(H.metric_step[0], 1000);
    json_decref(r);
    CHECK_EQ_INT(call(d, "{\"curves\": {\"a\": {\"steps\": [1], \"values\": [2], \"final\": 2}, \"b\": {\"steps\": [1], "
                         "\"values\": [2], \"final\": 2}}, \"target\": \"autoscale\"}", &r, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "no curve named 'autoscale'"));
    CHECK_EQ_INT(call(d, "{\"curves\": {\"autoscale\": {\"steps\": [1], \"values\": [2]}, \"b\": {\"steps\": [1], "
                         "\"values\": [2], \"final\": 2}}}", &r, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "curve 'autoscale' needs 'final'"));
    CHECK_EQ_INT(call(d, "{\"curves\": {\"autoscale\": {\"steps\": [1, 2], \"values\": [2]}, \"b\": {\"steps\": [1], "
                         "\"values\": [2]}}}", &r, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "2 steps but 1 values"));
    CHECK_EQ_INT(call(d, "{\"curves\": {\"autoscale\": {\"steps\": [1], \"values\": [2]}}, \"metric\": \"accuracy\"}", &r, &e),
                 SM_ERR_ARG);
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) { free(s); s = NULL; }
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

static void check_plot(const char *params, const char *file, const char *const *must) {
    const sm_plugin_desc *d = load("plot");
    json_t *r;
    sm_error e;
    CHECK_MSG(call(d, params, &r, &e) == 0, "%s", e.msg);
    CHECK_EQ_STR(json_string_value(json_object_get(r, "file")), file);
    CHECK_EQ_INT(strlen(json_string_value(json_object_get(r, "digest"))), 64);
    CHECK_EQ_INT(H.ncommit, 1);
    CHECK_EQ_STR(H.committed_kind, "plot");
    CHECK_EQ_STR(H.committed_name, file);
    char *svg = read_file(H.committed);
    CHECK(svg);
    const char *why = xml_check(svg, "svg");
    CHECK_MSG(why == NULL, "%s is not well-formed: %s", file, why);
    for (int i = 0; must[i]; i++) CHECK_MSG(strstr(svg, must[i]), "%s lacks %s", file, must[i]);
    char hex[65];
    sm_sha256_hex(svg, strlen(svg), hex);
    CHECK_EQ_STR(hex, json_string_value(json_object_get(r, "digest")));
    free(svg);
    unlink(H.committed);
    json_decref(r);
}

/* Repeated runs (seeds paired across mixtures): intervals on the per-seed speed-ups and final differences;
 * "not significant" exactly when the interval includes zero. */
static void seeds_json(char *out, size_t cap, const double *fin, int k, double offset) {
    size_t len = (size_t)snprintf(out, cap, "{\"repeats\": [");
    for (int r = 0; r < k; r++)
        len += (size_t)snprintf(out + len, cap - len, "%s{\"steps\": [100, 200, 300, 400], \"values\": [%g, %g, %g, %g], "
                                "\"final\": %g}", r ? ", " : "", 40 + offset, 30 + offset, 22 + offset, fin[r], fin[r]);
    snprintf(out + len, cap - len, "]}");
}

TEST(compare_intervals_over_seeds) {
    const sm_plugin_desc *d = load("compare");
    static const double as[3] = {15.0, 15.2, 14.9}, clearly_worse[3] = {20.0, 20.3, 19.8}, tied[3] = {15.5, 14.6, 15.3};
    char a[512], u[512], t[512], params[2048];
    seeds_json(a, sizeof a, as, 3, 0);
    seeds_json(u, sizeof u, clearly_worse, 3, 2);
    seeds_json(t, sizeof t, tied, 3, 0);
    snprintf(params, sizeof params, "{\"curves\": {\"autoscale\": %s, \"uniform\": %s, \"tied\": %s}}", a, u, t);
    json_t *r;
    sm_error e;
    CHECK_MSG(call(d, params, &r, &e) == 0, "%s", e.msg);
    json_t *su = json_object_get(json_object_get(r, "speedup_ci"), "uniform");
    json_t *fu = json_object_get(json_object_get(r, "final_diff"), "uniform");
    CHECK_EQ_INT(json_integer_value(json_object_get(su, "n")), 3);
    CHECK(num(su, "lo", NULL) > 0);
    CHECK(json_is_true(json_object_get(su, "significant")));
    CHECK(num(fu, "hi", NULL) < 0);
    CHECK_NEAR(num(fu, "value", NULL), (15.0 + 15.2 + 14.9 - 20.0 - 20.3 - 19.8) / 3, 1e-12);
    const char *sum_u = json_string_value(json_object_get(json_object_get(r, "summary"), "uniform"));
    CHECK(sum_u && !strstr(sum_u, "not significant"));
    /* the tied baseline: per-seed differences -0.5, +0.6, -0.4 straddle zero */
    json_t *ft = json_object_get(json_object_get(r, "final_diff"), "tied");
    CHECK(num(ft, "lo", NULL) < 0 && num(ft, "hi", NULL) > 0);
    CHECK(json_is_false(json_object_get(ft, "significant")));
    CHECK_EQ_STR(json_string_value(json_object_get(ft, "verdict")), "not significant");
    json_t *st = json_object_get(json_object_get(r, "speedup_ci"), "tied");
    CHECK(num(st, "lo", NULL) < 0 && num(st, "hi", NULL) > 0); /* the seed that ends worse gives a negative speed-up */
    const char *sum_t = json_string_value(json_object_get(json_object_get(r, "summary"), "tied"));
    CHECK(sum_t && strstr(sum_t, "not significant"));
    json_decref(r);
    /* one run per mixture: estimates, no intervals, said so */
    CHECK_MSG(call(d, "{\"curves\": {\"autoscale\": {\"steps\": [1, 2], \"values\": [3, 2], \"final\": 2}, \"u\": {\"steps\": "
                      "[1, 2], \"values\": [3, 2.5], \"final\": 2.5}}}", &r, &e) == 0, "%s", e.msg);
    CHECK(json_is_null(json_object_get(json_object_get(json_object_get(r, "speedup_ci"), "u"), "significant")));
    CHECK(strstr(json_string_value(json_object_get(json_object_get(r, "summary"), "u")), "no interval"));
    json_decref(r);
    /* repeats of one mixture must share their schedule */
    CHECK_EQ_INT(call(d, "{\"curves\": {\"autoscale\": {\"repeats\": [{\"steps\": [1, 2], \"values\": [3, 2], \"final\": 2}, "
                         "{\"steps\": [1, 3], \"values\": [3, 2], \"final\": 2}]}, \"u\": {\"steps\": [1, 2], \"values\": [3, 2.5], "
                         "\"final\": 2.5}}}", &r, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "evaluation schedule"));
}

/* One figure for the verdict: the final difference and its interval come from each run's final evaluation on
 * the fixed validation sample (`final`), not from the curve's last point (measured on a smaller sample). Here
 * the curves' ends say AutoScale wins by 3 in every seed; the final evaluations say the two are tied. */
TEST(compare_final_difference_from_the_final_evaluation) {
    const sm_plugin_desc *d = load("compare");
    static const double as_final[3] = {20.1, 19.7, 20.2}, u_final[3] = {19.9, 20.0, 20.0};
    char a[1024], u[1024], params[2304];
    size_t la = (size_t)snprintf(a, sizeof a, "{\"repeats\": ["), lu = (size_t)snprintf(u, sizeof u, "{\"repeats\": [");
    for (int r = 0; r < 3; r++) {
        la += (size_t)snprintf(a + la, sizeof a - la, "%s{\"steps\": [100, 200], \"values\": [30, %g], \"final\": %g}",
                               r ? ", " : "", 17.0 + 0.1 * r, as_final[r]);
        lu += (size_t)snprintf(u + lu, sizeof u - lu, "%s{\"steps\": [100, 200], \"values\": [31, %g], \"final\": %g}",
                               r ? ", " : "", 20.0 + 0.1 * r, u_final[r]);
    }
    snprintf(a + la, sizeof a - la, "]}");
    snprintf(u + lu, sizeof u - lu, "]}");
    snprintf(params, sizeof params, "{\"curves\": {\"autoscale\": %s, \"uniform\": %s}}", a, u);
    json_t *r;
    sm_error e;
    CHECK_MSG(call(d, params, &r, &e) == 0, "%s", e.msg);
    json_t *fu = json_object_get(json_object_get(r, "final_diff"), "uniform");
    double want = (20.1 + 19.7 + 20.2 - 19.9 - 20.0 - 20.0) / 3;
    CHECK_NEAR(num(fu, "value", NULL), want, 1e-12);
    CHECK_NEAR(num(fu, "mean_of_seeds", NULL), want, 1e-12);
    CHECK(num(fu, "lo", NULL) < 0 && num(fu, "hi", NULL) > 0);
    CHECK_EQ_STR(json_string_value(json_object_get(fu, "verdict")), "not significant");
    CHECK_NEAR(num(r, "final", "autoscale"), (20.1 + 19.7 + 20.2) / 3, 1e-12);
    CHECK_NEAR(num(r, "final", "uniform"), (19.9 + 20.0 + 20.0) / 3, 1e-12);
    /* the speed-up is still read off the curves, where AutoScale ends lower */
    CHECK(num(r, "speedup", "uniform") > 0);
    const char *sum = json_string_value(json_object_get(json_object_get(r, "summary"), "uniform"));
    CHECK(sum && strstr(sum, "final perplexity +0.0333") && strstr(sum, "not significant]"));
    json_decref(r);
}

/* Across many simulated experiments (3 seeds, run-to-run noise sd 0.3 on the final value), "not significant"
 * comes back about 90% of the time when the mixtures are equal, and practically never when they differ by 10 sd. */
TEST(compare_significance_rates) {
    const sm_plugin_desc *d = load("compare");
    sm_rng *rng = sm_rng_new(5);
    int ns_equal = 0, ns_apart = 0, trials = 200;
    for (int t = 0; t < 2 * trials; t++) {
        double delta = t < trials ? 0 : 3.0, a[3], b[3];
        for (int r = 0; r < 3; r++) {
            double seed_effect = 0.5 * sm_rng_normal(rng); /* shared by both mixtures of a seed (paired) */
            a[r] = 20 + seed_effect + 0.3 * sm_rng_normal(rng);
            b[r] = 20 + delta + seed_effect + 0.3 * sm_rng_normal(rng);
        }
        char ja[512], jb[512], params[1200];
        seeds_json(ja, sizeof ja, a, 3, 10);
        seeds_json(jb, sizeof jb, b, 3, 10);
        snprintf(params, sizeof params, "{\"curves\": {\"autoscale\": %s, \"uniform\": %s}}", ja, jb);
        json_t *r;
        sm_error e;
        CHECK_MSG(call(d, params, &r, &e) == 0, "%s", e.msg);
        int ns = json_is_false(json_object_get(json_object_get(json_object_get(r, "final_diff"), "uniform"), "significant"));
        if (t < trials) ns_equal += ns; else ns_apart += ns;
        json_decref(r);
    }
    sm_rng_free(rng);
    printf("  final-difference intervals over %d experiments each: \"not significant\" in %.3f of equal pairs, %.3f of pairs "
           "10 sd apart\n", trials, ns_equal / (double)trials, ns_apart / (double)trials);
    CHECK(ns_equal >= 0.84 * trials && ns_equal <= 0.96 * trials);
    CHECK(ns_apart <= 0.02 * trials);
}

TEST(plot_fit_from_fit_result) {
    /* the fit plugin's own result is the plot's data */
    const sm_plugin_desc *f = load("fit");
    double factors[2] = {0.2, 3.0};
    char *params = fit_params(factors, 2, "{\"noise\": 0.01, \"boot\": 20}"); /* a known noise: bars on the points */
    json_t *r;
    sm_error e;
    CHECK_MSG(call(f, params, &r, &e) == 0, "%s", e.msg);
    free(params);
    json_t *pp = json_pack("{s:s,s:s,s:o,s:s}", "kind", "fit", "title", "DDO fits", "data", r, "file", "fits.svg");
    char *ps = json_dumps(pp, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(pp);
    static const char *must[] = {"data-name=\"measured runs\"", "data-name=\"optimum\"", "books (b = ", "code (b = ",
                                 "web (b = ", "DDO fits", "<polyline", "class=\"errbar\"", NULL};
    check_plot(ps, "fits.svg", must);
    free(ps);
}

TEST(plot_weights_and_loss) {
    static const char *mw[] = {"data-name=\"code\"", "data-name=\"web\"", "token budget (log scale)", "<polyline", NULL};
    check_plot("{\"kind\": \"weights\", \"title\": null, \"file\": \"weights\", \"data\": {\"mixtures\": ["
               "{\"budget\": 3e7, \"weights\": {\"code\": 0.3, \"web\": 0.7}},"
               "{\"budget\": 1e7, \"weights\": {\"code\": 0.4, \"web\": 0.6}},"
               "{\"budget\": 1e9, \"weights\": {\"code\": 0.2, \"web\": 0.8}, \"label\": \"autoscale\"}]}}",
               "weights.svg", mw);
    static const char *ml[] = {"data-name=\"autoscale\"", "data-name=\"uniform\"", "training tokens", NULL};
    check_plot("{\"kind\": \"loss\", \"title\": \"Validation perplexity\", \"file\": null, \"data\": {\"curves\": {"
               "\"autoscale\": {\"steps\": [0, 100, 200], \"values\": [60, 30, 22], \"tokens_per_step\": 8192},"
               "\"uniform\": {\"steps\": [0, 100, 200], \"values\": [60, 33, 25], \"tokens_per_step\": 8192}}}}",
               "loss.svg", ml);
    /* intervals: error bars on weights, bands over seeds on curves, the end of training in its own panel */
    static const char *mwi[] = {"class=\"errbar\"", "data-name=\"web\"", NULL};
    check_plot("{\"kind\": \"weights\", \"file\": \"weights\", \"data\": {\"mixtures\": ["
               "{\"budget\": 1e7, \"weights\": {\"code\": 0.4, \"web\": 0.6}, \"ci\": {\"code\": {\"lo\": 0.3, \"hi\": 0.5},"
               " \"web\": {\"lo\": 0.5, \"hi\": 0.7}}},"
               "{\"budget\": 1e9, \"weights\": {\"code\": 0.2, \"web\": 0.8}}]}}", "weights.svg", mwi);
    static const char *mli[] = {"fill-opacity=\"0.2\"", "second half of training", "(log scale)", "band: their range", NULL};
    check_plot("{\"kind\": \"loss\", \"data\": {\"curves\": {"
               "\"autoscale\": {\"repeats\": [{\"steps\": [0, 100, 200], \"values\": [60, 30, 22]},"
               " {\"steps\": [0, 100, 200], \"values\": [61, 31, 23]}]},"
               "\"uniform\": {\"steps\": [0, 100, 200], \"values\": [60, 33, 25]}}}}", "loss.svg", mli);
}

TEST(plot_param_errors) {
    const sm_plugin_desc *d = load("plot");
    json_t *r;
    sm_error e;
    CHECK_EQ_INT(call(d, "{\"kind\": \"pie\", \"data\": {}}", &r, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "unknown kind"));
    CHECK_EQ_INT(call(d, "{\"kind\": \"loss\", \"data\": {\"curves\": {\"a\": {\"steps\": [1], \"values\": [1]}}},"
                         " \"file\": \"../evil.svg\"}", &r, &e), SM_ERR_ARG);
    CHECK(strstr(e.msg, "plain file name"));
    CHECK_EQ_INT(call(d, "{\"kind\": \"fit\", \"data\": {\"params\": {}}}", &r, &e), SM_ERR_ARG);
    CHECK_EQ_INT(call(d, "{\"kind\": \"weights\", \"data\": {\"mixtures\": [{\"budget\": -1, \"weights\": {}}]}}", &r, &e),
                 SM_ERR_ARG);
    CHECK_EQ_INT(H.ncommit, 0);
}

int main(void) {
    RUN(schemas_declare_the_contract);
    RUN(fit_recovers_truth_and_optimum);
    RUN(fit_saturating_interpolant);
    RUN(fit_authors_matrix_gives_authors_optimum_by_default);
    RUN(fit_intervals_cover_the_truth);
    RUN(fit_within_noise_flags_the_weak_domain_only);
    RUN(fit_paired_by_seed_cover_the_truth_and_flag_the_weak);
    RUN(fit_seeds_pairing_rules_and_errors);
    RUN(fit_least_squares_with_more_factors_and_budget);
    RUN(fit_flags_bad_data);
    RUN(fit_param_errors);
    RUN(extrapolate_steps_budget_and_validation);
    RUN(extrapolate_propagates_replicates_and_flags_the_measured_range);
    RUN(extrapolate_param_errors);
    RUN(compare_speedups);
    RUN(compare_intervals_over_seeds);
    RUN(compare_final_difference_from_the_final_evaluation);
    RUN(compare_significance_rates);
    RUN(plot_fit_from_fit_result);
    RUN(plot_weights_and_loss);
    RUN(plot_param_errors);
    host_reset(&H);
    rmdir(H.outdir);
    TEST_EXIT();
}
