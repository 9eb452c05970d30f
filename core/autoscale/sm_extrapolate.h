/* sm_extrapolate.h - AutoScale's stage 2: from DDO optima N1_i (budget sum N1) and N2_i (larger budget),
 * the paper's rule N3_i = N2_i^2 / N1_i, repeated: N_i after k steps past N2 = N2_i r_i^k with
 * r_i = N2_i / N1_i, and its continuous form N_i(t) = N1_i r_i^t (t = 0: N1, t = 1: N2, t = 1 + k: k steps
 * past N2, t = 1/2: the geometric mean) solved for any target budget. */
#ifndef SM_EXTRAPOLATE_H
#define SM_EXTRAPOLATE_H

#include <stddef.h>
#include "sm_common.h"

/* Checks the two optima (positive, finite, the second total larger) and writes r_i = n2_i / n1_i. */
int sm_ex_ratios(size_t m, const double *n1, const double *n2, double *ratios, sm_error *err);
/* The mixture k >= 1 steps past the second optimum (k = 1 is the paper's N3 = N2^2 / N1). */
int sm_ex_steps(size_t m, const double *n1, const double *n2, int k, double *out, sm_error *err);
/* N_i(t) = N1_i r_i^t for any real t. */
int sm_ex_at(size_t m, const double *n1, const double *n2, double t, double *out, sm_error *err);
/* The continuous form at a target budget: t with sum_i N_i(t) = budget on the branch where the total grows
 * with t (the total is convex in t; bisection to adjacent doubles), then tokens rescaled by the few-ulp
 * factor that makes them sum to budget exactly. SM_ERR_ARG when no t on that branch reaches the budget. */
int sm_ex_to_budget(size_t m, const double *n1, const double *n2, double budget, double *out, double *t_out,
                    sm_error *err);

/* Predicted against actual (e.g. a DDO run at an intermediate budget). Per-domain arrays may be NULL. */
typedef struct sm_ex_errors {
    double max_abs_weight_err, mean_abs_weight_err;
    double l1;                    /* sum_i |w_pred_i - w_actual_i| */
    double max_abs_token_rel_err; /* max_i |N_pred_i / N_actual_i - 1| */
} sm_ex_errors;
int sm_ex_compare(size_t m, const double *pred, const double *actual, double *token_rel, double *weight_abs,
                  double *weight_rel, sm_ex_errors *out, sm_error *err);

#endif
