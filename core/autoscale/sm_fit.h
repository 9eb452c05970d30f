/* sm_fit.h - the per-domain power law of AutoScale's DDO stage, y(x) = (x + a)^-b + c, in normalized
 * units (x = N_i / N_i^base, y = metric / metric of the base run).
 *
 * Three points with distinct x: exact interpolation. The model family is not one-to-one on three points:
 * convex decreasing data generically has TWO exact interpolants (they agree at the points and differ
 * outside them). The fit returns the one with the smaller exponent b (the slower-saturating curve, the
 * first root met scanning a upward) and reports the other as the alternative.
 * More than three points: least squares (GSL's trust-region solver, gsl_multifit_nlinear), started from
 * the best point of a grid over (a, b) with c solved in closed form. */
#ifndef SM_FIT_H
#define SM_FIT_H

#include <stddef.h>
#include "sm_common.h"

/* Flags for data or fits that should not be trusted blindly; several may be set. */
enum {
    SM_FIT_NON_MONOTONE = 1u << 0,  /* y does not strictly decrease as x grows */
    SM_FIT_NON_POSITIVE_EXP = 1u << 1, /* fitted b <= 0: more data does not help, per the fit */
    SM_FIT_NO_CONVERGENCE = 1u << 2, /* the solver stopped without meeting its tolerances */
    SM_FIT_INEXACT = 1u << 3        /* three points that no curve of the family passes through */
};
#define SM_FIT_FLAG_COUNT 4

typedef struct sm_fit_result {
    double a, b, c;
    double rmse;           /* sqrt(mean residual^2), in normalized y units */
    double max_abs_resid;
    size_t n;              /* points used */
    int exact;             /* 1: three-point interpolation, 0: least squares */
    int iterations;        /* solver iterations (root-find steps for exact fits) */
    unsigned flags;        /* SM_FIT_* */
    int has_alt;           /* three points: the second exact interpolant exists */
    double alt_a, alt_b, alt_c;
} sm_fit_result;

/* The model at x (needs x + a > 0; returns NaN otherwise). */
double sm_fit_eval(double a, double b, double c, double x);
/* Fits n >= 3 points (x > 0, finite, at least 3 distinct x). SM_ERR_ARG for unusable input; a fit that
 * merely looks bad still returns SM_OK with flags set. */
int sm_fit_power_law(const double *x, const double *y, size_t n, sm_fit_result *out, sm_error *err);
/* Three points with two exact curves (has_alt): makes the second one the fit (the first becomes alt) and
 * recomputes its residuals and the flags that depend on the curve. Nothing happens without has_alt. */
void sm_fit_use_alt(sm_fit_result *fr, const double *x, const double *y, size_t n);
/* Stable name of one flag bit ("non_monotone", ...); NULL for an unknown bit. */
const char *sm_fit_flag_name(unsigned flag);
/* Writes the names of the flags set, comma-separated ("" when none), into buf. */
void sm_fit_flags_str(unsigned flags, char *buf, size_t cap);

#endif
