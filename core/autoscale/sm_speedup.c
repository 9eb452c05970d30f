/* sm_speedup.c - steps-to-reach speed-up between two validation curves. */
#include "sm_speedup.h"

#include <math.h>

int sm_curve_check(const sm_curve *c, const char *name, sm_error *err) {
    if (!c || c->n == 0 || !c->steps || !c->values)
        return sm_error_set(err, SM_ERR_ARG, "speedup: curve '%s' has no points", name);
    for (size_t k = 0; k < c->n; k++) {
        if (!(isfinite(c->steps[k]) && c->steps[k] >= 0 && isfinite(c->values[k])))
            return sm_error_set(err, SM_ERR_ARG, "speedup: curve '%s' point %zu (step %g, value %g) is not finite",
                                name, k, c->steps[k], c->values[k]);
        if (k > 0 && !(c->steps[k] > c->steps[k - 1]))
            return sm_error_set(err, SM_ERR_ARG, "speedup: curve '%s' steps must strictly increase (%g after %g)", name,
                                c->steps[k], c->steps[k - 1]);
    }
    if (!(c->tokens_per_step >= 0 && isfinite(c->tokens_per_step)))
        return sm_error_set(err, SM_ERR_ARG, "speedup: curve '%s' tokens_per_step must be >= 0", name);
    return SM_OK;
}

int sm_curve_first_reach(const sm_curve *c, double v, double *step) {
    for (size_t j = 0; j < c->n; j++) {
        if (!(c->values[j] <= v)) continue;
        if (j == 0) {
            *step = c->steps[0];
        } else {
            double v0 = c->values[j - 1], v1 = c->values[j], s0 = c->steps[j - 1], s1 = c->steps[j];
            *step = s0 + (v0 - v) / (v0 - v1) * (s1 - s0);
        }
        return 0;
    }
    return 1;
}

int sm_speedup(const sm_curve *target, const sm_curve *baseline, double *speedup, double *reach_step, int *reached,
               sm_error *err) {
    int rc = sm_curve_check(target, "target", err);
    if (!rc) rc = sm_curve_check(baseline, "baseline", err);
    if (rc) return rc;
    double v = baseline->values[baseline->n - 1], s;
    double base_end = baseline->steps[baseline->n - 1];
    if (!(base_end > 0)) return sm_error_set(err, SM_ERR_ARG, "speedup: the baseline's final step must be > 0");
    *speedup = NAN;
    *reached = 0;
    if (sm_curve_first_reach(target, v, &s)) return SM_OK;
    *reached = 1;
    if (reach_step) *reach_step = s;
    int tokens = target->tokens_per_step > 0 && baseline->tokens_per_step > 0;
    double num = tokens ? s * target->tokens_per_step : s;
    double den = tokens ? base_end * baseline->tokens_per_step : base_end;
    *speedup = 1 - num / den;
    return SM_OK;
}
