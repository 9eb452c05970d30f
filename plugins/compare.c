/* compare.c - the "compare" stage: the paper's training speed-up of the target run (AutoScale) against each
 * baseline, from validation perplexity (or loss) curves. See core/autoscale/sm_speedup.h for the rule. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autoscale/sm_asjson.h"
#include "autoscale/sm_speedup.h"
#include "sm_plugin.h"

#define STAGE "compare"

static const char schema[] =
    "{\"curves\": {\"type\": \"object\", \"required\": true,"
    "   \"doc\": \"{name: {steps: [...], values: [...], tokens_per_step: n}}: validation curves, lower is better\"},"
    " \"target\": {\"type\": \"string\", \"default\": \"autoscale\", \"doc\": \"the curve compared against all others\"},"
    " \"metric\": {\"type\": \"string\", \"default\": \"perplexity\", \"doc\": \"what values hold: perplexity or loss\"}}";

typedef struct curve_buf {
    double *steps, *values;
    sm_curve c;
} curve_buf;

static int read_array(json_t *a, const char *name, const char *field, double **out, size_t *n, sm_error *err) {
    if (!json_is_array(a) || json_array_size(a) == 0)
        return sm_error_set(err, SM_ERR_ARG, STAGE ": curve '%s' needs a non-empty array '%s'", name, field);
    *n = json_array_size(a);
    *out = malloc(*n * sizeof **out);
    if (!*out) return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
    for (size_t k = 0; k < *n; k++) {
        json_t *v = json_array_get(a, k);
        if (!json_is_number(v))
            return sm_error_set(err, SM_ERR_ARG, STAGE ": curve '%s' %s[%zu] is not a number", name, field, k);
        (*out)[k] = json_number_value(v);
    }
    return SM_OK;
}

static int read_curve(json_t *cj, const char *name, curve_buf *cb, sm_error *err) {
    if (!json_is_object(cj)) return sm_error_set(err, SM_ERR_ARG, STAGE ": curve '%s' must be {steps, values}", name);
    size_t ns = 0, nv = 0;
    int rc = read_array(json_object_get(cj, "steps"), name, "steps", &cb->steps, &ns, err);
    if (!rc) rc = read_array(json_object_get(cj, "values"), name, "values", &cb->values, &nv, err);
    if (rc) return rc;
    if (ns != nv)
        return sm_error_set(err, SM_ERR_ARG, STAGE ": curve '%s' has %zu steps but %zu values", name, ns, nv);
    double tps = 0;
    int has = sm_asj_opt_number(cj, "tokens_per_step", STAGE, &tps, err);
    if (has < 0) return has;
    cb->c = (sm_curve){cb->steps, cb->values, ns, has ? tps : 0};
    return sm_curve_check(&cb->c, name, err);
}

static int run(const sm_host_api *api, sm_host *h, const char *params_json, const char *inputs_json, sm_error *err) {
    (void)inputs_json;
    json_t *p = NULL;
    char **names = NULL;
    size_t n = 0;
    curve_buf *cbs = NULL;
    int rc = sm_asj_parse(params_json, STAGE, &p, err);
    if (rc) return rc;
    json_t *curves = json_object_get(p, "curves");
    const char *target = json_string_value(json_object_get(p, "target"));
    const char *metric = json_string_value(json_object_get(p, "metric"));
    if (!target) target = "autoscale";
    if (!metric) metric = "perplexity";
    if (strcmp(metric, "perplexity") && strcmp(metric, "loss")) {
        rc = sm_error_set(err, SM_ERR_ARG, STAGE ": 'metric' must be \"perplexity\" or \"loss\" (got \"%s\")", metric);
        goto out;
    }
    if (!json_is_object(curves) || json_object_size(curves) < 2) {
        rc = sm_error_set(err, SM_ERR_ARG, STAGE ": 'curves' must hold the target and at least one baseline");
        goto out;
    }
    if ((rc = sm_asj_keys(curves, &names, &n, err))) goto out;
    cbs = calloc(n, sizeof *cbs);
    if (!cbs) { rc = sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory"); goto out; }
    size_t ti = n;
    for (size_t i = 0; i < n; i++) {
        if ((rc = read_curve(json_object_get(curves, names[i]), names[i], &cbs[i], err))) goto out;
        if (!strcmp(names[i], target)) ti = i;
    }
    if (ti == n) {
        rc = sm_error_set(err, SM_ERR_ARG, STAGE ": no curve named '%s' (the target) among the %zu curves", target, n);
        goto out;
    }
    json_t *res = json_object(), *sp = json_object(), *fin = json_object(), *reach = json_object(), *bend = json_object();
    for (size_t i = 0; i < n; i++) {
        json_object_set_new(fin, names[i], sm_asj_num(cbs[i].c.values[cbs[i].c.n - 1]));
        if (i == ti) continue;
        double s = NAN, rs = NAN;
        int reached = 0;
        if ((rc = sm_speedup(&cbs[ti].c, &cbs[i].c, &s, &rs, &reached, err))) {
            json_decref(res); json_decref(sp); json_decref(fin); json_decref(reach); json_decref(bend);
            sm_error_wrap(err, STAGE ": %s vs %s", target, names[i]);
            goto out;
        }
        double last = cbs[i].c.steps[cbs[i].c.n - 1];
        json_object_set_new(sp, names[i], reached ? sm_asj_num(s) : json_null());
        json_object_set_new(reach, names[i], reached ? sm_asj_num(rs) : json_null());
        json_object_set_new(bend, names[i], sm_asj_num(last));
        if (reached) {
            api->log(h, SM_LOG_INFO, "%s reaches %s's final %s %.6g at step %.6g of %.6g: speed-up %.2f%%", target, names[i],
                     metric, cbs[i].c.values[cbs[i].c.n - 1], rs, last, 100 * s);
            if (api->metric) {
                char mname[256];
                snprintf(mname, sizeof mname, "speedup_vs_%s", names[i]);
                api->metric(h, mname, (int64_t)llround(last), NULL, s);
            }
        } else {
            api->log(h, SM_LOG_INFO, "%s never reaches %s's final %s %.6g: no speed-up", target, names[i], metric,
                     cbs[i].c.values[cbs[i].c.n - 1]);
        }
    }
    json_object_set_new(res, "target", json_string(target));
    json_object_set_new(res, "metric", json_string(metric));
    json_object_set_new(res, "speedup", sp);
    json_object_set_new(res, "final", fin);
    json_object_set_new(res, "steps_to_reach", reach);
    json_object_set_new(res, "baseline_final_step", bend);
    rc = sm_asj_emit(api, h, res, STAGE, err);
out:
    if (cbs)
        for (size_t i = 0; i < n; i++) { free(cbs[i].steps); free(cbs[i].values); }
    free(cbs);
    sm_asj_free_names(names, n);
    json_decref(p);
    return rc;
}

static const sm_plugin_desc desc = {
    .struct_size = sizeof(sm_plugin_desc),
    .abi_major = SM_PLUGIN_ABI_MAJOR,
    .abi_minor = SM_PLUGIN_ABI_MINOR,
    .name = "compare",
    .version = "1.0.0",
    .cache_salt = "1",
    .description = "speed-up of the target run over each baseline: 1 - steps to reach the baseline's final value / its steps",
    .params_schema = schema,
    .resources = NULL,
    .run = run,
};

const sm_plugin_desc *sm_plugin_describe(void) { return &desc; }
