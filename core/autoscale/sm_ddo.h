/* sm_ddo.h - one DDO solve: the per-domain power laws through the measured points, then the exact
 * water-filling optimum with some domains held at their base quantity (asked for, or because their
 * fitted curve is unusable). The fit stage runs it once for its answer, once for the other 3-point
 * interpolant, and once per bootstrap replicate. */
#ifndef SM_DDO_H
#define SM_DDO_H

#include <stddef.h>
#include "sm_common.h"
#include "sm_fit.h"
#include "sm_waterfill.h"

enum { SM_DDO_FREE = 0, SM_DDO_HELD_BAD_FIT = 1, SM_DDO_HELD_ASKED = 2 };

typedef struct sm_ddo_problem {
    size_t m;
    char *const *domains;      /* names, for messages */
    const double *const *x;    /* x[i][0..npts[i]): N_i / N_i^base of domain i's points */
    const double *const *y;    /* y[i][...]: metric / base metric */
    const size_t *npts;
    const double *base;        /* N_i^base, tokens */
    double lower, budget;
    int saturating;            /* 3 points: use the larger-b interpolant */
    int fail_bad;              /* an unusable curve is an error instead of a held domain */
    const int *hold;           /* NULL or 1 for domains to hold at their base quantity */
} sm_ddo_problem;

typedef struct sm_ddo_solution {
    sm_fit_result *fits;       /* m entries, caller-allocated */
    int *held;                 /* m entries: SM_DDO_* */
    double *n;                 /* m entries: N_i* / N_i^base */
    double lambda, objective;  /* objective over the optimised domains (held ones are constants) */
    sm_wf_kkt kkt;
} sm_ddo_solution;

/* Fits every domain and solves the optimum. A curve is unusable when it diverges at the lower bound or its
 * solver did not converge. SM_ERR_ARG with the domain and reason when the problem has no solution. */
int sm_ddo_solve(const sm_ddo_problem *p, sm_ddo_solution *s, sm_error *err);

#endif
