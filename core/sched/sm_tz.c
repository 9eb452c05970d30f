/* sm_tz.c - TZif (RFC 8536) reader, POSIX TZ footer rules, local<->UTC mapping, civil dates, ISO 8601.
 * The zone file is parsed here rather than through localtime_r/mktime with TZ switched: mktime's
 * tm_isdst=-1 guesses in gaps and overlaps differ between libcs, and switching TZ is process-global. */
#include "sm_tz.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t utoff;
    uint8_t isdst;
} tz_type;

typedef struct {
    char kind; /* 'J' (1..365, no Feb 29), 'N' (0..365), 'M' (month.week.day) */
    int a, w, d;
    int32_t time; /* seconds after local midnight, may be negative or > 24 h */
} tz_rule;

typedef struct {
    int32_t std_off, dst_off;
    int has_dst;
    tz_rule start, end;
} tz_posix;

struct sm_tz {
    char name[256];
    int64_t *trans;
    uint8_t *idx;
    uint32_t ntrans;
    tz_type *types;
    uint32_t ntypes;
    int has_footer;
    tz_posix footer;
};

/* ---- civil calendar (proleptic Gregorian; era arithmetic so it is exact for negative years) ---- */

int64_t sm_days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void sm_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned sm_days_in_month(int64_t y, unsigned m) {
    static const unsigned dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[(m - 1) % 12];
}

unsigned sm_weekday_from_days(int64_t z) { return (unsigned)(z >= -4 ? (z + 4) % 7 : (z + 5) % 7 + 6); }

static int64_t floordiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

/* ---- POSIX TZ string (the TZif footer) ---- */

static const char *parse_name(const char *p) {
    if (*p == '<') {
        const char *q = strchr(p, '>');
        return q && q - p >= 4 ? q + 1 : NULL;
    }
    const char *q = p;
    while (isalpha((unsigned char)*q)) q++;
    return q - p >= 3 ? q : NULL;
}

/* [+-]hh[:mm[:ss]] with hh <= maxh; returns the end or NULL. */
static const char *parse_hms(const char *p, int maxh, int32_t *out) {
    int sign = 1;
    if (*p == '+' || *p == '-') sign = *p++ == '-' ? -1 : 1;
    if (!isdigit((unsigned char)*p)) return NULL;
    long h = strtol(p, (char **)&p, 10), mi = 0, s = 0;
    if (h > maxh) return NULL;
    if (*p == ':') {
        if (!isdigit((unsigned char)p[1])) return NULL;
        mi = strtol(p + 1, (char **)&p, 10);
        if (*p == ':') {
            if (!isdigit((unsigned char)p[1])) return NULL;
            s = strtol(p + 1, (char **)&p, 10);
        }
    }
    if (mi > 59 || s > 59) return NULL;
    *out = (int32_t)(sign * (h * 3600 + mi * 60 + s));
    return p;
}

static const char *parse_rule(const char *p, tz_rule *r) {
    char *e;
    if (*p == 'M') {
        r->kind = 'M';
        r->a = (int)strtol(p + 1, &e, 10);
        if (*e != '.') return NULL;
        r->w = (int)strtol(e + 1, &e, 10);
        if (*e != '.') return NULL;
        r->d = (int)strtol(e + 1, &e, 10);
        if (r->a < 1 || r->a > 12 || r->w < 1 || r->w > 5 || r->d < 0 || r->d > 6) return NULL;
    } else if (*p == 'J') {
        r->kind = 'J';
        r->a = (int)strtol(p + 1, &e, 10);
        if (r->a < 1 || r->a > 365) return NULL;
    } else if (isdigit((unsigned char)*p)) {
        r->kind = 'N';
        r->a = (int)strtol(p, &e, 10);
        if (r->a > 365) return NULL;
    } else
        return NULL;
    p = e;
    r->time = 7200;
    if (*p == '/') p = parse_hms(p + 1, 167, &r->time);
    return p;
}

static int parse_posix(const char *s, tz_posix *z) {
    memset(z, 0, sizeof *z);
    const char *p = parse_name(s);
    int32_t off;
    if (!p || !(p = parse_hms(p, 24, &off))) return -1;
    z->std_off = -off; /* POSIX offsets are west-positive */
    if (!*p) return 0;
    if (!(p = parse_name(p))) return -1;
    z->has_dst = 1;
    z->dst_off = z->std_off + 3600;
    if (*p && *p != ',') {
        if (!(p = parse_hms(p, 24, &off))) return -1;
        z->dst_off = -off;
    }
    if (*p != ',') return -1; /* a DST name without rules: defaults are implementation-defined; refuse */
    if (!(p = parse_rule(p + 1, &z->start)) || *p != ',') return -1;
    if (!(p = parse_rule(p + 1, &z->end)) || *p) return -1;
    return 0;
}

/* The instant at which rule r fires in year y, given the offset in effect just before it. */
static int64_t rule_instant(int64_t y, const tz_rule *r, int32_t off_before) {
    int64_t jan1 = sm_days_from_civil(y, 1, 1), day;
    if (r->kind == 'J')
        day = jan1 + r->a - 1 + (is_leap(y) && r->a >= 60);
    else if (r->kind == 'N')
        day = jan1 + r->a;
    else {
        int64_t first = sm_days_from_civil(y, (unsigned)r->a, 1);
        day = first + (r->d - (int)sm_weekday_from_days(first) + 7) % 7 + (r->w - 1) * 7;
        while (day >= first + sm_days_in_month(y, (unsigned)r->a)) day -= 7;
    }
    return day * 86400 + r->time - off_before;
}

static int posix_isdst(const tz_posix *z, int64_t t) {
    if (!z->has_dst) return 0;
    int64_t y;
    unsigned m, d;
    sm_civil_from_days(floordiv(t + z->std_off, 86400), &y, &m, &d);
    int64_t s = rule_instant(y, &z->start, z->std_off), e = rule_instant(y, &z->end, z->dst_off);
    return s < e ? (t >= s && t < e) : !(t >= e && t < s);
}

/* ---- TZif ---- */

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static int64_t be64(const unsigned char *p) { return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4)); }

static int bad(sm_error *err, const char *path, const char *what) {
    return sm_error_set(err, SM_ERR_FORMAT, "time zone file %s: %s (reinstall the tzdata package)", path, what);
}

static int parse_tzif(sm_tz *z, const unsigned char *b, size_t n, const char *path, sm_error *err) {
    if (n < 44 || memcmp(b, "TZif", 4)) return bad(err, path, "not a TZif file");
    int v2 = b[4] >= '2';
    size_t pos = 0;
    for (int block = 0; block < (v2 ? 2 : 1); block++) {
        if (pos + 44 > n || memcmp(b + pos, "TZif", 4)) return bad(err, path, "truncated header");
        uint32_t isut = be32(b + pos + 20), isstd = be32(b + pos + 24), leap = be32(b + pos + 28),
                 timecnt = be32(b + pos + 32), typecnt = be32(b + pos + 36), charcnt = be32(b + pos + 40);
        if (timecnt > 100000 || typecnt == 0 || typecnt > 256 || charcnt > 100000 || leap > 100000 ||
            isut > 256 || isstd > 256)
            return bad(err, path, "implausible counts");
        size_t tsz = (v2 && block == 0) ? 4 : (v2 ? 8 : 4);
        size_t need = (size_t)timecnt * tsz + timecnt + (size_t)typecnt * 6 + charcnt + (size_t)leap * (tsz + 4) +
                      isstd + isut;
        pos += 44;
        if (pos + need > n) return bad(err, path, "truncated data block");
        if (v2 && block == 0) {
            pos += need;
            continue;
        }
        const unsigned char *tp = b + pos, *ip = tp + (size_t)timecnt * tsz, *yp = ip + timecnt;
        z->trans = malloc(sizeof *z->trans * (timecnt ? timecnt : 1));
        z->idx = malloc(timecnt ? timecnt : 1);
        z->types = malloc(sizeof *z->types * typecnt);
        if (!z->trans || !z->idx || !z->types) return sm_error_set(err, SM_ERR_NOMEM, "out of memory");
        for (uint32_t i = 0; i < timecnt; i++) {
            z->trans[i] = tsz == 8 ? be64(tp + 8 * i) : (int64_t)(int32_t)be32(tp + 4 * i);
            z->idx[i] = ip[i];
            if (ip[i] >= typecnt) return bad(err, path, "transition refers to a missing type");
            if (i && z->trans[i] <= z->trans[i - 1]) return bad(err, path, "transitions out of order");
        }
        for (uint32_t i = 0; i < typecnt; i++) {
            z->types[i].utoff = (int32_t)be32(yp + 6 * i);
            z->types[i].isdst = yp[6 * i + 4];
            if (z->types[i].utoff < -25 * 3600 || z->types[i].utoff > 26 * 3600)
                return bad(err, path, "offset out of range");
        }
        z->ntrans = timecnt;
        z->ntypes = typecnt;
        pos += need;
    }
    if (v2 && pos < n) {
        if (b[pos] != '\n') return bad(err, path, "footer does not start with a newline");
        const unsigned char *nl = memchr(b + pos + 1, '\n', n - pos - 1);
        if (!nl) return bad(err, path, "footer not terminated");
        size_t len = (size_t)(nl - (b + pos + 1));
        if (len > 0) {
            char buf[256];
            if (len >= sizeof buf) return bad(err, path, "footer too long");
            memcpy(buf, b + pos + 1, len);
            buf[len] = 0;
            if (parse_posix(buf, &z->footer)) return bad(err, path, "footer TZ string not understood");
            z->has_footer = 1;
        }
    }
    return SM_OK;
}

static int valid_zone_name(const char *s) {
    if (!*s || *s == '/' || strlen(s) > 200 || strstr(s, "..")) return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("/_+-", *p)) return 0;
    return 1;
}

int sm_tz_load(const char *name, sm_tz **out, sm_error *err) {
    *out = NULL;
    if (!name || !valid_zone_name(name))
        return sm_error_set(err, SM_ERR_ARG, "time zone '%s': not an IANA zone name (e.g. Europe/Berlin, UTC)",
                            name ? name : "(null)");
    const char *dir = getenv("TZDIR");
    if (!dir || !*dir) dir = "/usr/share/zoneinfo";
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return sm_error_set(err, SM_ERR_ARG, "time zone '%s': unknown (no %s: %s; names are like America/New_York)",
                            name, path, strerror(errno));
    unsigned char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, 1 << 20, f) : 0;
    int toolarge = buf && n == (1 << 20);
    fclose(f);
    if (!buf) return sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    sm_tz *z = calloc(1, sizeof *z);
    int rc = !z ? sm_error_set(err, SM_ERR_NOMEM, "out of memory")
             : toolarge ? bad(err, path, "larger than 1 MiB")
                        : parse_tzif(z, buf, n, path, err);
    free(buf);
    if (rc) {
        sm_tz_free(z);
        return rc;
    }
    snprintf(z->name, sizeof z->name, "%s", name);
    *out = z;
    return SM_OK;
}

void sm_tz_free(sm_tz *tz) {
    if (!tz) return;
    free(tz->trans);
    free(tz->idx);
    free(tz->types);
    free(tz);
}

const char *sm_tz_name(const sm_tz *tz) { return tz->name; }

static const tz_type *type_at(const sm_tz *z, int64_t t, tz_type *tmp) {
    if (z->has_footer && (z->ntrans == 0 || t >= z->trans[z->ntrans - 1])) {
        int dst = posix_isdst(&z->footer, t);
        tmp->utoff = dst ? z->footer.dst_off : z->footer.std_off;
        tmp->isdst = (uint8_t)dst;
        return tmp;
    }
    if (z->ntrans == 0 || t < z->trans[0]) return &z->types[0];
    uint32_t lo = 0, hi = z->ntrans - 1; /* largest i with trans[i] <= t */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        if (z->trans[mid] <= t)
            lo = mid;
        else
            hi = mid - 1;
    }
    return &z->types[z->idx[lo]];
}

int32_t sm_tz_offset(const sm_tz *tz, int64_t t) {
    tz_type tmp;
    return type_at(tz, t, &tmp)->utoff;
}

int sm_tz_isdst(const sm_tz *tz, int64_t t) {
    tz_type tmp;
    return type_at(tz, t, &tmp)->isdst;
}

/* Offsets 30 hours either side bracket every real transition (the largest jumps in the database are a
 * day, e.g. Samoa 2011); candidates are the instants local - offset that really show `local`. */
int64_t sm_tz_local_to_utc(const sm_tz *tz, int64_t local) {
    int32_t offs[5];
    offs[0] = sm_tz_offset(tz, local - 30 * 3600);
    offs[1] = sm_tz_offset(tz, local + 30 * 3600);
    offs[2] = sm_tz_offset(tz, local - offs[0]);
    offs[3] = sm_tz_offset(tz, local - offs[1]);
    offs[4] = sm_tz_offset(tz, local);
    int found = 0;
    int64_t best = 0;
    int32_t lo_off = offs[0], hi_off = offs[0];
    for (int i = 0; i < 5; i++) {
        int64_t t = local - offs[i];
        if (sm_tz_offset(tz, t) == offs[i] && (!found || t < best)) best = t, found = 1;
        if (offs[i] < lo_off) lo_off = offs[i];
        if (offs[i] > hi_off) hi_off = offs[i];
    }
    if (found) return best;
    /* In a gap: the wall clock jumps over `local` somewhere in [local - hi_off, local - lo_off]; the
     * first instant after the gap is the first t whose wall time passes local. */
    int64_t a = local - hi_off, b = local - lo_off;
    while (a < b) {
        int64_t mid = a + (b - a) / 2;
        if (mid + sm_tz_offset(tz, mid) > local)
            b = mid;
        else
            a = mid + 1;
    }
    return a;
}

/* ---- ISO 8601 ---- */

static int digits(const char *p, int n, int *v) {
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)p[i])) return -1;
        *v = *v * 10 + (p[i] - '0');
    }
    return 0;
}

int sm_time_parse_iso(const char *s, int64_t *t, sm_error *err) {
    int y, mo, d, h = 0, mi = 0, sec = 0;
    const char *p = s;
    if (!s || digits(p, 4, &y) || p[4] != '-' || digits(p + 5, 2, &mo) || p[7] != '-' || digits(p + 8, 2, &d))
        goto fail;
    p += 10;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        if (digits(p + 1, 2, &h) || p[3] != ':' || digits(p + 4, 2, &mi)) goto fail;
        p += 6;
        if (*p == ':') {
            if (digits(p + 1, 2, &sec)) goto fail;
            p += 3;
            if (*p == '.' || *p == ',') {
                p++;
                if (!isdigit((unsigned char)*p)) goto fail;
                while (isdigit((unsigned char)*p)) p++;
            }
        }
    }
    int off = 0;
    if (*p == 'Z' || *p == 'z')
        p++;
    else if (*p == '+' || *p == '-') {
        int oh, om = 0, sign = *p == '-' ? -1 : 1;
        if (digits(p + 1, 2, &oh)) goto fail;
        p += 3;
        if (*p == ':') p++;
        if (isdigit((unsigned char)*p)) {
            if (digits(p, 2, &om)) goto fail;
            p += 2;
        }
        if (oh > 23 || om > 59) goto fail;
        off = sign * (oh * 3600 + om * 60);
    }
    if (*p) goto fail;
    if (mo < 1 || mo > 12 || d < 1 || (unsigned)d > sm_days_in_month(y, (unsigned)mo) || h > 23 || mi > 59 || sec > 60)
        goto fail;
    *t = sm_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec - off;
    return SM_OK;
fail:
    return sm_error_set(err, SM_ERR_ARG,
                        "time '%s': expected ISO 8601 like 2026-03-08T02:30:00Z (date, optional time, optional Z or "
                        "+HH:MM; no zone means UTC)",
                        s ? s : "(null)");
}

void sm_time_format_utc(int64_t t, char out[32]) {
    int64_t days = floordiv(t, 86400), rem = t - days * 86400, y;
    unsigned m, d;
    sm_civil_from_days(days, &y, &m, &d);
    snprintf(out, 32, "%04lld-%02u-%02uT%02d:%02d:%02dZ", (long long)y, m, d, (int)(rem / 3600),
             (int)(rem / 60 % 60), (int)(rem % 60));
}
