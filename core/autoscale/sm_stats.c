/* sm_stats.c - quantiles, t intervals and the bootstrap's random stream. */
#include "sm_stats.h"

#include <math.h>
#include <stdlib.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double sm_quantile(double *v, size_t n, double p) {
    if (n == 0) return NAN;
    qsort(v, n, sizeof *v, cmp_d);
    double h = p * (double)(n - 1);
    size_t i = (size_t)floor(h);
    if (i + 1 >= n) return v[n - 1];
    return v[i] + (h - (double)i) * (v[i + 1] - v[i]);
}

double sm_mean(const double *v, size_t n) {
    if (n == 0) return NAN;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += v[i];
    return s / (double)n;
}

double sm_var(const double *v, size_t n) {
    if (n < 2) return NAN;
    double m = sm_mean(v, n), s = 0;
    for (size_t i = 0; i < n; i++) s += (v[i] - m) * (v[i] - m);
    return s / (double)(n - 1);
}

void sm_t_interval(const double *v, size_t n, double level, double *mean, double *lo, double *hi) {
    *mean = sm_mean(v, n);
    *lo = *hi = NAN;
    if (n < 2) return;
    double se = sqrt(sm_var(v, n) / (double)n), t = sm_t_crit(level, (double)(n - 1));
    *lo = *mean - t * se;
    *hi = *mean + t * se;
}

double sm_t_crit(double level, double df) {
    return isfinite(df) ? gsl_cdf_tdist_Pinv(0.5 + level / 2, df) : gsl_cdf_ugaussian_Pinv(0.5 + level / 2);
}

struct sm_rng {
    gsl_rng *g;
};

sm_rng *sm_rng_new(unsigned long seed) {
    sm_rng *r = malloc(sizeof *r);
    if (!r) return NULL;
    if (!(r->g = gsl_rng_alloc(gsl_rng_mt19937))) { free(r); return NULL; }
    gsl_rng_set(r->g, seed);
    return r;
}

void sm_rng_free(sm_rng *r) {
    if (!r) return;
    gsl_rng_free(r->g);
    free(r);
}

double sm_rng_normal(sm_rng *r) { return gsl_ran_gaussian_ziggurat(r->g, 1.0); }

double sm_rng_sigma(sm_rng *r, double sigma, double df) {
    if (!isfinite(df)) return sigma;
    return sigma * sqrt(df / gsl_ran_chisq(r->g, df));
}
