/* sm_svg.h - a small SVG chart writer: a grid of panels (small multiples), each with line and scatter
 * series, linear or log axes, tick labels, axis labels, a title and a legend. Output is self-contained
 * SVG 1.1 that browsers and image viewers open directly. */
#ifndef SM_SVG_H
#define SM_SVG_H

#include <stddef.h>
#include "sm_common.h"

enum {
    SM_SVG_LINE = 1,    /* connect points in order */
    SM_SVG_MARKERS = 2, /* a filled circle at each point */
    SM_SVG_DASHED = 4,  /* dashed line */
    SM_SVG_RING = 8,    /* a large hollow ring at each point (highlights, e.g. an optimum) */
    SM_SVG_BAND = 16,   /* sm_svg_add_range: a shaded band between lo and hi */
    SM_SVG_ERRBARS = 32 /* sm_svg_add_range: a capped vertical bar from lo to hi at each x */
};

typedef struct sm_svg sm_svg;

/* A chart of cols x rows panels under a title (may be NULL); NULL when out of memory or cols/rows < 1. */
sm_svg *sm_svg_new(const char *title, int cols, int rows);
void sm_svg_free(sm_svg *s);
/* Panel settings (panel index row-major, 0-based). Strings may be NULL. */
int sm_svg_panel(sm_svg *s, int panel, const char *title, const char *xlabel, const char *ylabel, int logx, int logy);
/* Fixes the y range of a panel (lo < hi) instead of fitting it to the data. */
int sm_svg_yrange(sm_svg *s, int panel, double lo, double hi);
/* A dashed vertical marker at x with an optional label (e.g. a budget a mixture was computed at). */
int sm_svg_vline(sm_svg *s, int panel, double x, const char *label);
/* Adds a series (copied). color < 0 picks the next palette color of the panel; name NULL or "" keeps it
 * out of the legend. Points that are not finite (or not positive on a log axis) are skipped. */
int sm_svg_add(sm_svg *s, int panel, const char *name, const double *x, const double *y, size_t n, int style,
               int color);
/* Adds an interval series (copied): style SM_SVG_BAND or SM_SVG_ERRBARS, drawn in the color given (add it
 * before the line it belongs to so the line is drawn on top); kept out of the legend. */
int sm_svg_add_range(sm_svg *s, int panel, const double *x, const double *lo, const double *hi, size_t n, int style,
                     int color);
/* The chart as a NUL-terminated string (malloc'd; the caller frees) or NULL when out of memory. */
char *sm_svg_render(const sm_svg *s);
/* Renders and writes to path; SM_ERR_IO with the path on failure. */
int sm_svg_write(const sm_svg *s, const char *path, sm_error *err);
/* The palette color (hex "#rrggbb") for index i (cycles). */
const char *sm_svg_color(int i);

#endif
