/* sm_extrapolate.c - the paper's extrapolation rule and its continuous form. */
#include "sm_extrapolate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int adjacent(double lo, double hi) { return !(nextafter(lo, hi) < hi) || lo == hi; }

int sm_ex_ratios(size_t m, const double *n1, const double *n2, double *ratios, sm_error *err) {
    if (m == 0 || !n1 || !n2) return sm_error_set(err, SM_ERR_ARG, "extrapolate: no domains");
    double s1 = 0, s2 = 0;
    for (size_t i = 0; i < m; i++) {
        if (!(isfinite(n1[i]) && n1[i] > 0 && isfinite(n2[i]) && n2[i] > 0))
            return sm_error_set(err, SM_ERR_ARG,
                                "extrapolate: domain %zu has tokens %g and %g; both optima need positive token counts "
                                "for every domain", i, n1[i], n2[i]);
        s1 += n1[i];
        s2 += n2[i];
        if (ratios) ratios[i] = n2[i] / n1[i];
    }
    if (!(s2 > s1))
        return sm_error_set(err, SM_ERR_ARG,
                            "extrapolate: the second optimum's total (%.6g tokens) must exceed the first's (%.6g); "
                            "list the smaller budget first", s2, s1);
    return SM_OK;
}

int sm_ex_steps(size_t m, const double *n1, const double *n2, int k, double *out, sm_error *err) {
    int rc = sm_ex_ratios(m, n1, n2, NULL, err);
    if (rc) return rc;
    if (k < 1) return sm_error_set(err, SM_ERR_ARG, "extrapolate: steps must be >= 1 (got %d)", k);
    for (size_t i = 0; i < m; i++)
        out[i] = k == 1 ? n2[i] * n2[i] / n1[i] : n2[i] * pow(n2[i] / n1[i], k);
    return SM_OK;
}

int sm_ex_at(size_t m, const double *n1, const double *n2, double t, double *out, sm_error *err) {
    int rc = sm_ex_ratios(m, n1, n2, NULL, err);
    if (rc) return rc;
    if (!isfinite(t)) return sm_error_set(err, SM_ERR_ARG, "extrapolate: t must be finite");
    for (size_t i = 0; i < m; i++) out[i] = n1[i] * exp(t * log(n2[i] / n1[i]));
    return SM_OK;
}

static double total(size_t m, const double *n1, const double *lr, double t) {
    double s = 0;
    for (size_t i = 0; i < m; i++) s += n1[i] * exp(t * lr[i]);
    return s;
}

static double slope(size_t m, const double *n1, const double *lr, double t) {
    double s = 0;
    for (size_t i = 0; i < m; i++) s += n1[i] * lr[i] * exp(t * lr[i]);
    return s;
}

int sm_ex_to_budget(size_t m, const double *n1, const double *n2, double budget, double *out, double *t_out,
                    sm_error *err) {
    int rc = sm_ex_ratios(m, n1, n2, NULL, err);
    if (rc) return rc;
    if (!(isfinite(budget) && budget > 0))
        return sm_error_set(err, SM_ERR_ARG, "extrapolate: the target budget must be a positive number (got %g)", budget);
    double *lr = malloc(m * sizeof *lr);
    if (!lr) return sm_error_set(err, SM_ERR_NOMEM, "extrapolate: out of memory");
    int shrinking = 0;
    for (size_t i = 0; i < m; i++) {
        lr[i] = log(n2[i] / n1[i]);
        if (lr[i] < 0) shrinking = 1;
    }
    /* The total is convex in t and grows from t = 1 on (it rose from t = 0 to 1). With a shrinking domain
     * it has a minimum at some t* < 1; the growing branch starts there. */
    double lo = 0, hi = 1;
    if (shrinking) {
        double a = 0;
        for (int k = 0; slope(m, n1, lr, a) >= 0; k++) {
            a = a * 2 - 1;
            if (k > 60) { free(lr); return sm_error_set(err, SM_ERR_INTERNAL, "extrapolate: no minimum of the total found"); }
        }
        double b = 1;
        for (int it = 0; it < 2000 && !adjacent(a, b); it++) {
            double mid = 0.5 * (a + b);
            if (slope(m, n1, lr, mid) < 0) a = mid; else b = mid;
        }
        lo = b;
        double fmin = total(m, n1, lr, lo);
        if (budget < fmin * (1 - 1e-12)) {
            free(lr);
            return sm_error_set(err, SM_ERR_ARG,
                                "extrapolate: the budget %.6g tokens is below %.6g, the smallest total the continuous "
                                "form reaches (at t = %.4g); pick a larger budget", budget, fmin, lo);
        }
        if (budget <= fmin) budget = fmin;
    } else {
        for (int k = 0; total(m, n1, lr, lo) > budget; k++) {
            lo = lo * 2 - 1;
            if (k > 60) { free(lr); return sm_error_set(err, SM_ERR_ARG, "extrapolate: budget %g is not reachable", budget); }
        }
    }
    for (int k = 0; total(m, n1, lr, hi) < budget; k++) {
        hi *= 2;
        if (k > 60) { free(lr); return sm_error_set(err, SM_ERR_ARG, "extrapolate: budget %g is not reachable", budget); }
    }
    for (int it = 0; it < 4000 && !adjacent(lo, hi); it++) {
        double mid = 0.5 * (lo + hi);
        if (total(m, n1, lr, mid) < budget) lo = mid; else hi = mid;
    }
    double t = fabs(total(m, n1, lr, lo) - budget) <= fabs(total(m, n1, lr, hi) - budget) ? lo : hi;
    double s = 0;
    for (size_t i = 0; i < m; i++) {
        out[i] = n1[i] * exp(t * lr[i]);
        s += out[i];
    }
    for (size_t i = 0; i < m; i++) out[i] *= budget / s;
    if (t_out) *t_out = t;
    free(lr);
    return SM_OK;
}

int sm_ex_compare(size_t m, const double *pred, const double *actual, double *token_rel, double *weight_abs,
                  double *weight_rel, sm_ex_errors *out, sm_error *err) {
    memset(out, 0, sizeof *out);
    double sp = 0, sa = 0;
    for (size_t i = 0; i < m; i++) {
        if (!(isfinite(pred[i]) && pred[i] >= 0 && isfinite(actual[i]) && actual[i] > 0))
            return sm_error_set(err, SM_ERR_ARG, "extrapolate: domain %zu: predicted %g / actual %g tokens are not usable",
                                i, pred[i], actual[i]);
        sp += pred[i];
        sa += actual[i];
    }
    if (m == 0 || !(sp > 0)) return sm_error_set(err, SM_ERR_ARG, "extrapolate: nothing to compare");
    for (size_t i = 0; i < m; i++) {
        double tr = pred[i] / actual[i] - 1, wp = pred[i] / sp, wa = actual[i] / sa, d = wp - wa;
        if (token_rel) token_rel[i] = tr;
        if (weight_abs) weight_abs[i] = d;
        if (weight_rel) weight_rel[i] = d / wa;
        if (fabs(tr) > out->max_abs_token_rel_err) out->max_abs_token_rel_err = fabs(tr);
        if (fabs(d) > out->max_abs_weight_err) out->max_abs_weight_err = fabs(d);
        out->l1 += fabs(d);
    }
    out->mean_abs_weight_err = out->l1 / (double)m;
    return SM_OK;
}
