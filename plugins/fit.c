/* fit.c - the "fit" stage: DDO's per-domain power laws from a base run and perturbed runs, then the exact
 * water-filling optimum. Works on numbers typed in by hand as well as on ablate's output (via Lua). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autoscale/sm_asjson.h"
#include "autoscale/sm_fit.h"
#include "autoscale/sm_waterfill.h"
#include "sm_plugin.h"

#define STAGE "fit"

static const char schema[] =
    "{\"domains\": {\"type\": \"array\", \"required\": true, \"doc\": \"domain names; results are reported for these\"},"
    " \"base\": {\"type\": \"object\", \"required\": true, \"doc\": \"the base run: {tokens: {domain: N_i^base}, metric: m}\"},"
    " \"runs\": {\"type\": \"array\", \"required\": true,"
    "   \"doc\": \"perturbed runs [{domain, factor, metric}], factor = N_i / N_i^base of the perturbed domain\"},"
    " \"lower\": {\"type\": \"number\", \"default\": null,"
    "   \"doc\": \"lower bound on N_i / N_i^base; default the smallest factor (the fit is not trusted below it)\"},"
    " \"budget\": {\"type\": \"number\", \"default\": null, \"doc\": \"token budget to allocate; default the base run's total\"},"
    " \"interpolant\": {\"type\": \"string\", \"default\": \"power\","
    "   \"doc\": \"with 3 points two curves interpolate exactly: power (smaller exponent, default) or saturating\"},"
    " \"on_bad_fit\": {\"type\": \"string\", \"default\": \"hold\","
    "   \"doc\": \"a domain whose curve diverges at the lower bound or did not converge: hold (keep its base quantity, "
    "optimise the others) or fail\"}}";

typedef struct dom {
    double *x, *y;
    size_t n, cap;
} dom;

static int add_point(dom *d, double x, double y) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        double *nx = realloc(d->x, cap * sizeof *nx);
        if (!nx) return SM_ERR_NOMEM;
        d->x = nx;
        double *ny = realloc(d->y, cap * sizeof *ny);
        if (!ny) return SM_ERR_NOMEM;
        d->y = ny;
        d->cap = cap;
    }
    d->x[d->n] = x;
    d->y[d->n] = y;
    d->n++;
    return SM_OK;
}

typedef struct work {
    json_t *params;
    size_t m;
    char **domains;
    dom *pts;
    double *base, *n, *w, *tokens;
    double *a, *b, *fbase, *fn; /* the optimised (not held) domains' a, b, base and result, compacted */
    int *held;                  /* 1: the domain's fit is unusable and it keeps its base quantity */
    sm_fit_result *fits;
} work;

static void work_free(work *k) {
    json_decref(k->params);
    if (k->pts)
        for (size_t i = 0; i < k->m; i++) { free(k->pts[i].x); free(k->pts[i].y); }
    free(k->pts);
    sm_asj_free_names(k->domains, k->m);
    free(k->base); free(k->n); free(k->w); free(k->tokens);
    free(k->a); free(k->b); free(k->fbase); free(k->fn); free(k->held);
    free(k->fits);
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

static json_t *flags_json(unsigned flags) {
    json_t *a = json_array();
    for (int i = 0; i < SM_FIT_FLAG_COUNT; i++)
        if (flags & (1u << i)) json_array_append_new(a, json_string(sm_fit_flag_name(1u << i)));
    return a;
}

static int run(const sm_host_api *api, sm_host *h, const char *params_json, const char *inputs_json, sm_error *err) {
    (void)inputs_json;
    work k = {0};
    size_t nheld = 0;
    int rc = sm_asj_parse(params_json, STAGE, &k.params, err);
    if (rc) return rc;
    if ((rc = read_domains(&k, err))) goto out;
    size_t m = k.m;
    k.pts = calloc(m, sizeof *k.pts);
    k.base = calloc(m, sizeof(double)); k.n = calloc(m, sizeof(double)); k.w = calloc(m, sizeof(double));
    k.tokens = calloc(m, sizeof(double));
    k.a = calloc(m, sizeof(double)); k.b = calloc(m, sizeof(double));
    k.fbase = calloc(m, sizeof(double)); k.fn = calloc(m, sizeof(double));
    k.held = calloc(m, sizeof *k.held);
    k.fits = calloc(m, sizeof *k.fits);
    if (!k.pts || !k.base || !k.n || !k.w || !k.tokens || !k.a || !k.b || !k.fbase || !k.fn || !k.held || !k.fits) {
        rc = sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
        goto out;
    }
    json_t *base = json_object_get(k.params, "base");
    if (!json_is_object(base)) {
        rc = sm_error_set(err, SM_ERR_ARG, STAGE ": 'base' is missing: give the base run as {tokens: {domain: N}, metric: m}");
        goto out;
    }
    if ((rc = sm_asj_domain_values(json_object_get(base, "tokens"), STAGE, "base.tokens", m, k.domains, k.base, err))) goto out;
    double base_metric;
    if ((rc = sm_asj_positive(base, "metric", STAGE, "the base run", &base_metric, err))) goto out;
    for (size_t i = 0; i < m; i++)
        if ((rc = add_point(&k.pts[i], 1.0, 1.0))) { rc = sm_error_set(err, rc, STAGE ": out of memory"); goto out; }
    json_t *runs = json_object_get(k.params, "runs");
    if (!json_is_array(runs)) {
        rc = sm_error_set(err, SM_ERR_ARG, STAGE ": 'runs' must be an array of {domain, factor, metric}");
        goto out;
    }
    double min_factor = INFINITY;
    for (size_t r = 0; r < json_array_size(runs); r++) {
        json_t *run_j = json_array_get(runs, r);
        const char *dn = json_string_value(json_object_get(run_j, "domain"));
        if (!json_is_object(run_j) || !dn) {
            rc = sm_error_set(err, SM_ERR_ARG, STAGE ": runs[%zu] must be an object with a string 'domain'", r);
            goto out;
        }
        long di = domain_index(&k, dn);
        if (di < 0) {
            rc = sm_error_set(err, SM_ERR_ARG, STAGE ": runs[%zu] names unknown domain '%s' (not in 'domains')", r, dn);
            goto out;
        }
        char what[64];
        snprintf(what, sizeof what, "runs[%zu]", r);
        double f, met;
        if ((rc = sm_asj_positive(run_j, "factor", STAGE, what, &f, err))) goto out;
        if ((rc = sm_asj_positive(run_j, "metric", STAGE, what, &met, err))) goto out;
        if (f < min_factor) min_factor = f;
        if ((rc = add_point(&k.pts[di], f, met / base_metric))) { rc = sm_error_set(err, rc, STAGE ": out of memory"); goto out; }
    }
    for (size_t i = 0; i < m; i++)
        if (k.pts[i].n < 3) {
            rc = sm_error_set(err, SM_ERR_ARG,
                              STAGE ": domain '%s' has %zu point(s) (the base run and %zu perturbed run(s)); the power law "
                              "needs at least 3: run at least two perturbation factors for it", k.domains[i], k.pts[i].n,
                              k.pts[i].n - 1);
            goto out;
        }
    double lower = min_factor, budget = 0;
    for (size_t i = 0; i < m; i++) budget += k.base[i];
    int has;
    if ((has = sm_asj_opt_number(k.params, "lower", STAGE, &lower, err)) < 0) { rc = has; goto out; }
    if ((has = sm_asj_opt_number(k.params, "budget", STAGE, &budget, err)) < 0) { rc = has; goto out; }
    if (!(lower > 0)) { rc = sm_error_set(err, SM_ERR_ARG, STAGE ": 'lower' must be > 0 (got %g)", lower); goto out; }
    if (!(budget > 0)) { rc = sm_error_set(err, SM_ERR_ARG, STAGE ": 'budget' must be > 0 (got %g)", budget); goto out; }
    const char *interp = json_string_value(json_object_get(k.params, "interpolant"));
    if (!interp) interp = "power";
    int saturating = !strcmp(interp, "saturating");
    if (!saturating && strcmp(interp, "power")) {
        rc = sm_error_set(err, SM_ERR_ARG, STAGE ": 'interpolant' must be \"power\" or \"saturating\" (got \"%s\")", interp);
        goto out;
    }

    const char *on_bad = json_string_value(json_object_get(k.params, "on_bad_fit"));
    int hold_bad = !on_bad || !strcmp(on_bad, "hold");
    if (on_bad && !hold_bad && strcmp(on_bad, "fail")) {
        rc = sm_error_set(err, SM_ERR_ARG, STAGE ": 'on_bad_fit' must be \"hold\" or \"fail\" (got \"%s\")", on_bad);
        goto out;
    }
    for (size_t i = 0; i < m; i++) {
        if (api->cancelled && api->cancelled(h)) { rc = sm_error_set(err, SM_ERR_CANCELLED, STAGE ": cancelled"); goto out; }
        sm_fit_result *fr = &k.fits[i];
        if ((rc = sm_fit_power_law(k.pts[i].x, k.pts[i].y, k.pts[i].n, fr, err))) {
            sm_error_wrap(err, STAGE ": domain '%s'", k.domains[i]);
            goto out;
        }
        /* both curves pass through the points; "saturating" uses the second */
        if (saturating) sm_fit_use_alt(fr, k.pts[i].x, k.pts[i].y, k.pts[i].n);
        char fl[128];
        sm_fit_flags_str(fr->flags, fl, sizeof fl);
        api->log(h, fr->flags ? SM_LOG_WARN : SM_LOG_INFO,
                 "domain %s: %zu points, %s fit a=%.6g b=%.6g c=%.6g rmse=%.3g%s%s", k.domains[i], fr->n,
                 fr->exact ? "exact" : "least-squares", fr->a, fr->b, fr->c, fr->rmse, fr->flags ? " FLAGS: " : "", fl);
        if (api->fit) api->fit(h, k.domains[i], fr->a, fr->b, fr->c, fr->rmse);
        if (!(lower + fr->a > 0) || (fr->flags & SM_FIT_NO_CONVERGENCE) || !isfinite(fr->a) || !isfinite(fr->b)) {
            if (hold_bad) {
                k.held[i] = 1;
                nheld++;
                api->log(h, SM_LOG_WARN, "domain %s: its fitted curve is unusable (%s); held at its base quantity", k.domains[i],
                         (fr->flags & SM_FIT_NO_CONVERGENCE) ? "no convergence" : "it diverges at the lower bound");
                continue;
            }
            rc = sm_error_set(err, SM_ERR_ARG,
                              STAGE ": domain '%s': lower bound %g is at or below -a = %g, where its fitted curve diverges, "
                              "or the fit did not converge; raise 'lower', or set on_bad_fit = \"hold\"", k.domains[i], lower, -fr->a);
            goto out;
        }
    }
    /* Held domains keep n_i = 1; the others share what is left of the budget (the optimum of the rest). */
    size_t mf = 0;
    double left = budget;
    for (size_t i = 0; i < m; i++) {
        if (k.held[i]) {
            k.n[i] = 1;
            left -= k.base[i];
            continue;
        }
        k.a[mf] = k.fits[i].a, k.b[mf] = k.fits[i].b, k.fbase[mf] = k.base[i];
        mf++;
    }
    sm_wf_problem prob = {mf, k.a, k.b, k.fbase, lower, left};
    double lambda = 0;
    sm_wf_kkt kkt = {0};
    double objective = 0; /* of the optimised domains (held ones are constants) */
    if (mf == 0) {
        for (size_t i = 0; i < m; i++) k.n[i] = budget / (budget - left); /* nothing to go on: proportional to base */
    } else {
        if ((rc = sm_wf_solve(&prob, k.fn, &lambda, err))) {
            sm_error_wrap(err, STAGE "%s", nheld ? " (with the unusable domains held at their base quantity)" : "");
        } else {
            sm_wf_kkt_check(&prob, k.fn, lambda, &kkt);
            objective = sm_wf_objective(&prob, k.fn);
            for (size_t i = 0, j = 0; i < m; i++)
                if (!k.held[i]) k.n[i] = k.fn[j++];
        }
    }
    if (rc) goto out;
    for (size_t i = 0; i < m; i++) {
        k.tokens[i] = k.n[i] * k.base[i];
        k.w[i] = k.tokens[i] / budget;
    }
    api->log(h, SM_LOG_INFO, "optimum at budget %.6g tokens (lower %g): lambda=%.6g, KKT max violation %.3g", budget, lower,
             lambda, kkt.max_violation);

    json_t *res = json_object(), *params = json_object(), *rmse = json_object(), *flags = json_object();
    json_t *points = json_object(), *alts = json_object(), *exact = json_object(), *maxres = json_object();
    for (size_t i = 0; i < m; i++) {
        const sm_fit_result *fr = &k.fits[i];
        json_object_set_new(params, k.domains[i],
                            json_pack("{s:o,s:o,s:o}", "a", sm_asj_num(fr->a), "b", sm_asj_num(fr->b), "c", sm_asj_num(fr->c)));
        json_object_set_new(rmse, k.domains[i], sm_asj_num(fr->rmse));
        json_object_set_new(maxres, k.domains[i], sm_asj_num(fr->max_abs_resid));
        json_t *fl = flags_json(fr->flags);
        if (k.held[i]) json_array_append_new(fl, json_string("held_at_base"));
        json_object_set_new(flags, k.domains[i], fl);
        json_object_set_new(exact, k.domains[i], json_boolean(fr->exact));
        if (fr->has_alt)
            json_object_set_new(alts, k.domains[i], json_pack("{s:o,s:o,s:o}", "a", sm_asj_num(fr->alt_a), "b",
                                                              sm_asj_num(fr->alt_b), "c", sm_asj_num(fr->alt_c)));
        json_t *pl = json_array();
        for (size_t p = 0; p < k.pts[i].n; p++)
            json_array_append_new(pl, json_pack("[o,o]", sm_asj_num(k.pts[i].x[p]), sm_asj_num(k.pts[i].y[p])));
        json_object_set_new(points, k.domains[i], pl);
    }
    json_t *doms = json_array();
    for (size_t i = 0; i < m; i++) json_array_append_new(doms, json_string(k.domains[i]));
    json_object_set_new(res, "domains", doms);
    json_object_set_new(res, "weights", sm_asj_map(m, k.domains, k.w));
    json_object_set_new(res, "tokens", sm_asj_map(m, k.domains, k.tokens));
    json_object_set_new(res, "n", sm_asj_map(m, k.domains, k.n));
    json_object_set_new(res, "base_tokens", sm_asj_map(m, k.domains, k.base));
    json_object_set_new(res, "base_metric", sm_asj_num(base_metric));
    json_object_set_new(res, "budget", sm_asj_num(budget));
    json_object_set_new(res, "lower", sm_asj_num(lower));
    json_object_set_new(res, "interpolant", json_string(interp));
    json_object_set_new(res, "lambda", sm_asj_num(lambda));
    json_object_set_new(res, "objective", sm_asj_num(objective));
    json_object_set_new(res, "params", params);
    json_object_set_new(res, "alternatives", alts);
    json_object_set_new(res, "exact", exact);
    json_object_set_new(res, "rmse", rmse);
    json_object_set_new(res, "max_residual", maxres);
    json_object_set_new(res, "flags", flags);
    json_object_set_new(res, "points", points);
    json_object_set_new(res, "kkt", json_pack("{s:o,s:o,s:o,s:o,s:o}", "max_violation", sm_asj_num(kkt.max_violation),
                                              "stationarity", sm_asj_num(kkt.stationarity), "complementarity",
                                              sm_asj_num(kkt.complementarity), "bound", sm_asj_num(kkt.bound), "budget",
                                              sm_asj_num(kkt.budget)));
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
    .version = "1.0.0",
    .cache_salt = "1",
    .description = "DDO: fit per-domain power laws (x+a)^-b+c and solve the exact KKT optimum under a lower bound",
    .params_schema = schema,
    .resources = NULL,
    .run = run,
};

const sm_plugin_desc *sm_plugin_describe(void) { return &desc; }
