/* sm_web_util.c - text buffers, escaping, query rows as JSON, error and JSON responses, the page frame. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "web/sm_web_int.h"

void sm_wbuf_put(sm_wbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) { b->oom = 1; return; }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

void sm_wbuf_puts(sm_wbuf *b, const char *s) { sm_wbuf_put(b, s, strlen(s)); }

void sm_wbuf_printf(sm_wbuf *b, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < sizeof tmp) { sm_wbuf_put(b, tmp, (size_t)k); return; }
    char *big = malloc((size_t)k + 1);
    if (!big) { b->oom = 1; return; }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)k + 1, fmt, ap);
    va_end(ap);
    sm_wbuf_put(b, big, (size_t)k);
    free(big);
}

void sm_wbuf_esc(sm_wbuf *b, const char *s) {
    if (!s) return;
    const char *run = s;
    for (; *s; s++) {
        const char *e = NULL;
        switch (*s) {
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '"': e = "&quot;"; break;
        case '\'': e = "&#39;"; break;
        default: continue;
        }
        sm_wbuf_put(b, run, (size_t)(s - run));
        sm_wbuf_puts(b, e);
        run = s + 1;
    }
    sm_wbuf_put(b, run, (size_t)(s - run));
}

void sm_wbuf_wrap(sm_wbuf *b, const char *before, const char *text, const char *after) {
    sm_wbuf_puts(b, before);
    sm_wbuf_esc(b, text);
    sm_wbuf_puts(b, after);
}

void sm_wbuf_url(sm_wbuf *b, const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || strchr("-_.~", ch)) {
            sm_wbuf_put(b, (const char *)&ch, 1);
        } else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            sm_wbuf_put(b, e, 3);
        }
    }
}

const char *sm_wreq_arg(const sm_wreq *r, const char *key) {
    for (int i = 0; i < r->nargs; i++)
        if (!strcmp(r->keys[i], key)) return r->vals[i];
    return NULL;
}

int sm_wid_ok(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 200) return 0;
    for (; *s; s++)
        if (*s <= ' ' || *s > '~' || strchr("\"'<>\\`", *s)) return 0;
    return 1;
}

int sm_wsha_ok(const char *s) {
    if (!s || strlen(s) != 64) return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return 0;
    return 1;
}

/* PostgreSQL type oids (pg_type.h): bool, int8, int2, int4, oid, float4, float8, numeric, json, jsonb. */
static json_t *cell(PGresult *r, int i, int j) {
    if (PQgetisnull(r, i, j)) return json_null();
    const char *v = PQgetvalue(r, i, j);
    switch (PQftype(r, j)) {
    case 16: return json_boolean(v[0] == 't');
    case 20: case 21: case 23: case 26: return json_integer(strtoll(v, NULL, 10));
    case 700: case 701: case 1700: return json_real(strtod(v, NULL));
    case 114: case 3802: {
        json_t *x = json_loads(v, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        return x ? x : json_string(v);
    }
    default: return json_stringn(v, (size_t)PQgetlength(r, i, j));
    }
}

json_t *sm_wq(PGconn *c, sm_error *err, const char *sql, int n, const char *const *vals) {
    PGresult *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        sm_error_set(err, SM_ERR_DB, "database: %s", PQresultErrorMessage(r));
        PQclear(r);
        return NULL;
    }
    json_t *rows = json_array();
    int nt = PQntuples(r), nf = PQnfields(r);
    for (int i = 0; i < nt && rows; i++) {
        json_t *o = json_object();
        for (int j = 0; j < nf; j++) json_object_set_new(o, PQfname(r, j), cell(r, i, j));
        json_array_append_new(rows, o);
    }
    PQclear(r);
    if (!rows) sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    return rows;
}

json_t *sm_wq1(PGconn *c, sm_error *err, const char *sql, int n, const char *const *vals) {
    json_t *rows = sm_wq(c, err, sql, n, vals);
    if (!rows) return NULL;
    json_t *row = json_array_size(rows) ? json_incref(json_array_get(rows, 0)) : json_null();
    json_decref(rows);
    return row;
}

const char *sm_wstr(json_t *o, const char *key) { return json_string_value(json_object_get(o, key)); }

char *sm_wjson_text(json_t *v) {
    if (!v || json_is_null(v)) return strdup("");
    if (json_is_string(v)) return strdup(json_string_value(v));
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS | JSON_REAL_PRECISION(6));
    return s ? s : strdup("");
}

void sm_wresp_error(const sm_wreq *q, sm_wresp *r, int status, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    free(r->body.s);
    memset(&r->body, 0, sizeof r->body);
    r->status = status;
    if (q && q->json) {
        json_t *o = json_pack("{s:s,s:i}", "error", msg, "status", status);
        sm_wresp_json(r, o);
        r->status = status;
        return;
    }
    r->type = "text/plain; charset=utf-8";
    sm_wbuf_printf(&r->body, "%d: %s\n", status, msg);
}

void sm_wresp_json(sm_wresp *r, json_t *model) {
    char *s = model ? json_dumps(model, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(model);
    r->type = "application/json";
    if (!s) { r->status = 500; sm_wbuf_puts(&r->body, "{\"error\":\"out of memory\"}"); return; }
    r->status = 200;
    sm_wbuf_puts(&r->body, s);
    sm_wbuf_puts(&r->body, "\n");
    free(s);
}

void sm_whtml_begin(sm_wresp *r, const char *title) {
    r->status = 200;
    r->type = "text/html; charset=utf-8";
    sm_wbuf *b = &r->body;
    sm_wbuf_puts(b, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
    sm_wbuf_esc(b, title);
    sm_wbuf_puts(b, " - scalemix</title><style>"
                    "body{font:14px system-ui,sans-serif;margin:0;color:#222}"
                    "nav{background:#20324a;padding:8px 16px}nav a{color:#fff;margin-right:18px;text-decoration:none}"
                    "main{padding:12px 16px}table{border-collapse:collapse;margin:8px 0}"
                    "td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}"
                    "th{background:#f3f5f8}.st-failed{color:#b00020}.st-succeeded{color:#19692c}"
                    ".st-running{color:#1a4fa0}.mono{font-family:monospace;font-size:12px}"
                    "pre{background:#f6f6f6;padding:6px;max-height:240px;overflow:auto;white-space:pre-wrap}"
                    ".err{background:#fde8ea;padding:6px 10px;border-left:4px solid #b00020}"
                    ".logbox{max-height:240px;overflow:auto;display:flex;flex-direction:column-reverse}"
                    ".logbox pre,pre.full{max-height:none;margin:0;font-size:12px;flex:none}.lv-warn{color:#8a5a00}.lv-error{color:#b00020}"
                    "td.params{max-width:28em;overflow-wrap:anywhere}td.why{min-width:12em}.lv-debug{color:#777}.muted{color:#777}.state{color:#1a4fa0}summary{cursor:pointer;color:#444}"
                    "svg{max-width:100%;height:auto}</style></head><body><nav>"
                    "<a href=\"/runs\">Runs</a><a href=\"/autoscale\">AutoScale</a><a href=\"/schedules\">Schedules</a>"
                    "<a href=\"/metrics\">Metrics</a></nav><main><h1>");
    sm_wbuf_esc(b, title);
    sm_wbuf_puts(b, "</h1>");
}

void sm_whtml_end(sm_wresp *r) { sm_wbuf_puts(&r->body, "</main></body></html>\n"); }

void sm_whtml_kv(sm_wbuf *b, const char *label, const char *value) {
    sm_wbuf_puts(b, "<tr><th>");
    sm_wbuf_esc(b, label);
    sm_wbuf_puts(b, "</th><td>");
    sm_wbuf_esc(b, value);
    sm_wbuf_puts(b, "</td></tr>");
}

void sm_whtml_link(sm_wbuf *b, const char *path, const char *id, const char *label) {
    sm_wbuf_puts(b, "<a href=\"");
    sm_wbuf_puts(b, path);
    sm_wbuf_url(b, id);
    sm_wbuf_puts(b, "\">");
    sm_wbuf_esc(b, label);
    sm_wbuf_puts(b, "</a>");
}

int sm_wreq_long(const sm_wreq *q, const char *key, long lo, long hi, long *out) {
    const char *v = sm_wreq_arg(q, key);
    if (!v) return 0;
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) return -1;
    *out = x;
    return 0;
}
