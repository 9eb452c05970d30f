/* sm_waterfill.c - the exact KKT optimum of DDO and a projected-gradient reference for tests. */
#include "sm_waterfill.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int adjacent(double lo, double hi) { return !(nextafter(lo, hi) < hi) || lo == hi; }

/* b (n + a)^(-b-1): the marginal decrease of domain i's term per unit of n */
static double gain(double a, double b, double n) { return b * exp((-b - 1) * log(n + a)); }

int sm_wf_check(const sm_wf_problem *p, sm_error *err) {
    if (!p || p->m == 0 || !p->a || !p->b || !p->base)
        return sm_error_set(err, SM_ERR_ARG, "waterfill: no domains");
    if (!(isfinite(p->lower) && p->lower > 0))
        return sm_error_set(err, SM_ERR_ARG, "waterfill: the lower bound must be a positive number (got %g)", p->lower);
    if (!(isfinite(p->budget) && p->budget > 0))
        return sm_error_set(err, SM_ERR_ARG, "waterfill: the budget must be a positive number of tokens (got %g)", p->budget);
    double floor_tokens = 0;
    for (size_t i = 0; i < p->m; i++) {
        if (!(isfinite(p->a[i]) && isfinite(p->b[i])))
            return sm_error_set(err, SM_ERR_ARG, "waterfill: domain %zu has non-finite fit parameters", i);
        if (!(isfinite(p->base[i]) && p->base[i] > 0))
            return sm_error_set(err, SM_ERR_ARG, "waterfill: domain %zu has base tokens %g; they must be > 0", i, p->base[i]);
        if (!(p->lower + p->a[i] > 0))
            return sm_error_set(err, SM_ERR_ARG,
                                "waterfill: domain %zu: lower bound %g is at or below -a = %g, where its fitted curve "
                                "diverges; raise the lower bound (the fit is not trusted below the smallest factor)",
                                i, p->lower, -p->a[i]);
        floor_tokens += p->lower * p->base[i];
    }
    if (floor_tokens > p->budget * (1 + 1e-12))
        return sm_error_set(err, SM_ERR_ARG,
                            "waterfill: the budget %.6g tokens is below the lower bound's %.6g tokens (%g x the base "
                            "tokens); raise the budget or lower the bound", p->budget, floor_tokens, p->lower);
    return SM_OK;
}

static double n_at(const sm_wf_problem *p, size_t i, double lambda) {
    if (!(p->b[i] > 0)) return p->lower;
    double b = p->b[i];
    double n = exp(-log(lambda * p->base[i] / b) / (b + 1)) - p->a[i];
    return n > p->lower ? n : p->lower;
}

static double spend(const sm_wf_problem *p, double lambda) {
    double s = 0;
    for (size_t i = 0; i < p->m; i++) s += n_at(p, i, lambda) * p->base[i];
    return s;
}

int sm_wf_solve(const sm_wf_problem *p, double *n_out, double *lambda_out, sm_error *err) {
    int rc = sm_wf_check(p, err);
    if (rc) return rc;
    /* at lambda_hi every domain sits at its bound */
    double hi = 0;
    int any_free = 0;
    for (size_t i = 0; i < p->m; i++) {
        if (!(p->b[i] > 0)) continue;
        any_free = 1;
        double l = gain(p->a[i], p->b[i], p->lower) / p->base[i];
        if (l > hi) hi = l;
    }
    double floor_tokens = spend(p, INFINITY);
    if (!any_free) {
        if (fabs(floor_tokens - p->budget) > 1e-12 * p->budget)
            return sm_error_set(err, SM_ERR_ARG,
                                "waterfill: no domain has a positive fitted exponent, so no allocation beyond the lower "
                                "bound improves the objective and the budget cannot be spent; check the fits' flags");
        for (size_t i = 0; i < p->m; i++) n_out[i] = p->lower;
        if (lambda_out) *lambda_out = 0;
        return SM_OK;
    }
    if (floor_tokens >= p->budget) {
        for (size_t i = 0; i < p->m; i++) n_out[i] = p->lower;
        if (lambda_out) *lambda_out = hi;
        return SM_OK;
    }
    double lo = hi;
    for (int k = 0; spend(p, lo) < p->budget; k++) {
        lo /= 16;
        if (k > 400 || !(lo > 0))
            return sm_error_set(err, SM_ERR_INTERNAL, "waterfill: could not bracket lambda for budget %g", p->budget);
    }
    for (int it = 0; it < 4000 && !adjacent(lo, hi); it++) {
        double mid = sqrt(lo) * sqrt(hi);
        if (!(mid > lo && mid < hi)) mid = 0.5 * (lo + hi);
        if (spend(p, mid) >= p->budget) lo = mid; else hi = mid;
    }
    double lambda = fabs(spend(p, lo) - p->budget) <= fabs(spend(p, hi) - p->budget) ? lo : hi;
    double s = 0, free_base = 0;
    for (size_t i = 0; i < p->m; i++) {
        n_out[i] = n_at(p, i, lambda);
        s += n_out[i] * p->base[i];
        if (n_out[i] > p->lower) free_base += p->base[i];
    }
    /* the rounding residual (a few ulps of N) goes to the free domains so the budget holds exactly */
    if (free_base > 0) {
        double d = (p->budget - s) / free_base;
        for (size_t i = 0; i < p->m; i++)
            if (n_out[i] > p->lower && n_out[i] + d >= p->lower) n_out[i] += d;
    }
    if (lambda_out) *lambda_out = lambda;
    return SM_OK;
}

double sm_wf_objective(const sm_wf_problem *p, const double *n) {
    double f = 0;
    for (size_t i = 0; i < p->m; i++) f += exp(-p->b[i] * log(n[i] + p->a[i]));
    return f;
}

void sm_wf_kkt_check(const sm_wf_problem *p, const double *n, double lambda, sm_wf_kkt *out) {
    memset(out, 0, sizeof *out);
    double s = 0;
    for (size_t i = 0; i < p->m; i++) {
        s += n[i] * p->base[i];
        double v = (p->lower - n[i]) / p->lower;
        if (v > out->bound) out->bound = v;
        if (!(lambda > 0)) continue;
        double r = gain(p->a[i], p->b[i], n[i]) / (lambda * p->base[i]);
        /* "off the bound" with a relative margin: a free domain that lands within rounding of L is both */
        if (n[i] > p->lower * (1 + 1e-9)) {
            if (fabs(r - 1) > out->stationarity) out->stationarity = fabs(r - 1);
        } else if (r - 1 > out->complementarity) {
            out->complementarity = r - 1;
        }
    }
    out->budget = fabs(s - p->budget) / p->budget;
    out->max_violation = out->stationarity;
    if (out->complementarity > out->max_violation) out->max_violation = out->complementarity;
    if (out->bound > out->max_violation) out->max_violation = out->bound;
    if (out->budget > out->max_violation) out->max_violation = out->budget;
}

static double projected_spend(const sm_wf_problem *p, const double *v, double tau) {
    double s = 0;
    for (size_t i = 0; i < p->m; i++) {
        double n = v[i] - tau * p->base[i];
        s += (n > p->lower ? n : p->lower) * p->base[i];
    }
    return s;
}

void sm_wf_project(const sm_wf_problem *p, const double *v, double *n_out) {
    /* the spend decreases in tau: bracket, then bisect */
    double lo = -1, hi = 1;
    for (int k = 0; k < 2100 && projected_spend(p, v, lo) < p->budget; k++) lo *= 2;
    for (int k = 0; k < 2100 && projected_spend(p, v, hi) > p->budget; k++) hi *= 2;
    for (int it = 0; it < 4000 && !adjacent(lo, hi); it++) {
        double mid = 0.5 * (lo + hi);
        if (projected_spend(p, v, mid) > p->budget) lo = mid; else hi = mid;
    }
    double tau = 0.5 * (lo + hi);
    for (size_t i = 0; i < p->m; i++) {
        double n = v[i] - tau * p->base[i];
        n_out[i] = n > p->lower ? n : p->lower;
    }
}

static double dot(size_t m, const double *x, const double *y) {
    double s = 0;
    for (size_t i = 0; i < m; i++) s += x[i] * y[i];
    return s;
}

/* Spectral projected gradient (Birgin, Martinez and Raydan): Barzilai-Borwein steps projected onto the
 * feasible set, with a nonmonotone line search along the projected direction. A fixed 1/Lipschitz step is
 * hopeless here: the curvature near the bound can exceed the curvature at the optimum by many orders. */
int sm_wf_solve_pgd(const sm_wf_problem *p, double *n_out, int max_iter, double tol, int *iters, sm_error *err) {
    int rc = sm_wf_check(p, err);
    if (rc) return rc;
    size_t m = p->m;
    enum { HIST = 10 };
    double *buf = malloc(6 * m * sizeof *buf);
    if (!buf) return sm_error_set(err, SM_ERR_NOMEM, "waterfill: out of memory");
    double *g = buf, *v = buf + m, *d = buf + 2 * m, *nn = buf + 3 * m, *gn = buf + 4 * m, *tmp = buf + 5 * m;
    double sb = 0;
    for (size_t i = 0; i < m; i++) sb += p->base[i];
    for (size_t i = 0; i < m; i++) v[i] = p->budget / sb;
    sm_wf_project(p, v, n_out);
    for (size_t i = 0; i < m; i++) g[i] = -gain(p->a[i], p->b[i], n_out[i]);
    double f = sm_wf_objective(p, n_out), hist[HIST], alpha = 1;
    for (int k = 0; k < HIST; k++) hist[k] = f;
    int it = 0;
    while (it < max_iter) {
        for (size_t i = 0; i < m; i++) v[i] = n_out[i] - alpha * g[i];
        sm_wf_project(p, v, tmp);
        for (size_t i = 0; i < m; i++) d[i] = tmp[i] - n_out[i];
        double fref = hist[0];
        for (int k = 1; k < HIST; k++) if (hist[k] > fref) fref = hist[k];
        double gd = dot(m, g, d), lam = 1, fn = f;
        for (int ls = 0; ls < 60; ls++) {
            for (size_t i = 0; i < m; i++) nn[i] = n_out[i] + lam * d[i];
            fn = sm_wf_objective(p, nn);
            if (fn <= fref + 1e-4 * lam * gd) break;
            lam *= 0.5;
        }
        double move = 0;
        for (size_t i = 0; i < m; i++) {
            double s = nn[i] - n_out[i];
            if (fabs(s) > move) move = fabs(s);
            gn[i] = -gain(p->a[i], p->b[i], nn[i]);
            tmp[i] = s;
            d[i] = gn[i] - g[i];
        }
        double ss = dot(m, tmp, tmp), sy = dot(m, tmp, d);
        alpha = sy > 0 ? ss / sy : 1e10;
        if (alpha < 1e-30) alpha = 1e-30;
        if (alpha > 1e30) alpha = 1e30;
        memcpy(n_out, nn, m * sizeof *nn);
        memcpy(g, gn, m * sizeof *gn);
        f = fn;
        hist[it % HIST] = f;
        it++;
        if (move <= tol) break;
    }
    free(buf);
    if (iters) *iters = it;
    return SM_OK;
}
