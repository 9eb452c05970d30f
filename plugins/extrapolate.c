/* extrapolate.c - the "extrapolate" stage: AutoScale's rule from two DDO optima to a larger budget (the
 * paper's geometric steps, or the continuous form at any budget), with a validation mode that compares the
 * prediction with a DDO optimum actually computed at that budget. When both optima carry bootstrap
 * replicates (the fit's `boot`), the rule is applied to each pair of replicates and the 90% intervals of
 * the target weights are their percentiles. A target weight under the lowest share DDO measured (the
 * smallest factor times the base share) is flagged: the extrapolation left the measured range there. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autoscale/sm_asjson.h"
#include "autoscale/sm_extrapolate.h"
#include "autoscale/sm_stats.h"
#include "sm_plugin.h"

#define STAGE "extrapolate"

static const char schema[] =
    "{\"from\": {\"type\": \"array\", \"required\": true,"
    "   \"doc\": \"the DDO optima at two budgets, smaller first: [{budget, tokens: {domain: N_i}, and optionally from the fit: "
    "domains, boot (weight replicates in domains order), base_tokens, min_factor}, {...}]\"},"
    " \"budget\": {\"type\": \"number\", \"default\": null, \"doc\": \"target budget in tokens (continuous form)\"},"
    " \"steps\": {\"type\": \"integer\", \"default\": null,"
    "   \"doc\": \"k >= 1: the paper's rule applied k times past the second budget (1: N3 = N2^2/N1)\"},"
    " \"actual\": {\"type\": \"object\", \"default\": null,"
    "   \"doc\": \"validation: {tokens: {domain: N_i}} of a DDO optimum at the target; budget defaults to its total\"}}";

/* from[j]'s replicates as token rows in this stage's domain order; 0 rows when it has none. */
static int replicate_tokens(json_t *f, int j, size_t m, char *const *domains, double total, double **rows, size_t *nrows,
                            sm_error *err) {
    json_t *fd = json_object_get(f, "domains");
    size_t fm = json_array_size(fd);
    double *raw = NULL;
    size_t r = 0;
    *rows = NULL;
    *nrows = 0;
    char what[32];
    snprintf(what, sizeof what, "from[%d]", j);
    if (!json_object_get(f, "boot") || json_is_null(json_object_get(f, "boot"))) return SM_OK;
    if (fm != m) return sm_error_set(err, SM_ERR_ARG, STAGE ": %s.boot needs %s.domains naming its %zu columns", what, what, m);
    int rc = sm_asj_rows(f, "boot", STAGE, m, &raw, &r, err);
    if (rc || r == 0) return rc;
    size_t col[m];
    for (size_t i = 0; i < m; i++) {
        const char *dn = json_string_value(json_array_get(fd, i));
        size_t k = 0;
        while (k < m && (!dn || strcmp(domains[k], dn))) k++;
        if (k == m) { free(raw); return sm_error_set(err, SM_ERR_ARG, STAGE ": %s.domains[%zu] is not a domain of its tokens", what, i); }
        col[i] = k;
    }
    double *t = malloc(r * m * sizeof *t);
    if (!t) { free(raw); return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory"); }
    for (size_t q = 0; q < r; q++)
        for (size_t i = 0; i < m; i++) t[q * m + col[i]] = raw[q * m + i] * total;
    free(raw);
    *rows = t;
    *nrows = r;
    return SM_OK;
}

/* The lowest share DDO measured for each domain: min over the two fits of min_factor x base share; NaN
 * when a fit does not say. */
static void measured_floor(json_t *from, size_t m, char *const *domains, double *floor_w) {
    for (size_t i = 0; i < m; i++) floor_w[i] = INFINITY;
    for (size_t j = 0; j < 2; j++) {
        json_t *f = json_array_get(from, j), *bt = json_object_get(f, "base_tokens");
        double mf = json_number_value(json_object_get(f, "min_factor")), tot = 0;
        const char *key;
        json_t *v;
        json_object_foreach(bt, key, v) tot += json_number_value(v);
        for (size_t i = 0; i < m; i++) {
            double b = json_number_value(json_object_get(bt, domains[i]));
            double fl = mf > 0 && b > 0 && tot > 0 ? mf * b / tot : NAN;
            floor_w[i] = isfinite(fl) && !isnan(floor_w[i]) ? fmin(floor_w[i], fl) : NAN;
        }
    }
}

/* Intervals from paired replicates, and the measured-range flags, into res. */
static int propagate(const sm_host_api *api, sm_host *h, json_t *from, size_t m, char *const *domains, const double *total,
                     int steps, double budget, const double *w, json_t *res, sm_error *err) {
    double *r1 = NULL, *r2 = NULL, *bw = NULL, *col = NULL, *tmp = NULL, floor_w[m];
    size_t n1 = 0, n2 = 0, done = 0, failed = 0;
    int rc = replicate_tokens(json_array_get(from, 0), 0, m, domains, total[0], &r1, &n1, err);
    if (!rc) rc = replicate_tokens(json_array_get(from, 1), 1, m, domains, total[1], &r2, &n2, err);
    if (rc) goto out;
    size_t nb = n1 < n2 ? n1 : n2;
    json_t *ci = json_object();
    json_object_set_new(res, "ci", ci);
    if (nb) {
        bw = malloc(nb * m * sizeof *bw), col = malloc(nb * sizeof *col), tmp = malloc(m * sizeof *tmp);
        if (!bw || !col || !tmp) { rc = sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory"); goto out; }
        for (size_t q = 0; q < nb; q++) {
            sm_error e = {0};
            double tq, tot = 0;
            int r = steps ? sm_ex_steps(m, r1 + q * m, r2 + q * m, steps, tmp, &e)
                          : sm_ex_to_budget(m, r1 + q * m, r2 + q * m, budget, tmp, &tq, &e);
            if (r) { failed++; continue; }
            for (size_t i = 0; i < m; i++) tot += tmp[i];
            for (size_t i = 0; i < m; i++) bw[done * m + i] = tmp[i] / tot;
            done++;
        }
        if (failed) api->log(h, SM_LOG_WARN, "%zu of %zu replicate pairs could not be extrapolated and were left out", failed, nb);
        for (size_t i = 0; i < m; i++) {
            for (size_t q = 0; q < done; q++) col[q] = bw[q * m + i];
            double lo = sm_quantile(col, done, (1 - SM_STATS_LEVEL) / 2), hi = sm_quantile(col, done, (1 + SM_STATS_LEVEL) / 2);
            json_object_set_new(ci, domains[i], done ? sm_asj_interval(lo, hi) : json_null());
        }
    }
    json_t *doms = json_array();
    for (size_t i = 0; i < m; i++) json_array_append_new(doms, json_string(domains[i]));
    json_object_set_new(res, "domains", doms);
    json_object_set_new(res, "boot", sm_asj_rows_json(bw, done, m));
    json_object_set_new(res, "boot_failed", json_integer((json_int_t)failed));
    json_object_set_new(res, "level", json_real(SM_STATS_LEVEL));
    measured_floor(from, m, domains, floor_w);
    json_t *flags = json_object(), *left = json_array();
    for (size_t i = 0; i < m; i++) {
        json_t *fl = json_array();
        if (isfinite(floor_w[i]) && w[i] < floor_w[i] * (1 - 1e-12)) {
            json_array_append_new(fl, json_string("below_measured_range"));
            json_array_append_new(left, json_string(domains[i]));
            api->log(h, SM_LOG_WARN, "domain %s: extrapolated weight %.4g is below the lowest share DDO measured (%.4g): the "
                     "extrapolation left the measured range there", domains[i], w[i], floor_w[i]);
        }
        json_object_set_new(flags, domains[i], fl);
    }
    json_object_set_new(res, "measured_floor", sm_asj_map(m, domains, floor_w));
    json_object_set_new(res, "flags", flags);
    json_object_set_new(res, "left_measured_range", left);
out:
    free(r1); free(r2); free(bw); free(col); free(tmp);
    return rc;
}

static int run(const sm_host_api *api, sm_host *h, const char *params_json, const char *inputs_json, sm_error *err) {
    (void)inputs_json;
    json_t *p = NULL;
    char **domains = NULL;
    size_t m = 0;
    double *n1 = NULL, *n2 = NULL, *out = NULL, *ratios = NULL, *act = NULL, *w = NULL;
    double *trel = NULL, *wabs = NULL, *wrel = NULL, *aw = NULL;
    int rc = sm_asj_parse(params_json, STAGE, &p, err);
    if (rc) return rc;
    json_t *from = json_object_get(p, "from");
    if (!json_is_array(from) || json_array_size(from) != 2) {
        rc = sm_error_set(err, SM_ERR_ARG, STAGE ": 'from' must hold exactly two optima [{budget, tokens}, {budget, tokens}]");
        goto out;
    }
    json_t *t0 = json_object_get(json_array_get(from, 0), "tokens");
    if (!json_is_object(t0) || json_object_size(t0) == 0) {
        rc = sm_error_set(err, SM_ERR_ARG, STAGE ": from[0].tokens must be a non-empty object {domain: tokens}");
        goto out;
    }
    if ((rc = sm_asj_keys(t0, &domains, &m, err))) goto out;
    n1 = calloc(m, sizeof *n1); n2 = calloc(m, sizeof *n2); out = calloc(m, sizeof *out);
    ratios = calloc(m, sizeof *ratios); w = calloc(m, sizeof *w);
    if (!n1 || !n2 || !out || !ratios || !w) { rc = sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory"); goto out; }
    double *ns[2] = {n1, n2}, from_budget[2];
    for (int j = 0; j < 2; j++) {
        json_t *e = json_array_get(from, (size_t)j);
        char what[32];
        snprintf(what, sizeof what, "from[%d].tokens", j);
        if ((rc = sm_asj_domain_values(json_object_get(e, "tokens"), STAGE, what, m, domains, ns[j], err))) goto out;
        double s = 0, b;
        for (size_t i = 0; i < m; i++) s += ns[j][i];
        from_budget[j] = s;
        int has = sm_asj_opt_number(e, "budget", STAGE, &b, err);
        if (has < 0) { rc = has; goto out; }
        /* the rule works on token counts; a stated budget that disagrees with them is worth a warning only,
         * since hand-typed numbers are rounded */
        if (has && fabs(b - s) > 1e-3 * s)
            api->log(h, SM_LOG_WARN, "from[%d]: budget %.6g differs from its tokens' total %.6g; using the total", j, b, s);
    }
    if ((rc = sm_ex_ratios(m, n1, n2, ratios, err))) goto out;

    double budget = 0, steps_d = 0, t = 0;
    int has_budget = sm_asj_opt_number(p, "budget", STAGE, &budget, err);
    if (has_budget < 0) { rc = has_budget; goto out; }
    int has_steps = sm_asj_opt_number(p, "steps", STAGE, &steps_d, err);
    if (has_steps < 0) { rc = has_steps; goto out; }
    json_t *actual = json_object_get(p, "actual");
    if (actual && json_is_null(actual)) actual = NULL;
    if (actual) {
        if (!json_is_object(actual)) { rc = sm_error_set(err, SM_ERR_ARG, STAGE ": 'actual' must be {tokens: {...}} or null"); goto out; }
        act = calloc(m, sizeof *act); trel = calloc(m, sizeof *trel); wabs = calloc(m, sizeof *wabs);
        wrel = calloc(m, sizeof *wrel); aw = calloc(m, sizeof *aw);
        if (!act || !trel || !wabs || !wrel || !aw) { rc = sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory"); goto out; }
        if ((rc = sm_asj_domain_values(json_object_get(actual, "tokens"), STAGE, "actual.tokens", m, domains, act, err))) goto out;
    }
    if (has_budget && has_steps) {
        rc = sm_error_set(err, SM_ERR_ARG, STAGE ": give either 'budget' or 'steps', not both");
        goto out;
    }
    if (!has_budget && !has_steps) {
        if (!actual) {
            rc = sm_error_set(err, SM_ERR_ARG, STAGE ": give a target 'budget' (tokens) or 'steps' (k >= 1)");
            goto out;
        }
        has_budget = 1;
        budget = 0;
        for (size_t i = 0; i < m; i++) budget += act[i];
    }
    if (has_steps) {
        if (!(steps_d >= 1 && steps_d == floor(steps_d) && steps_d <= 1000)) {
            rc = sm_error_set(err, SM_ERR_ARG, STAGE ": 'steps' must be an integer from 1 to 1000 (got %g)", steps_d);
            goto out;
        }
        if ((rc = sm_ex_steps(m, n1, n2, (int)steps_d, out, err))) goto out;
        t = 1 + steps_d;
        budget = 0;
        for (size_t i = 0; i < m; i++) budget += out[i];
    } else if ((rc = sm_ex_to_budget(m, n1, n2, budget, out, &t, err))) {
        goto out;
    }
    for (size_t i = 0; i < m; i++) w[i] = out[i] / budget;
    api->log(h, SM_LOG_INFO, "extrapolated from budgets %.6g and %.6g to %.6g tokens (t = %.6g)", from_budget[0],
             from_budget[1], budget, t);
    json_t *res = json_object();
    if ((rc = propagate(api, h, from, m, domains, from_budget, has_steps ? (int)steps_d : 0, budget, w, res, err))) {
        json_decref(res);
        goto out;
    }

    json_object_set_new(res, "weights", sm_asj_map(m, domains, w));
    json_object_set_new(res, "tokens", sm_asj_map(m, domains, out));
    json_object_set_new(res, "budget", sm_asj_num(budget));
    json_object_set_new(res, "t", sm_asj_num(t));
    json_object_set_new(res, "ratios", sm_asj_map(m, domains, ratios));
    json_object_set_new(res, "from_budgets", json_pack("[o,o]", sm_asj_num(from_budget[0]), sm_asj_num(from_budget[1])));
    if (actual) {
        sm_ex_errors e;
        if ((rc = sm_ex_compare(m, out, act, trel, wabs, wrel, &e, err))) { json_decref(res); goto out; }
        double asum = 0;
        for (size_t i = 0; i < m; i++) asum += act[i];
        for (size_t i = 0; i < m; i++) aw[i] = act[i] / asum;
        if (fabs(asum - budget) > 1e-6 * asum)
            api->log(h, SM_LOG_WARN, "validation: the actual optimum's total %.6g differs from the predicted budget %.6g",
                     asum, budget);
        json_t *v = json_object();
        json_object_set_new(v, "budget", sm_asj_num(asum));
        json_object_set_new(v, "actual_weights", sm_asj_map(m, domains, aw));
        json_object_set_new(v, "token_rel_err", sm_asj_map(m, domains, trel));
        json_object_set_new(v, "weight_abs_err", sm_asj_map(m, domains, wabs));
        json_object_set_new(v, "weight_rel_err", sm_asj_map(m, domains, wrel));
        json_object_set_new(v, "max_abs_weight_err", sm_asj_num(e.max_abs_weight_err));
        json_object_set_new(v, "mean_abs_weight_err", sm_asj_num(e.mean_abs_weight_err));
        json_object_set_new(v, "max_abs_token_rel_err", sm_asj_num(e.max_abs_token_rel_err));
        json_object_set_new(v, "l1", sm_asj_num(e.l1));
        json_object_set_new(res, "validation", v);
        api->log(h, SM_LOG_INFO, "validation at %.6g tokens: max |weight error| %.4g, mean %.4g, L1 %.4g", asum,
                 e.max_abs_weight_err, e.mean_abs_weight_err, e.l1);
        if (api->metric) {
            api->metric(h, "extrapolation_l1", 0, NULL, e.l1);
            api->metric(h, "extrapolation_max_abs_weight_err", 0, NULL, e.max_abs_weight_err);
            for (size_t i = 0; i < m; i++) api->metric(h, "extrapolation_weight_abs_err", 0, domains[i], wabs[i]);
        }
    } else {
        json_object_set_new(res, "validation", json_null());
    }
    if ((rc = sm_asj_emit(api, h, res, STAGE, err))) goto out;
    if (api->result_f64) {
        api->result_f64(h, "weights", w, m);
        api->result_f64(h, "tokens", out, m);
    }
    if (api->mixture && (rc = api->mixture(h, "autoscale", budget, m, (const char *const *)domains, w, out)))
        rc = sm_error_set(err, rc, STAGE ": recording the mixture failed (%s)", sm_error_name(rc));
out:
    json_decref(p);
    sm_asj_free_names(domains, m);
    free(n1); free(n2); free(out); free(ratios); free(act); free(w); free(trel); free(wabs); free(wrel); free(aw);
    return rc;
}

static const sm_plugin_desc desc = {
    .struct_size = sizeof(sm_plugin_desc),
    .abi_major = SM_PLUGIN_ABI_MAJOR,
    .abi_minor = SM_PLUGIN_ABI_MINOR,
    .name = "extrapolate",
    .version = "2.0.0",
    .cache_salt = "2",
    .description = "AutoScale: extrapolate two DDO optima to a larger budget (N3 = N2^2/N1, or its continuous form)",
    .params_schema = schema,
    .resources = NULL,
    .run = run,
};

const sm_plugin_desc *sm_plugin_describe(void) { return &desc; }
