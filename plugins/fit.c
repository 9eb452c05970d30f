/* fit.c - the "fit" stage: DDO's per-domain power laws from a base run and perturbed runs, then the exact
 * water-filling optimum. Works on numbers typed in by hand as well as on ablate's output (via Lua).
 * Repeated measurements (a list of metrics for the base run or a perturbed run) give the noise, each
 * domain's signal-to-noise, and 90% intervals for the weights by a parametric bootstrap; the method is in
 * core/autoscale/README.md ("Noise and intervals"). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "autoscale/sm_asjson.h"
#include "autoscale/sm_ddo.h"
#include "autoscale/sm_stats.h"
#include "sm_plugin.h"

#define STAGE "fit"
/* The authors' procedure (curve_fit from their notebook's start) lands on the larger-b curve. */
#define DEFAULT_INTERPOLANT "saturating"
#define DEFAULT_BOOT 400
/* With 2-3 seeds a domain's own noise estimate has 2-4 degrees of freedom; the domains' estimates differ no more
 * than that allows in the demo's runs (README, "Noise study"), so one pooled estimate is the default. */
#define DEFAULT_NOISE_POOL "all"
/* A domain's contrasts are within noise when none differs from the base run at this two-sided level (Student's t
 * with the noise estimate's degrees of freedom). */
#define NOISE_TEST_LEVEL 0.95

#define STR_(x) #x
#define STR(x) STR_(x)

static const char schema[] =
    "{\"domains\": {\"type\": \"array\", \"required\": true, \"doc\": \"domain names; results are reported for these\"},"
    " \"base\": {\"type\": \"object\", \"required\": true,"
    "   \"doc\": \"the base run: {tokens: {domain: N_i^base}, metric: m or [m, ...] (repeats), seeds: [s, ...] (optional, "
    "one per metric)}\"},"
    " \"runs\": {\"type\": \"array\", \"required\": true,"
    "   \"doc\": \"perturbed runs [{domain, factor, metric: m or [m, ...], seeds}], factor = N_i / N_i^base of the perturbed "
    "domain; when every run has at least two seeds, all among the base run's, contrasts are paired by seed\"},"
    " \"lower\": {\"type\": \"number\", \"default\": null,"
    "   \"doc\": \"lower bound on N_i / N_i^base; default the smallest factor (the fit is not trusted below it)\"},"
    " \"budget\": {\"type\": \"number\", \"default\": null, \"doc\": \"token budget to allocate; default the base run's total\"},"
    " \"interpolant\": {\"type\": \"string\", \"default\": \"" DEFAULT_INTERPOLANT "\","
    "   \"doc\": \"with 3 points two curves interpolate exactly: saturating (larger exponent, the authors' curve) or power\"},"
    " \"on_bad_fit\": {\"type\": \"string\", \"default\": \"hold\","
    "   \"doc\": \"a domain whose curve diverges at the lower bound or did not converge: hold (keep its base quantity, "
    "optimise the others) or fail\"},"
    " \"noise\": {\"type\": \"number\", \"default\": null,"
    "   \"doc\": \"run-to-run sd of the metric in normalised units (of one seed's contrast when paired by seed), known from "
    "elsewhere; default: estimated from repeats\"},"
    " \"noise_pool\": {\"type\": \"string\", \"default\": \"" DEFAULT_NOISE_POOL "\","
    "   \"doc\": \"all: one noise estimate pooled over every domain's repeats (tests and intervals use it); domain: each "
    "domain's own\"},"
    " \"on_noise\": {\"type\": \"string\", \"default\": \"hold\","
    "   \"doc\": \"a domain whose contrasts are within noise: hold (keep its base quantity) or fit (optimise it anyway)\"},"
    " \"boot\": {\"type\": \"integer\", \"default\": " STR(DEFAULT_BOOT) ","
    "   \"doc\": \"bootstrap replicates for the 90% intervals (0: none)\"},"
    " \"seed\": {\"type\": \"integer\", \"default\": null,"
    "   \"doc\": \"seed of the bootstrap's random stream; default derived from the parameters, so fits of different "
    "measurements draw independent replicates and the same fit draws the same ones\"}}";

/* One measured point: the base run (domain -1) or a perturbed run, with its repeats and their seeds (NULL
 * when not given). Paired by seed, a perturbed run's contrast with the base run is the mean of
 * log(v[r] / base v of the same seed) (cmean), with css its sum of squared deviations. */
typedef struct group {
    long dom;
    double factor, mean, *v, *seed, cmean, css;
    size_t k;
} group;

typedef struct work {
    json_t *params;
    size_t m, ng;
    char **domains;
    group *g;                  /* g[0] is the base run */
    double **x, **y, **ystar;  /* per-domain points: x, y, and one bootstrap replicate's y */
    size_t *npts;
    long **gidx;               /* per-domain point -> group */
    double *base, *w, *tokens, *noise, *df, *own_noise, *own_df, *snr, *crit, *lo, *hi, *boot, *col;
    int *hold, paired;
    sm_fit_result *fits, *ofits;
    int *held, *oheld;
    double *n, *on;
} work;

static void work_free(work *k) {
    json_decref(k->params);
    for (size_t i = 0; k->g && i < k->ng; i++) free(k->g[i].v), free(k->g[i].seed);
    free(k->g);
    for (size_t i = 0; i < k->m; i++) {
        if (k->x) free(k->x[i]);
        if (k->y) free(k->y[i]);
        if (k->ystar) free(k->ystar[i]);
        if (k->gidx) free(k->gidx[i]);
    }
    free(k->x); free(k->y); free(k->ystar); free(k->gidx); free(k->npts);
    sm_asj_free_names(k->domains, k->m);
    free(k->base); free(k->w); free(k->tokens); free(k->noise); free(k->df); free(k->own_noise); free(k->own_df);
    free(k->snr); free(k->crit); free(k->lo); free(k->hi);
    free(k->boot); free(k->col); free(k->hold);
    free(k->fits); free(k->ofits); free(k->held); free(k->oheld); free(k->n); free(k->on);
}

static int read_domains(work *k, sm_error *err) {
    json_t *arr = json_object_get(k->params, "domains");
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return sm_error_set(err, SM_ERR_ARG, STAGE ": 'domains' must be a non-empty array of domain names");
    k->m = json_array_size(arr);
    k->domains = calloc(k->m, sizeof *k->domains);
    if (!k->domains) return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
    for (size_t i = 0; i < k->m; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (!s || !*s) return sm_error_set(err, SM_ERR_ARG, STAGE ": domains[%zu] must be a non-empty string", i);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(k->domains[j], s)) return sm_error_set(err, SM_ERR_ARG, STAGE ": domain '%s' is listed twice", s);
        if (!(k->domains[i] = strdup(s))) return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
    }
    return SM_OK;
}

static long domain_index(const work *k, const char *name) {
    for (size_t i = 0; i < k->m; i++)
        if (!strcmp(k->domains[i], name)) return (long)i;
    return -1;
}

static int alloc_all(work *k, sm_error *err) {
    size_t m = k->m;
#define A(p, n) ((p) = calloc((n), sizeof *(p)))
    int ok = A(k->x, m) && A(k->y, m) && A(k->ystar, m) && A(k->gidx, m) && A(k->npts, m) && A(k->base, m) &&
             A(k->w, m) && A(k->tokens, m) && A(k->noise, m) && A(k->df, m) && A(k->own_noise, m) && A(k->own_df, m) &&
             A(k->snr, m) && A(k->crit, m) && A(k->lo, m) && A(k->hi, m) && A(k->hold, m) && A(k->fits, m) && A(k->ofits, m) && A(k->held, m) && A(k->oheld, m) &&
             A(k->n, m) && A(k->on, m);
#undef A
    return ok ? SM_OK : sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
}

/* A group's seeds, when given: whole numbers, one per metric, none twice. */
static int read_seeds(const json_t *obj, const char *what, group *g, sm_error *err) {
    json_t *v = json_object_get(obj, "seeds");
    if (!v || json_is_null(v)) return SM_OK;
    if (!json_is_array(v) || json_array_size(v) != g->k)
        return sm_error_set(err, SM_ERR_ARG, STAGE ": %s has %zu metric(s), so 'seeds' must be a list of %zu seed(s), one per metric",
                            what, g->k, g->k);
    if (!(g->seed = malloc(g->k * sizeof *g->seed))) return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
    for (size_t r = 0; r < g->k; r++) {
        json_t *e = json_array_get(v, r);
        double s = json_is_number(e) ? json_number_value(e) : NAN;
        if (!(isfinite(s) && s == floor(s)))
            return sm_error_set(err, SM_ERR_ARG, STAGE ": %s has seeds[%zu] that is not a whole number", what, r);
        for (size_t q = 0; q < r; q++)
            if (g->seed[q] == s) return sm_error_set(err, SM_ERR_ARG, STAGE ": %s lists seed %.0f twice", what, s);
        g->seed[r] = s;
    }
    return SM_OK;
}

/* The base run and the perturbed runs as groups of repeats; the per-domain point lists from their means. */
static int read_groups(work *k, double *min_factor, sm_error *err) {
    json_t *base = json_object_get(k->params, "base");
    if (!json_is_object(base))
        return sm_error_set(err, SM_ERR_ARG, STAGE ": 'base' is missing: give the base run as {tokens: {domain: N}, metric: m}");
    int rc = sm_asj_domain_values(json_object_get(base, "tokens"), STAGE, "base.tokens", k->m, k->domains, k->base, err);
    if (rc) return rc;
    json_t *runs = json_object_get(k->params, "runs");
    if (!json_is_array(runs)) return sm_error_set(err, SM_ERR_ARG, STAGE ": 'runs' must be an array of {domain, factor, metric}");
    k->ng = 1 + json_array_size(runs);
    if (!(k->g = calloc(k->ng, sizeof *k->g))) return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
    k->g[0].dom = -1;
    k->g[0].factor = 1;
    if ((rc = sm_asj_positive_list(base, "metric", STAGE, "the base run", &k->g[0].v, &k->g[0].k, err)) ||
        (rc = read_seeds(base, "the base run", &k->g[0], err)))
        return rc;
    *min_factor = INFINITY;
    for (size_t r = 0; r < json_array_size(runs); r++) {
        json_t *run_j = json_array_get(runs, r);
        const char *dn = json_string_value(json_object_get(run_j, "domain"));
        if (!json_is_object(run_j) || !dn)
            return sm_error_set(err, SM_ERR_ARG, STAGE ": runs[%zu] must be an object with a string 'domain'", r);
        long di = domain_index(k, dn);
        if (di < 0) return sm_error_set(err, SM_ERR_ARG, STAGE ": runs[%zu] names unknown domain '%s' (not in 'domains')", r, dn);
        char what[64];
        snprintf(what, sizeof what, "runs[%zu]", r);
        group *g = &k->g[r + 1];
        g->dom = di;
        if ((rc = sm_asj_positive(run_j, "factor", STAGE, what, &g->factor, err))) return rc;
        if ((rc = sm_asj_positive_list(run_j, "metric", STAGE, what, &g->v, &g->k, err)) || (rc = read_seeds(run_j, what, g, err)))
            return rc;
        if (g->factor < *min_factor) *min_factor = g->factor;
        k->npts[di]++;
    }
    for (size_t i = 0; i < k->ng; i++) k->g[i].mean = sm_mean(k->g[i].v, k->g[i].k);
    for (size_t i = 0; i < k->m; i++) {
        if (k->npts[i] < 2)
            return sm_error_set(err, SM_ERR_ARG,
                                STAGE ": domain '%s' has %zu point(s) (the base run and %zu perturbed run(s)); the power law "
                                "needs at least 3: run at least two perturbation factors for it", k->domains[i], k->npts[i] + 1,
                                k->npts[i]);
        size_t n = ++k->npts[i];
        if (!(k->x[i] = malloc(n * sizeof(double))) || !(k->y[i] = malloc(n * sizeof(double))) ||
            !(k->ystar[i] = malloc(n * sizeof(double))) || !(k->gidx[i] = malloc(n * sizeof(long))))
            return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
        k->x[i][0] = 1, k->y[i][0] = 1, k->gidx[i][0] = 0;
        k->npts[i] = 1;
    }
    for (size_t gi = 1; gi < k->ng; gi++) {
        long d = k->g[gi].dom;
        size_t p = k->npts[d]++;
        k->x[d][p] = k->g[gi].factor;
        k->y[d][p] = k->g[gi].mean / k->g[0].mean;
        k->gidx[d][p] = (long)gi;
    }
    return SM_OK;
}

static long base_seed_index(const work *k, double seed) {
    for (size_t j = 0; j < k->g[0].k; j++)
        if (k->g[0].seed[j] == seed) return (long)j;
    return -1;
}

/* log(metric / the base run's metric of the same seed), for repeat r of a paired group */
static double paired_contrast(const work *k, const group *g, size_t r) {
    return log(g->v[r] / k->g[0].v[base_seed_index(k, g->seed[r])]);
}

/* Contrasts paired by seed. Seed s gives every run the same initialisation and data order (common random
 * numbers), so log(v / the base run's v of seed s) cancels what the runs of one seed share and is far less
 * noisy than the runs themselves; the sd of those contrasts is then the noise. Used when the base run and
 * every perturbed run carry seeds and every perturbed run has at least two, all among the base run's;
 * otherwise the runs are treated as independent (and the log says why when seeds were given). */
static void pair_by_seed(work *k, const sm_host_api *api, sm_host *h) {
    int any = 0;
    for (size_t gi = 0; gi < k->ng; gi++) any |= k->g[gi].seed != NULL;
    if (!any) return;
    const char *why = k->g[0].seed ? NULL : "the base run has no seeds";
    size_t gi = 1;
    for (; gi < k->ng && !why; gi++) {
        const group *g = &k->g[gi];
        if (!g->seed) why = "it has no seeds";
        else if (g->k < 2) why = "it has one seed, so its contrast's noise is unknown (repeat every run with the base run's seeds)";
        for (size_t r = 0; !why && r < g->k; r++)
            if (base_seed_index(k, g->seed[r]) < 0) why = "it has a seed the base run does not";
    }
    if (why) {
        if (k->g[0].seed) api->log(h, SM_LOG_INFO, "contrasts not paired by seed: runs[%zu]: %s; the runs are treated as independent", gi - 2, why);
        else api->log(h, SM_LOG_INFO, "contrasts not paired by seed: %s; the runs are treated as independent", why);
        return;
    }
    k->paired = 1;
    for (gi = 1; gi < k->ng; gi++) {
        group *g = &k->g[gi];
        double s = 0;
        for (size_t r = 0; r < g->k; r++) s += paired_contrast(k, g, r);
        g->cmean = s / (double)g->k, g->css = 0;
        for (size_t r = 0; r < g->k; r++) g->css += pow(paired_contrast(k, g, r) - g->cmean, 2);
    }
    for (size_t i = 0; i < k->m; i++)
        for (size_t p = 1; p < k->npts[i]; p++) k->y[i][p] = exp(k->g[k->gidx[i][p]].cmean);
}

/* The pooled noise of log(metric) over the base run and the given domain's runs (dom < 0: all): the sd of one
 * run, or of one seed's contrast when paired. */
static void pooled_noise(const work *k, long dom, double *sd, double *df) {
    double ss = 0, n = 0;
    for (size_t gi = 0; gi < k->ng; gi++) {
        const group *g = &k->g[gi];
        if (g->k < 2 || (dom >= 0 && gi > 0 && g->dom != dom) || (k->paired && gi == 0)) continue;
        if (k->paired) {
            ss += g->css;
        } else {
            double lv[g->k];
            for (size_t r = 0; r < g->k; r++) lv[r] = log(g->v[r]);
            ss += sm_var(lv, g->k) * (double)(g->k - 1);
        }
        n += (double)(g->k - 1);
    }
    *sd = n > 0 ? sqrt(ss / n) : NAN;
    *df = n;
}

static json_t *flags_json(unsigned flags, int held, int within_noise) {
    json_t *a = json_array();
    for (int i = 0; i < SM_FIT_FLAG_COUNT; i++)
        if (flags & (1u << i)) json_array_append_new(a, json_string(sm_fit_flag_name(1u << i)));
    if (within_noise) json_array_append_new(a, json_string("within_noise"));
    if (held) json_array_append_new(a, json_string("held_at_base"));
    return a;
}

static json_t *curves_json(const work *k, const sm_fit_result *fits) {
    json_t *o = json_object();
    for (size_t i = 0; i < k->m; i++)
        json_object_set_new(o, k->domains[i], json_pack("{s:o,s:o,s:o}", "a", sm_asj_num(fits[i].a), "b",
                                                        sm_asj_num(fits[i].b), "c", sm_asj_num(fits[i].c)));
    return o;
}

/* Where a bootstrap replicate redraws a point, in normalised units (the base run = 1): the measured point for an
 * exact fit (it passes through it anyway), the fitted curve for least squares. */
static double replicate_centre(const work *k, size_t i, const group *g) {
    double measured = k->paired ? exp(g->cmean) : g->mean / k->g[0].mean;
    if (k->fits[i].exact) return measured;
    double fitted = sm_fit_eval(k->fits[i].a, k->fits[i].b, k->fits[i].c, g->factor);
    return isfinite(fitted) && fitted > 0 ? fitted : measured;
}

/* The parametric bootstrap: each group's mean metric is redrawn as mean * exp(sigma* z / sqrt(k)), sigma*
 * carrying the uncertainty of the noise estimate itself (sm_rng_sigma); the base run is redrawn once per
 * replicate and shared by every domain, as in the experiment; the whole solve is repeated. Paired by seed,
 * the contrasts are redrawn instead: a contrast's variance is its runs' plus the base runs' (equal shares when
 * every run is as noisy as the base run), and the base runs' share is drawn once per replicate and shared by
 * every contrast, as in the experiment. */
static int bootstrap(work *k, const sm_ddo_problem *prob, size_t nboot, unsigned long seed, double sd_all, double df_all,
                     size_t *done, size_t *failed, sm_error *err) {
    size_t m = k->m;
    *done = *failed = 0;
    if (!(k->boot = malloc(nboot * m * sizeof *k->boot)) || !(k->col = malloc(nboot * sizeof *k->col)))
        return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
    sm_rng *rng = sm_rng_new(seed);
    sm_fit_result *fits = calloc(m, sizeof *fits);
    int *held = calloc(m, sizeof *held);
    double *n = calloc(m, sizeof *n);
    if (!rng || !fits || !held || !n) {
        sm_rng_free(rng); free(fits); free(held); free(n);
        return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
    }
    sm_ddo_problem p = *prob;
    p.y = (const double *const *)k->ystar;
    p.fail_bad = 0;
    sm_ddo_solution s = {.fits = fits, .held = held, .n = n};
    for (size_t r = 0; r < nboot; r++) {
        double sb = sm_rng_sigma(rng, sd_all, df_all), zb = sm_rng_normal(rng);
        double base = k->paired ? 1 : exp(sb * zb / sqrt((double)k->g[0].k));
        for (size_t i = 0; i < m; i++) {
            double sd = sm_rng_sigma(rng, k->noise[i], k->df[i]);
            k->ystar[i][0] = 1;
            for (size_t q = 1; q < k->npts[i]; q++) {
                const group *g = &k->g[k->gidx[i][q]];
                double z = sm_rng_normal(rng);
                /* paired: its own runs' half of the contrast's variance, less the base runs' half, common to all */
                double dev = k->paired ? (sd * z - sb * zb) / sqrt(2.0 * (double)g->k) : sd * z / sqrt((double)g->k);
                k->ystar[i][q] = replicate_centre(k, i, g) * exp(dev) / base;
            }
        }
        sm_error e = {0};
        if (sm_ddo_solve(&p, &s, &e)) { (*failed)++; continue; }
        for (size_t i = 0; i < m; i++) k->boot[*done * m + i] = n[i] * k->base[i] / prob->budget;
        (*done)++;
    }
    sm_rng_free(rng); free(fits); free(held); free(n);
    for (size_t i = 0; i < m; i++) {
        for (size_t r = 0; r < *done; r++) k->col[r] = k->boot[r * m + i];
        k->lo[i] = sm_quantile(k->col, *done, (1 - SM_STATS_LEVEL) / 2);
        k->hi[i] = sm_quantile(k->col, *done, (1 + SM_STATS_LEVEL) / 2);
    }
    return SM_OK;
}

static int read_choice(const json_t *params, const char *key, const char *dflt, const char *a, const char *b, int *is_a,
                       sm_error *err) {
    const char *v = json_string_value(json_object_get(params, key));
    json_t *j = json_object_get(params, key);
    if (j && !json_is_null(j) && !v) return sm_error_set(err, SM_ERR_ARG, STAGE ": '%s' must be \"%s\" or \"%s\"", key, a, b);
    if (!v) v = dflt;
    if (strcmp(v, a) && strcmp(v, b))
        return sm_error_set(err, SM_ERR_ARG, STAGE ": '%s' must be \"%s\" or \"%s\" (got \"%s\")", key, a, b, v);
    *is_a = !strcmp(v, a);
    return SM_OK;
}

static int read_count(const json_t *params, const char *key, double dflt, double max, double *out, sm_error *err) {
    *out = dflt;
    int has = sm_asj_opt_number(params, key, STAGE, out, err);
    if (has < 0) return has;
    if (!(*out >= 0 && *out == floor(*out) && *out <= max))
        return sm_error_set(err, SM_ERR_ARG, STAGE ": '%s' must be an integer from 0 to %.0f (got %g)", key, max, *out);
    return SM_OK;
}

static uint32_t fnv1a32(const char *s) {
    uint32_t hsh = 2166136261u;
    for (; *s; s++) hsh = (hsh ^ (unsigned char)*s) * 16777619u;
    return hsh;
}

static int run(const sm_host_api *api, sm_host *h, const char *params_json, const char *inputs_json, sm_error *err) {
    (void)inputs_json;
    work k = {0};
    int rc = sm_asj_parse(params_json, STAGE, &k.params, err);
    if (rc) return rc;
    double min_factor = INFINITY;
    if ((rc = read_domains(&k, err)) || (rc = alloc_all(&k, err)) || (rc = read_groups(&k, &min_factor, err))) goto out;
    size_t m = k.m;
    double lower = min_factor, budget = 0, noise_given = NAN, nboot_d, seed_d;
    for (size_t i = 0; i < m; i++) budget += k.base[i];
    int has;
    if ((has = sm_asj_opt_number(k.params, "lower", STAGE, &lower, err)) < 0) { rc = has; goto out; }
    if ((has = sm_asj_opt_number(k.params, "budget", STAGE, &budget, err)) < 0) { rc = has; goto out; }
    int noise_has = sm_asj_opt_number(k.params, "noise", STAGE, &noise_given, err);
    if (noise_has < 0) { rc = noise_has; goto out; }
    if (!(lower > 0)) { rc = sm_error_set(err, SM_ERR_ARG, STAGE ": 'lower' must be > 0 (got %g)", lower); goto out; }
    if (!(budget > 0)) { rc = sm_error_set(err, SM_ERR_ARG, STAGE ": 'budget' must be > 0 (got %g)", budget); goto out; }
    if (noise_has && !(noise_given > 0)) {
        rc = sm_error_set(err, SM_ERR_ARG, STAGE ": 'noise' must be a positive sd in normalised units (got %g)", noise_given);
        goto out;
    }
    int saturating, hold_bad, hold_noise, pool_all;
    if ((rc = read_choice(k.params, "interpolant", DEFAULT_INTERPOLANT, "saturating", "power", &saturating, err)) ||
        (rc = read_choice(k.params, "noise_pool", DEFAULT_NOISE_POOL, "all", "domain", &pool_all, err)) ||
        (rc = read_choice(k.params, "on_bad_fit", "hold", "hold", "fail", &hold_bad, err)) ||
        (rc = read_choice(k.params, "on_noise", "hold", "hold", "fit", &hold_noise, err)) ||
        (rc = read_count(k.params, "boot", DEFAULT_BOOT, 100000, &nboot_d, err)) ||
        (rc = read_count(k.params, "seed", (double)fnv1a32(params_json), 4294967295.0, &seed_d, err)))
        goto out;

    pair_by_seed(&k, api, h);
    /* Noise: given, or from the repeats: pooled over all of them, or per domain (the base run's and that
     * domain's runs'; the paired contrasts of that domain); each domain's own estimate is reported either way. */
    double sd_all = NAN, df_all = 0;
    const char *noise_source = "unknown";
    pooled_noise(&k, -1, &sd_all, &df_all);
    for (size_t i = 0; i < m; i++) pooled_noise(&k, (long)i, &k.own_noise[i], &k.own_df[i]);
    if (noise_has) {
        noise_source = "given";
        sd_all = noise_given, df_all = INFINITY;
        for (size_t i = 0; i < m; i++) k.noise[i] = noise_given, k.df[i] = INFINITY;
    } else {
        if (df_all > 0) noise_source = "repeats";
        for (size_t i = 0; i < m; i++) {
            int own = !pool_all && k.own_df[i] > 0; /* a domain with none of its own gets the pooled estimate */
            k.noise[i] = own ? k.own_noise[i] : sd_all, k.df[i] = own ? k.own_df[i] : df_all;
        }
    }
    int known = strcmp(noise_source, "unknown") != 0;
    size_t nwithin = 0;
    for (size_t i = 0; i < m; i++) {
        k.snr[i] = NAN;
        if (!known) continue;
        double best = 0;
        for (size_t q = 1; q < k.npts[i]; q++) {
            const group *g = &k.g[k.gidx[i][q]];
            double se = k.paired ? k.noise[i] / sqrt((double)g->k) : k.noise[i] * sqrt(1.0 / (double)g->k + 1.0 / (double)k.g[0].k);
            double z = fabs(k.paired ? g->cmean : log(g->mean / k.g[0].mean)) / se;
            if (z > best) best = z;
        }
        k.snr[i] = best;
        k.crit[i] = sm_t_crit(NOISE_TEST_LEVEL, k.df[i]);
        if (best < k.crit[i]) {
            nwithin++;
            k.hold[i] = hold_noise;
            api->log(h, SM_LOG_WARN, "domain %s: its contrasts are within noise (largest %.2f standard errors, below %.2f; noise sd %.3g)%s",
                     k.domains[i], best, k.crit[i], k.noise[i], hold_noise ? "; held at its base quantity" : "");
        }
    }
    if (!known)
        api->log(h, SM_LOG_WARN, "one measurement per point and no 'noise' given: the noise is unknown, so no intervals or "
                                 "within-noise checks (repeat the base run, e.g. ablate's repeats, to get them)");

    sm_ddo_problem prob = {m, k.domains, (const double *const *)k.x, (const double *const *)k.y, k.npts, k.base, lower,
                           budget, saturating, !hold_bad, k.hold};
    sm_ddo_solution sol = {.fits = k.fits, .held = k.held, .n = k.n};
    if (api->cancelled && api->cancelled(h)) { rc = sm_error_set(err, SM_ERR_CANCELLED, STAGE ": cancelled"); goto out; }
    if ((rc = sm_ddo_solve(&prob, &sol, err))) goto out;
    for (size_t i = 0; i < m; i++) {
        sm_fit_result *fr = &k.fits[i];
        char fl[128];
        sm_fit_flags_str(fr->flags, fl, sizeof fl);
        api->log(h, fr->flags ? SM_LOG_WARN : SM_LOG_INFO,
                 "domain %s: %zu points, %s fit a=%.6g b=%.6g c=%.6g rmse=%.3g%s%s", k.domains[i], fr->n,
                 fr->exact ? "exact" : "least-squares", fr->a, fr->b, fr->c, fr->rmse, fr->flags ? " FLAGS: " : "", fl);
        if (api->fit) api->fit(h, k.domains[i], fr->a, fr->b, fr->c, fr->rmse);
        if (k.held[i] == SM_DDO_HELD_BAD_FIT)
            api->log(h, SM_LOG_WARN, "domain %s: its fitted curve is unusable (%s); held at its base quantity", k.domains[i],
                     (fr->flags & SM_FIT_NO_CONVERGENCE) ? "no convergence" : "it diverges at the lower bound");
    }
    for (size_t i = 0; i < m; i++) {
        k.tokens[i] = k.n[i] * k.base[i];
        k.w[i] = k.tokens[i] / budget;
    }
    api->log(h, SM_LOG_INFO, "optimum at budget %.6g tokens (lower %g): lambda=%.6g, KKT max violation %.3g", budget, lower,
             sol.lambda, sol.kkt.max_violation);

    /* the other interpolant's optimum, reported beside this one */
    sm_ddo_problem oprob = prob;
    oprob.saturating = !saturating;
    oprob.fail_bad = 0;
    sm_ddo_solution osol = {.fits = k.ofits, .held = k.oheld, .n = k.on};
    sm_error oerr = {0};
    int orc = sm_ddo_solve(&oprob, &osol, &oerr);
    if (orc) api->log(h, SM_LOG_WARN, "the %s interpolant has no optimum: %s", saturating ? "power" : "saturating", oerr.msg);

    size_t nboot = known ? (size_t)nboot_d : 0, bdone = 0, bfailed = 0;
    for (size_t i = 0; i < m; i++) k.lo[i] = k.hi[i] = NAN;
    if (nboot && (rc = bootstrap(&k, &prob, nboot, (unsigned long)seed_d, sd_all, df_all, &bdone, &bfailed, err))) goto out;
    if (bfailed)
        api->log(h, SM_LOG_WARN, "bootstrap: %zu of %zu replicates had no optimum and were left out", bfailed, nboot);

    json_t *res = json_object(), *rmse = json_object(), *flags = json_object(), *points = json_object(), *alts = json_object();
    json_t *exact = json_object(), *maxres = json_object(), *ci = json_object(), *reps = json_object();
    for (size_t i = 0; i < m; i++) {
        const sm_fit_result *fr = &k.fits[i];
        json_object_set_new(rmse, k.domains[i], sm_asj_num(fr->rmse));
        json_object_set_new(maxres, k.domains[i], sm_asj_num(fr->max_abs_resid));
        json_object_set_new(flags, k.domains[i], flags_json(fr->flags, k.held[i] != SM_DDO_FREE, known && k.snr[i] < k.crit[i]));
        json_object_set_new(exact, k.domains[i], json_boolean(fr->exact));
        json_object_set_new(ci, k.domains[i], bdone ? sm_asj_interval(k.lo[i], k.hi[i]) : json_null());
        if (fr->has_alt)
            json_object_set_new(alts, k.domains[i], json_pack("{s:o,s:o,s:o}", "a", sm_asj_num(fr->alt_a), "b",
                                                              sm_asj_num(fr->alt_b), "c", sm_asj_num(fr->alt_c)));
        json_t *pl = json_array(), *rl = json_array();
        for (size_t p = 0; p < k.npts[i]; p++) {
            json_array_append_new(pl, json_pack("[o,o]", sm_asj_num(k.x[i][p]), sm_asj_num(k.y[i][p])));
            json_array_append_new(rl, json_integer((json_int_t)k.g[k.gidx[i][p]].k));
        }
        json_object_set_new(points, k.domains[i], pl);
        json_object_set_new(reps, k.domains[i], rl);
    }
    json_t *doms = json_array();
    for (size_t i = 0; i < m; i++) json_array_append_new(doms, json_string(k.domains[i]));
    json_object_set_new(res, "domains", doms);
    json_object_set_new(res, "weights", sm_asj_map(m, k.domains, k.w));
    json_object_set_new(res, "tokens", sm_asj_map(m, k.domains, k.tokens));
    json_object_set_new(res, "n", sm_asj_map(m, k.domains, k.n));
    json_object_set_new(res, "base_tokens", sm_asj_map(m, k.domains, k.base));
    json_object_set_new(res, "base_metric", sm_asj_num(k.g[0].mean));
    json_object_set_new(res, "budget", sm_asj_num(budget));
    json_object_set_new(res, "lower", sm_asj_num(lower));
    json_object_set_new(res, "min_factor", sm_asj_num(min_factor));
    json_object_set_new(res, "interpolant", json_string(saturating ? "saturating" : "power"));
    json_object_set_new(res, "lambda", sm_asj_num(sol.lambda));
    json_object_set_new(res, "objective", sm_asj_num(sol.objective));
    json_object_set_new(res, "params", curves_json(&k, k.fits));
    json_object_set_new(res, "alternatives", alts);
    if (!orc) {
        for (size_t i = 0; i < m; i++) k.tokens[i] = k.on[i] * k.base[i], k.w[i] = k.tokens[i] / budget;
        json_object_set_new(res, "other", json_pack("{s:s,s:o,s:o,s:o}", "interpolant", saturating ? "power" : "saturating",
                                                    "params", curves_json(&k, k.ofits), "weights", sm_asj_map(m, k.domains, k.w),
                                                    "tokens", sm_asj_map(m, k.domains, k.tokens)));
        for (size_t i = 0; i < m; i++) k.tokens[i] = k.n[i] * k.base[i], k.w[i] = k.tokens[i] / budget;
    } else {
        json_object_set_new(res, "other", json_null());
    }
    json_object_set_new(res, "exact", exact);
    json_object_set_new(res, "rmse", rmse);
    json_object_set_new(res, "max_residual", maxres);
    json_object_set_new(res, "flags", flags);
    json_object_set_new(res, "points", points);
    json_object_set_new(res, "repeats", reps);
    json_object_set_new(res, "noise_source", json_string(noise_source));
    json_object_set_new(res, "noise", known ? sm_asj_map(m, k.domains, k.noise) : json_object());
    json_object_set_new(res, "noise_df", known ? sm_asj_map(m, k.domains, k.df) : json_object());
    json_object_set_new(res, "noise_pool", json_string(pool_all ? "all" : "domain"));
    json_object_set_new(res, "noise_domain", sm_asj_map(m, k.domains, k.own_noise));
    json_object_set_new(res, "noise_domain_df", sm_asj_map(m, k.domains, k.own_df));
    json_object_set_new(res, "paired", json_boolean(k.paired));
    json_object_set_new(res, "snr", known ? sm_asj_map(m, k.domains, k.snr) : json_object());
    json_object_set_new(res, "within_noise", json_integer((json_int_t)nwithin));
    json_object_set_new(res, "level", json_real(SM_STATS_LEVEL));
    json_object_set_new(res, "ci", ci);
    json_object_set_new(res, "boot", sm_asj_rows_json(k.boot, bdone, m));
    json_object_set_new(res, "boot_failed", json_integer((json_int_t)bfailed));
    json_object_set_new(res, "kkt", json_pack("{s:o,s:o,s:o,s:o,s:o}", "max_violation", sm_asj_num(sol.kkt.max_violation),
                                              "stationarity", sm_asj_num(sol.kkt.stationarity), "complementarity",
                                              sm_asj_num(sol.kkt.complementarity), "bound", sm_asj_num(sol.kkt.bound), "budget",
                                              sm_asj_num(sol.kkt.budget)));
    if ((rc = sm_asj_emit(api, h, res, STAGE, err))) goto out;
    if (api->result_f64) {
        api->result_f64(h, "weights", k.w, m);
        api->result_f64(h, "tokens", k.tokens, m);
    }
    if (api->mixture && (rc = api->mixture(h, "ddo", budget, m, (const char *const *)k.domains, k.w, k.tokens))) {
        rc = sm_error_set(err, rc, STAGE ": recording the mixture failed (%s)", sm_error_name(rc));
        goto out;
    }
out:
    work_free(&k);
    return rc;
}

static const sm_plugin_desc desc = {
    .struct_size = sizeof(sm_plugin_desc),
    .abi_major = SM_PLUGIN_ABI_MAJOR,
    .abi_minor = SM_PLUGIN_ABI_MINOR,
    .name = "fit",
    .version = "2.1.0",
    .cache_salt = "3",
    .description = "DDO: fit per-domain power laws (x+a)^-b+c, solve the exact KKT optimum under a lower bound, "
                   "with noise, signal-to-noise and bootstrap intervals from repeats",
    .params_schema = schema,
    .resources = NULL,
    .run = run,
};

const sm_plugin_desc *sm_plugin_describe(void) { return &desc; }
