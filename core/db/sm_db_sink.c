/* sm_db_sink.c - the asynchronous PostgreSQL event sink.
 *
 * Path of an event: emit() serializes it and appends it to an in-memory journal buffer; a timer (or a
 * full buffer, or flush) hands the buffer to the thread pool, which writes and fdatasyncs it to
 * <ws>/journal/<uuid>.jsonl; only then is the event sendable. Sendable events go to the server in batches,
 * one transaction each, on a non-blocking libpq connection watched by a uv_poll: metric events (the bulk)
 * as COPY rows into a session temp table, merged with INSERT ... ON CONFLICT DO NOTHING; every other event
 * in one parameterized statement, SELECT sm_ingest($1::jsonb). When a batch commits, the journal offset it
 * reached is written to <uuid>.acked. Nothing on the loop thread waits for the disk or the server.
 *
 * Outage: a connection error drops the connection, and a timer reconnects with capped exponential backoff;
 * unacknowledged events stay queued and are resent in order. A sink that dies leaves its journal behind;
 * the next sink opened on the workspace takes over every journal no live sink holds (flock) and replays it
 * from its acked offset. sm_ingest keys every write by event_id, so a resent event writes nothing. */
#include "db/sm_db_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define JOURNAL_DELAY_MS 20          /* events wait at most this long before their journal write starts */
#define JOURNAL_KICK_BYTES (256 << 10)
#define JOURNAL_RETRY_MS 1000        /* after a failed journal write (disk full), the next try */
#define BATCH_MAX_EVENTS 4000
#define BATCH_MAX_BYTES (2 << 20)
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 10000
#define STATEMENT_TIMEOUT_MS 120000  /* a batch unanswered this long: the connection is presumed dead */
#define JOURNAL_RESET_BYTES (64ull << 20)
#define MEM_CAP_DEFAULT (64u << 20) /* event bytes kept in memory; beyond, events wait in the journal only */
#define FLUSH_DB_WAIT_MS 30000       /* a flush waits this long for a slow database, then settles for the journal */
#define INGEST_SQL "SELECT sm_ingest($1::jsonb)"

typedef struct pending {
    char *json;
    size_t len;
    char *row; /* a metric event as a COPY text row (with newline), or NULL: it goes through sm_ingest */
    size_t rowlen;
    uint64_t jend; /* journal byte offset just past this event's line */
} pending;

/* The steps of one batch, in order; a step with nothing to do is skipped. */
enum { ST_IDLE, ST_SETUP, ST_BEGIN, ST_INGEST, ST_COPY, ST_MERGE, ST_COMMIT, ST_DONE, ST_ROLLBACK };

#define SETUP_SQL                                                                                               \
    "CREATE TEMP TABLE IF NOT EXISTS sm_metrics_in (event_id text, stage_run_id text, name text, step bigint,"  \
    " domain text, value double precision, recorded_at timestamptz) ON COMMIT DELETE ROWS"
#define COPY_SQL "COPY sm_metrics_in FROM STDIN"
#define MERGE_SQL                                                                                               \
    "INSERT INTO metrics (event_id, stage_run_id, name, step, domain, value, recorded_at)"                      \
    " SELECT event_id, stage_run_id, name, step, domain, value, recorded_at FROM sm_metrics_in"                 \
    " ON CONFLICT DO NOTHING"

typedef struct waiter {
    uint64_t target;
    double deadline; /* after this, durably journaled is enough */
    void (*done)(void *);
    void *arg;
} waiter;

enum { CONN_DOWN, CONN_CONNECTING, CONN_READY };

typedef struct pg_sink {
    sm_sink base;
    uv_loop_t *loop;
    char *dsn;
    char jdir[PATH_MAX], jpath[PATH_MAX + 64], apath[PATH_MAX + 64];
    int jfd, afd, rfd; /* journal (append), acked offset, journal (read back spilled events) */
    size_t mem, mem_cap;
    uint64_t jsize; /* bytes appended to the journal so far, buffered ones included */

    pending *q; /* q[0..qn) are events base .. base+qn-1 (absolute indexes) */
    size_t qn, qcap, qoff;
    uint64_t n_emitted, n_durable, n_acked;
    /* n_durable: events that may be sent (journaled, or kept in memory after a failed journal write);
     * n_on_disk: events whose journal line is written and synced: only these are ever said to be kept. */
    uint64_t n_on_disk;
    int jfailing; /* the last journal write failed: its bytes are kept in jbuf and retried */
    int jlife;    /* jbuf holds a lifecycle (non-metric) event: written as soon as the disk is free */
    int jbroken;  /* an fdatasync failed: what the journal holds is unknown, nothing more is claimed on disk */
    char jerr[160];

    char *jbuf; /* bytes not yet handed to a journal write */
    size_t jlen, jcap;
    int jw_busy, jw_sync;
    uv_fs_t jw_req;
    char *jw_data;
    size_t jw_len, jw_done;
    uint64_t jw_end;
    uv_timer_t jtimer, ftimer; /* journal write delay; flush deadline checks */
    int jtimer_armed;

    int aw_busy;
    uv_fs_t aw_req;
    char aw_buf[32];
    uint64_t ack_off, ack_written;

    PGconn *conn;
    int state;
    uv_poll_t *poll;
    uv_timer_t rtimer; /* reconnect backoff, connect timeout, statement watchdog */
    unsigned backoff_ms;
    int busy, outage, ever_connected, temp_ready, step;
    uint64_t batch_end, isolate_until;
    int batch_ok;
    char batch_err[512], batch_state[8];
    char *bbuf, *cbuf; /* the batch's sm_ingest JSON array and its COPY rows */
    size_t bcap, ccap, blen, clen;
    size_t b_events, c_events;

    waiter *w;
    size_t nw, wcap;
    int closing, refs;
    sm_pg_sink_stats st;
} pg_sink;

static void pump_send(pg_sink *s);
static void conn_lost(pg_sink *s, const char *why);
static void check_waiters(pg_sink *s);
static void journal_kick(pg_sink *s);
static void finalize(pg_sink *s);

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np) return -1;
    *p = np;
    *cap = nc;
    return 0;
}

static void unref_done(pg_sink *s) {
    if (--s->refs == 0 && s->closing) finalize(s);
}

/* Handles keep the loop alive only while someone waits in flush(): an idle sink must not stop the engine's
 * loop from ending. */
static void apply_refs(pg_sink *s) {
    uv_handle_t *hs[] = {(uv_handle_t *)&s->jtimer, (uv_handle_t *)&s->rtimer, (uv_handle_t *)&s->ftimer,
                         (uv_handle_t *)s->poll};
    for (size_t i = 0; i < SM_ARRAY_LEN(hs); i++) {
        if (!hs[i] || uv_is_closing(hs[i])) continue;
        if (s->nw) uv_ref(hs[i]);
        else uv_unref(hs[i]);
    }
}

/* ---- journal ---- */

static void ack_write(pg_sink *s);

static void aw_cb(uv_fs_t *req) {
    pg_sink *s = req->data;
    if (req->result < 0) sm_log(SM_LOG_WARN, "db sink: writing %s: %s", s->apath, uv_strerror((int)req->result));
    uv_fs_req_cleanup(req);
    s->aw_busy = 0;
    if (!s->closing && s->ack_off != s->ack_written) ack_write(s);
    unref_done(s);
}

/* The acked offset need not be durable: a stale one only makes the next sink resend committed events,
 * which write nothing. */
static void ack_write(pg_sink *s) {
    if (s->aw_busy || s->afd < 0) return;
    snprintf(s->aw_buf, sizeof s->aw_buf, "%020" PRIu64 "\n", s->ack_off);
    s->ack_written = s->ack_off;
    uv_buf_t b = uv_buf_init(s->aw_buf, 21);
    s->aw_req.data = s;
    if (uv_fs_write(s->loop, &s->aw_req, s->afd, &b, 1, 0, aw_cb) == 0) {
        s->aw_busy = 1;
        s->refs++;
    }
}

static void jw_cb(uv_fs_t *req);
static void jtimer_cb(uv_timer_t *t);

/* Ends the in-flight journal write: ok (why NULL), its events are on disk; otherwise its unwritten bytes go
 * back in front of jbuf to be retried, and its events are sendable from memory meanwhile. */
static void jw_finish(pg_sink *s, const char *why) {
    s->jw_busy = 0;
    if (s->jw_end > s->n_durable) s->n_durable = s->jw_end;
    if (!why) {
        if (!s->jbroken) s->n_on_disk = s->jw_end;
        if (s->jfailing) sm_log(SM_LOG_INFO, "db sink: journal %s is written again", s->jpath);
        s->jfailing = 0;
    } else {
        size_t rest = s->jw_sync ? 0 : s->jw_len - s->jw_done;
        if (s->jw_sync) s->jbroken = 1; /* a failed fdatasync may have dropped the pages: never trust them */
        char *nb = rest ? malloc(rest + s->jlen + 1) : NULL;
        if (rest && nb) {
            memcpy(nb, s->jw_data + s->jw_done, rest);
            if (s->jlen) memcpy(nb + rest, s->jbuf, s->jlen);
            free(s->jbuf);
            s->jbuf = nb;
            s->jlen += rest;
            s->jcap = s->jlen + 1;
        } else if (rest) {
            s->jbroken = 1; /* out of memory for the retry: those lines will never be on disk */
        }
        if (!s->jfailing)
            sm_log(SM_LOG_ERROR, "db sink: cannot write journal %s: %s; %" PRIu64 " event(s) are not on disk: kept in memory "
                   "for the database, and the journal write is retried while this process runs", s->jpath, why,
                   s->n_emitted - s->n_on_disk);
        s->jfailing = 1;
        snprintf(s->jerr, sizeof s->jerr, "%s", why);
        if (!s->closing && !s->jtimer_armed) {
            s->jtimer_armed = 1;
            uv_timer_start(&s->jtimer, jtimer_cb, JOURNAL_RETRY_MS, 0);
        }
    }
    s->st.journaled = s->n_on_disk;
    free(s->jw_data);
    s->jw_data = NULL;
}

/* Issues the next step of the in-flight journal write: the (rest of the) write, then fdatasync. */
static void jw_issue(pg_sink *s) {
    s->jw_req.data = s;
    int rc;
    if (s->jw_sync) {
        rc = uv_fs_fdatasync(s->loop, &s->jw_req, s->jfd, jw_cb);
    } else {
        uv_buf_t b = uv_buf_init(s->jw_data + s->jw_done, (unsigned)(s->jw_len - s->jw_done));
        rc = uv_fs_write(s->loop, &s->jw_req, s->jfd, &b, 1, -1, jw_cb);
    }
    if (rc == 0) {
        s->refs++;
        return;
    }
    jw_finish(s, uv_strerror(rc));
}

static void jw_cb(uv_fs_t *req) {
    pg_sink *s = req->data;
    ssize_t res = req->result;
    uv_fs_req_cleanup(req);
    if (res < 0) {
        jw_finish(s, uv_strerror((int)res));
    } else if (s->jw_sync) {
        jw_finish(s, NULL);
    } else {
        s->jw_done += (size_t)res;
        if (s->jw_done >= s->jw_len) s->jw_sync = 1;
        jw_issue(s);
    }
    if (!s->closing && !s->jw_busy) {
        if (s->jlen && !s->jfailing && (s->nw || s->jlife || s->jlen >= JOURNAL_KICK_BYTES)) journal_kick(s);
        pump_send(s);
        check_waiters(s);
    }
    unref_done(s);
}

static void journal_kick(pg_sink *s) {
    if (s->jw_busy || !s->jlen || s->closing) return;
    s->jw_data = s->jbuf;
    s->jw_len = s->jlen;
    s->jw_done = 0;
    s->jw_sync = 0;
    s->jw_end = s->n_emitted;
    s->jbuf = NULL;
    s->jlen = s->jcap = 0;
    s->jlife = 0;
    s->jw_busy = 1;
    jw_issue(s);
}

static void jtimer_cb(uv_timer_t *t) {
    pg_sink *s = t->data;
    s->jtimer_armed = 0;
    journal_kick(s);
    if (s->jlen && !s->jtimer_armed) { /* a write was in flight: try again shortly */
        s->jtimer_armed = 1;
        uv_timer_start(&s->jtimer, jtimer_cb, JOURNAL_DELAY_MS, 0);
    }
}

typedef struct strbuf {
    char *b;
    size_t n, cap;
    int oom;
} strbuf;

static void sb_raw(strbuf *sb, const char *v, size_t l) {
    if (sb->oom || grow((void **)&sb->b, &sb->cap, sb->n + l + 1, 1)) { sb->oom = 1; return; }
    memcpy(sb->b + sb->n, v, l);
    sb->n += l;
    sb->b[sb->n] = 0;
}

/* v in COPY text format: backslash, tab, newline and carriage return escaped. */
static void sb_copy_text(strbuf *sb, const char *v) {
    for (const char *p = v; *p; p++) {
        const char *e = *p == '\\' ? "\\\\" : *p == '\t' ? "\\t" : *p == '\n' ? "\\n" : *p == '\r' ? "\\r" : NULL;
        if (e) sb_raw(sb, e, 2);
        else sb_raw(sb, p, 1);
    }
}

static int opt_type(json_t *v, int ok) { return !v || json_is_null(v) || ok; }

/* A metric event as a COPY row for sm_metrics_in, if every field has the expected JSON type; anything else
 * (NULL) takes the sm_ingest path, which casts or refuses it like any other event. */
static char *metric_row(json_t *ev, size_t *len) {
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (!type || strcmp(type, "metric")) return NULL;
    json_t *eid = json_object_get(ev, "event_id"), *sr = json_object_get(ev, "stage_run_id"),
           *name = json_object_get(ev, "name"), *step = json_object_get(ev, "step"),
           *dom = json_object_get(ev, "domain"), *val = json_object_get(ev, "value"),
           *at = json_object_get(ev, "recorded_at");
    if (!json_is_string(eid) || !json_is_string(sr) || !json_is_string(name) ||
        !opt_type(step, json_is_integer(step)) || !opt_type(dom, json_is_string(dom)) ||
        !opt_type(val, json_is_number(val)) || !opt_type(at, json_is_string(at)))
        return NULL;
    strbuf sb = {0};
    char num[64];
    sb_copy_text(&sb, json_string_value(eid));
    sb_raw(&sb, "\t", 1);
    sb_copy_text(&sb, json_string_value(sr));
    sb_raw(&sb, "\t", 1);
    sb_copy_text(&sb, json_string_value(name));
    sb_raw(&sb, "\t", 1);
    if (json_is_integer(step)) {
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(step));
        sb_raw(&sb, num, strlen(num));
    } else {
        sb_raw(&sb, "\\N", 2);
    }
    sb_raw(&sb, "\t", 1);
    if (json_is_string(dom)) sb_copy_text(&sb, json_string_value(dom));
    else sb_raw(&sb, "\\N", 2);
    sb_raw(&sb, "\t", 1);
    if (json_is_number(val)) {
        snprintf(num, sizeof num, "%.17g", json_number_value(val));
        sb_raw(&sb, num, strlen(num));
    } else {
        sb_raw(&sb, "\\N", 2);
    }
    sb_raw(&sb, "\t", 1);
    if (json_is_string(at)) sb_copy_text(&sb, json_string_value(at));
    else sb_raw(&sb, "\\N", 2);
    sb_raw(&sb, "\n", 1);
    if (sb.oom) { free(sb.b); return NULL; }
    *len = sb.n;
    return sb.b;
}

/* Queues one serialized event (no trailing newline) and its COPY row (or NULL); takes ownership of both. */
static int enqueue(pg_sink *s, char *json, size_t len, char *row, size_t rowlen) {
    if (grow((void **)&s->q, &s->qcap, s->qoff + s->qn + 1, sizeof *s->q) ||
        grow((void **)&s->jbuf, &s->jcap, s->jlen + len + 1, 1)) {
        free(json);
        free(row);
        return SM_ERR_NOMEM;
    }
    memcpy(s->jbuf + s->jlen, json, len);
    s->jbuf[s->jlen + len] = '\n';
    s->jlen += len + 1;
    s->jsize += len + 1;
    if (s->mem + len + rowlen > s->mem_cap && !s->jfailing && !s->jbroken) {
        /* Spilled: the journal holds it; it is read back when its turn to be sent comes (reload). */
        free(json);
        free(row);
        json = row = NULL;
        rowlen = 0;
        s->st.spilled++;
    } else {
        s->mem += len + rowlen;
    }
    s->q[s->qoff + s->qn++] = (pending){json, len, row, rowlen, s->jsize};
    s->n_emitted++;
    s->st.emitted = s->n_emitted;
    return SM_OK;
}

static void sink_emit(sm_sink *self, json_t *ev) {
    pg_sink *s = (pg_sink *)self;
    if (s->closing || !ev) return;
    if (!json_is_object(ev) || !json_is_string(json_object_get(ev, "event_id")) ||
        !json_is_string(json_object_get(ev, "type"))) {
        sm_log(SM_LOG_ERROR, "db sink: dropping an event without string \"type\" and \"event_id\" (engine bug)");
        return;
    }
    char *js = json_dumps(ev, JSON_COMPACT);
    if (!js) {
        sm_log(SM_LOG_ERROR, "db sink: cannot serialize event %s", json_string_value(json_object_get(ev, "event_id")));
        return;
    }
    size_t rowlen = 0;
    char *row = metric_row(ev, &rowlen);
    if (enqueue(s, js, strlen(js), row, rowlen) != SM_OK) {
        sm_log(SM_LOG_ERROR, "db sink: out of memory; event dropped");
        return;
    }
    /* Lifecycle events go to disk at once (a SIGKILL a moment later keeps them); metrics, the bulk, batch up. */
    if (!row) s->jlife = 1;
    if (s->jlen >= JOURNAL_KICK_BYTES || s->jlife) journal_kick(s);
    if (s->jlen && !s->jtimer_armed) {
        s->jtimer_armed = 1;
        uv_timer_start(&s->jtimer, jtimer_cb, s->jfailing ? JOURNAL_RETRY_MS : JOURNAL_DELAY_MS, 0);
    }
}

/* ---- flush waiters ---- */

static void check_waiters(pg_sink *s) {
    for (;;) {
        size_t i;
        for (i = 0; i < s->nw; i++) {
            const waiter *w = &s->w[i];
            if (s->n_durable >= w->target &&
                (s->n_acked >= w->target || s->outage || sm_monotonic() >= w->deadline)) break;
        }
        if (i == s->nw) break;
        waiter w = s->w[i];
        /* Removed before the call: done() may call back into the sink. */
        memmove(&s->w[i], &s->w[i + 1], (s->nw - i - 1) * sizeof *s->w);
        s->nw--;
        apply_refs(s);
        w.done(w.arg);
        if (s->closing) return;
    }
    if (!s->nw) uv_timer_stop(&s->ftimer);
    apply_refs(s);
}

static void ftimer_cb(uv_timer_t *t) { check_waiters(t->data); }

static void sink_flush(sm_sink *self, void (*done)(void *), void *arg) {
    pg_sink *s = (pg_sink *)self;
    if (grow((void **)&s->w, &s->wcap, s->nw + 1, sizeof *s->w)) {
        sm_log(SM_LOG_ERROR, "db sink: out of memory in flush");
        done(arg);
        return;
    }
    s->w[s->nw++] = (waiter){s->n_emitted, sm_monotonic() + FLUSH_DB_WAIT_MS / 1000.0, done, arg};
    if (!uv_is_active((uv_handle_t *)&s->ftimer)) uv_timer_start(&s->ftimer, ftimer_cb, 500, 500);
    journal_kick(s);
    apply_refs(s);
    check_waiters(s);
}

/* ---- connection ---- */

static void poll_closed(uv_handle_t *h) {
    pg_sink *s = h->data;
    free(h);
    unref_done(s);
}

static void poll_drop(pg_sink *s) {
    if (!s->poll) return;
    uv_poll_stop(s->poll);
    uv_close((uv_handle_t *)s->poll, poll_closed);
    s->poll = NULL;
}

static void poll_cb(uv_poll_t *h, int status, int events);

/* Watches the connection's current socket. fresh: drop the old handle even if the number is the same,
 * because libpq may have closed that socket and opened another under the same number. */
static int poll_watch(pg_sink *s, int events, int fresh) {
    int fd = PQsocket(s->conn);
    if (fd < 0) return -1;
    if (fresh) poll_drop(s);
    if (!s->poll) {
        s->poll = malloc(sizeof *s->poll);
        if (!s->poll) return -1;
        if (uv_poll_init(s->loop, s->poll, fd) != 0) {
            free(s->poll);
            s->poll = NULL;
            return -1;
        }
        s->poll->data = s;
        s->refs++;
        apply_refs(s);
    }
    return uv_poll_start(s->poll, events, poll_cb) == 0 ? 0 : -1;
}

static void rtimer_cb(uv_timer_t *t);

static void rtimer_arm(pg_sink *s, unsigned ms) { uv_timer_start(&s->rtimer, rtimer_cb, ms, 0); }

static void conn_lost(pg_sink *s, const char *why) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", why && *why ? why : (s->conn ? PQerrorMessage(s->conn) : "unknown error"));
    for (char *p = msg; *p; p++) if (*p == '\n') *p = ' ';
    if (!s->outage)
        sm_log(SM_LOG_WARN, "db sink: lineage database unavailable (%s); events are journaled in %s and will be "
               "sent when it is back", msg, s->jdir);
    s->outage = 1;
    poll_drop(s);
    if (s->conn) PQfinish(s->conn);
    s->conn = NULL;
    s->state = CONN_DOWN;
    s->busy = 0;
    s->st.connected = 0;
    s->temp_ready = 0;
    s->step = ST_IDLE;
    if (!s->closing) {
        rtimer_arm(s, s->backoff_ms + (unsigned)(rand() % (s->backoff_ms / 4 + 1)));
        s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
        check_waiters(s);
    }
}

/* The server's goodbye on shutdown and other notices: the log, not libpq's default stderr print. */
static void on_notice(void *arg, const char *msg) {
    (void)arg;
    sm_log(SM_LOG_DEBUG, "db sink: server says: %.*s", (int)strcspn(msg, "\n"), msg);
}

static void conn_start(pg_sink *s) {
    const char *keys[] = {"dbname", "application_name", "client_encoding", NULL};
    const char *vals[] = {s->dsn, "scalemix-sink", "UTF8", NULL};
    s->conn = PQconnectStartParams(keys, vals, 1);
    if (!s->conn || PQstatus(s->conn) == CONNECTION_BAD) {
        conn_lost(s, s->conn ? PQerrorMessage(s->conn) : "out of memory");
        return;
    }
    PQsetnonblocking(s->conn, 1);
    PQsetNoticeProcessor(s->conn, on_notice, NULL);
    s->state = CONN_CONNECTING;
    rtimer_arm(s, CONNECT_TIMEOUT_MS);
    /* libpq: after PQconnectStart, wait until the socket is writable, then call PQconnectPoll. */
    if (poll_watch(s, UV_WRITABLE, 1) != 0) conn_lost(s, "cannot watch the connection's socket");
}

static void conn_step(pg_sink *s) {
    PostgresPollingStatusType ps = PQconnectPoll(s->conn);
    switch (ps) {
    case PGRES_POLLING_READING:
        if (poll_watch(s, UV_READABLE, 1) != 0) conn_lost(s, "cannot watch the connection's socket");
        return;
    case PGRES_POLLING_WRITING:
        if (poll_watch(s, UV_WRITABLE, 1) != 0) conn_lost(s, "cannot watch the connection's socket");
        return;
    case PGRES_POLLING_FAILED:
        conn_lost(s, NULL);
        return;
    default:
        break;
    }
    uv_timer_stop(&s->rtimer);
    s->state = CONN_READY;
    s->st.connected = 1;
    if (s->ever_connected) {
        s->st.reconnects++;
        sm_log(SM_LOG_INFO, "db sink: reconnected; sending %" PRIu64 " queued events", s->n_emitted - s->n_acked);
    }
    s->ever_connected = 1;
    PQsetnonblocking(s->conn, 1);
    if (poll_watch(s, UV_READABLE, 1) != 0) { conn_lost(s, "cannot watch the connection's socket"); return; }
    pump_send(s);
}

static void rtimer_cb(uv_timer_t *t) {
    pg_sink *s = t->data;
    if (s->closing) return;
    if (s->state == CONN_DOWN) conn_start(s);
    else if (s->state == CONN_CONNECTING) conn_lost(s, "connection attempt timed out");
    else if (s->busy) conn_lost(s, "no answer to a batch within the statement timeout");
}

static void flush_out(pg_sink *s) {
    int r = PQflush(s->conn);
    if (r < 0) { conn_lost(s, NULL); return; }
    if (poll_watch(s, r ? UV_READABLE | UV_WRITABLE : UV_READABLE, 0) != 0)
        conn_lost(s, "cannot watch the connection's socket");
}

/* Errors that say something about the data (so retrying cannot help): data exceptions, integrity
 * violations, and exceptions raised by sm_ingest. Anything else is treated as the server's trouble. */
static int data_error(const char *state) {
    return state && (!strncmp(state, "22", 2) || !strncmp(state, "23", 2) || !strncmp(state, "P0", 2));
}

static void reject_event(pg_sink *s, const pending *p) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/rejected.jsonl", s->jdir);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int ok = fd >= 0 && write(fd, p->json, p->len) == (ssize_t)p->len && write(fd, "\n", 1) == 1;
    if (fd >= 0) close(fd);
    sm_log(SM_LOG_ERROR, "db sink: the database refused an event (%s: %s); %s in %s: %.200s", s->batch_state,
           s->batch_err, ok ? "kept" : "COULD NOT KEEP IT", path, p->json);
    s->st.rejected++;
}

/* The batch's transaction ended: committed (batch_ok) or rolled back. */
static void batch_done(pg_sink *s) {
    s->busy = 0;
    s->step = ST_IDLE;
    uv_timer_stop(&s->rtimer);
    if (!s->batch_ok) {
        if (PQstatus(s->conn) == CONNECTION_BAD || !data_error(s->batch_state)) {
            char why[600];
            snprintf(why, sizeof why, "%s%s%s", s->batch_state, *s->batch_state ? ": " : "", s->batch_err);
            conn_lost(s, why);
            return;
        }
        if (s->batch_end - s->n_acked > 1) {
            /* Find the bad event: resend this batch's events one by one. */
            s->isolate_until = s->batch_end;
            pump_send(s);
            return;
        }
        reject_event(s, &s->q[s->qoff]);
    } else {
        s->st.committed += s->batch_end - s->n_acked;
        s->st.batches++;
        s->outage = 0;
        s->backoff_ms = BACKOFF_MIN_MS;
    }
    uint64_t n = s->batch_end - s->n_acked;
    s->ack_off = s->q[s->qoff + n - 1].jend;
    for (uint64_t i = 0; i < n; i++) {
        pending *p = &s->q[s->qoff + i];
        if (p->json) s->mem -= p->len + p->rowlen;
        free(p->json);
        free(p->row);
    }
    s->qoff += n;
    s->qn -= n;
    s->n_acked = s->batch_end;
    if (s->qoff > 4096 && s->qoff > s->qn) {
        memmove(s->q, s->q + s->qoff, s->qn * sizeof *s->q);
        s->qoff = 0;
    }
    /* Fully acknowledged and large: start the journal over rather than let it grow for the whole run. */
    if (s->n_acked == s->n_emitted && !s->jw_busy && !s->jlen && s->jsize > JOURNAL_RESET_BYTES && !s->aw_busy &&
        ftruncate(s->jfd, 0) == 0) {
        s->jsize = 0;
        s->ack_off = 0;
    }
    ack_write(s);
    pump_send(s);
    check_waiters(s);
}

static void send_sql(pg_sink *s, const char *sql) {
    if (!PQsendQuery(s->conn, sql)) {
        conn_lost(s, NULL);
        return;
    }
    flush_out(s);
}

/* Sends the batch's next step, skipping those with nothing to do; after COMMIT the batch is done. */
static void step_next(pg_sink *s) {
    for (;;) {
        s->step++;
        switch (s->step) {
        case ST_SETUP:
            if (s->temp_ready) continue;
            send_sql(s, SETUP_SQL);
            return;
        case ST_BEGIN:
            send_sql(s, "BEGIN");
            return;
        case ST_INGEST: {
            if (!s->b_events) continue;
            const char *vals[1] = {s->bbuf};
            if (!PQsendQueryParams(s->conn, INGEST_SQL, 1, NULL, vals, NULL, NULL, 0)) {
                conn_lost(s, NULL);
                return;
            }
            flush_out(s);
            return;
        }
        case ST_COPY:
            if (!s->c_events) continue;
            send_sql(s, COPY_SQL);
            return;
        case ST_MERGE:
            if (!s->c_events) continue;
            send_sql(s, MERGE_SQL);
            return;
        case ST_COMMIT:
            send_sql(s, "COMMIT");
            return;
        default:
            batch_done(s);
            return;
        }
    }
}

/* All results of the current step are in. */
static void step_complete(pg_sink *s) {
    if (s->step == ST_ROLLBACK) {
        batch_done(s);
        return;
    }
    if (!s->batch_ok) {
        if (PQstatus(s->conn) == CONNECTION_BAD || s->step == ST_SETUP) {
            batch_done(s); /* not a data error, or the connection is gone: retried after reconnecting */
            return;
        }
        s->step = ST_ROLLBACK;
        send_sql(s, "ROLLBACK");
        return;
    }
    if (s->step == ST_SETUP) s->temp_ready = 1;
    step_next(s);
}

static void poll_cb(uv_poll_t *h, int status, int events) {
    pg_sink *s = h->data;
    if (s->closing || h != s->poll) return;
    if (s->state == CONN_CONNECTING) {
        conn_step(s);
        return;
    }
    if (status < 0) {
        conn_lost(s, uv_strerror(status));
        return;
    }
    if (events & UV_WRITABLE) {
        flush_out(s);
        if (!s->conn) return;
    }
    if (!(events & UV_READABLE)) return;
    if (!PQconsumeInput(s->conn)) {
        conn_lost(s, NULL);
        return;
    }
    while (s->busy && !PQisBusy(s->conn)) {
        PGresult *r = PQgetResult(s->conn);
        if (!r) {
            step_complete(s);
            return;
        }
        ExecStatusType rs = PQresultStatus(r);
        if (rs == PGRES_COPY_IN) {
            PQclear(r);
            /* The rows are escaped COPY text (metric_row); queued whole: libpq grows its buffer. */
            if (PQputCopyData(s->conn, s->cbuf, (int)s->clen) != 1 || PQputCopyEnd(s->conn, NULL) != 1) {
                conn_lost(s, NULL);
                return;
            }
            flush_out(s);
            if (!s->conn) return;
            continue;
        }
        if (rs != PGRES_TUPLES_OK && rs != PGRES_COMMAND_OK && s->batch_ok) {
            const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            snprintf(s->batch_state, sizeof s->batch_state, "%s", st ? st : "");
            snprintf(s->batch_err, sizeof s->batch_err, "%s", PQresultErrorMessage(r));
            for (char *p = s->batch_err; *p; p++) if (*p == '\n') *p = ' ';
            s->batch_ok = 0;
        }
        PQclear(r);
    }
    if (PQstatus(s->conn) == CONNECTION_BAD) conn_lost(s, NULL);
    else if (!s->busy) { /* a notice or the server's goodbye between batches */
        PGresult *r;
        while (!PQisBusy(s->conn) && (r = PQgetResult(s->conn))) PQclear(r);
    }
}

/* Reads spilled events back from the journal, from the first unsent one, up to a batch's worth. They go
 * through sm_ingest (no COPY row), which costs the server more but only while catching up. */
static int reload(pg_sink *s, uint64_t avail) {
    size_t k = 0, bytes = 0;
    while (k < avail && k < BATCH_MAX_EVENTS && !s->q[s->qoff + k].json && bytes < BATCH_MAX_BYTES)
        bytes += s->q[s->qoff + k++].len + 1;
    if (!k) return 0;
    const pending *first = &s->q[s->qoff], *last = &s->q[s->qoff + k - 1];
    uint64_t start = first->jend - first->len - 1;
    size_t n = (size_t)(last->jend - start);
    char *buf = malloc(n);
    if (!buf) return -1;
    ssize_t got = pread(s->rfd, buf, n, (off_t)start);
    int rc = 0;
    size_t o = 0;
    for (size_t i = 0; i < k && rc == 0; i++) {
        pending *p = &s->q[s->qoff + i];
        if (got != (ssize_t)n || o + p->len >= n || buf[o + p->len] != '\n' || !(p->json = malloc(p->len + 1))) {
            rc = -1;
            break;
        }
        memcpy(p->json, buf + o, p->len);
        p->json[p->len] = 0;
        s->mem += p->len;
        o += p->len + 1;
    }
    free(buf);
    if (rc) sm_log(SM_LOG_ERROR, "db sink: cannot read spilled events back from %s (%s); retrying later", s->jpath,
                   got < 0 ? strerror(errno) : "unexpected content");
    return rc;
}

static void pump_send(pg_sink *s) {
    if (s->closing || s->state != CONN_READY || s->busy || s->n_acked >= s->n_durable) return;
    uint64_t avail = s->n_durable - s->n_acked;
    if (!s->q[s->qoff].json && reload(s, avail) != 0) {
        conn_lost(s, "journal read-back failed");
        return;
    }
    size_t maxn = s->n_acked < s->isolate_until ? 1 : BATCH_MAX_EVENTS;
    size_t n = 0, bytes = 0;
    strbuf jb = {s->bbuf, 0, s->bcap, 0}, cb = {s->cbuf, 0, s->ccap, 0};
    sb_raw(&jb, "[", 1);
    s->b_events = s->c_events = 0;
    while (n < avail && n < maxn && (n == 0 || bytes < BATCH_MAX_BYTES) && s->q[s->qoff + n].json) {
        const pending *p = &s->q[s->qoff + n];
        if (p->row) {
            sb_raw(&cb, p->row, p->rowlen);
            s->c_events++;
            bytes += p->rowlen;
        } else {
            if (s->b_events++) sb_raw(&jb, ",", 1);
            sb_raw(&jb, p->json, p->len);
            bytes += p->len;
        }
        n++;
    }
    sb_raw(&jb, "]", 1);
    s->bbuf = jb.b;
    s->bcap = jb.cap;
    s->blen = jb.n;
    s->cbuf = cb.b;
    s->ccap = cb.cap;
    s->clen = cb.n;
    if (jb.oom || cb.oom) {
        sm_log(SM_LOG_ERROR, "db sink: out of memory building a batch");
        return;
    }
    s->busy = 1;
    s->batch_ok = 1;
    s->batch_state[0] = s->batch_err[0] = 0;
    s->batch_end = s->n_acked + n;
    s->step = ST_IDLE;
    rtimer_arm(s, STATEMENT_TIMEOUT_MS);
    step_next(s);
}

/* ---- open / close ---- */

static int cmp_mtime(const void *a, const void *b) {
    const struct { char name[256]; double t; } *x = a, *y = b;
    return x->t < y->t ? -1 : x->t > y->t;
}

/* 1 if name is a sink journal file (not the rejected-events file); its name fits the adoption buffers. */
static int is_journal_name(const char *name) {
    size_t l = strlen(name);
    return l >= 7 && l < 250 && !strcmp(name + l - 6, ".jsonl") && strcmp(name, "rejected.jsonl");
}

/* Takes over the journals of sinks that are gone (no flock held): their unacknowledged events are queued
 * ahead of ours, written to our journal, and their files removed. */
static int adopt_orphans(pg_sink *s, sm_error *err) {
    DIR *d = opendir(s->jdir);
    if (!d) return sm_error_set(err, SM_ERR_IO, "opening %s: %s", s->jdir, strerror(errno));
    struct ent { char name[256]; double t; } *ents = NULL;
    size_t ne = 0, ecap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!is_journal_name(de->d_name)) continue;
        char p[PATH_MAX + 300];
        snprintf(p, sizeof p, "%s/%s", s->jdir, de->d_name);
        if (!strcmp(p, s->jpath)) continue;
        struct stat stt;
        if (stat(p, &stt) != 0) continue;
        if (grow((void **)&ents, &ecap, ne + 1, sizeof *ents)) break;
        snprintf(ents[ne].name, sizeof ents[ne].name, "%s", de->d_name);
        ents[ne++].t = (double)stt.st_mtim.tv_sec + stt.st_mtim.tv_nsec * 1e-9;
    }
    closedir(d);
    if (ne) qsort(ents, ne, sizeof *ents, cmp_mtime);
    int rc = SM_OK;
    for (size_t i = 0; i < ne && rc == SM_OK; i++) {
        char jp[PATH_MAX + 300], ap[PATH_MAX + 300];
        snprintf(jp, sizeof jp, "%s/%s", s->jdir, ents[i].name);
        snprintf(ap, sizeof ap, "%s/%.*s.acked", s->jdir, (int)strlen(ents[i].name) - 6, ents[i].name);
        int fd = open(jp, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) { close(fd); continue; } /* a live sink's journal */
        uint64_t from = 0;
        FILE *af = fopen(ap, "r");
        if (af) {
            if (fscanf(af, "%" SCNu64, &from) != 1) from = 0;
            fclose(af);
        }
        struct stat stt;
        if (fstat(fd, &stt) != 0 || (uint64_t)stt.st_size < from) from = 0;
        size_t sz = (size_t)stt.st_size - (size_t)from;
        char *buf = malloc(sz + 1);
        ssize_t got = buf ? pread(fd, buf, sz, (off_t)from) : -1;
        if (got != (ssize_t)sz) {
            free(buf);
            close(fd);
            rc = sm_error_set(err, SM_ERR_IO, "reading journal %s", jp);
            break;
        }
        size_t taken = 0, bad = 0;
        for (size_t a = 0; a < sz;) {
            char *nl = memchr(buf + a, '\n', sz - a);
            if (!nl) { bad++; break; } /* a torn last line: the process died mid-write, before fsync */
            size_t l = (size_t)(nl - (buf + a));
            json_error_t je;
            json_t *v = l ? json_loadb(buf + a, l, 0, &je) : NULL;
            if (v && json_is_string(json_object_get(v, "event_id"))) {
                char *copy = malloc(l + 1);
                if (!copy) { json_decref(v); rc = sm_error_set(err, SM_ERR_NOMEM, "out of memory"); break; }
                memcpy(copy, buf + a, l);
                copy[l] = 0;
                size_t rowlen = 0;
                char *row = metric_row(v, &rowlen);
                if (enqueue(s, copy, l, row, rowlen)) { json_decref(v); rc = sm_error_set(err, SM_ERR_NOMEM, "out of memory"); break; }
                taken++;
            } else if (l) {
                bad++;
            }
            json_decref(v);
            a += l + 1;
        }
        free(buf);
        if (bad) sm_log(SM_LOG_WARN, "db sink: %zu unreadable line(s) skipped in journal %s", bad, jp);
        if (rc == SM_OK && s->jlen) {
            /* Durable in our journal before the orphan goes. */
            ssize_t w = write(s->jfd, s->jbuf, s->jlen);
            if (w != (ssize_t)s->jlen || fdatasync(s->jfd) != 0) {
                rc = sm_error_set(err, SM_ERR_IO, "writing journal %s: %s", s->jpath, strerror(errno));
            } else {
                s->jlen = 0;
                s->n_durable = s->n_on_disk = s->n_emitted;
            }
        }
        if (rc == SM_OK) {
            if (taken) sm_log(SM_LOG_INFO, "db sink: replaying %zu event(s) left in journal %s", taken, jp);
            s->st.replayed += taken;
            unlink(jp);
            unlink(ap);
        }
        close(fd);
    }
    free(ents);
    s->st.journaled = s->n_on_disk;
    return rc;
}

static void finalize(pg_sink *s) {
    if (s->jfd >= 0) {
        if (s->n_acked == s->n_emitted) {
            unlink(s->jpath);
            unlink(s->apath);
        } else {
            /* a last try for what is not on disk yet (jw_data: an in-flight write the loop never finished) */
            for (int i = 0; i < 2; i++) {
                const char *b = i ? s->jbuf : s->jw_data ? s->jw_data + s->jw_done : NULL;
                size_t n = i ? s->jlen : s->jw_data ? s->jw_len - s->jw_done : 0;
                if (!n || s->jbroken) continue;
                if (write(s->jfd, b, n) != (ssize_t)n) {
                    snprintf(s->jerr, sizeof s->jerr, "%s", strerror(errno));
                    s->jbroken = 1;
                }
            }
            if (!s->jbroken && fdatasync(s->jfd) == 0) s->n_on_disk = s->n_emitted;
            else if (!s->jbroken) snprintf(s->jerr, sizeof s->jerr, "%s", strerror(errno));
            char b[32];
            int l = snprintf(b, sizeof b, "%020" PRIu64 "\n", s->ack_off);
            if (s->afd >= 0 && pwrite(s->afd, b, (size_t)l, 0) != l)
                sm_log(SM_LOG_WARN, "db sink: writing %s: %s", s->apath, strerror(errno));
            /* Said of the events on disk only; the rest are lost and said to be. */
            uint64_t kept = s->n_on_disk > s->n_acked ? s->n_on_disk - s->n_acked : 0;
            uint64_t lost = s->n_emitted - (s->n_on_disk > s->n_acked ? s->n_on_disk : s->n_acked);
            if (kept)
                sm_log(SM_LOG_INFO, "db sink: %" PRIu64 " event(s) not yet in the database stay in %s; the next run "
                       "sends them", kept, s->jpath);
            if (lost)
                sm_log(SM_LOG_ERROR, "db sink: %" PRIu64 " event(s) are neither in the database nor on disk (journal %s: "
                       "%s): their lineage is lost", lost, s->jpath, s->jerr[0] ? s->jerr : "not written");
        }
        close(s->jfd);
    }
    if (s->afd >= 0) close(s->afd);
    if (s->rfd >= 0) close(s->rfd);
    for (size_t i = 0; i < s->qn; i++) {
        free(s->q[s->qoff + i].json);
        free(s->q[s->qoff + i].row);
    }
    free(s->q);
    free(s->jbuf);
    free(s->jw_data);
    free(s->bbuf);
    free(s->cbuf);
    free(s->w);
    free(s->dsn);
    free(s);
}

static void timer_closed(uv_handle_t *h) { unref_done(h->data); }

static void sink_close(sm_sink *self) {
    pg_sink *s = (pg_sink *)self;
    if (s->closing) return;
    s->closing = 1;
    poll_drop(s);
    if (s->conn) PQfinish(s->conn);
    s->conn = NULL;
    uv_close((uv_handle_t *)&s->jtimer, timer_closed);
    uv_close((uv_handle_t *)&s->ftimer, timer_closed);
    uv_close((uv_handle_t *)&s->rtimer, timer_closed);
}

void sm_pg_sink_get_stats(sm_sink *sink, sm_pg_sink_stats *out) {
    pg_sink *s = (pg_sink *)sink;
    *out = s->st;
}

int sm_pg_sink_open(uv_loop_t *loop, const char *dsn, const char *workspace, sm_sink **out, sm_error *err) {
    *out = NULL;
    if (!loop || !dsn || !workspace) return sm_error_set(err, SM_ERR_ARG, "sm_pg_sink_open: loop, dsn and workspace are required");
    pg_sink *s = calloc(1, sizeof *s);
    if (!s) return sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    s->base.emit = sink_emit;
    s->base.flush = sink_flush;
    s->base.close = sink_close;
    s->loop = loop;
    s->jfd = s->afd = s->rfd = -1;
    const char *cap = getenv("SCALEMIX_SINK_MEM_CAP"); /* bytes; for tests */
    s->mem_cap = cap && atol(cap) > 0 ? (size_t)atol(cap) : MEM_CAP_DEFAULT;
    s->backoff_ms = BACKOFF_MIN_MS;
    s->dsn = strdup(dsn);
    int rc = SM_OK;
    if (snprintf(s->jdir, sizeof s->jdir, "%s/journal", workspace) >= (int)sizeof s->jdir)
        rc = sm_error_set(err, SM_ERR_ARG, "workspace path too long");
    if (!rc && mkdir(workspace, 0755) != 0 && errno != EEXIST)
        rc = sm_error_set(err, SM_ERR_IO, "creating workspace %s: %s", workspace, strerror(errno));
    if (!rc && mkdir(s->jdir, 0700) != 0 && errno != EEXIST)
        rc = sm_error_set(err, SM_ERR_IO, "creating journal directory %s: %s", s->jdir, strerror(errno));
    if (!rc) {
        char id[37];
        sm_uuid4(id);
        char tmp[PATH_MAX + 64];
        snprintf(s->jpath, sizeof s->jpath, "%s/%s.jsonl", s->jdir, id);
        snprintf(s->apath, sizeof s->apath, "%s/%s.acked", s->jdir, id);
        snprintf(tmp, sizeof tmp, "%s/%s.new", s->jdir, id);
        /* Locked before it gets the name other sinks look for, so none can take it over as an orphan. */
        s->jfd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
        if (s->jfd < 0 || flock(s->jfd, LOCK_EX | LOCK_NB) != 0 || rename(tmp, s->jpath) != 0)
            rc = sm_error_set(err, SM_ERR_IO, "creating journal %s: %s", s->jpath, strerror(errno));
        if (!rc) s->rfd = open(s->jpath, O_RDONLY | O_CLOEXEC);
        if (!rc && s->rfd < 0) rc = sm_error_set(err, SM_ERR_IO, "opening %s: %s", s->jpath, strerror(errno));
        if (!rc) s->afd = open(s->apath, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (!rc && s->afd < 0) rc = sm_error_set(err, SM_ERR_IO, "creating %s: %s", s->apath, strerror(errno));
    }
    if (!rc) rc = adopt_orphans(s, err);
    if (rc) {
        if (s->jfd >= 0) { close(s->jfd); unlink(s->jpath); }
        if (s->afd >= 0) { close(s->afd); unlink(s->apath); }
        if (s->rfd >= 0) close(s->rfd);
        for (size_t i = 0; i < s->qn; i++) {
            free(s->q[s->qoff + i].json);
            free(s->q[s->qoff + i].row);
        }
        free(s->q);
        free(s->jbuf);
        free(s->dsn);
        free(s);
        return rc;
    }
    uv_timer_init(loop, &s->jtimer);
    uv_timer_init(loop, &s->ftimer);
    uv_timer_init(loop, &s->rtimer);
    s->jtimer.data = s->rtimer.data = s->ftimer.data = s;
    s->refs = 3;
    apply_refs(s);
    conn_start(s);
    *out = &s->base;
    return SM_OK;
}

static void drain_done(void *arg) { *(int *)arg = 1; }

int sm_db_drain_journals(const char *workspace, const char *dsn, sm_error *err) {
    char jdir[PATH_MAX];
    if (snprintf(jdir, sizeof jdir, "%s/journal", workspace) >= (int)sizeof jdir)
        return sm_error_set(err, SM_ERR_ARG, "workspace path too long");
    DIR *d = opendir(jdir);
    if (!d) return SM_OK;
    int found = 0;
    struct dirent *de;
    while (!found && (de = readdir(d))) {
        if (!is_journal_name(de->d_name)) continue;
        char p[PATH_MAX + 300];
        snprintf(p, sizeof p, "%s/%s", jdir, de->d_name);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        found = flock(fd, LOCK_EX | LOCK_NB) == 0; /* not held by a live sink */
        close(fd);
    }
    closedir(d);
    if (!found) return SM_OK;
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) return sm_error_set(err, SM_ERR_INTERNAL, "uv_loop_init failed");
    sm_sink *sink = NULL;
    int rc = sm_pg_sink_open(&loop, dsn, workspace, &sink, err);
    if (rc == SM_OK) {
        int done = 0;
        sink->flush(sink, drain_done, &done);
        while (!done && uv_run(&loop, UV_RUN_ONCE)) {}
        sink->close(sink);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&loop);
    return rc;
}
