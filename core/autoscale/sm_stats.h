/* sm_stats.h - the small statistics the AutoScale stages share: quantiles, pooled noise from repeated
 * measurements, Student-t intervals on paired differences, and a seeded random stream for the parametric
 * bootstrap. The methods are explained in core/autoscale/README.md ("Noise and intervals"). */
#ifndef SM_STATS_H
#define SM_STATS_H

#include <stddef.h>
#include "sm_common.h"

/* The nominal level of every interval the stages report (two-sided). */
#define SM_STATS_LEVEL 0.9

/* Quantile p in [0, 1] of v[0..n) (linear interpolation between order statistics, "type 7"); sorts v in
 * place. NaN when n == 0. */
double sm_quantile(double *v, size_t n, double p);
/* Mean of v[0..n); NaN when n == 0. */
double sm_mean(const double *v, size_t n);
/* Sample variance (n - 1 in the denominator); NaN when n < 2. */
double sm_var(const double *v, size_t n);
/* Student-t interval at level for the mean of v[0..n): writes mean, lo, hi. n < 2 gives lo = hi = NaN. */
void sm_t_interval(const double *v, size_t n, double level, double *mean, double *lo, double *hi);

/* The two-sided critical value of Student's t at level with df degrees of freedom (normal when df is infinite). */
double sm_t_crit(double level, double df);

/* A seeded random stream (GSL's MT19937). */
typedef struct sm_rng sm_rng;
sm_rng *sm_rng_new(unsigned long seed);
void sm_rng_free(sm_rng *r);
double sm_rng_normal(sm_rng *r);
/* A draw of sigma's sampling uncertainty: sigma * sqrt(df / chi2_df) (df > 0), i.e. the scale that makes
 * normal draws with it Student-t distributed; sigma itself when df is infinite. */
double sm_rng_sigma(sm_rng *r, double sigma, double df);

#endif
