/* sm_speedup.h - the paper's training speed-up: 1 - (the step at which the target run first reaches
 * the baseline's final value) / (the baseline's final step), on validation perplexity (or loss: both
 * are lower-is-better and perplexity = exp(loss), so the reach step is the same).
 *
 * "First reaches" is read off the target's evaluation points with linear interpolation: if the target is
 * above the baseline's final value v at eval step s_{j-1} and at or below it at s_j, the reach step is
 * s_{j-1} + (v_{j-1} - v) / (v_{j-1} - v_j) (s_j - s_{j-1}). If the very first eval point is already at or
 * below v, the reach step is that point's step (nothing is known before it). When tokens per step are given
 * for both runs, steps are converted to tokens first, so runs with different batch sizes compare fairly. */
#ifndef SM_SPEEDUP_H
#define SM_SPEEDUP_H

#include <stddef.h>
#include "sm_common.h"

typedef struct sm_curve {
    const double *steps;  /* strictly increasing */
    const double *values; /* lower is better */
    size_t n;
    double tokens_per_step; /* 0: unknown */
} sm_curve;

/* Checks a curve (n >= 1, finite, strictly increasing steps >= 0). */
int sm_curve_check(const sm_curve *c, const char *name, sm_error *err);
/* The first step at which c reaches value v (interpolated, see above); returns 0 and writes *step, or 1
 * when it never does (step untouched). */
int sm_curve_first_reach(const sm_curve *c, double v, double *step);
/* Speed-up of target against baseline. *reached = 0 (and *speedup = NaN) when the target never reaches the
 * baseline's final value; reach_step receives the target's reach step (in steps) when it does. */
int sm_speedup(const sm_curve *target, const sm_curve *baseline, double *speedup, double *reach_step, int *reached,
               sm_error *err);

#endif
