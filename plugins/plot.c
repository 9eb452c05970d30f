/* plot.c - the "plot" stage: SVG charts of the AutoScale results a person would rather look at than read.
 *   kind "fit":     data = fit's result ({params, points, n?, alternatives?, rmse?, domains?}); one panel per
 *                   domain with the fitted curve, the measured points and the chosen optimum.
 *   kind "weights": data = {mixtures: [{budget, weights: {domain: w}, label?}]}; weight against budget (log x).
 *   kind "loss":    data = {curves: {name: {steps, values, tokens_per_step?} or {repeats: [...]}}, metric?, logy?};
 *                   one line per run (the mean of its repeats, with their range as a band), the whole run on a
 *                   log y axis (logy = false: linear) beside the second half of training on a linear one.
 *   Intervals: "weights" mixtures may carry ci {domain: {lo, hi}} (error bars); "fit" data may carry noise
 *   {domain: sd} and repeats {domain: [k per point]} (fit's result has both): 90% bars on the points. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autoscale/sm_asjson.h"
#include "autoscale/sm_fit.h"
#include "autoscale/sm_stats.h"
#include "autoscale/sm_svg.h"
#include "sm_plugin.h"

#define STAGE "plot"

static const char schema[] =
    "{\"kind\": {\"type\": \"string\", \"required\": true, \"doc\": \"fit | weights | loss\"},"
    " \"title\": {\"type\": \"string\", \"default\": null, \"doc\": \"chart title\"},"
    " \"data\": {\"type\": \"object\", \"required\": true, \"doc\": \"kind-specific data (see the plugin's header)\"},"
    " \"file\": {\"type\": \"string\", \"default\": null, \"doc\": \"output name, e.g. fit.svg (default <kind>.svg)\"}}";

static int grid_cols(size_t m) { return m <= 1 ? 1 : m <= 4 ? 2 : m <= 9 ? 3 : 4; }

static int plot_fit(sm_svg **out, const char *title, json_t *data, sm_error *err) {
    json_t *params = json_object_get(data, "params"), *points = json_object_get(data, "points");
    if (!json_is_object(params) || json_object_size(params) == 0 || !json_is_object(points))
        return sm_error_set(err, SM_ERR_ARG, STAGE ": kind \"fit\" needs data.params {domain: {a,b,c}} and data.points "
                                             "{domain: [[x, y], ...]} (fit's result has both)");
    char **doms = NULL;
    size_t m = 0;
    int rc = sm_asj_keys(params, &doms, &m, err);
    if (rc) return rc;
    /* keep the fit's domain order when it is given */
    json_t *order = json_object_get(data, "domains");
    if (json_is_array(order) && json_array_size(order) == m) {
        int ok = 1;
        for (size_t i = 0; i < m; i++) ok = ok && json_is_string(json_array_get(order, i)) &&
                                            json_object_get(params, json_string_value(json_array_get(order, i)));
        if (ok)
            for (size_t i = 0; i < m; i++) {
                free(doms[i]);
                doms[i] = strdup(json_string_value(json_array_get(order, i)));
                if (!doms[i]) { sm_asj_free_names(doms, m); return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory"); }
            }
    }
    int cols = grid_cols(m), rows = (int)((m + (size_t)cols - 1) / (size_t)cols);
    sm_svg *s = sm_svg_new(title ? title : "DDO fits: validation metric against domain quantity", cols, rows);
    if (!s) { sm_asj_free_names(doms, m); return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory"); }
    json_t *nopt = json_object_get(data, "n"), *alts = json_object_get(data, "alternatives"),
           *rmse = json_object_get(data, "rmse");
    for (size_t i = 0; i < m && !rc; i++) {
        const char *d = doms[i];
        json_t *pj = json_object_get(params, d), *pts = json_object_get(points, d);
        double a = json_number_value(json_object_get(pj, "a")), b = json_number_value(json_object_get(pj, "b")),
               c = json_number_value(json_object_get(pj, "c"));
        if (!json_is_object(pj) || !json_is_array(pts) || json_array_size(pts) == 0 || !isfinite(a) || !isfinite(b) ||
            !isfinite(c)) {
            rc = sm_error_set(err, SM_ERR_ARG, STAGE ": domain '%s' needs params {a, b, c} and a non-empty points list", d);
            break;
        }
        size_t np = json_array_size(pts);
        double *px = malloc(np * sizeof *px), *py = malloc(np * sizeof *py), lo = INFINITY, hi = -INFINITY;
        if (!px || !py) {
            free(px); free(py);
            rc = sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
            break;
        }
        for (size_t k = 0; k < np; k++) {
            json_t *pt = json_array_get(pts, k);
            px[k] = json_number_value(json_array_get(pt, 0));
            py[k] = json_number_value(json_array_get(pt, 1));
            if (!json_is_array(pt) || !(px[k] > 0) || !isfinite(py[k])) {
                rc = sm_error_set(err, SM_ERR_ARG, STAGE ": domain '%s' point %zu must be [x > 0, y]", d, k);
                break;
            }
            if (px[k] < lo) lo = px[k];
            if (px[k] > hi) hi = px[k];
        }
        if (rc) { free(px); free(py); break; }
        double nv = NAN;
        json_t *nj = json_object_get(nopt, d);
        if (json_is_number(nj) && json_number_value(nj) > 0) {
            nv = json_number_value(nj);
            if (nv < lo) lo = nv;
            if (nv > hi) hi = nv;
        }
        lo /= 1.4;
        hi *= 1.4;
        double cx[120], cy[120];
        size_t nc = 0;
        for (int k = 0; k < 120; k++) {
            double x = lo * pow(hi / lo, k / 119.0), y = sm_fit_eval(a, b, c, x);
            if (isfinite(y)) { cx[nc] = x; cy[nc] = y; nc++; }
        }
        char ptitle[256];
        json_t *rj = json_object_get(rmse, d);
        if (json_is_number(rj)) snprintf(ptitle, sizeof ptitle, "%s (b = %.3g, rmse %.2g)", d, b, json_number_value(rj));
        else snprintf(ptitle, sizeof ptitle, "%s (b = %.3g)", d, b);
        sm_svg_panel(s, (int)i, ptitle, "N_i / N_i^base", "metric / base metric", 1, 0);
        rc = sm_svg_add(s, (int)i, "fit (x+a)^-b+c", cx, cy, nc, SM_SVG_LINE, 0);
        json_t *alt = json_object_get(alts, d);
        if (!rc && json_is_object(alt)) {
            double aa = json_number_value(json_object_get(alt, "a")), ab = json_number_value(json_object_get(alt, "b")),
                   ac = json_number_value(json_object_get(alt, "c"));
            size_t na = 0;
            double ax[120], ay[120];
            for (int k = 0; k < 120; k++) {
                double x = lo * pow(hi / lo, k / 119.0), y = sm_fit_eval(aa, ab, ac, x);
                if (isfinite(y)) { ax[na] = x; ay[na] = y; na++; }
            }
            rc = sm_svg_add(s, (int)i, "other exact interpolant", ax, ay, na, SM_SVG_LINE | SM_SVG_DASHED, 9);
        }
        /* 90% bars on the perturbed points from the noise and the repeats (the base run is y = 1 by definition) */
        double sd = json_number_value(json_object_get(json_object_get(data, "noise"), d));
        json_t *rk = json_object_get(json_object_get(data, "repeats"), d);
        if (!rc && sd > 0 && json_array_size(rk) == np && np > 1) {
            double ex[np], elo[np], ehi[np], k0 = (double)json_integer_value(json_array_get(rk, 0));
            size_t ne = 0;
            for (size_t q = 1; q < np; q++) {
                double kq = (double)json_integer_value(json_array_get(rk, q));
                if (!(kq >= 1 && k0 >= 1)) continue;
                double half = sm_t_crit(SM_STATS_LEVEL, INFINITY) * sd * sqrt(1 / kq + 1 / k0);
                ex[ne] = px[q], elo[ne] = py[q] * exp(-half), ehi[ne] = py[q] * exp(half);
                ne++;
            }
            if (ne) rc = sm_svg_add_range(s, (int)i, ex, elo, ehi, ne, SM_SVG_ERRBARS, 1);
        }
        if (!rc) rc = sm_svg_add(s, (int)i, "measured runs", px, py, np, SM_SVG_MARKERS, 1);
        if (!rc && isfinite(nv)) {
            double oy = sm_fit_eval(a, b, c, nv);
            rc = sm_svg_add(s, (int)i, "optimum", &nv, &oy, 1, SM_SVG_RING, 2);
        }
        free(px);
        free(py);
        if (rc) rc = sm_error_set(err, rc, STAGE ": cannot add a series (%s)", sm_error_name(rc));
    }
    sm_asj_free_names(doms, m);
    if (rc) { sm_svg_free(s); return rc; }
    *out = s;
    return SM_OK;
}

typedef struct mix_pt { double budget; json_t *w, *ci; const char *label; } mix_pt;
static int cmp_mix(const void *a, const void *b) {
    double x = ((const mix_pt *)a)->budget, y = ((const mix_pt *)b)->budget;
    return (x > y) - (x < y);
}

static int plot_weights(sm_svg **out, const char *title, json_t *data, sm_error *err) {
    json_t *mixes = json_object_get(data, "mixtures");
    size_t nm = json_array_size(mixes);
    if (!json_is_array(mixes) || nm == 0)
        return sm_error_set(err, SM_ERR_ARG, STAGE ": kind \"weights\" needs data.mixtures [{budget, weights: {domain: w}}]");
    mix_pt *mp = calloc(nm, sizeof *mp);
    if (!mp) return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
    for (size_t i = 0; i < nm; i++) {
        json_t *e = json_array_get(mixes, i);
        mp[i].budget = json_number_value(json_object_get(e, "budget"));
        mp[i].w = json_object_get(e, "weights");
        mp[i].ci = json_object_get(e, "ci");
        mp[i].label = json_string_value(json_object_get(e, "label"));
        if (!mp[i].label) mp[i].label = json_string_value(json_object_get(e, "method"));
        if (!(mp[i].budget > 0) || !json_is_object(mp[i].w)) {
            free(mp);
            return sm_error_set(err, SM_ERR_ARG, STAGE ": mixtures[%zu] needs a positive budget and weights {domain: w}", i);
        }
    }
    qsort(mp, nm, sizeof *mp, cmp_mix);
    char **doms = NULL;
    size_t m = 0;
    int rc = sm_asj_keys(mp[0].w, &doms, &m, err);
    if (rc) { free(mp); return rc; }
    sm_svg *s = sm_svg_new(title ? title : "Mixture weights against token budget", 1, 1);
    double *x = malloc(nm * sizeof *x), *y = malloc(nm * sizeof *y);
    double *bx = malloc(nm * sizeof *bx), *blo = malloc(nm * sizeof *blo), *bhi = malloc(nm * sizeof *bhi);
    if (!s || !x || !y || !bx || !blo || !bhi) rc = sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
    if (!rc) sm_svg_panel(s, 0, NULL, "token budget", "weight", 1, 0);
    double wmax = 0;
    for (size_t i = 0; i < nm && !rc; i++) {
        const char *key;
        json_t *v;
        json_object_foreach(mp[i].w, key, v) if (json_is_number(v) && json_number_value(v) > wmax) wmax = json_number_value(v);
        json_object_foreach(mp[i].ci, key, v) {
            double hv = json_number_value(json_object_get(v, "hi"));
            if (hv > wmax) wmax = hv;
        }
        /* each labelled mixture (e.g. "ddo", "autoscale") marks its budget */
        if (mp[i].label) sm_svg_vline(s, 0, mp[i].budget, mp[i].label);
    }
    /* weights start at zero: a share's size is read against it */
    double ytop = wmax * 1.12;
    if (wmax <= 1 && ytop > 1) ytop = 1; /* shares never exceed 1 */
    if (!rc && wmax > 0) sm_svg_yrange(s, 0, 0, ytop);
    for (size_t d = 0; d < m && !rc; d++) {
        size_t n = 0;
        for (size_t i = 0; i < nm; i++) {
            json_t *v = json_object_get(mp[i].w, doms[d]);
            if (!json_is_number(v)) continue;
            x[n] = mp[i].budget;
            y[n] = json_number_value(v);
            n++;
        }
        /* 90% intervals, when the mixtures carry them (fit and extrapolate results do) */
        size_t nb = 0;
        for (size_t i = 0; i < nm; i++) {
            json_t *lo = json_object_get(json_object_get(mp[i].ci, doms[d]), "lo");
            json_t *hi = json_object_get(json_object_get(mp[i].ci, doms[d]), "hi");
            if (!json_is_number(lo) || !json_is_number(hi)) continue;
            bx[nb] = mp[i].budget, blo[nb] = json_number_value(lo), bhi[nb] = json_number_value(hi);
            nb++;
        }
        int r = nb ? sm_svg_add_range(s, 0, bx, blo, bhi, nb, SM_SVG_ERRBARS, (int)d) : SM_OK;
        if (!r) r = sm_svg_add(s, 0, doms[d], x, y, n, SM_SVG_LINE | SM_SVG_MARKERS, (int)d);
        if (r) rc = sm_error_set(err, r, STAGE ": cannot add a series");
    }
    free(x);
    free(y);
    free(bx);
    free(blo);
    free(bhi);
    free(mp);
    sm_asj_free_names(doms, m);
    if (rc) { sm_svg_free(s); return rc; }
    *out = s;
    return SM_OK;
}

/* One validation curve: a single run {steps, values}, or repeated runs {repeats: [{steps, values}, ...]} that
 * share their steps (the line is their mean, the band their range over seeds). x in tokens when tps > 0. */
typedef struct lcurve {
    double *x, *mean, *lo, *hi;
    size_t n, k;
} lcurve;

static void lcurve_free(lcurve *c) { free(c->x); free(c->mean); free(c->lo); free(c->hi); }

static int read_lcurve(json_t *c, const char *name, int tokens, lcurve *out, sm_error *err) {
    json_t *reps = json_object_get(c, "repeats");
    size_t k = reps ? json_array_size(reps) : 1;
    json_t *first = reps ? json_array_get(reps, 0) : c;
    json_t *st = json_object_get(first, "steps");
    size_t n = json_array_size(st);
    if ((reps && k == 0) || !json_is_array(st) || n == 0)
        return sm_error_set(err, SM_ERR_ARG, STAGE ": curve '%s' needs steps and values arrays of the same length "
                                             "(or repeats: [{steps, values}, ...])", name);
    out->n = n, out->k = k;
    out->x = malloc(n * sizeof(double)), out->mean = calloc(n, sizeof(double));
    out->lo = malloc(n * sizeof(double)), out->hi = malloc(n * sizeof(double));
    if (!out->x || !out->mean || !out->lo || !out->hi) return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
    double tps = tokens ? json_number_value(json_object_get(first, "tokens_per_step")) : 1;
    for (size_t j = 0; j < n; j++) {
        out->x[j] = json_number_value(json_array_get(st, j)) * tps;
        out->lo[j] = INFINITY, out->hi[j] = -INFINITY;
    }
    for (size_t r = 0; r < k; r++) {
        json_t *cr = reps ? json_array_get(reps, r) : c, *va = json_object_get(cr, "values");
        if (!json_is_array(va) || json_array_size(va) != n || json_array_size(json_object_get(cr, "steps")) != n)
            return sm_error_set(err, SM_ERR_ARG, STAGE ": curve '%s' repeat %zu needs steps and values of the same length as "
                                                 "repeat 0", name, r);
        for (size_t j = 0; j < n; j++) {
            double v = json_is_number(json_array_get(va, j)) ? json_number_value(json_array_get(va, j)) : NAN;
            out->mean[j] += v / (double)k;
            if (v < out->lo[j]) out->lo[j] = v;
            if (v > out->hi[j]) out->hi[j] = v;
        }
    }
    return SM_OK;
}

/* kind "loss": panel 0 the whole run on a log y axis, panel 1 the second half of training on a linear one,
 * where the end (the comparison that matters) is readable. */
static int plot_loss(sm_svg **out, const char *title, json_t *data, sm_error *err) {
    json_t *curves = json_object_get(data, "curves");
    if (!json_is_object(curves) || json_object_size(curves) == 0)
        return sm_error_set(err, SM_ERR_ARG, STAGE ": kind \"loss\" needs data.curves {name: {steps, values}}");
    const char *metric = json_string_value(json_object_get(data, "metric"));
    json_t *logy_j = json_object_get(data, "logy");
    int logy = !json_is_false(logy_j); /* default: log */
    char **names = NULL;
    size_t n = 0;
    int rc = sm_asj_keys(curves, &names, &n, err);
    if (rc) return rc;
    /* x in tokens when every curve says how many tokens a step is */
    int tokens = 1, repeated = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_object_get(curves, names[i]), *reps = json_object_get(c, "repeats");
        if (reps) repeated = 1, c = json_array_get(reps, 0);
        if (!(json_number_value(json_object_get(c, "tokens_per_step")) > 0)) tokens = 0;
    }
    lcurve *lc = calloc(n, sizeof *lc);
    sm_svg *s = sm_svg_new(title ? title : "Validation curves", 2, 1);
    if (!s || !lc) { sm_svg_free(s); free(lc); sm_asj_free_names(names, n); return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory"); }
    const char *yl = metric ? metric : "validation perplexity";
    sm_svg_panel(s, 0, repeated ? "whole run (line: mean over seeds, band: their range)" : "whole run",
                 tokens ? "training tokens" : "step", yl, 0, logy);
    sm_svg_panel(s, 1, "second half of training", tokens ? "training tokens" : "step", yl, 0, 0);
    double xmax = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        rc = read_lcurve(json_object_get(curves, names[i]), names[i], tokens, &lc[i], err);
        for (size_t j = 0; !rc && j < lc[i].n; j++) if (lc[i].x[j] > xmax) xmax = lc[i].x[j];
    }
    for (size_t i = 0; i < n && !rc; i++) {
        const lcurve *c = &lc[i];
        size_t from = 0;
        while (from < c->n && c->x[from] < xmax / 2) from++;
        for (int pnl = 0; pnl < 2 && !rc; pnl++) {
            size_t o = pnl ? from : 0, cnt = c->n - o;
            if (c->k > 1) rc = sm_svg_add_range(s, pnl, c->x + o, c->lo + o, c->hi + o, cnt, SM_SVG_BAND, (int)i);
            if (!rc)
                rc = sm_svg_add(s, pnl, pnl ? NULL : names[i], c->x + o, c->mean + o, cnt,
                                SM_SVG_LINE | (cnt <= 40 ? SM_SVG_MARKERS : 0), (int)i);
        }
        if (rc) rc = sm_error_set(err, rc, STAGE ": cannot add a series");
    }
    for (size_t i = 0; i < n; i++) lcurve_free(&lc[i]);
    free(lc);
    sm_asj_free_names(names, n);
    if (rc) { sm_svg_free(s); return rc; }
    *out = s;
    return SM_OK;
}

/* a plain file name: no directories, no hidden files, ends in .svg */
static int output_name(const char *file, const char *kind, char *out, size_t cap, sm_error *err) {
    if (!file) file = kind;
    if (!*file || strchr(file, '/') || file[0] == '.' || strlen(file) > 200)
        return sm_error_set(err, SM_ERR_ARG, STAGE ": 'file' must be a plain file name such as fit.svg (got \"%s\")", file);
    size_t len = strlen(file);
    int has_ext = len > 4 && !strcmp(file + len - 4, ".svg");
    snprintf(out, cap, "%s%s", file, has_ext ? "" : ".svg");
    return SM_OK;
}

static int run(const sm_host_api *api, sm_host *h, const char *params_json, const char *inputs_json, sm_error *err) {
    (void)inputs_json;
    json_t *p = NULL;
    sm_svg *s = NULL;
    int rc = sm_asj_parse(params_json, STAGE, &p, err);
    if (rc) return rc;
    const char *kind = json_string_value(json_object_get(p, "kind"));
    const char *title = json_string_value(json_object_get(p, "title"));
    json_t *data = json_object_get(p, "data");
    char name[256], path[4096], digest[65] = {0};
    if (!kind) { rc = sm_error_set(err, SM_ERR_ARG, STAGE ": 'kind' is required: fit, weights or loss"); goto out; }
    if (!json_is_object(data)) { rc = sm_error_set(err, SM_ERR_ARG, STAGE ": 'data' must be an object"); goto out; }
    if ((rc = output_name(json_string_value(json_object_get(p, "file")), kind, name, sizeof name, err))) goto out;
    if (!strcmp(kind, "fit")) rc = plot_fit(&s, title, data, err);
    else if (!strcmp(kind, "weights")) rc = plot_weights(&s, title, data, err);
    else if (!strcmp(kind, "loss")) rc = plot_loss(&s, title, data, err);
    else rc = sm_error_set(err, SM_ERR_ARG, STAGE ": unknown kind \"%s\"; use fit, weights or loss", kind);
    if (rc) goto out;
    if ((rc = api->output_path(h, name, path, sizeof path))) {
        rc = sm_error_set(err, rc, STAGE ": the host gave no output path for %s (%s)", name, sm_error_name(rc));
        goto out;
    }
    if ((rc = sm_svg_write(s, path, err))) goto out;
    json_t *meta = json_pack("{s:s,s:s}", "kind", kind, "format", "svg");
    char *meta_s = meta ? json_dumps(meta, JSON_COMPACT) : NULL;
    json_decref(meta);
    rc = api->output_commit(h, name, path, "plot", meta_s, digest);
    free(meta_s);
    if (rc) { rc = sm_error_set(err, rc, STAGE ": storing %s failed (%s)", name, sm_error_name(rc)); goto out; }
    api->log(h, SM_LOG_INFO, "wrote %s plot %s (sha256 %.12s)", kind, name, digest);
    rc = sm_asj_emit(api, h, json_pack("{s:s,s:s,s:s}", "file", name, "digest", digest, "kind", kind), STAGE, err);
out:
    sm_svg_free(s);
    json_decref(p);
    return rc;
}

static const sm_plugin_desc desc = {
    .struct_size = sizeof(sm_plugin_desc),
    .abi_major = SM_PLUGIN_ABI_MAJOR,
    .abi_minor = SM_PLUGIN_ABI_MINOR,
    .name = "plot",
    .version = "2.0.0",
    .cache_salt = "2",
    .description = "SVG charts: fitted power laws with their points, weights against budget, validation curves",
    .params_schema = schema,
    .resources = NULL,
    .run = run,
};

const sm_plugin_desc *sm_plugin_describe(void) { return &desc; }
