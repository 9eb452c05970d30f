/* sm_waterfill.h - DDO's optimization step: minimize sum_i (n_i + a_i)^-b_i subject to
 * sum_i n_i B_i = N and n_i >= L (n_i = N_i / N_i^base, B_i = N_i^base). Separable and convex for
 * b_i > 0, so the KKT conditions give the exact optimum ("water filling"): every domain off its bound has
 * b_i (n_i + a_i)^(-b_i-1) = lambda B_i, and n_i(lambda) = max(L, (lambda B_i / b_i)^(-1/(b_i+1)) - a_i).
 * A domain whose fitted b_i <= 0 gains nothing from more data and stays at the bound. */
#ifndef SM_WATERFILL_H
#define SM_WATERFILL_H

#include <stddef.h>
#include "sm_common.h"

typedef struct sm_wf_problem {
    size_t m;
    const double *a, *b;  /* fitted power-law parameters per domain */
    const double *base;   /* B_i = N_i^base, tokens (> 0) */
    double lower;         /* L, the lower bound on n_i */
    double budget;        /* N, tokens */
} sm_wf_problem;

typedef struct sm_wf_kkt {
    double stationarity; /* max over free domains of |marginal gain / (lambda B_i) - 1| */
    double complementarity; /* max over bound domains of max(0, marginal gain / (lambda B_i) - 1) */
    double bound;        /* max over domains of max(0, (L - n_i) / L) */
    double budget;       /* |sum n_i B_i - N| / N */
    double max_violation; /* the largest of the four */
} sm_wf_kkt;

/* Validates p: SM_ERR_ARG with the reason (budget below L * sum B_i, L + a_i <= 0, non-finite input). */
int sm_wf_check(const sm_wf_problem *p, sm_error *err);
/* The exact optimum: lambda by bisection (in log lambda, to adjacent doubles), then the budget residual
 * of rounding spread over the free domains. n_out has m entries; lambda_out may be NULL. */
int sm_wf_solve(const sm_wf_problem *p, double *n_out, double *lambda_out, sm_error *err);
/* The objective sum_i (n_i + a_i)^-b_i (the c_i drop out). */
double sm_wf_objective(const sm_wf_problem *p, const double *n);
/* How far n and lambda are from the KKT conditions of p (relative measures; 0 is exact). */
void sm_wf_kkt_check(const sm_wf_problem *p, const double *n, double lambda, sm_wf_kkt *out);
/* Euclidean projection of v onto {sum n_i B_i = N, n_i >= L}: n_i = max(L, v_i - tau B_i). */
void sm_wf_project(const sm_wf_problem *p, const double *v, double *n_out);
/* Reference solver: spectral projected gradient descent from the uniform point, until a step
 * moves no coordinate by more than tol or after max_iter steps. Returns the steps taken via iters. */
int sm_wf_solve_pgd(const sm_wf_problem *p, double *n_out, int max_iter, double tol, int *iters, sm_error *err);

#endif
