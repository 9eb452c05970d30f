/* compare.c - the "compare" stage: the paper's training speed-up of the target run (AutoScale) against each
 * baseline, from validation perplexity (or loss) curves, and the difference of the final values. See
 * core/autoscale/sm_speedup.h for the rule.
 *
 * A mixture is one run {steps, values, tokens_per_step, final} or repeated runs {repeats: [run, ...]} (seeds).
 * The speed-up is read off the curves (the mean curve of the repeats for the point estimate). The final
 * difference -- the verdict -- is taken from `final`, each run's final evaluation on the fixed validation
 * sample, not from the curve's last point: the curve is measured on a smaller sample (curve_eval_batches),
 * so its end is a noisier figure of the same quantity, and the report and the status page print this one.
 * Intervals (90%) need repeats on both sides: seed i of every mixture shares its initialisation, so the
 * seeds are paired, and the interval is Student's t on the per-seed differences (final values) and per-seed
 * speed-ups. A per-seed speed-up is signed: when the target never reaches the baseline's final curve value, it
 * is minus the baseline's speed-up over the target (the two definitions meet at 0, where both runs end at the
 * same value). An interval that includes zero is reported as "not significant". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autoscale/sm_asjson.h"
#include "autoscale/sm_speedup.h"
#include "autoscale/sm_stats.h"
#include "sm_plugin.h"

#define STAGE "compare"

static const char schema[] =
    "{\"curves\": {\"type\": \"object\", \"required\": true,"
    "   \"doc\": \"{name: {steps: [...], values: [...], tokens_per_step: n, final: x} or {repeats: [{steps, values, "
    "tokens_per_step, final}, ...]} (seeds, paired across mixtures by position)}: validation curves, lower is better, and "
    "final, the run's final evaluation on the fixed validation sample (the final difference is taken from it, not from the "
    "curve's last point). From Lua, sm.compare{runs = "
    "{name = sm.train result}} passes either an ordinary result or one of sm.train{..., repeats = k} (its .repeats); "
    "90% intervals (Student t over paired seeds) need repeats of both mixtures; 'not significant' when one includes 0\"},"
    " \"target\": {\"type\": \"string\", \"default\": \"autoscale\", \"doc\": \"the curve compared against all others\"},"
    " \"metric\": {\"type\": \"string\", \"default\": \"perplexity\", \"doc\": \"what values hold: perplexity or loss\"}}";

typedef struct curve_buf {
    double *steps, *values;
    double final; /* the final evaluation on the fixed validation sample */
    sm_curve c;
} curve_buf;

/* one mixture: its repeats, their mean curve and mean final evaluation */
typedef struct mix {
    curve_buf *rep;
    size_t k;
    curve_buf mean;
} mix;

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
    json_t *fj = json_object_get(cj, "final");
    if (!json_is_number(fj) || !isfinite(json_number_value(fj)) || !(json_number_value(fj) > 0))
        return sm_error_set(err, SM_ERR_ARG, STAGE ": curve '%s' needs 'final', the run's final evaluation on the fixed "
                                            "validation sample (a positive number; a train result's .metric)", name);
    cb->final = json_number_value(fj);
    cb->c = (sm_curve){cb->steps, cb->values, ns, has ? tps : 0};
    return sm_curve_check(&cb->c, name, err);
}

static int read_mix(json_t *mj, const char *name, mix *mx, sm_error *err) {
    json_t *reps = json_object_get(mj, "repeats");
    size_t k = reps ? json_array_size(reps) : 1;
    if (reps && (!json_is_array(reps) || k == 0))
        return sm_error_set(err, SM_ERR_ARG, STAGE ": curve '%s': 'repeats' must be a non-empty list of {steps, values}", name);
    if (!(mx->rep = calloc(k, sizeof *mx->rep))) return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
    mx->k = k;
    for (size_t r = 0; r < k; r++) {
        int rc = read_curve(reps ? json_array_get(reps, r) : mj, name, &mx->rep[r], err);
        if (rc) return rc;
        const sm_curve *a = &mx->rep[0].c, *b = &mx->rep[r].c;
        int same = a->n == b->n && a->tokens_per_step == b->tokens_per_step;
        for (size_t j = 0; same && j < a->n; j++) same = a->steps[j] == b->steps[j];
        if (!same)
            return sm_error_set(err, SM_ERR_ARG, STAGE ": curve '%s': repeat %zu is evaluated at other steps than repeat 0; "
                                                "repeats of one mixture must share their evaluation schedule", name, r);
    }
    size_t n = mx->rep[0].c.n;
    mx->mean.steps = malloc(n * sizeof(double));
    mx->mean.values = calloc(n, sizeof(double));
    if (!mx->mean.steps || !mx->mean.values) return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
    memcpy(mx->mean.steps, mx->rep[0].steps, n * sizeof(double));
    for (size_t r = 0; r < k; r++) {
        for (size_t j = 0; j < n; j++) mx->mean.values[j] += mx->rep[r].values[j] / (double)k;
        mx->mean.final += mx->rep[r].final / (double)k;
    }
    mx->mean.c = (sm_curve){mx->mean.steps, mx->mean.values, n, mx->rep[0].c.tokens_per_step};
    return SM_OK;
}

static void mix_free(mix *mx) {
    for (size_t r = 0; mx->rep && r < mx->k; r++) { free(mx->rep[r].steps); free(mx->rep[r].values); }
    free(mx->rep);
    free(mx->mean.steps);
    free(mx->mean.values);
}

/* The signed speed-up of t over b (see the header comment); NaN when neither reaches the other's end. */
static double signed_speedup(const sm_curve *t, const sm_curve *b) {
    double s = NAN, rs;
    int reached = 0;
    if (sm_speedup(t, b, &s, &rs, &reached, NULL)) return NAN;
    if (reached) return s;
    if (sm_speedup(b, t, &s, &rs, &reached, NULL) || !reached) return NAN;
    return -s;
}

/* {value, lo, hi, n, significant} and a phrase for the log/report */
static json_t *interval_json(double value, const double *v, size_t n, double *lo, double *hi, const char **verdict) {
    double mean;
    sm_t_interval(v, n, SM_STATS_LEVEL, &mean, lo, hi);
    int known = isfinite(*lo) && isfinite(*hi);
    int sig = known && (*lo > 0 || *hi < 0);
    *verdict = !known ? "no interval (needs repeats of both mixtures)" : sig ? "significant" : "not significant";
    return json_pack("{s:o,s:o,s:o,s:o,s:I,s:o,s:s}", "value", sm_asj_num(value), "mean_of_seeds", sm_asj_num(mean), "lo",
                     sm_asj_num(*lo), "hi", sm_asj_num(*hi), "n", (json_int_t)n, "significant",
                     known ? json_boolean(sig) : json_null(), "verdict", *verdict);
}

static int run(const sm_host_api *api, sm_host *h, const char *params_json, const char *inputs_json, sm_error *err) {
    (void)inputs_json;
    json_t *p = NULL;
    char **names = NULL;
    size_t n = 0;
    mix *mx = NULL;
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
    mx = calloc(n, sizeof *mx);
    if (!mx) { rc = sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory"); goto out; }
    size_t ti = n;
    for (size_t i = 0; i < n; i++) {
        if ((rc = read_mix(json_object_get(curves, names[i]), names[i], &mx[i], err))) goto out;
        if (!strcmp(names[i], target)) ti = i;
    }
    if (ti == n) {
        rc = sm_error_set(err, SM_ERR_ARG, STAGE ": no curve named '%s' (the target) among the %zu curves", target, n);
        goto out;
    }
    json_t *res = json_object(), *sp = json_object(), *fin = json_object(), *reach = json_object(), *bend = json_object();
    json_t *spci = json_object(), *fdiff = json_object(), *summary = json_object(), *reps = json_object();
    const sm_curve *tc = &mx[ti].mean.c;
    for (size_t i = 0; i < n; i++) {
        json_object_set_new(fin, names[i], sm_asj_num(mx[i].mean.final));
        json_object_set_new(reps, names[i], json_integer((json_int_t)mx[i].k));
        if (i == ti) continue;
        const sm_curve *bc = &mx[i].mean.c;
        double s = NAN, rs = NAN;
        int reached = 0;
        if ((rc = sm_speedup(tc, bc, &s, &rs, &reached, err))) {
            json_decref(res); json_decref(sp); json_decref(fin); json_decref(reach); json_decref(bend);
            json_decref(spci); json_decref(fdiff); json_decref(summary); json_decref(reps);
            sm_error_wrap(err, STAGE ": %s vs %s", target, names[i]);
            goto out;
        }
        double last = bc->steps[bc->n - 1];
        json_object_set_new(sp, names[i], reached ? sm_asj_num(s) : json_null());
        json_object_set_new(reach, names[i], reached ? sm_asj_num(rs) : json_null());
        json_object_set_new(bend, names[i], sm_asj_num(last));
        /* paired seeds: the first min(k) repeats of each */
        size_t kp = mx[ti].k < mx[i].k ? mx[ti].k : mx[i].k, ns = 0;
        double ss[kp], dd[kp];
        for (size_t r = 0; r < kp; r++) {
            dd[r] = mx[ti].rep[r].final - mx[i].rep[r].final;
            double v = signed_speedup(&mx[ti].rep[r].c, &mx[i].rep[r].c);
            if (isfinite(v)) ss[ns++] = v;
        }
        double slo, shi, dlo, dhi, dval = mx[ti].mean.final - mx[i].mean.final;
        const char *sv, *dv;
        json_object_set_new(spci, names[i], interval_json(reached ? s : signed_speedup(tc, bc), ss, ns, &slo, &shi, &sv));
        json_object_set_new(fdiff, names[i], interval_json(dval, dd, kp, &dlo, &dhi, &dv));
        char line[512], sps[128];
        if (reached) snprintf(sps, sizeof sps, "speed-up %+.1f%%", 100 * s);
        else snprintf(sps, sizeof sps, "never reached the end of %s's %s curve (signed speed-up %+.1f%%)", names[i], metric,
                      100 * signed_speedup(tc, bc));
        if (isfinite(slo))
            snprintf(line, sizeof line, "%s [90%% interval %+.1f%%, %+.1f%%, %zu seeds: %s]; final %s %+.4g [%+.4g, %+.4g: %s]",
                     sps, 100 * slo, 100 * shi, ns, sv, metric, dval, dlo, dhi, dv);
        else
            snprintf(line, sizeof line, "%s; final %s %+.4g (one run per mixture: no interval)", sps, metric, dval);
        json_object_set_new(summary, names[i], json_string(line));
        api->log(h, SM_LOG_INFO, "%s vs %s: %s", target, names[i], line);
        if (reached && api->metric) {
            char mname[256];
            snprintf(mname, sizeof mname, "speedup_vs_%s", names[i]);
            api->metric(h, mname, (int64_t)llround(last), NULL, s);
        }
    }
    json_object_set_new(res, "target", json_string(target));
    json_object_set_new(res, "metric", json_string(metric));
    json_object_set_new(res, "speedup", sp);
    json_object_set_new(res, "final", fin);
    json_object_set_new(res, "steps_to_reach", reach);
    json_object_set_new(res, "baseline_final_step", bend);
    json_object_set_new(res, "repeats", reps);
    json_object_set_new(res, "level", json_real(SM_STATS_LEVEL));
    json_object_set_new(res, "speedup_ci", spci);
    json_object_set_new(res, "final_diff", fdiff);
    json_object_set_new(res, "summary", summary);
    rc = sm_asj_emit(api, h, res, STAGE, err);
out:
    for (size_t i = 0; mx && i < n; i++) mix_free(&mx[i]);
    free(mx);
    sm_asj_free_names(names, n);
    json_decref(p);
    return rc;
}

static const sm_plugin_desc desc = {
    .struct_size = sizeof(sm_plugin_desc),
    .abi_major = SM_PLUGIN_ABI_MAJOR,
    .abi_minor = SM_PLUGIN_ABI_MINOR,
    .name = "compare",
    .version = "2.1.0",
    .cache_salt = "3",
    .description = "speed-up of the target run over each baseline (1 - steps to reach the baseline's final value / its "
                   "steps) and the difference of the final evaluations, with 90% intervals over paired seeds",
    .params_schema = schema,
    .resources = NULL,
    .run = run,
};

const sm_plugin_desc *sm_plugin_describe(void) { return &desc; }
