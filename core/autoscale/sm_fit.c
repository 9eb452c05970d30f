/* sm_fit.c - the DDO power law fit: exact three-point interpolation by nested 1-D root finds, least
 * squares by GSL's trust-region solver for more points. */
#include "sm_fit.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_errno.h>
#include <gsl/gsl_multifit_nlinear.h>
#include <gsl/gsl_vector.h>

/* GSL's default error handler aborts the process; every caller here checks status codes instead. */
static pthread_once_t gsl_once = PTHREAD_ONCE_INIT;
static void gsl_quiet(void) { gsl_set_error_handler_off(); }

double sm_fit_eval(double a, double b, double c, double x) {
    double u = x + a;
    if (!(u > 0)) return NAN;
    return exp(-b * log(u)) + c;
}

const char *sm_fit_flag_name(unsigned flag) {
    switch (flag) {
    case SM_FIT_NON_MONOTONE: return "non_monotone";
    case SM_FIT_NON_POSITIVE_EXP: return "non_positive_exponent";
    case SM_FIT_NO_CONVERGENCE: return "no_convergence";
    case SM_FIT_INEXACT: return "inexact";
    default: return NULL;
    }
}

void sm_fit_flags_str(unsigned flags, char *buf, size_t cap) {
    if (!cap) return;
    buf[0] = 0;
    size_t len = 0;
    for (int i = 0; i < SM_FIT_FLAG_COUNT; i++) {
        if (!(flags & (1u << i))) continue;
        int w = snprintf(buf + len, cap - len, "%s%s", len ? "," : "", sm_fit_flag_name(1u << i));
        if (w < 0 || (size_t)w >= cap - len) return;
        len += (size_t)w;
    }
}

/* log(expm1(z)) for z > 0 without overflow. */
static double log_expm1(double z) { return z > 30 ? z + log1p(-exp(-z)) : log(expm1(z)); }

/* True when lo and hi are adjacent (or equal) doubles: bisection can go no further. */
static int adjacent(double lo, double hi) { return !(nextafter(lo, hi) < hi) || lo == hi; }

/* ---- three points: y = u^-b + c through (x0,y0), (x1,y1), (x2,y2), x0 < x1 < x2.
 * With s = x0 + a > 0, u_k = s + (x_k - x0). c drops out of the differences D01 = y0 - y1 and
 * D12 = y1 - y2. For fixed s, b is fixed by the ratio D01 / D12 = (u0^-b - u1^-b) / (u1^-b - u2^-b)
 * (increasing in b), which leaves one equation h(s) = u0^-b - u1^-b - D01 = 0 in s alone. */
typedef struct tri {
    double x[3], y[3];
    double d01, d12, log_ratio, w;
} tri;

static void tri_logs(const tri *t, double s, double *l1, double *l2) {
    *l1 = log1p((t->x[1] - t->x[0]) / s);           /* log(u1/u0) */
    *l2 = log1p((t->x[2] - t->x[1]) / (s + t->x[1] - t->x[0])); /* log(u2/u1) */
}

/* The b that matches the ratio at offset s, or -1 when none does (s at or below the feasible edge). */
static double tri_b(const tri *t, double s) {
    double l1, l2;
    tri_logs(t, s, &l1, &l2);
    /* as b -> 0 the ratio tends to l1 / l2; the ratio grows without bound with b */
    if (log(l1) - log(l2) >= t->log_ratio) return -1;
    double lo = 0, hi = 1;
    for (int i = 0; i < 2000; i++) {
        double f = log_expm1(hi * l1) - log(-expm1(-hi * l2)) - t->log_ratio;
        if (f > 0) break;
        lo = hi;
        hi *= 2;
        if (hi > 1e12) return -1;
    }
    /* f(b) is increasing: Newton steps kept inside the bracket, bisection when a step leaves it (the
     * bootstrap runs this solve thousands of times, so plain bisection to adjacent doubles was too slow) */
    double b = 0.5 * (lo + hi);
    for (int i = 0; i < 300 && !adjacent(lo, hi); i++) {
        double f = b > 0 ? log_expm1(b * l1) - log(-expm1(-b * l2)) - t->log_ratio : -INFINITY;
        if (f == 0) return b;
        if (f < 0) lo = b; else hi = b;
        double d = l1 / -expm1(-b * l1) - l2 / expm1(b * l2), nb = b - f / d;
        if (!(nb > lo && nb < hi)) nb = 0.5 * (lo + hi);
        if (fabs(nb - b) <= 2 * DBL_EPSILON * b) return nb;
        b = nb;
    }
    return 0.5 * (lo + hi);
}

/* h(s) = u0^-b - u1^-b - D01 at b = tri_b(s); writes b. */
static double tri_h(const tri *t, double s, double *b_out) {
    double b = tri_b(t, s);
    *b_out = b;
    if (b < 0) return NAN;
    double l1, l2;
    tri_logs(t, s, &l1, &l2);
    double u1 = s + t->x[1] - t->x[0];
    return exp(-b * log(u1)) * expm1(b * l1) - t->d01;
}

/* Newton steps on the full 3x3 system (a, b, c); keeps a step only if it lowers the max residual. */
static double tri_resid(const tri *t, const double p[3], double r[3]) {
    double m = 0;
    for (int k = 0; k < 3; k++) {
        r[k] = sm_fit_eval(p[0], p[1], p[2], t->x[k]) - t->y[k];
        if (!isfinite(r[k])) return INFINITY;
        if (fabs(r[k]) > m) m = fabs(r[k]);
    }
    return m;
}

static void tri_polish(const tri *t, double p[3]) {
    double r[3], best = tri_resid(t, p, r);
    for (int it = 0; it < 8 && best > 0; it++) {
        double J[3][4];
        for (int k = 0; k < 3; k++) {
            double u = t->x[k] + p[0], ub = exp(-p[1] * log(u));
            J[k][0] = -p[1] * ub / u;
            J[k][1] = -log(u) * ub;
            J[k][2] = 1;
            J[k][3] = -r[k];
        }
        /* Gaussian elimination with partial pivoting */
        int ok = 1;
        for (int col = 0; col < 3 && ok; col++) {
            int piv = col;
            for (int k = col + 1; k < 3; k++) if (fabs(J[k][col]) > fabs(J[piv][col])) piv = k;
            if (J[piv][col] == 0) { ok = 0; break; }
            for (int j = 0; j < 4; j++) { double tmp = J[col][j]; J[col][j] = J[piv][j]; J[piv][j] = tmp; }
            for (int k = col + 1; k < 3; k++) {
                double f = J[k][col] / J[col][col];
                for (int j = col; j < 4; j++) J[k][j] -= f * J[col][j];
            }
        }
        if (!ok) return;
        double d[3];
        for (int k = 2; k >= 0; k--) {
            double acc = J[k][3];
            for (int j = k + 1; j < 3; j++) acc -= J[k][j] * d[j];
            d[k] = acc / J[k][k];
        }
        double q[3] = {p[0] + d[0], p[1] + d[1], p[2] + d[2]}, rq[3];
        double mq = tri_resid(t, q, rq);
        if (!(mq < best)) return;
        memcpy(p, q, sizeof q);
        memcpy(r, rq, sizeof rq);
        best = mq;
    }
}

/* Up to 4 exact interpolants, sorted by b; returns how many were found. */
static int tri_solve(tri *t, double roots[4][3], int *steps) {
    t->d01 = t->y[0] - t->y[1];
    t->d12 = t->y[1] - t->y[2];
    t->w = t->x[2] - t->x[0];
    *steps = 0;
    /* b > 0 makes the curve decreasing and convex: other data has no exact interpolant */
    if (!(t->d01 > 0 && t->d12 > 0)) return 0;
    if (!(t->d01 / t->d12 > (t->x[1] - t->x[0]) / (t->x[2] - t->x[1]))) return 0;
    t->log_ratio = log(t->d01) - log(t->d12);
    /* feasible edge s0: below it no b > 0 matches the ratio (l1/l2 decreases in s) */
    double lo = t->w * 1e-300, hi = t->w;
    int guard = 0;
    for (;;) {
        double l1, l2;
        tri_logs(t, hi, &l1, &l2);
        if (log(l1) - log(l2) < t->log_ratio) break;
        lo = hi;
        hi *= 4;
        if (++guard > 200) return 0;
    }
    for (int i = 0; i < 2000 && !adjacent(lo, hi); i++) {
        double mid = sqrt(lo) * sqrt(hi);
        if (!(mid > lo && mid < hi)) mid = 0.5 * (lo + hi);
        double l1, l2;
        tri_logs(t, mid, &l1, &l2);
        if (log(l1) - log(l2) >= t->log_ratio) lo = mid; else hi = mid;
    }
    double s0 = hi;
    /* h(s0+) = -D01 < 0 and h -> -D01 again as s grows, with one hump in between: the roots are where
     * the hump crosses zero. Scan for sign changes, and refine the hump's top so that two roots closer
     * together than the scan's spacing (near tangency) are not missed. */
    enum { SCAN = 200 };
    double S[SCAN + 1], Hs[SCAN + 1], b;
    int kmax = -1;
    for (int k = 0; k <= SCAN; k++) {
        S[k] = s0 + t->w * pow(10.0, -12.0 + 20.0 * k / SCAN);
        Hs[k] = tri_h(t, S[k], &b);
        (*steps)++;
        if (isfinite(Hs[k]) && (kmax < 0 || Hs[k] > Hs[kmax])) kmax = k;
    }
    if (kmax < 0) return 0;
    double brackets[8][2];
    int nb = 0;
    for (int k = 1; k <= SCAN && nb < 6; k++)
        if (isfinite(Hs[k - 1]) && isfinite(Hs[k]) && ((Hs[k - 1] < 0) != (Hs[k] < 0))) {
            brackets[nb][0] = S[k - 1];
            brackets[nb][1] = S[k];
            nb++;
        }
    /* golden-section search for the top of the hump around the best scan point */
    double glo = S[kmax > 0 ? kmax - 1 : 0], ghi = S[kmax < SCAN ? kmax + 1 : SCAN];
    const double gr = 0.6180339887498949;
    double c1 = ghi - gr * (ghi - glo), c2 = glo + gr * (ghi - glo), bb;
    double h1 = tri_h(t, c1, &bb), h2 = tri_h(t, c2, &bb);
    for (int it = 0; it < 200 && !adjacent(glo, ghi) && c1 < c2; it++) {
        if (h1 > h2 || !isfinite(h2)) { ghi = c2; c2 = c1; h2 = h1; c1 = ghi - gr * (ghi - glo); h1 = tri_h(t, c1, &bb); }
        else { glo = c1; c1 = c2; h1 = h2; c2 = glo + gr * (ghi - glo); h2 = tri_h(t, c2, &bb); }
        (*steps)++;
    }
    double smax = h1 > h2 ? c1 : c2, hmax = h1 > h2 ? h1 : h2;
    double tangent = -1;
    if (hmax > 0) {
        double left = S[kmax > 0 ? kmax - 1 : 0], right = S[kmax < SCAN ? kmax + 1 : SCAN];
        if (Hs[kmax > 0 ? kmax - 1 : 0] < 0 && smax > left) { brackets[nb][0] = left; brackets[nb][1] = smax; nb++; }
        if (Hs[kmax < SCAN ? kmax + 1 : SCAN] < 0 && right > smax) { brackets[nb][0] = smax; brackets[nb][1] = right; nb++; }
    } else if (hmax > -1e-13 * t->d01) {
        tangent = smax; /* a double root: the hump just touches zero */
    }
    int nroots = 0;
    for (int q = 0; q <= nb && nroots < 4; q++) {
        double sr, br;
        if (q < nb) {
            double slo = brackets[q][0], shi = brackets[q][1], hlo = tri_h(t, slo, &br);
            for (int i = 0; i < 300 && !adjacent(slo, shi); i++) {
                double mid = 0.5 * (slo + shi), bm;
                double hm = tri_h(t, mid, &bm);
                (*steps)++;
                if (!isfinite(hm)) { slo = mid; continue; }
                if ((hm < 0) == (hlo < 0)) { slo = mid; hlo = hm; } else shi = mid;
            }
            double bl, bh;
            double hl = tri_h(t, slo, &bl), hh = tri_h(t, shi, &bh);
            sr = fabs(hl) <= fabs(hh) ? slo : shi;
            br = fabs(hl) <= fabs(hh) ? bl : bh;
        } else if (tangent > 0) {
            sr = tangent;
            tri_h(t, sr, &br);
        } else {
            break;
        }
        if (!(br > 0)) continue;
        int dup = 0;
        for (int j = 0; j < nroots; j++)
            if (fabs(roots[j][0] - (sr - t->x[0])) <= 1e-9 * (sr + fabs(t->x[0]))) dup = 1;
        if (dup) continue;
        double a = sr - t->x[0], c = 0;
        for (int j = 0; j < 3; j++) c += t->y[j] - exp(-br * log(t->x[j] + a));
        double *p = roots[nroots++];
        p[0] = a; p[1] = br; p[2] = c / 3;
        tri_polish(t, p);
    }
    /* order by exponent: the first is the slower-saturating curve */
    for (int i = 1; i < nroots; i++)
        for (int j = i; j > 0 && roots[j][1] < roots[j - 1][1]; j--)
            for (int q = 0; q < 3; q++) { double tmp = roots[j][q]; roots[j][q] = roots[j - 1][q]; roots[j - 1][q] = tmp; }
    return nroots;
}

/* ---- least squares: parameters (log s, b, c) with a = s - min x, so x + a > 0 at every point. */
typedef struct ls_data {
    const double *x, *y;
    size_t n;
    double xmin;
} ls_data;

static int ls_f(const gsl_vector *p, void *vd, gsl_vector *f) {
    const ls_data *d = vd;
    double s = exp(gsl_vector_get(p, 0)), b = gsl_vector_get(p, 1), c = gsl_vector_get(p, 2);
    for (size_t k = 0; k < d->n; k++) {
        double u = d->x[k] - d->xmin + s;
        gsl_vector_set(f, k, exp(-b * log(u)) + c - d->y[k]);
    }
    return GSL_SUCCESS;
}

static int ls_df(const gsl_vector *p, void *vd, gsl_matrix *J) {
    const ls_data *d = vd;
    double s = exp(gsl_vector_get(p, 0)), b = gsl_vector_get(p, 1);
    for (size_t k = 0; k < d->n; k++) {
        double u = d->x[k] - d->xmin + s, lu = log(u), ub = exp(-b * lu);
        gsl_matrix_set(J, k, 0, -b * ub / u * s);
        gsl_matrix_set(J, k, 1, -lu * ub);
        gsl_matrix_set(J, k, 2, 1.0);
    }
    return GSL_SUCCESS;
}

static double sse_at(const double *x, const double *y, size_t n, double a, double b, double *c_out) {
    double c = 0;
    for (size_t k = 0; k < n; k++) c += y[k] - exp(-b * log(x[k] + a));
    c /= (double)n;
    double sse = 0;
    for (size_t k = 0; k < n; k++) {
        double r = exp(-b * log(x[k] + a)) + c - y[k];
        sse += r * r;
    }
    *c_out = c;
    return isfinite(sse) ? sse : INFINITY;
}

/* One trust-region run from p0 = (log s, b, c); writes the solution, its SSE and whether it converged. */
static int ls_run(const ls_data *d, const double p0[3], double q[3], double *sse, int *iters, int *converged) {
    gsl_multifit_nlinear_fdf fdf = {0};
    fdf.f = ls_f;
    fdf.df = ls_df;
    fdf.n = d->n;
    fdf.p = 3;
    fdf.params = (void *)d;
    gsl_multifit_nlinear_parameters prm = gsl_multifit_nlinear_default_parameters();
    gsl_multifit_nlinear_workspace *ws = gsl_multifit_nlinear_alloc(gsl_multifit_nlinear_trust, &prm, d->n, 3);
    if (!ws) return SM_ERR_NOMEM;
    double start[3] = {p0[0], p0[1], p0[2]};
    gsl_vector_view v0 = gsl_vector_view_array(start, 3);
    int info = 0, status = gsl_multifit_nlinear_init(&v0.vector, &fdf, ws);
    if (status == GSL_SUCCESS) status = gsl_multifit_nlinear_driver(500, 1e-15, 1e-15, 0.0, NULL, NULL, &info, ws);
    gsl_vector *sol = gsl_multifit_nlinear_position(ws);
    for (int j = 0; j < 3; j++) q[j] = gsl_vector_get(sol, (size_t)j);
    *iters += (int)gsl_multifit_nlinear_niter(ws);
    /* "no further progress" at machine precision is convergence when the gradient J^T r vanishes */
    double g = INFINITY, e = 0;
    gsl_vector *f = gsl_multifit_nlinear_residual(ws);
    gsl_matrix *J = gsl_multifit_nlinear_jac(ws);
    if (f && J) {
        g = 0;
        for (size_t j = 0; j < 3; j++) {
            double acc = 0;
            for (size_t k = 0; k < d->n; k++) acc += gsl_matrix_get(J, k, j) * gsl_vector_get(f, k);
            if (fabs(acc) > g) g = fabs(acc);
        }
        for (size_t k = 0; k < d->n; k++) e += gsl_vector_get(f, k) * gsl_vector_get(f, k);
    }
    gsl_multifit_nlinear_free(ws);
    int finite = isfinite(q[0]) && isfinite(q[1]) && isfinite(q[2]) && isfinite(e);
    /* any stop at a stationary point counts: GSL reports e.g. GSL_ENOPROG when the residual is already at
     * rounding level */
    *converged = finite && (status == GSL_SUCCESS || g < 1e-9);
    *sse = finite ? e : INFINITY;
    return SM_OK;
}

/* Least squares from several starts (the sum of squares has local minima): the best grid point over
 * (s, b) with c in closed form, and both exact interpolants of a spread of point triples. Keeps the
 * lowest sum of squares. xs is sorted. */
static int least_squares(const double *x, const double *y, size_t n, double p[3], int *iters, int *converged,
                         sm_error *err) {
    double xmin = x[0], w = x[n - 1] - x[0];
    enum { MAXSTART = 64 };
    double starts[MAXSTART][3];
    int ns = 0;
    double best = INFINITY, bs = w, bb = 0.5, bc = 0;
    for (int i = 0; i <= 48; i++) {
        double s = w * pow(10.0, -4.0 + 8.0 * i / 48);
        for (int j = 0; j <= 81; j++) {
            double mag = pow(10.0, -3.0 + 4.3 * (j % 41) / 40.0);
            double b = j <= 40 ? mag : -mag;
            double c, e = sse_at(x, y, n, s - xmin, b, &c);
            if (e < best) { best = e; bs = s; bb = b; bc = c; }
        }
    }
    starts[ns][0] = log(bs); starts[ns][1] = bb; starts[ns][2] = bc; ns++;
    /* triples (i, j, k) spread over the sorted points */
    size_t picks = n < 4 ? n : 4;
    for (size_t i = 0; i < picks && ns < MAXSTART - 2; i++)
        for (size_t j = i + 1; j < picks && ns < MAXSTART - 2; j++)
            for (size_t k = j + 1; k < picks && ns < MAXSTART - 2; k++) {
                size_t ii = i * (n - 1) / (picks - 1), jj = j * (n - 1) / (picks - 1), kk = k * (n - 1) / (picks - 1);
                if (!(x[ii] < x[jj] && x[jj] < x[kk])) continue;
                tri t = {{x[ii], x[jj], x[kk]}, {y[ii], y[jj], y[kk]}, 0, 0, 0, 0};
                double roots[4][3];
                int steps = 0, nr = tri_solve(&t, roots, &steps);
                for (int r = 0; r < nr && r < 2 && ns < MAXSTART; r++) {
                    double s = roots[r][0] + xmin;
                    if (!(s > 0)) continue;
                    starts[ns][0] = log(s); starts[ns][1] = roots[r][1]; starts[ns][2] = roots[r][2]; ns++;
                }
            }
    ls_data d = {x, y, n, xmin};
    double best_sse = INFINITY, bq[3] = {starts[0][0], starts[0][1], starts[0][2]};
    int best_conv = 0;
    for (int i = 0; i < ns; i++) {
        double q[3], e;
        int conv = 0;
        if (ls_run(&d, starts[i], q, &e, iters, &conv))
            return sm_error_set(err, SM_ERR_NOMEM, "fit: cannot allocate the GSL solver workspace");
        if (e < best_sse) { best_sse = e; memcpy(bq, q, sizeof bq); best_conv = conv; }
        if (best_conv && best_sse <= 1e-30 * (double)n) break; /* an exact fit: no start can beat it */
    }
    *converged = best_conv;
    p[0] = exp(bq[0]) - xmin;
    p[1] = bq[1];
    p[2] = bq[2];
    return SM_OK;
}

static int cmp_pt(const void *pa, const void *pb) {
    const double *a = pa, *b = pb;
    return (a[0] > b[0]) - (a[0] < b[0]);
}

/* The residuals of the curve in out at the points, and the flags that follow from the curve itself. */
static void judge(sm_fit_result *out, const double *x, const double *y, size_t n) {
    double sse = 0, mx = 0;
    for (size_t k = 0; k < n; k++) {
        double r = sm_fit_eval(out->a, out->b, out->c, x[k]) - y[k];
        sse += r * r;
        if (fabs(r) > mx || !isfinite(r)) mx = fabs(r);
    }
    out->rmse = sqrt(sse / (double)n);
    out->max_abs_resid = mx;
    if (!(out->b > 0)) out->flags |= SM_FIT_NON_POSITIVE_EXP;
    if (n == 3 && !(mx <= 1e-9)) out->flags |= SM_FIT_INEXACT;
    if (!isfinite(out->rmse)) out->flags |= SM_FIT_NO_CONVERGENCE;
}

void sm_fit_use_alt(sm_fit_result *fr, const double *x, const double *y, size_t n) {
    if (!fr->has_alt) return;
    double t[3] = {fr->a, fr->b, fr->c};
    fr->a = fr->alt_a, fr->b = fr->alt_b, fr->c = fr->alt_c;
    fr->alt_a = t[0], fr->alt_b = t[1], fr->alt_c = t[2];
    fr->flags &= ~(unsigned)(SM_FIT_NON_POSITIVE_EXP | SM_FIT_INEXACT | SM_FIT_NO_CONVERGENCE);
    judge(fr, x, y, n);
}

int sm_fit_power_law(const double *x, const double *y, size_t n, sm_fit_result *out, sm_error *err) {
    pthread_once(&gsl_once, gsl_quiet);
    memset(out, 0, sizeof *out);
    if (!x || !y || n < 3)
        return sm_error_set(err, SM_ERR_ARG, "fit: needs at least 3 points (got %zu); run more perturbation factors", n);
    double *pts = malloc(n * 2 * sizeof *pts);
    if (!pts) return sm_error_set(err, SM_ERR_NOMEM, "fit: out of memory");
    for (size_t k = 0; k < n; k++) {
        if (!(isfinite(x[k]) && x[k] > 0 && isfinite(y[k]))) {
            free(pts);
            return sm_error_set(err, SM_ERR_ARG, "fit: point %zu (x=%g, y=%g) is not usable: x must be > 0 and both finite",
                                k, x[k], y[k]);
        }
        pts[2 * k] = x[k];
        pts[2 * k + 1] = y[k];
    }
    qsort(pts, n, 2 * sizeof *pts, cmp_pt);
    double *xs = malloc(n * sizeof *xs), *ys = malloc(n * sizeof *ys);
    if (!xs || !ys) { free(pts); free(xs); free(ys); return sm_error_set(err, SM_ERR_NOMEM, "fit: out of memory"); }
    size_t distinct = 0;
    for (size_t k = 0; k < n; k++) {
        xs[k] = pts[2 * k];
        ys[k] = pts[2 * k + 1];
        if (k == 0 || xs[k] != xs[k - 1]) distinct++;
    }
    free(pts);
    int rc = SM_OK;
    if (distinct < 3) {
        rc = sm_error_set(err, SM_ERR_ARG, "fit: needs at least 3 distinct x values (got %zu); perturbation factors must differ",
                          distinct);
        goto done;
    }
    out->n = n;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (xs[j] > xs[i] && !(ys[j] < ys[i])) out->flags |= SM_FIT_NON_MONOTONE;
    double p[3] = {0, 0, 0};
    int done_exact = 0;
    if (n == 3) {
        tri t = {{xs[0], xs[1], xs[2]}, {ys[0], ys[1], ys[2]}, 0, 0, 0, 0};
        double roots[4][3];
        int steps = 0, nr = tri_solve(&t, roots, &steps);
        out->iterations = steps;
        if (nr > 0) {
            memcpy(p, roots[0], sizeof p);
            done_exact = 1;
            out->exact = 1;
            if (nr > 1) {
                out->has_alt = 1;
                out->alt_a = roots[1][0];
                out->alt_b = roots[1][1];
                out->alt_c = roots[1][2];
            }
        }
    }
    if (!done_exact) {
        int conv = 0;
        rc = least_squares(xs, ys, n, p, &out->iterations, &conv, err);
        if (rc) goto done;
        if (!conv) out->flags |= SM_FIT_NO_CONVERGENCE;
    }
    out->a = p[0];
    out->b = p[1];
    out->c = p[2];
    judge(out, xs, ys, n);
done:
    free(xs);
    free(ys);
    return rc;
}
