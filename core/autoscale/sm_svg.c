/* sm_svg.c - SVG chart rendering. */
#include "sm_svg.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tableau 10: distinguishable, and readable for common colour-vision deficiencies */
static const char *const palette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                      "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

const char *sm_svg_color(int i) {
    int n = (int)SM_ARRAY_LEN(palette);
    return palette[((i % n) + n) % n];
}

typedef struct series {
    char *name;
    double *x, *y, *y2; /* y2: the upper end of an interval series (y is the lower) */
    size_t n;
    int style, color;
} series;

typedef struct vline {
    double x;
    char *label;
} vline;

typedef struct panel {
    char *title, *xlabel, *ylabel;
    int logx, logy;
    double ylo, yhi; /* fixed y range when ylo < yhi */
    vline *vl;
    size_t nvl;
    series *ser;
    size_t nser, cap;
    int next_color;
} panel;

struct sm_svg {
    char *title;
    int cols, rows;
    panel *panels;
};

enum { PW = 460, PH = 320, ML = 72, MR = 16, MT = 34, MB = 52, TITLE_H = 40 };

static char *dup_or_null(const char *s) { return s && *s ? strdup(s) : NULL; }

sm_svg *sm_svg_new(const char *title, int cols, int rows) {
    if (cols < 1 || rows < 1 || cols > 64 || rows > 64) return NULL;
    sm_svg *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->panels = calloc((size_t)cols * (size_t)rows, sizeof *s->panels);
    if (!s->panels) { free(s); return NULL; }
    s->cols = cols;
    s->rows = rows;
    s->title = dup_or_null(title);
    return s;
}

void sm_svg_free(sm_svg *s) {
    if (!s) return;
    for (int p = 0; p < s->cols * s->rows; p++) {
        panel *pn = &s->panels[p];
        for (size_t i = 0; i < pn->nser; i++) {
            free(pn->ser[i].name);
            free(pn->ser[i].x);
            free(pn->ser[i].y);
            free(pn->ser[i].y2);
        }
        free(pn->ser);
        for (size_t i = 0; i < pn->nvl; i++) free(pn->vl[i].label);
        free(pn->vl);
        free(pn->title);
        free(pn->xlabel);
        free(pn->ylabel);
    }
    free(s->panels);
    free(s->title);
    free(s);
}

int sm_svg_panel(sm_svg *s, int p, const char *title, const char *xlabel, const char *ylabel, int logx, int logy) {
    if (!s || p < 0 || p >= s->cols * s->rows) return SM_ERR_ARG;
    panel *pn = &s->panels[p];
    free(pn->title);
    free(pn->xlabel);
    free(pn->ylabel);
    pn->title = dup_or_null(title);
    pn->xlabel = dup_or_null(xlabel);
    pn->ylabel = dup_or_null(ylabel);
    pn->logx = logx;
    pn->logy = logy;
    return SM_OK;
}

int sm_svg_yrange(sm_svg *s, int p, double lo, double hi) {
    if (!s || p < 0 || p >= s->cols * s->rows || !(lo < hi)) return SM_ERR_ARG;
    s->panels[p].ylo = lo;
    s->panels[p].yhi = hi;
    return SM_OK;
}

int sm_svg_vline(sm_svg *s, int p, double x, const char *label) {
    if (!s || p < 0 || p >= s->cols * s->rows || !isfinite(x)) return SM_ERR_ARG;
    panel *pn = &s->panels[p];
    vline *nv = realloc(pn->vl, (pn->nvl + 1) * sizeof *nv);
    if (!nv) return SM_ERR_NOMEM;
    pn->vl = nv;
    nv[pn->nvl].x = x;
    nv[pn->nvl].label = dup_or_null(label);
    pn->nvl++;
    return SM_OK;
}

int sm_svg_add(sm_svg *s, int p, const char *name, const double *x, const double *y, size_t n, int style, int color) {
    if (!s || p < 0 || p >= s->cols * s->rows || (n && (!x || !y))) return SM_ERR_ARG;
    panel *pn = &s->panels[p];
    if (pn->nser == pn->cap) {
        size_t cap = pn->cap ? pn->cap * 2 : 4;
        series *ns = realloc(pn->ser, cap * sizeof *ns);
        if (!ns) return SM_ERR_NOMEM;
        pn->ser = ns;
        pn->cap = cap;
    }
    series *se = &pn->ser[pn->nser];
    memset(se, 0, sizeof *se);
    se->x = malloc((n ? n : 1) * sizeof *se->x);
    se->y = malloc((n ? n : 1) * sizeof *se->y);
    if (!se->x || !se->y) { free(se->x); free(se->y); return SM_ERR_NOMEM; }
    if (n) {
        memcpy(se->x, x, n * sizeof *x);
        memcpy(se->y, y, n * sizeof *y);
    }
    se->n = n;
    se->name = dup_or_null(name);
    se->style = style ? style : SM_SVG_LINE;
    se->color = color >= 0 ? color : pn->next_color++;
    pn->nser++;
    return SM_OK;
}

int sm_svg_add_range(sm_svg *s, int p, const double *x, const double *lo, const double *hi, size_t n, int style,
                     int color) {
    if (!(style == SM_SVG_BAND || style == SM_SVG_ERRBARS) || color < 0 || (n && !hi)) return SM_ERR_ARG;
    int rc = sm_svg_add(s, p, NULL, x, lo, n, style, color);
    if (rc) return rc;
    series *se = &s->panels[p].ser[s->panels[p].nser - 1];
    if (!(se->y2 = malloc((n ? n : 1) * sizeof *se->y2))) {
        free(se->x); free(se->y);
        s->panels[p].nser--;
        return SM_ERR_NOMEM;
    }
    if (n) memcpy(se->y2, hi, n * sizeof *hi);
    return SM_OK;
}

/* ---- a growable output buffer */
typedef struct buf {
    char *p;
    size_t len, cap;
    int oom;
} buf;

static void bprintf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(buf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (w < 0) { b->oom = 1; return; }
        if ((size_t)w < b->cap - b->len) { b->len += (size_t)w; return; }
        size_t cap = (b->cap + (size_t)w + 1) * 2;
        char *np = realloc(b->p, cap);
        if (!np) { b->oom = 1; return; }
        b->p = np;
        b->cap = cap;
    }
}

static void besc(buf *b, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': bprintf(b, "&lt;"); break;
        case '>': bprintf(b, "&gt;"); break;
        case '&': bprintf(b, "&amp;"); break;
        case '"': bprintf(b, "&quot;"); break;
        case '\'': bprintf(b, "&apos;"); break;
        default:
            /* control characters are not allowed in XML 1.0 */
            if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n') bprintf(b, " ");
            else bprintf(b, "%c", *s);
        }
    }
}

/* tick label: plain for moderate magnitudes, compact scientific otherwise (1e6, 2.5e7) */
static void fmt_num(double v, char *out, size_t cap) {
    double av = fabs(v);
    if (v == 0) { snprintf(out, cap, "0"); return; }
    if (av >= 1e4 || av < 1e-3) {
        int e = (int)floor(log10(av));
        double m = v / pow(10, e);
        if (fabs(m - round(m)) < 1e-9) snprintf(out, cap, "%.0fe%d", m, e);
        else snprintf(out, cap, "%.3ge%d", m, e);
        return;
    }
    snprintf(out, cap, "%.4g", v);
}

typedef struct axis {
    double lo, hi; /* in plot units (log10 when log) */
    int log;
} axis;

static int usable(double v, int log) { return isfinite(v) && (!log || v > 0); }
static double tr(double v, int log) { return log ? log10(v) : v; }

static void range_of(const panel *pn, int which, axis *ax) {
    int log = which ? pn->logy : pn->logx;
    if (which && pn->ylo < pn->yhi && (!log || pn->ylo > 0)) {
        ax->lo = tr(pn->ylo, log);
        ax->hi = tr(pn->yhi, log);
        ax->log = log;
        return;
    }
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < pn->nser; i++) {
        const series *se = &pn->ser[i];
        for (size_t k = 0; k < se->n; k++) {
            for (int e = 0; e < (se->y2 ? 2 : 1); e++) {
                double xv = se->x[k], yv = e ? se->y2[k] : se->y[k];
                if (!usable(xv, pn->logx) || !usable(yv, pn->logy)) continue;
                double v = tr(which ? yv : xv, log);
                if (v < lo) lo = v;
                if (v > hi) hi = v;
            }
        }
    }
    if (!which)
        for (size_t i = 0; i < pn->nvl; i++)
            if (usable(pn->vl[i].x, log)) {
                double v = tr(pn->vl[i].x, log);
                if (v < lo) lo = v;
                if (v > hi) hi = v;
            }
    if (!(lo <= hi)) { lo = 0; hi = 1; }
    if (hi - lo < 1e-12 * (fabs(lo) + fabs(hi)) || hi == lo) {
        double d = log ? 0.5 : (lo == 0 ? 1 : fabs(lo) * 0.1);
        lo -= d;
        hi += d;
    }
    double pad = (hi - lo) * 0.05;
    ax->lo = lo - pad;
    ax->hi = hi + pad;
    ax->log = log;
}

/* tick values (in data units) inside the axis range; returns how many (at most cap) */
static int ticks(const axis *ax, double *out, int cap) {
    int n = 0;
    if (ax->log) {
        int e0 = (int)floor(ax->lo), e1 = (int)ceil(ax->hi);
        int span = e1 - e0, stride = span > 8 ? (span + 7) / 8 : 1;
        int fine_on = ax->hi - ax->lo <= 2.5; /* 2 and 5 between decades when few decades show */
        static const double fine[] = {1, 2, 5};
        for (int e = e0; e <= e1 && n < cap; e++) {
            for (int f = 0; f < (fine_on ? 3 : 1) && n < cap; f++) {
                if (!fine_on && (e - e0) % stride) continue;
                double v = fine[f] * pow(10, e), l = log10(v);
                if (l >= ax->lo && l <= ax->hi) out[n++] = v;
            }
        }
        return n;
    }
    double span = ax->hi - ax->lo, raw = span / 5, mag = pow(10, floor(log10(raw))), step = mag;
    if (raw / mag > 5) step = 10 * mag;
    else if (raw / mag > 2) step = 5 * mag;
    else if (raw / mag > 1) step = 2 * mag;
    for (double v = ceil(ax->lo / step) * step; v <= ax->hi + step * 1e-9 && n < cap; v += step)
        out[n++] = fabs(v) < step * 1e-9 ? 0 : v;
    return n;
}

static void render_panel(buf *b, const panel *pn, int idx, double ox, double oy) {
    axis ax, ay;
    range_of(pn, 0, &ax);
    range_of(pn, 1, &ay);
    double top = pn->title ? MT : 12;
    double x0 = ox + ML, y0 = oy + top, w = PW - ML - MR, h = PH - top - MB;
#define SX(v) (x0 + (tr((v), ax.log) - ax.lo) / (ax.hi - ax.lo) * w)
#define SY(v) (y0 + h - (tr((v), ay.log) - ay.lo) / (ay.hi - ay.lo) * h)
    bprintf(b, "<g class=\"panel\">\n");
    if (pn->title) {
        bprintf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">", x0 + w / 2,
                oy + 20);
        besc(b, pn->title);
        bprintf(b, "</text>\n");
    }
    bprintf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fafafa\" stroke=\"#888\"/>\n", x0, y0, w, h);
    double tv[64];
    char lab[64];
    int nt = ticks(&ax, tv, 64);
    for (int i = 0; i < nt; i++) {
        double px = SX(tv[i]);
        fmt_num(tv[i], lab, sizeof lab);
        bprintf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n", px, y0, px, y0 + h);
        bprintf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">%s</text>\n", px, y0 + h + 15, lab);
    }
    nt = ticks(&ay, tv, 64);
    for (int i = 0; i < nt; i++) {
        double py = SY(tv[i]);
        fmt_num(tv[i], lab, sizeof lab);
        bprintf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n", x0, py, x0 + w, py);
        bprintf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%s</text>\n", x0 - 5, py + 4, lab);
    }
    if (pn->xlabel) {
        bprintf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">", x0 + w / 2, y0 + h + 36);
        besc(b, pn->xlabel);
        if (ax.log) bprintf(b, " (log scale)");
        bprintf(b, "</text>\n");
    }
    if (pn->ylabel) {
        bprintf(b, "<text transform=\"translate(%.1f,%.1f) rotate(-90)\" text-anchor=\"middle\" font-size=\"12\">",
                ox + 16, y0 + h / 2);
        besc(b, pn->ylabel);
        if (ay.log) bprintf(b, " (log scale)");
        bprintf(b, "</text>\n");
    }
    bprintf(b, "<clipPath id=\"clip%d\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/></clipPath>\n", idx, x0,
            y0, w, h);
    bprintf(b, "<g clip-path=\"url(#clip%d)\">\n", idx);
    for (size_t i = 0; i < pn->nvl; i++) {
        if (!usable(pn->vl[i].x, ax.log)) continue;
        double px = SX(pn->vl[i].x);
        bprintf(b, "<line class=\"marker\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\" "
                   "stroke-dasharray=\"3,3\"/>\n", px, y0, px, y0 + h);
        if (pn->vl[i].label) {
            bprintf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#555\" transform=\"rotate(-90 %.1f %.1f)\" "
                       "text-anchor=\"end\">", px + 3, y0 + 4, px + 3, y0 + 4);
            besc(b, pn->vl[i].label);
            bprintf(b, "</text>\n");
        }
    }
    for (size_t i = 0; i < pn->nser; i++) {
        const series *se = &pn->ser[i];
        const char *col = sm_svg_color(se->color);
        bprintf(b, "<g class=\"series\" data-name=\"");
        besc(b, se->name ? se->name : "");
        bprintf(b, "\">\n");
        if (se->y2 && (se->style & SM_SVG_BAND)) {
            bprintf(b, "<polygon fill=\"%s\" fill-opacity=\"0.2\" stroke=\"none\" points=\"", col);
            for (size_t k = 0; k < se->n; k++)
                if (usable(se->x[k], ax.log) && usable(se->y[k], ay.log) && usable(se->y2[k], ay.log))
                    bprintf(b, "%.2f,%.2f ", SX(se->x[k]), SY(se->y[k]));
            for (size_t k = se->n; k-- > 0;)
                if (usable(se->x[k], ax.log) && usable(se->y[k], ay.log) && usable(se->y2[k], ay.log))
                    bprintf(b, "%.2f,%.2f ", SX(se->x[k]), SY(se->y2[k]));
            bprintf(b, "\"/>\n</g>\n");
            continue;
        }
        if (se->y2) {
            for (size_t k = 0; k < se->n; k++) {
                if (!usable(se->x[k], ax.log) || !usable(se->y[k], ay.log) || !usable(se->y2[k], ay.log)) continue;
                double px = SX(se->x[k]), pl = SY(se->y[k]), ph = SY(se->y2[k]);
                bprintf(b, "<path class=\"errbar\" d=\"M%.2f,%.2fV%.2fM%.2f,%.2fH%.2fM%.2f,%.2fH%.2f\" stroke=\"%s\" "
                           "stroke-width=\"1.5\" fill=\"none\"/>\n", px, pl, ph, px - 4, pl, px + 4, px - 4, ph, px + 4, col);
            }
            bprintf(b, "</g>\n");
            continue;
        }
        if (se->style & SM_SVG_LINE) {
            bprintf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", col,
                    (se->style & SM_SVG_DASHED) ? " stroke-dasharray=\"6,4\"" : "");
            for (size_t k = 0; k < se->n; k++)
                if (usable(se->x[k], ax.log) && usable(se->y[k], ay.log))
                    bprintf(b, "%.2f,%.2f ", SX(se->x[k]), SY(se->y[k]));
            bprintf(b, "\"/>\n");
        }
        for (size_t k = 0; k < se->n; k++) {
            if (!usable(se->x[k], ax.log) || !usable(se->y[k], ay.log)) continue;
            if (se->style & SM_SVG_MARKERS)
                bprintf(b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3.5\" fill=\"%s\" stroke=\"#fff\"/>\n", SX(se->x[k]),
                        SY(se->y[k]), col);
            if (se->style & SM_SVG_RING)
                bprintf(b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"7\" fill=\"none\" stroke=\"%s\" stroke-width=\"2.5\"/>\n",
                        SX(se->x[k]), SY(se->y[k]), col);
        }
        bprintf(b, "</g>\n");
    }
    bprintf(b, "</g>\n");
    /* legend, top right inside the plot area */
    int nl = 0;
    size_t longest = 0;
    for (size_t i = 0; i < pn->nser; i++)
        if (pn->ser[i].name) {
            nl++;
            if (strlen(pn->ser[i].name) > longest) longest = strlen(pn->ser[i].name);
        }
    if (nl) {
        double lw = 34 + 6.5 * (double)(longest > 40 ? 40 : longest), lh = 6 + 16.0 * nl;
        /* the corner whose box covers the fewest plotted points (vertices count for lines) */
        double cand[4][2] = {{x0 + w - lw - 6, y0 + 6}, {x0 + 6, y0 + 6}, {x0 + w - lw - 6, y0 + h - lh - 6},
                             {x0 + 6, y0 + h - lh - 6}};
        int bestc = 0;
        size_t bestn = (size_t)-1;
        for (int c = 0; c < 4; c++) {
            size_t cnt = 0;
            for (size_t i = 0; i < pn->nser; i++) {
                const series *se = &pn->ser[i];
                for (size_t k = 0; k < se->n; k++) {
                    if (!usable(se->x[k], ax.log) || !usable(se->y[k], ay.log)) continue;
                    double px = SX(se->x[k]), py = SY(se->y[k]);
                    cnt += px >= cand[c][0] - 4 && px <= cand[c][0] + lw + 4 && py >= cand[c][1] - 4 && py <= cand[c][1] + lh + 4;
                    /* a segment crossing the box counts through points sampled along it */
                    if (k > 0 && (se->style & SM_SVG_LINE) && usable(se->x[k - 1], ax.log) && usable(se->y[k - 1], ay.log)) {
                        double qx = SX(se->x[k - 1]), qy = SY(se->y[k - 1]);
                        for (int f = 1; f < 16; f++) {
                            double mx = qx + (px - qx) * f / 16.0, my = qy + (py - qy) * f / 16.0;
                            cnt += mx >= cand[c][0] && mx <= cand[c][0] + lw && my >= cand[c][1] && my <= cand[c][1] + lh;
                        }
                    }
                }
            }
            /* vertical marker labels run down from the top of the plot */
            for (size_t i = 0; i < pn->nvl; i++) {
                if (!pn->vl[i].label || !usable(pn->vl[i].x, ax.log)) continue;
                double px = SX(pn->vl[i].x), len = 6.0 * (double)strlen(pn->vl[i].label);
                for (double py = y0; py <= y0 + len; py += 4)
                    cnt += px >= cand[c][0] - 6 && px <= cand[c][0] + lw + 6 && py >= cand[c][1] && py <= cand[c][1] + lh;
            }
            if (cnt < bestn) { bestn = cnt; bestc = c; }
        }
        double lx = cand[bestc][0], ly = cand[bestc][1];
        bprintf(b, "<g class=\"legend\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fff\" "
                   "fill-opacity=\"0.85\" stroke=\"#bbb\"/>\n", lx, ly, lw, lh);
        int row = 0;
        for (size_t i = 0; i < pn->nser; i++) {
            const series *se = &pn->ser[i];
            if (!se->name) continue;
            double cy = ly + 12 + 16.0 * row++;
            const char *col = sm_svg_color(se->color);
            if (se->style & SM_SVG_LINE)
                bprintf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>", lx + 5,
                        cy, lx + 25, cy, col, (se->style & SM_SVG_DASHED) ? " stroke-dasharray=\"6,4\"" : "");
            if (se->style & SM_SVG_MARKERS)
                bprintf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>", lx + 15, cy, col);
            if (se->style & SM_SVG_RING)
                bprintf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"none\" stroke=\"%s\" stroke-width=\"2.5\"/>", lx + 15,
                        cy, col);
            bprintf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">", lx + 30, cy + 4);
            besc(b, se->name);
            bprintf(b, "</text>\n");
        }
        bprintf(b, "</g>\n");
    }
    bprintf(b, "</g>\n");
#undef SX
#undef SY
}

char *sm_svg_render(const sm_svg *s) {
    if (!s) return NULL;
    buf b = {0};
    int top = s->title ? TITLE_H : 0;
    int W = s->cols * PW, H = s->rows * PH + top;
    bprintf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    bprintf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" "
                "viewBox=\"0 0 %d %d\" font-family=\"Helvetica, Arial, sans-serif\">\n", W, H, W, H);
    bprintf(&b, "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", W, H);
    if (s->title) {
        bprintf(&b, "<title>");
        besc(&b, s->title);
        bprintf(&b, "</title>\n<text x=\"%d\" y=\"26\" text-anchor=\"middle\" font-size=\"18\" font-weight=\"bold\">", W / 2);
        besc(&b, s->title);
        bprintf(&b, "</text>\n");
    }
    for (int p = 0; p < s->cols * s->rows; p++) {
        const panel *pn = &s->panels[p];
        if (!pn->nser && !pn->title) continue;
        render_panel(&b, pn, p, (double)(p % s->cols) * PW, top + (double)(p / s->cols) * PH);
    }
    bprintf(&b, "</svg>\n");
    if (b.oom) { free(b.p); return NULL; }
    return b.p;
}

int sm_svg_write(const sm_svg *s, const char *path, sm_error *err) {
    char *text = sm_svg_render(s);
    if (!text) return sm_error_set(err, SM_ERR_NOMEM, "svg: out of memory rendering %s", path);
    FILE *f = fopen(path, "wb");
    if (!f) {
        int e = errno;
        free(text);
        return sm_error_set(err, SM_ERR_IO, "svg: cannot create %s: %s", path, strerror(e));
    }
    size_t len = strlen(text);
    int ok = fwrite(text, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    free(text);
    if (!ok) return sm_error_set(err, SM_ERR_IO, "svg: writing %s failed (disk full?)", path);
    return SM_OK;
}
