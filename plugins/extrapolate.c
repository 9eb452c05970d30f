/* extrapolate.c - the "extrapolate" stage: AutoScale's rule from two DDO optima to a larger budget (the
 * paper's geometric steps, or the continuous form at any budget), with a validation mode that compares the
 * prediction with a DDO optimum actually computed at that budget. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autoscale/sm_asjson.h"
#include "autoscale/sm_extrapolate.h"
#include "sm_plugin.h"

#define STAGE "extrapolate"

static const char schema[] =
    "{\"from\": {\"type\": \"array\", \"required\": true,"
    "   \"doc\": \"the DDO optima at two budgets, smaller first: [{budget, tokens: {domain: N_i}}, {...}]\"},"
    " \"budget\": {\"type\": \"number\", \"default\": null, \"doc\": \"target budget in tokens (continuous form)\"},"
    " \"steps\": {\"type\": \"integer\", \"default\": null,"
    "   \"doc\": \"k >= 1: the paper's rule applied k times past the second budget (1: N3 = N2^2/N1)\"},"
    " \"actual\": {\"type\": \"object\", \"default\": null,"
    "   \"doc\": \"validation: {tokens: {domain: N_i}} of a DDO optimum at the target; budget defaults to its total\"}}";

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
    .version = "1.0.0",
    .cache_salt = "1",
    .description = "AutoScale: extrapolate two DDO optima to a larger budget (N3 = N2^2/N1, or its continuous form)",
    .params_schema = schema,
    .resources = NULL,
    .run = run,
};

const sm_plugin_desc *sm_plugin_describe(void) { return &desc; }
