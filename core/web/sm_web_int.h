/* sm_web_int.h - shared between the files of core/web only: the text buffer, requests and responses, the
 * database helpers and the pages. Pages run on worker threads, each with its own read-only connection. */
#ifndef SM_WEB_INT_H
#define SM_WEB_INT_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>
#include "sm_common.h"

/* A growing NUL-terminated string; on out of memory it stays truncated with oom set. */
typedef struct sm_wbuf {
    char *s;
    size_t n, cap;
    int oom;
} sm_wbuf;
void sm_wbuf_put(sm_wbuf *b, const char *s, size_t n);
void sm_wbuf_puts(sm_wbuf *b, const char *s);
void sm_wbuf_printf(sm_wbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s HTML-escaped (& < > " '); NULL appends nothing. */
void sm_wbuf_esc(sm_wbuf *b, const char *s);
/* Appends before, then text HTML-escaped, then after (markup around one escaped value). */
void sm_wbuf_wrap(sm_wbuf *b, const char *before, const char *text, const char *after);
/* Appends s percent-encoded for a URL query value or path segment. */
void sm_wbuf_url(sm_wbuf *b, const char *s);

#define SM_WEB_MAX_ARGS 32

typedef struct sm_wreq {
    char path[512];
    const char *keys[SM_WEB_MAX_ARGS], *vals[SM_WEB_MAX_ARGS]; /* query arguments, owned by the request */
    int nargs;
    int too_many;  /* more arguments than SM_WEB_MAX_ARGS */
    int json;      /* ?format=json or a /api/ path */
} sm_wreq;

typedef struct sm_wresp {
    int status;
    const char *type; /* content type */
    sm_wbuf body;
} sm_wresp;

/* The first value of query argument key, or NULL. */
const char *sm_wreq_arg(const sm_wreq *r, const char *key);

/* Per-worker context: the read-only connection and the plot stage. */
typedef struct sm_wctx {
    PGconn *db;
    void *plot; /* sm_plugin * of the plot stage */
} sm_wctx;

/* Runs a parameterized query and returns its rows as a JSON array of objects (column name -> value;
 * integers, floats, booleans and json/jsonb columns keep their types, NULL is null). NULL on failure with
 * the server's message in err (SM_ERR_DB). */
json_t *sm_wq(PGconn *c, sm_error *err, const char *sql, int n, const char *const *vals);
/* Like sm_wq for a query of at most one row: that row, json null when none, NULL on failure. */
json_t *sm_wq1(PGconn *c, sm_error *err, const char *sql, int n, const char *const *vals);

/* Error responses: a short message, as text/plain or as {"error": msg} for JSON requests. */
void sm_wresp_error(const sm_wreq *q, sm_wresp *r, int status, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Sends model as JSON (steals the reference). */
void sm_wresp_json(sm_wresp *r, json_t *model);
/* Page frame: header with navigation and title; then the caller's body; then sm_whtml_end. */
void sm_whtml_begin(sm_wresp *r, const char *title);
void sm_whtml_end(sm_wresp *r);
/* One table row <tr><th>label</th><td>value</td></tr>, both escaped. */
void sm_whtml_kv(sm_wbuf *b, const char *label, const char *value);
/* <a href="PATH<id percent-encoded>">label escaped</a>. */
void sm_whtml_link(sm_wbuf *b, const char *path, const char *id, const char *label);
/* Integer query argument key in [lo, hi] into *out (left alone when absent); -1 when malformed or out of range. */
int sm_wreq_long(const sm_wreq *q, const char *key, long lo, long hi, long *out);
/* A JSON value as short text (strings unquoted); malloc'd. */
char *sm_wjson_text(json_t *v);
/* Field of an object as a C string (strings only) or NULL. */
const char *sm_wstr(json_t *o, const char *key);

/* Validation of identifiers taken from requests: printable ASCII without spaces or quotes, 1..200 chars. */
int sm_wid_ok(const char *s);
int sm_wsha_ok(const char *s);

/* The pages. Each fills r (status, type, body) from the request; bad input is 400/404. */
void sm_wpage_runs(sm_wctx *c, const sm_wreq *q, sm_wresp *r);
void sm_wpage_run(sm_wctx *c, const sm_wreq *q, const char *run_id, sm_wresp *r);
void sm_wpage_autoscale(sm_wctx *c, const sm_wreq *q, sm_wresp *r);
void sm_wpage_lineage(sm_wctx *c, const sm_wreq *q, const char *kind, const char *id, sm_wresp *r);
void sm_wpage_schedules(sm_wctx *c, const sm_wreq *q, sm_wresp *r);
void sm_wpage_metrics(sm_wctx *c, const sm_wreq *q, sm_wresp *r);
/* A stage run's full log, paged by seq (?after=SEQ&limit=N). */
void sm_wpage_log(sm_wctx *c, const sm_wreq *q, const char *stage_run_id, sm_wresp *r);
/* Dispatches a request to its page by path. */
void sm_wroute(sm_wctx *c, const sm_wreq *q, sm_wresp *r);

/* The stages of a run, oldest first, as the run page shows them: stage_runs' columns, duration_s, outputs,
 * metric names, progress (latest metrics of a running stage), reason, resources, state (the latest executor
 * state), job_id, log_lines, log_tail (the last 50 lines, oldest first), and the texts why (the recorded
 * reason, or that none was recorded), resources_text, state_text (a running stage's executor state, else
 * null). NULL with err on failure. */
json_t *sm_wstages(PGconn *db, sm_error *err, const char *run_id);
/* Log lines (seq, level, message, at) as escaped text lines "HH:MM:SS level message", one span per line. */
void sm_whtml_log_lines(sm_wbuf *b, json_t *lines);

/* An SVG figure drawn by the plot stage (kind fit | weights | loss, data as the stage takes it): the SVG
 * text (malloc'd) or NULL with err set. The same code as a pipeline's plot stage. */
char *sm_wplot(void *plot, const char *kind, const char *title, json_t *data, sm_error *err);

#endif
