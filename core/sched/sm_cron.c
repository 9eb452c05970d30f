/* sm_cron.c - cron parsing and next-fire computation. The search walks the naive local calendar
 * (month, then day, then hour, then minute, jumping over whole non-matching units) and maps each
 * matching wall time to an instant; the mapping is non-decreasing, so the first mapped instant past
 * `after` is the answer. A year of @hourly costs ~9000 small steps, not half a million minutes. */
#include "sm_cron.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *label;
    int min, max;
    const char *const *names; /* names[i] is value min+i (month) or i (weekday) */
    int nnames;
} field_def;

static const char *const month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
static const char *const dow_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

static const field_def fields[5] = {
    {"minute", 0, 59, NULL, 0},
    {"hour", 0, 23, NULL, 0},
    {"day of month", 1, 31, NULL, 0},
    {"month", 1, 12, month_names, 12},
    {"day of week", 0, 7, dow_names, 7},
};

typedef struct {
    const char *expr;
    int field;
    char item[64];
    sm_error *err;
} parse_ctx;

static int field_err(parse_ctx *c, const char *fmt, const char *a, int x, int y) {
    char why[160];
    snprintf(why, sizeof why, fmt, a, x, y);
    return sm_error_set(c->err, SM_ERR_ARG, "cron '%s': field %d (%s) '%s': %s", c->expr, c->field + 1,
                        fields[c->field].label, c->item, why);
}

/* A number or (for month/weekday) a three-letter name; *end past it. */
static int parse_value(parse_ctx *c, const char *s, const char **end, int *v) {
    const field_def *f = &fields[c->field];
    if (isdigit((unsigned char)*s)) {
        long x = 0;
        const char *p = s;
        while (isdigit((unsigned char)*p) && x < 100000) x = x * 10 + (*p++ - '0');
        if (x < f->min || x > f->max) return field_err(c, "out of range %s%d-%d", "", f->min, f->max);
        *v = (int)x;
        *end = p;
        return 0;
    }
    if (f->names && isalpha((unsigned char)s[0]) && isalpha((unsigned char)s[1]) && isalpha((unsigned char)s[2]) &&
        !isalpha((unsigned char)s[3])) {
        for (int i = 0; i < f->nnames; i++)
            if (strncasecmp(s, f->names[i], 3) == 0) {
                *v = f->names == month_names ? i + 1 : i;
                *end = s + 3;
                return 0;
            }
    }
    if (f->names)
        return field_err(c, "not a number or a name (%s)", f->names == month_names ? "JAN-DEC" : "SUN-SAT", 0, 0);
    return field_err(c, "not a number (expected %s%d-%d)", "", f->min, f->max);
}

/* One comma-separated item: "*", "N", "A-B", each with optional "/STEP". Sets bits in *mask. */
static int parse_item(parse_ctx *c, const char *s, uint64_t *mask, int *star) {
    const field_def *f = &fields[c->field];
    int lo, hi, step = 1;
    const char *p = s;
    if (*p == '*') {
        lo = f->min;
        hi = f->max;
        p++;
        *star = 1;
    } else {
        if (parse_value(c, p, &p, &lo)) return SM_ERR_ARG;
        hi = lo;
        if (*p == '-') {
            if (parse_value(c, p + 1, &p, &hi)) return SM_ERR_ARG;
            if (hi < lo) return field_err(c, "range start is after its end%s", "", 0, 0);
        } else if (*p == '/')
            hi = f->max;
    }
    if (*p == '/') {
        p++;
        if (!isdigit((unsigned char)*p)) return field_err(c, "step must be a positive number%s", "", 0, 0);
        long x = 0;
        while (isdigit((unsigned char)*p) && x < 100000) x = x * 10 + (*p++ - '0');
        if (x < 1 || x > f->max) return field_err(c, "step out of range %s%d-%d", "", 1, f->max);
        step = (int)x;
    }
    if (*p) return field_err(c, "unexpected text (expected N, A-B, * or a /STEP)%s", "", 0, 0);
    for (int v = lo; v <= hi; v += step) *mask |= 1ull << v;
    return 0;
}

static int parse_field(parse_ctx *c, const char *text, uint64_t *mask, int *star) {
    *mask = 0;
    *star = text[0] == '*';
    int dummy = 0;
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        snprintf(c->item, sizeof c->item, "%.*s", (int)(n < 63 ? n : 63), p);
        if (n == 0 || n >= 63) {
            if (n == 0) snprintf(c->item, sizeof c->item, "%s", text);
            return field_err(c, n == 0 ? "empty list item%s" : "item too long%s", "", 0, 0);
        }
        if (parse_item(c, c->item, mask, &dummy)) return SM_ERR_ARG;
        if (!comma) return 0;
        p = comma + 1;
    }
}

int sm_cron_parse(const char *expr, sm_cron *out, sm_error *err) {
    memset(out, 0, sizeof *out);
    if (!expr) return sm_error_set(err, SM_ERR_ARG, "cron expression missing");
    while (isspace((unsigned char)*expr)) expr++;
    char buf[256];
    size_t len = strlen(expr);
    while (len && isspace((unsigned char)expr[len - 1])) len--;
    if (len >= sizeof buf) return sm_error_set(err, SM_ERR_ARG, "cron expression longer than %zu characters", sizeof buf - 1);
    memcpy(buf, expr, len);
    buf[len] = 0;
    const char *text = buf;
    if (buf[0] == '@') {
        static const char *const macros[][2] = {{"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"},
                                                {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
                                                {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
                                                {"@hourly", "0 * * * *"}};
        text = NULL;
        for (size_t i = 0; i < sizeof macros / sizeof macros[0]; i++)
            if (strcasecmp(buf, macros[i][0]) == 0) text = macros[i][1];
        if (!text)
            return sm_error_set(err, SM_ERR_ARG,
                                "cron '%s': unknown macro (use @yearly, @annually, @monthly, @weekly, @daily, "
                                "@midnight or @hourly)",
                                buf);
    }
    char work[256], *fv[6];
    snprintf(work, sizeof work, "%s", text);
    int nf = 0;
    for (char *save = NULL, *tok = strtok_r(work, " \t\n\r", &save); tok; tok = strtok_r(NULL, " \t\n\r", &save)) {
        if (nf < 6) fv[nf] = tok;
        nf++;
    }
    if (nf != 5)
        return sm_error_set(err, SM_ERR_ARG,
                            "cron '%s': expected 5 fields (minute hour day-of-month month day-of-week), got %d", buf,
                            nf);
    parse_ctx c = {.expr = buf, .err = err};
    uint64_t m[5];
    int star[5];
    for (c.field = 0; c.field < 5; c.field++)
        if (parse_field(&c, fv[c.field], &m[c.field], &star[c.field])) return SM_ERR_ARG;
    out->minute = m[0];
    out->hour = (uint32_t)m[1];
    out->dom = (uint32_t)m[2];
    out->month = (uint16_t)m[3];
    out->dow = (uint8_t)((m[4] | (m[4] >> 7)) & 0x7f); /* 7 is Sunday too */
    out->dom_star = (uint8_t)star[2];
    out->dow_star = (uint8_t)star[4];
    /* When the weekday cannot rescue it, some selected day must exist in some selected month. */
    if (out->dow_star) {
        int possible = 0;
        for (unsigned mo = 1; mo <= 12 && !possible; mo++)
            if (out->month >> mo & 1)
                for (unsigned d = 1; d <= sm_days_in_month(2000, mo); d++)
                    if (out->dom >> d & 1) possible = 1;
        if (!possible) {
            c.field = 2;
            snprintf(c.item, sizeof c.item, "%s", fv[2]);
            return field_err(&c, "no selected day exists in the selected month(s); this would never fire%s", "",
                             0, 0);
        }
    }
    return SM_OK;
}

static int day_matches(const sm_cron *c, int64_t y, unsigned m, unsigned d, int64_t days) {
    int dom_ok = (c->dom >> d & 1) && d <= sm_days_in_month(y, m);
    int dow_ok = c->dow >> sm_weekday_from_days(days) & 1;
    return (c->dom_star || c->dow_star) ? dom_ok && dow_ok : dom_ok || dow_ok;
}

static int64_t floordiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

int sm_cron_matches_local(const sm_cron *c, int64_t local) {
    int64_t days = floordiv(local, 86400), rem = local - days * 86400, y;
    unsigned mo, d;
    if (rem % 60) return 0;
    sm_civil_from_days(days, &y, &mo, &d);
    return (c->month >> mo & 1) && day_matches(c, y, mo, d, days) && (c->hour >> (rem / 3600) & 1) &&
           (c->minute >> (rem / 60 % 60) & 1);
}

/* The first matching naive local minute >= local (local a multiple of 60), or -1 past `limit`. */
static int naive_next(const sm_cron *c, int64_t local, int64_t limit, int64_t *out) {
    int64_t days = floordiv(local, 86400), rem = local - days * 86400, y;
    unsigned mo, d;
    int h = (int)(rem / 3600), mi = (int)(rem / 60 % 60);
    sm_civil_from_days(days, &y, &mo, &d);
    for (;;) {
        if (days * 86400 > limit) return -1;
        if (!(c->month >> mo & 1)) {
            unsigned nm = mo + 1;
            while (nm <= 12 && !(c->month >> nm & 1)) nm++;
            if (nm > 12) {
                y++;
                nm = 1;
                while (!(c->month >> nm & 1)) nm++;
            }
            mo = nm;
            d = 1;
            days = sm_days_from_civil(y, mo, d);
            h = mi = 0;
            continue;
        }
        if (!day_matches(c, y, mo, d, days)) {
            days++;
            sm_civil_from_days(days, &y, &mo, &d);
            h = mi = 0;
            continue;
        }
        while (h < 24 && !(c->hour >> h & 1)) h++, mi = 0;
        while (h < 24) {
            while (mi < 60 && !(c->minute >> mi & 1)) mi++;
            if (mi < 60) {
                *out = days * 86400 + h * 3600 + mi * 60;
                return 0;
            }
            h++;
            mi = 0;
            while (h < 24 && !(c->hour >> h & 1)) h++;
        }
        days++;
        sm_civil_from_days(days, &y, &mo, &d);
        h = mi = 0;
    }
}

int sm_cron_next(const sm_cron *c, const sm_tz *tz, int64_t after, int64_t *next, sm_error *err) {
    /* A wall time L maps to an instant <= L - (smallest offset nearby), so only L > after + min_off can
     * map past `after`. */
    int32_t min_off = 0;
    if (tz) {
        int32_t o[3] = {sm_tz_offset(tz, after - 30 * 3600), sm_tz_offset(tz, after), sm_tz_offset(tz, after + 30 * 3600)};
        min_off = o[0] < o[1] ? o[0] : o[1];
        if (o[2] < min_off) min_off = o[2];
    }
    int64_t local = (floordiv(after + min_off, 60) + 1) * 60;
    int64_t limit = local + 400ll * 366 * 86400;
    for (;;) {
        int64_t cand;
        if (naive_next(c, local, limit, &cand))
            return sm_error_set(err, SM_ERR_NOTFOUND, "cron expression never fires within 400 years");
        int64_t t = tz ? sm_tz_local_to_utc(tz, cand) : cand;
        if (t > after) {
            *next = t;
            return SM_OK;
        }
        local = cand + 60;
    }
}
