/* sm_web_http.c - the HTTP side of the status pages. libmicrohttpd runs in "external epoll" mode: its epoll
 * descriptor is watched by a uv_poll and its timeouts by a uv_timer, so everything HTTP happens on the libuv
 * loop. A request is checked there (method, token, arguments), then its connection is suspended while the
 * page is built on a libuv worker thread with a pooled read-only database connection, and resumed with the
 * response. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/sm_db.h"
#include "sm_plugins.h"
#include "web/sm_web.h"
#include "web/sm_web_int.h"

#define POOL_MAX 8
#define COOKIE "scalemix_token"

struct sm_web {
    uv_loop_t *loop;
    struct MHD_Daemon *mhd;
    uv_poll_t poll;
    uv_timer_t timer;
    int closing; /* handles whose close callback has not run */
    char *ro_dsn, *token;
    sm_plugin *plot;
    pthread_mutex_t mu;
    PGconn *pool[POOL_MAX];
    int npool;
    int inflight, port;
    int kick; /* MHD_run passes still owed right away (after a resume) */
};

typedef struct wjob {
    uv_work_t work;
    sm_web *w;
    struct MHD_Connection *conn;
    sm_wreq req;
    sm_wresp resp;
    char *argmem[SM_WEB_MAX_ARGS * 2];
    int done, set_cookie;
} wjob;

static void pump(sm_web *w);

/* ---- read-only connections, one per worker at a time ---- */

static PGconn *pool_get(sm_web *w, sm_error *err) {
    pthread_mutex_lock(&w->mu);
    PGconn *c = w->npool ? w->pool[--w->npool] : NULL;
    pthread_mutex_unlock(&w->mu);
    if (c) return c;
    const char *k[] = {"dbname", "application_name", "connect_timeout", NULL};
    const char *v[] = {w->ro_dsn, "scalemix-serve", "10", NULL};
    c = PQconnectdbParams(k, v, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        sm_error_set(err, SM_ERR_DB, "the lineage database (read-only role) is unreachable: %s",
                     c ? PQerrorMessage(c) : "out of memory");
        PQfinish(c);
        return NULL;
    }
    /* Read-only is the role's default already; a page never needs more than 10 s; compiling a page's
     * short queries (JIT) cost more than running them (700 ms of 715 for a run page, measured). */
    PGresult *r = PQexec(c, "SET default_transaction_read_only = on; SET statement_timeout = '10s'; SET jit = off");
    PQclear(r);
    return c;
}

static void pool_put(sm_web *w, PGconn *c) {
    if (PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) != PQTRANS_IDLE) { PQfinish(c); return; }
    pthread_mutex_lock(&w->mu);
    if (w->npool < POOL_MAX) { w->pool[w->npool++] = c; c = NULL; }
    pthread_mutex_unlock(&w->mu);
    PQfinish(c);
}

/* ---- one request ---- */

static void work_cb(uv_work_t *wk) {
    wjob *j = wk->data;
    sm_error err = {0};
    PGconn *c = pool_get(j->w, &err);
    if (!c) {
        sm_log(SM_LOG_WARN, "serve: %s", err.msg);
        sm_wresp_error(&j->req, &j->resp, 503, "the lineage database is unreachable; try again shortly");
        return;
    }
    sm_wctx ctx = {c, j->w->plot};
    sm_wroute(&ctx, &j->req, &j->resp);
    pool_put(j->w, c);
    if (j->resp.body.oom) sm_wresp_error(&j->req, &j->resp, 500, "out of memory");
}

static void after_work_cb(uv_work_t *wk, int status) {
    wjob *j = wk->data;
    (void)status;
    j->done = 1;
    j->w->inflight--;
    MHD_resume_connection(j->conn);
    /* The first run takes the connection back from the suspended ones, the next ones answer it: its socket
     * stays writable, so with edge-triggered epoll no readiness event would come to wake us. */
    j->w->kick = 2;
    pump(j->w);
}

static enum MHD_Result send_resp(wjob *j) {
    sm_wresp *r = &j->resp;
    size_t n = r->body.n;
    char *body = r->body.s;
    r->body.s = NULL;
    struct MHD_Response *m = MHD_create_response_from_buffer(n, body ? body : "", body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!m) { free(body); return MHD_NO; }
    MHD_add_response_header(m, "Content-Type", r->type ? r->type : "text/plain; charset=utf-8");
    MHD_add_response_header(m, "Cache-Control", "no-store");
    MHD_add_response_header(m, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(m, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(m, "Content-Security-Policy",
                            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                            "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
    if (j->set_cookie) {
        char ck[600];
        snprintf(ck, sizeof ck, COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict", j->w->token);
        MHD_add_response_header(m, "Set-Cookie", ck);
    }
    enum MHD_Result rc = MHD_queue_response(j->conn, (unsigned)r->status, m);
    MHD_destroy_response(m);
    return rc;
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    wjob *j = cls;
    (void)kind;
    if (j->req.nargs == SM_WEB_MAX_ARGS) { j->req.too_many = 1; return MHD_NO; }
    char *k = strdup(key ? key : ""), *v = strdup(value ? value : "");
    int i = j->req.nargs++;
    j->argmem[2 * i] = k;
    j->argmem[2 * i + 1] = v;
    j->req.keys[i] = k ? k : "";
    j->req.vals[i] = v ? v : "";
    return MHD_YES;
}

static int token_eq(const char *want, const char *got) {
    size_t n = strlen(want);
    return got && strlen(got) == n && CRYPTO_memcmp(want, got, n) == 0;
}

static int authorized(wjob *j) {
    sm_web *w = j->w;
    if (!w->token) return 1;
    const char *h = MHD_lookup_connection_value(j->conn, MHD_HEADER_KIND, "Authorization");
    if (h && !strncmp(h, "Bearer ", 7) && token_eq(w->token, h + 7)) return 1;
    if (token_eq(w->token, MHD_lookup_connection_value(j->conn, MHD_COOKIE_KIND, COOKIE))) return 1;
    const char *q = sm_wreq_arg(&j->req, "token");
    if (q && token_eq(w->token, q)) return j->set_cookie = 1;
    return 0;
}

/* Checks done on the loop: method, size, arguments, token; 0 when the page may be built. */
static int precheck(wjob *j, const char *url, const char *method) {
    sm_wreq *q = &j->req;
    MHD_get_connection_values(j->conn, MHD_GET_ARGUMENT_KIND, collect_arg, j);
    const char *fmt = sm_wreq_arg(q, "format");
    q->json = (fmt && !strcmp(fmt, "json")) || !strncmp(url, "/api/", 5) || !strcmp(url, "/api");
    if (!authorized(j)) {
        sm_wresp_error(q, &j->resp, 401, "a token is required (Authorization: Bearer TOKEN, or ?token=TOKEN once)");
        return 1;
    }
    if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        sm_wresp_error(q, &j->resp, 405, "only GET and HEAD: this server never writes");
        return 1;
    }
    if (q->too_many) { sm_wresp_error(q, &j->resp, 400, "too many query arguments (at most %d)", SM_WEB_MAX_ARGS); return 1; }
    for (int i = 0; i < q->nargs; i++)
        if (!j->argmem[2 * i] || !j->argmem[2 * i + 1]) { sm_wresp_error(q, &j->resp, 500, "out of memory"); return 1; }
    if (fmt && strcmp(fmt, "json") && strcmp(fmt, "html")) {
        sm_wresp_error(q, &j->resp, 400, "format must be json or html");
        return 1;
    }
    const char *path = !strncmp(url, "/api/", 5) ? url + 4 : !strcmp(url, "/api") ? "/" : url;
    if (strlen(path) >= sizeof q->path) { sm_wresp_error(q, &j->resp, 400, "path too long"); return 1; }
    strcpy(q->path, path);
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    sm_web *w = cls;
    wjob *j = *con_cls;
    (void)version;
    (void)upload;
    if (!j) {
        j = calloc(1, sizeof *j);
        if (!j) return MHD_NO;
        *con_cls = j;
        j->w = w;
        j->conn = conn;
        j->work.data = j;
        if (precheck(j, url, method)) {
            j->done = 1;
        } else if (uv_queue_work(w->loop, &j->work, work_cb, after_work_cb) == 0) {
            w->inflight++;
            MHD_suspend_connection(conn);
            return MHD_YES;
        } else {
            sm_wresp_error(&j->req, &j->resp, 503, "the server is busy");
            j->done = 1;
        }
    }
    if (*upload_size) { *upload_size = 0; return MHD_YES; } /* a body is never read */
    return j->done ? send_resp(j) : MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode tc) {
    (void)cls;
    (void)conn;
    (void)tc;
    wjob *j = *con_cls;
    if (!j) return;
    for (int i = 0; i < 2 * j->req.nargs; i++) free(j->argmem[i]);
    free(j->resp.body.s);
    free(j);
    *con_cls = NULL;
}

/* ---- libmicrohttpd on the libuv loop ---- */

static void on_timer(uv_timer_t *t) { pump(t->data); }

static void on_poll(uv_poll_t *p, int status, int events) {
    (void)status;
    (void)events;
    pump(p->data);
}

static void pump(sm_web *w) {
    if (!w->mhd) return;
    MHD_run(w->mhd);
    MHD_UNSIGNED_LONG_LONG ms = 0;
    uint64_t wait = MHD_get_timeout(w->mhd, &ms) == MHD_YES ? (uint64_t)ms : 1000;
    if (w->kick) w->kick--, wait = 0;
    uv_timer_start(&w->timer, on_timer, wait, 0);
}

int sm_web_parse_listen(const char *s, char *host, size_t hn, int *port, int *loopback, sm_error *err) {
    const char *colon = s ? strrchr(s, ':') : NULL;
    if (!colon || colon == s)
        return sm_error_set(err, SM_ERR_ARG, "--listen wants HOST:PORT, e.g. 127.0.0.1:8719 or [::1]:8719 (got '%s')", s ? s : "");
    size_t l = (size_t)(colon - s);
    const char *h = s;
    if (s[0] == '[' && l >= 2 && s[l - 1] == ']') h = s + 1, l -= 2;
    if (l >= hn) return sm_error_set(err, SM_ERR_ARG, "--listen: host too long");
    memcpy(host, h, l);
    host[l] = 0;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || p < 0 || p > 65535) return sm_error_set(err, SM_ERR_ARG, "--listen: bad port '%s'", colon + 1);
    *port = (int)p;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1) *loopback = (ntohl(a4.s_addr) >> 24) == 127;
    else if (inet_pton(AF_INET6, host, &a6) == 1) *loopback = IN6_IS_ADDR_LOOPBACK(&a6);
    else return sm_error_set(err, SM_ERR_ARG, "--listen: '%s' is not an IPv4 or IPv6 address", host);
    return SM_OK;
}

int sm_web_read_token(const char *path, char **out, sm_error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return sm_error_set(err, SM_ERR_ARG, "cannot read the token file %s", path);
    char line[512] = {0};
    if (!fgets(line, sizeof line, f)) line[0] = 0;
    fclose(f);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t')) line[--n] = 0;
    char *s = line;
    while (*s == ' ' || *s == '\t') s++;
    if (strlen(s) < 16) return sm_error_set(err, SM_ERR_ARG, "the token in %s is shorter than 16 characters", path);
    return (*out = strdup(s)) ? SM_OK : sm_error_set(err, SM_ERR_NOMEM, "out of memory");
}

static void free_web(sm_web *w) {
    for (int i = 0; i < w->npool; i++) PQfinish(w->pool[i]);
    if (w->plot) sm_plugin_unload(w->plot);
    pthread_mutex_destroy(&w->mu);
    free(w->ro_dsn);
    free(w->token);
    free(w);
}

static int check_token(const char *t, sm_error *err) {
    if (strlen(t) < 16 || strlen(t) > 256) return sm_error_set(err, SM_ERR_ARG, "--token must be 16 to 256 characters");
    for (const char *p = t; *p; p++)
        if (*p <= ' ' || *p > '~' || *p == ';' || *p == ',')
            return sm_error_set(err, SM_ERR_ARG, "--token: printable characters only, no spaces, ';' or ','");
    return SM_OK;
}

int sm_web_start(uv_loop_t *loop, const sm_web_opts *o, const char *dsn, sm_web **out, sm_error *err) {
    char host[128];
    int port, loopback;
    int rc = sm_web_parse_listen(o->listen ? o->listen : "127.0.0.1:8719", host, sizeof host, &port, &loopback, err);
    if (rc) return rc;
    if (!loopback && !o->token)
        return sm_error_set(err, SM_ERR_ARG, "listening on %s (not loopback) needs --token or --token-file", host);
    if (o->token && (rc = check_token(o->token, err))) return rc;
    sm_web *w = calloc(1, sizeof *w);
    if (!w) return sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&w->mu, NULL);
    w->loop = loop;
    if (o->token && !(w->token = strdup(o->token))) { free_web(w); return sm_error_set(err, SM_ERR_NOMEM, "out of memory"); }
    if ((rc = sm_db_ro_dsn(dsn, &w->ro_dsn, err))) { free_web(w); return rc; }
    sm_error e2 = {0};
    PGconn *c = pool_get(w, &e2);
    if (!c) { free_web(w); return sm_error_set(err, SM_ERR_DB, "%s", e2.msg); }
    pool_put(w, c);
    char path[4096];
    if ((rc = sm_plugin_find("plot", path, sizeof path, err)) || (rc = sm_plugin_load(path, &w->plot, err))) {
        free_web(w);
        return sm_error_wrap(err, "serve: the AutoScale figures need the plot stage");
    }
    struct sockaddr_in6 a6 = {0};
    struct sockaddr_in a4 = {0};
    struct sockaddr *sa;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)port);
        sa = (struct sockaddr *)&a4;
    } else {
        inet_pton(AF_INET6, host, &a6.sin6_addr);
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)port);
        sa = (struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    }
    w->mhd = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, w, MHD_OPTION_SOCK_ADDR, sa,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, w, MHD_OPTION_CONNECTION_LIMIT, 512u,
                              MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_LISTEN_BACKLOG_SIZE, 512u, MHD_OPTION_END);
    if (!w->mhd) {
        free_web(w);
        return sm_error_set(err, SM_ERR_IO, "serve: cannot listen on %s port %d (in use, or not an address of this host)", host, port);
    }
    const union MHD_DaemonInfo *fi = MHD_get_daemon_info(w->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *pi = MHD_get_daemon_info(w->mhd, MHD_DAEMON_INFO_BIND_PORT);
    w->port = pi ? pi->port : port;
    uv_poll_init(loop, &w->poll, fi->epoll_fd);
    uv_timer_init(loop, &w->timer);
    w->poll.data = w->timer.data = w;
    uv_poll_start(&w->poll, UV_READABLE, on_poll);
    uv_unref((uv_handle_t *)&w->poll);
    uv_unref((uv_handle_t *)&w->timer);
    pump(w);
    sm_log(SM_LOG_INFO, "serve: http://%s%s%s:%d/ (%s)", strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
           w->port, w->token ? "token required" : "loopback, no token");
    *out = w;
    return SM_OK;
}

int sm_web_port(const sm_web *w) { return w->port; }

static void on_closed(uv_handle_t *h) { ((sm_web *)h->data)->closing--; }

void sm_web_stop(sm_web *w) {
    if (!w) return;
    while (w->inflight) uv_run(w->loop, UV_RUN_ONCE); /* pages being built finish and are answered */
    MHD_stop_daemon(w->mhd);
    w->mhd = NULL;
    w->closing = 2;
    uv_close((uv_handle_t *)&w->poll, on_closed);
    uv_close((uv_handle_t *)&w->timer, on_closed);
    while (w->closing) uv_run(w->loop, UV_RUN_ONCE);
    free_web(w);
}
