/* sm_sched_store.c - the schedule module's clock, database access and schedule specs. */
#include "sm_sched.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../db/sm_db.h"
#include "sm_cron.h"
#include "sm_sched_int.h"

/* The db module may not be linked into every binary (test drivers); without it only an explicit DSN works. */
#pragma weak sm_db_resolve

/* ---- clock ---- */

static double fake_anchor_real = -1, fake_anchor_clock;

double sm_sched_speed(void) {
    const char *f = getenv("SCALEMIX_CLOCK_FILE");
    if (f && *f) {
        FILE *fp = fopen(f, "r");
        char iso[64] = "";
        double speed = 1;
        if (fp) {
            if (fscanf(fp, "%63s %lf", iso, &speed) < 1) speed = 1;
            fclose(fp);
        }
        return speed > 0 ? speed : 1;
    }
    const char *s = getenv("SCALEMIX_FAKE_SPEED");
    double v = s ? strtod(s, NULL) : 1;
    return v > 0 ? v : 1;
}

double sm_sched_now(void) {
    const char *f = getenv("SCALEMIX_CLOCK_FILE");
    if (f && *f) {
        FILE *fp = fopen(f, "r");
        struct stat st;
        char iso[64] = "";
        double speed = 1;
        int64_t t;
        if (fp && fstat(fileno(fp), &st) == 0 && fscanf(fp, "%63s %lf", iso, &speed) >= 1 &&
            sm_time_parse_iso(iso, &t, NULL) == 0) {
            fclose(fp);
            double mt = (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9;
            return (double)t + (sm_now() - mt) * (speed > 0 ? speed : 1);
        }
        if (fp) fclose(fp);
        sm_log(SM_LOG_WARN, "SCALEMIX_CLOCK_FILE %s unreadable; using the real clock", f);
        return sm_now();
    }
    const char *fake = getenv("SCALEMIX_FAKE_NOW");
    int64_t t;
    if (fake && *fake && sm_time_parse_iso(fake, &t, NULL) == 0) {
        if (fake_anchor_real < 0) fake_anchor_real = sm_now(), fake_anchor_clock = (double)t;
        return fake_anchor_clock + (sm_now() - fake_anchor_real) * sm_sched_speed();
    }
    return sm_now();
}

/* ---- database ---- */

const char *sm_sched_workspace(void) {
    /* absolute, so that children, the database server's user and log paths agree whatever their cwd */
    static char ws[PATH_MAX];
    const char *h = getenv("SCALEMIX_HOME");
    char cwd[PATH_MAX - 16];
    if (h && *h && h[0] == '/')
        snprintf(ws, sizeof ws, "%s", h);
    else if (getcwd(cwd, sizeof cwd))
        snprintf(ws, sizeof ws, "%s/%s", cwd, h && *h ? h : ".scalemix");
    else
        snprintf(ws, sizeof ws, "%s", h && *h ? h : ".scalemix");
    return ws;
}

PGconn *sm_sched_connect(const char *cli_dsn, char **dsn_out, sm_error *err) {
    char *dsn = NULL;
    if (dsn_out) *dsn_out = NULL;
    if (sm_db_resolve) {
        if (sm_db_resolve(sm_sched_workspace(), cli_dsn, &dsn, err)) {
            sm_error_wrap(err, "opening the lineage database");
            return NULL;
        }
        if (!dsn) {
            sm_error_set(err, SM_ERR_ARG, "schedules live in the lineage database, but it is disabled (--db none)");
            return NULL;
        }
    } else {
        const char *d = cli_dsn ? cli_dsn : getenv("SCALEMIX_DB");
        if (!d && (getenv("PGHOST") || getenv("PGDATABASE") || getenv("PGSERVICE"))) d = "";
        if (!d || strcmp(d, "none") == 0) {
            sm_error_set(err, SM_ERR_UNSUPPORTED,
                         "this binary has no embedded-database support; pass --db DSN or set SCALEMIX_DB");
            return NULL;
        }
        dsn = strdup(d);
    }
    PGconn *c = PQconnectdb(dsn);
    if (PQstatus(c) != CONNECTION_OK) {
        sm_error_set(err, SM_ERR_DB, "cannot connect to the lineage database: %s", PQerrorMessage(c));
        PQfinish(c);
        free(dsn);
        return NULL;
    }
    PQsetNoticeProcessor(c, NULL, NULL);
    PGresult *r = sm_sched_q(c, "SELECT to_regclass('schedule_fires') IS NOT NULL", 0, NULL, err);
    int ok = r && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (!ok) {
        if (r)
            sm_error_set(err, SM_ERR_DB,
                         "the lineage database lacks the schedule tables (migration 010_schedules.sql); run "
                         "'scalemix db migrate'");
        PQfinish(c);
        free(dsn);
        return NULL;
    }
    if (dsn_out)
        *dsn_out = dsn;
    else
        free(dsn);
    return c;
}

PGresult *sm_sched_q(PGconn *c, const char *sql, int n, const char *const *vals, sm_error *err) {
    PGresult *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) return r;
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    sm_error_set(err, SM_ERR_DB, "database: %s%s%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c),
                 state ? " SQLSTATE " : "", state ? state : "");
    size_t len = strlen(err ? err->msg : "");
    if (err && len && err->msg[len - 1] == '\n') err->msg[len - 1] = 0;
    PQclear(r);
    return NULL;
}

int sm_sched_x(PGconn *c, const char *sql, int n, const char *const *vals, sm_error *err) {
    PGresult *r = sm_sched_q(c, sql, n, vals, err);
    if (!r) return SM_ERR_DB;
    PQclear(r);
    return SM_OK;
}

/* ---- specs ---- */

int sm_sched_parse_duration(const char *s, double *secs, sm_error *err) {
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : -1;
    if (!s || end == s || errno || v < 0 || !isfinite(v)) goto bad;
    double mul = 1;
    if (*end == 's')
        end++;
    else if (*end == 'm')
        mul = 60, end++;
    else if (*end == 'h')
        mul = 3600, end++;
    else if (*end == 'd')
        mul = 86400, end++;
    if (*end) goto bad;
    *secs = v * mul;
    return SM_OK;
bad:
    return sm_error_set(err, SM_ERR_ARG, "duration '%s': expected seconds or N followed by s, m, h or d (e.g. 6h)",
                        s ? s : "(null)");
}

static char *absolute(const char *p) {
    if (p[0] == '/') return strdup(p);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return NULL;
    size_t n = strlen(cwd) + strlen(p) + 2;
    char *out = malloc(n);
    if (out) snprintf(out, n, "%s/%s", cwd, p);
    return out;
}

static const char *str_field(json_t *o, const char *k, const char *def) {
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : def;
}

int sm_sched_spec_normalize(json_t *in, json_t **out, sm_error *err) {
    *out = NULL;
    if (!json_is_object(in)) return sm_error_set(err, SM_ERR_ARG, "schedule spec: expected a JSON object");
    static const char *const known[] = {"name", "cron", "tz", "pipeline", "params", "overlap", "catchup",
                                        "catchup_window", "when_changed", "paused"};
    const char *key;
    json_t *val;
    json_object_foreach(in, key, val) {
        size_t i = 0;
        while (i < SM_ARRAY_LEN(known) && strcmp(known[i], key)) i++;
        if (i == SM_ARRAY_LEN(known)) return sm_error_set(err, SM_ERR_ARG, "schedule spec: unknown field '%s'", key);
        if (strcmp(key, "params") && strcmp(key, "when_changed") && strcmp(key, "paused") &&
            strcmp(key, "catchup_window") && !json_is_string(val))
            return sm_error_set(err, SM_ERR_ARG, "schedule spec: field '%s' must be a string", key);
    }
    const char *name = str_field(in, "name", NULL), *cron = str_field(in, "cron", NULL),
               *tz = str_field(in, "tz", "UTC"), *pipeline = str_field(in, "pipeline", NULL),
               *overlap = str_field(in, "overlap", "skip"), *catchup = str_field(in, "catchup", "latest");
    if (!name || !sm_sched_valid_name(name))
        return sm_error_set(err, SM_ERR_ARG, "schedule name '%s': use 1-64 characters of A-Z a-z 0-9 _ . -",
                            name ? name : "(missing)");
    if (!cron) return sm_error_set(err, SM_ERR_ARG, "schedule '%s': cron expression missing (--cron)", name);
    if (!pipeline || !*pipeline) return sm_error_set(err, SM_ERR_ARG, "schedule '%s': pipeline script missing", name);
    sm_cron c;
    if (sm_cron_parse(cron, &c, err)) return sm_error_wrap(err, "schedule '%s'", name);
    sm_tz *z;
    if (sm_tz_load(tz, &z, err)) return sm_error_wrap(err, "schedule '%s'", name);
    sm_tz_free(z);
    if (strcmp(overlap, "skip") && strcmp(overlap, "queue") && strcmp(overlap, "cancel-old"))
        return sm_error_set(err, SM_ERR_ARG, "schedule '%s': overlap '%s': use skip, queue or cancel-old", name, overlap);
    if (strcmp(catchup, "none") && strcmp(catchup, "latest") && strcmp(catchup, "all"))
        return sm_error_set(err, SM_ERR_ARG, "schedule '%s': catchup '%s': use none, latest or all", name, catchup);
    double window = 86400;
    json_t *w = json_object_get(in, "catchup_window");
    if (json_is_number(w))
        window = json_number_value(w);
    else if (json_is_string(w)) {
        if (sm_sched_parse_duration(json_string_value(w), &window, err)) return sm_error_wrap(err, "catchup_window");
    } else if (w)
        return sm_error_set(err, SM_ERR_ARG, "schedule '%s': catchup_window must be seconds or a duration", name);
    if (window < 0 || window > 3660.0 * 86400) return sm_error_set(err, SM_ERR_ARG, "catchup_window out of range");
    json_t *params = json_object_get(in, "params"), *np = json_object();
    /* an empty Lua table may arrive as [] or {} whatever was meant */
    if (json_is_array(params) && json_array_size(params) == 0) params = NULL;
    if (params && !json_is_object(params)) {
        json_decref(np);
        return sm_error_set(err, SM_ERR_ARG, "schedule '%s': params must be an object", name);
    }
    json_object_foreach(params, key, val) {
        char num[64];
        const char *s = json_is_string(val) ? json_string_value(val) : NULL;
        if (json_is_integer(val)) snprintf(num, sizeof num, "%lld", (long long)json_integer_value(val)), s = num;
        else if (json_is_real(val)) snprintf(num, sizeof num, "%.17g", json_real_value(val)), s = num;
        else if (json_is_boolean(val)) s = json_is_true(val) ? "true" : "false";
        if (!s || !*key || strchr(key, '=')) {
            json_decref(np);
            return sm_error_set(err, SM_ERR_ARG, "schedule '%s': param '%s' must be a scalar with a name without '='",
                                name, key);
        }
        json_object_set_new(np, key, json_string(s));
    }
    json_t *wc = json_object_get(in, "when_changed"), *nwc = json_array();
    if (json_is_object(wc) && json_object_size(wc) == 0) wc = NULL;
    if (wc && !json_is_array(wc)) {
        json_decref(np);
        json_decref(nwc);
        return sm_error_set(err, SM_ERR_ARG, "schedule '%s': when_changed must be a list of paths", name);
    }
    size_t i;
    json_array_foreach(wc, i, val) {
        char *abs = json_is_string(val) && *json_string_value(val) ? absolute(json_string_value(val)) : NULL;
        if (!abs) {
            json_decref(np);
            json_decref(nwc);
            return sm_error_set(err, SM_ERR_ARG, "schedule '%s': when_changed entry %zu is not a path", name, i);
        }
        json_array_append_new(nwc, json_string(abs));
        free(abs);
    }
    json_t *paused = json_object_get(in, "paused");
    char *abspipe = absolute(pipeline);
    struct stat pst;
    const char *why = !abspipe ? "cannot be made absolute (getcwd failed)"
                      : stat(abspipe, &pst) != 0 ? strerror(errno)
                      : !S_ISREG(pst.st_mode) ? "is not a regular file" : NULL;
    if (why) {
        sm_error_set(err, SM_ERR_ARG, "schedule '%s': pipeline script %s: %s", name, abspipe ? abspipe : pipeline, why);
        free(abspipe);
        json_decref(np);
        json_decref(nwc);
        return SM_ERR_ARG;
    }
    *out = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:f, s:o, s:b}", "name", name, "cron", cron, "tz", tz,
                     "pipeline", abspipe ? abspipe : pipeline, "params", np, "overlap", overlap, "catchup", catchup,
                     "catchup_window", window, "when_changed", nwc, "paused", json_is_true(paused));
    free(abspipe);
    return *out ? SM_OK : sm_error_set(err, SM_ERR_NOMEM, "out of memory");
}

int sm_sched_store(PGconn *c, json_t *spec, int replace, sm_error *err) {
    char *params = json_dumps(json_object_get(spec, "params"), JSON_COMPACT | JSON_SORT_KEYS);
    /* text[] literal built by the server from a JSON array: no quoting done here */
    char *wc = json_dumps(json_object_get(spec, "when_changed"), JSON_COMPACT);
    /* What the daemon may run: the script as it is now, under a tag only the workspace's owner can make. */
    char script_sha[65], tag[65];
    sm_sched_auth_fields af = {str_field(spec, "name", ""), str_field(spec, "pipeline", ""), script_sha, params,
                               str_field(spec, "cron", ""), str_field(spec, "tz", ""), wc};
    if (!params || !wc || sm_sha256_file(af.pipeline, script_sha, NULL, err) || sm_sched_auth_tag(&af, tag, err)) {
        int rc = params && wc ? (err ? err->code : SM_ERR_IO) : sm_error_set(err, SM_ERR_NOMEM, "out of memory");
        free(params);
        free(wc);
        return rc;
    }
    char window[64], now[32];
    snprintf(window, sizeof window, "%.3f", json_real_value(json_object_get(spec, "catchup_window")));
    sm_time_format_utc((int64_t)floor(sm_sched_now()), now);
    const char *v[13] = {str_field(spec, "name", ""), str_field(spec, "cron", ""), str_field(spec, "tz", ""),
                         str_field(spec, "pipeline", ""), params, str_field(spec, "overlap", ""),
                         str_field(spec, "catchup", ""), window, wc,
                         json_is_true(json_object_get(spec, "paused")) ? "t" : "f", now, script_sha, tag};
    static const char *ins =
        "INSERT INTO schedules (name, cron, tz, pipeline, params, overlap, catchup, catchup_window, when_changed, "
        "paused, decided_through, script_sha256, auth_tag) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, "
        "make_interval(secs => $8::float8), ARRAY(SELECT jsonb_array_elements_text($9::jsonb)), $10::boolean, "
        "$11::timestamptz, $12, $13) ";
    static const char *upd =
        "ON CONFLICT (name) DO UPDATE SET cron = EXCLUDED.cron, tz = EXCLUDED.tz, pipeline = EXCLUDED.pipeline, "
        "params = EXCLUDED.params, overlap = EXCLUDED.overlap, catchup = EXCLUDED.catchup, "
        "catchup_window = EXCLUDED.catchup_window, when_changed = EXCLUDED.when_changed, paused = EXCLUDED.paused, "
        "script_sha256 = EXCLUDED.script_sha256, auth_tag = EXCLUDED.auth_tag, "
        "decided_through = CASE WHEN schedules.cron IS DISTINCT FROM EXCLUDED.cron OR schedules.tz IS DISTINCT "
        "FROM EXCLUDED.tz THEN GREATEST(schedules.decided_through, EXCLUDED.decided_through) ELSE "
        "schedules.decided_through END, updated_at = now() ";
    char sql[2048];
    snprintf(sql, sizeof sql, "%s%s RETURNING schedule_id", ins, replace ? upd : "ON CONFLICT (name) DO NOTHING");
    PGresult *r = sm_sched_q(c, sql, 13, v, err);
    free(params);
    free(wc);
    if (!r) return SM_ERR_DB;
    int n = PQntuples(r);
    PQclear(r);
    if (n == 0)
        return sm_error_set(err, SM_ERR_ARG, "schedule '%s' exists already (remove it first, or use --replace)", v[0]);
    return SM_OK;
}

/* ---- input digests ---- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int digest_tree(sm_sha256_ctx *ctx, const char *root, const char *rel, sm_error *err) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s%s%s", root, *rel ? "/" : "", rel);
    struct stat st;
    if (stat(path, &st)) return sm_error_set(err, SM_ERR_IO, "when-changed input %s: %s", path, strerror(errno));
    if (S_ISREG(st.st_mode)) {
        char hex[65];
        if (sm_sha256_file(path, hex, NULL, err)) return err ? err->code : SM_ERR_IO;
        sm_sha256_update(ctx, "F", 1);
        sm_sha256_update(ctx, rel, strlen(rel) + 1);
        sm_sha256_update(ctx, hex, 64);
        return SM_OK;
    }
    if (!S_ISDIR(st.st_mode)) return SM_OK; /* sockets, fifos: not content */
    DIR *d = opendir(path);
    if (!d) return sm_error_set(err, SM_ERR_IO, "when-changed input %s: %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn) break;
            names = nn;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    sm_sha256_update(ctx, "D", 1);
    sm_sha256_update(ctx, rel, strlen(rel) + 1);
    int rc = SM_OK;
    for (size_t i = 0; i < n; i++) {
        char sub[PATH_MAX];
        snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", names[i]);
        if (!rc && names[i]) rc = digest_tree(ctx, root, sub, err);
        free(names[i]);
    }
    free(names);
    return rc;
}

int sm_sched_digest(const char *const *paths, size_t n, char hex[65], sm_error *err) {
    sm_sha256_ctx *ctx = sm_sha256_new();
    if (!ctx) return sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    int rc = SM_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        sm_sha256_update(ctx, paths[i], strlen(paths[i]) + 1);
        rc = digest_tree(ctx, paths[i], "", err);
    }
    sm_sha256_final_hex(ctx, hex);
    return rc;
}

/* ---- public ---- */

int sm_sched_declare(const char *dsn, const char *spec_json, sm_error *err) {
    json_error_t je;
    json_t *in = json_loads(spec_json ? spec_json : "", 0, &je), *spec = NULL;
    if (!in) return sm_error_set(err, SM_ERR_ARG, "schedule spec: invalid JSON at line %d: %s", je.line, je.text);
    int rc = sm_sched_spec_normalize(in, &spec, err);
    json_decref(in);
    if (rc) return rc;
    PGconn *c = sm_sched_connect(dsn, NULL, err);
    if (!c) {
        json_decref(spec);
        return err ? err->code : SM_ERR_DB;
    }
    rc = sm_sched_store(c, spec, 1, err);
    PQfinish(c);
    json_decref(spec);
    return rc;
}

int sm_sched_next_times(const char *cron, const char *tz, int64_t from, int count, int64_t *out, sm_error *err) {
    sm_cron c;
    sm_tz *z = NULL;
    if (sm_cron_parse(cron, &c, err)) return SM_ERR_ARG;
    if (tz && sm_tz_load(tz, &z, err)) return SM_ERR_ARG;
    int rc = SM_OK;
    for (int i = 0; i < count && !rc; i++) {
        rc = sm_cron_next(&c, z, from, &out[i], err);
        from = out[i];
    }
    sm_tz_free(z);
    return rc;
}
