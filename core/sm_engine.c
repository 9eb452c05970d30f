/* sm_engine.c - stage runs on a libuv loop: admission, worker execution, the host API, cache, events. */
#include "sm_engine.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db/sm_db.h"
#include "model/sm_gpt2.h"
#include "sm_cache.h"
#include "sm_display.h"
#include "sm_plugins.h"

typedef struct f64_array {
    char *name;
    double *v;
    size_t n;
} f64_array;

/* One stage run; the plugin sees it as its opaque sm_host. */
struct sm_host {
    sm_engine *eng;
    int handle, status, reported;
    char stage_run_id[37], key[65];
    char *stage_name, *reason, *error_text;
    sm_plugin *plugin;
    json_t *params, *inputs, *parts;
    char *params_text, *inputs_text;
    char *result_text, *outputs_text;
    sm_resources res;
    int granted_threads;
    char scratch[PATH_MAX];
    int scratch_lock; /* fd holding scratch/<key>.lock, -1 before the stage asks for its scratch folder */
    uv_work_t work;
    sm_error err;
    int rc;
    atomic_int cancel;
    double started;
    /* written by worker threads under mu */
    pthread_mutex_t mu;
    json_t *result, *outputs;
    f64_array *arrays;
    size_t narrays;
    double prog_done, prog_total, prog_rate, prog_last_t, prog_last_done;
    char prog_unit[16];
    struct sm_host *next_queued;
    /* an isolated stage runs in a child process (sm_stage_exec.c) */
    int isolated, child_state, open_handles;
    uv_process_t proc;
    uv_pipe_t pin, pout;
    uv_write_t wreq;
    char *spec_text, *line;
    size_t line_len, line_cap;
};
typedef struct sm_host stage_run;

typedef struct inbox_msg {
    json_t *event;  /* an event to emit, or NULL */
    char *log;      /* a log line, or NULL */
    int level;
    stage_run *sr;
    struct inbox_msg *next;
} inbox_msg;

typedef struct plugin_slot {
    char name[64];
    sm_plugin *p;
} plugin_slot;

struct sm_engine {
    sm_engine_opts o;
    sm_workspace ws;
    uv_loop_t loop;
    uv_async_t wake;
    uv_signal_t sigint, sigterm;
    uv_timer_t ticker;
    char run_id[37];
    char *dsn;
    int64_t seq;
    sm_sink *sink;
    FILE *events_file;
    char state_dir[PATH_MAX];
    /* stages */
    stage_run **stages; /* by handle - 1 */
    int nstages, capstages;
    stage_run *queue_head, *queue_tail;
    int *done_fifo, done_head, done_tail, done_cap;
    int running, pending, threads_used, parallel, threads;
    plugin_slot *plugins;
    int nplugins;
    pthread_mutex_t inbox_mu;
    inbox_msg *inbox_head, *inbox_tail;
    atomic_int cancel;
    int sigints;
    int gpu_probed, gpu_running;
    uint64_t gpu_budget, gpu_used; /* device memory the engine hands out to running GPU stages */
    json_t *inputs_seen; /* path -> ref, so a folder is hashed once per run */
    char *last_input;
    int flushed;
    int lease; /* fd holding runs/<run_id>.lock while the process lives (-1: none) */
    json_t *lua_modules; /* [{name, path, sha256}] the script loaded, for run_end */
};

static const sm_host_api host_api;

/* ---------- events ---------- */

static void emit_event(sm_engine *e, json_t *ev) {
    if (e->o.plan) {
        json_decref(ev);
        return;
    }
    char id[80];
    e->seq++;
    snprintf(id, sizeof id, "%s/%lld", e->run_id, (long long)e->seq);
    json_object_set_new(ev, "run_id", json_string(e->run_id));
    json_object_set_new(ev, "seq", json_integer(e->seq));
    json_object_set_new(ev, "event_id", json_string(id));
    if (e->events_file) {
        char *s = sm_json_canonical(ev);
        fprintf(e->events_file, "%s\n", s);
        fflush(e->events_file);
        free(s);
    }
    if (e->sink) e->sink->emit(e->sink, ev);
    json_decref(ev);
}

static json_t *now_str(void) {
    char ts[40];
    sm_iso8601(sm_now(), ts);
    return json_string(ts);
}

/* From any thread: queue an event or a log line for the loop thread. */
static void inbox_push(sm_engine *e, stage_run *sr, json_t *ev, int level, char *log) {
    inbox_msg *m = calloc(1, sizeof *m);
    if (!m) {
        json_decref(ev);
        free(log);
        return;
    }
    m->event = ev;
    m->log = log;
    m->level = level;
    m->sr = sr;
    pthread_mutex_lock(&e->inbox_mu);
    if (e->inbox_tail) e->inbox_tail->next = m;
    else e->inbox_head = m;
    e->inbox_tail = m;
    pthread_mutex_unlock(&e->inbox_mu);
    uv_async_send(&e->wake);
}

static void inbox_drain(sm_engine *e) {
    pthread_mutex_lock(&e->inbox_mu);
    inbox_msg *m = e->inbox_head;
    e->inbox_head = e->inbox_tail = NULL;
    pthread_mutex_unlock(&e->inbox_mu);
    while (m) {
        inbox_msg *next = m->next;
        if (m->event) emit_event(e, m->event);
        if (m->log) sm_display_line(m->level, m->sr ? m->sr->stage_name : NULL, "%s", m->log);
        free(m->log);
        free(m);
        m = next;
    }
}

static void on_wake(uv_async_t *a) { inbox_drain(a->data); }

/* ---------- host API (worker threads) ---------- */

static void h_log(sm_host *h, int level, const char *fmt, ...) {
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
    va_end(ap);
    if (msg) inbox_push(h->eng, h, NULL, level, msg);
}

static void h_progress(sm_host *h, double done, double total, const char *unit) {
    double now = sm_monotonic();
    pthread_mutex_lock(&h->mu);
    if (h->prog_last_t > 0 && now - h->prog_last_t >= 1.0) {
        double r = (done - h->prog_last_done) / (now - h->prog_last_t);
        h->prog_rate = h->prog_rate > 0 ? 0.7 * h->prog_rate + 0.3 * r : r;
        h->prog_last_t = now;
        h->prog_last_done = done;
    } else if (h->prog_last_t == 0) {
        h->prog_last_t = now;
        h->prog_last_done = done;
    }
    h->prog_done = done;
    h->prog_total = total;
    snprintf(h->prog_unit, sizeof h->prog_unit, "%s", unit ? unit : "");
    pthread_mutex_unlock(&h->mu);
}

static int h_cancelled(sm_host *h) { return atomic_load(&h->cancel) || atomic_load(&h->eng->cancel); }
static int h_threads(sm_host *h) { return h->granted_threads; }

static int h_output_path(sm_host *h, const char *name, char *path_out, size_t cap) {
    return sm_store_tmp_path(&h->eng->ws, name, path_out, cap, NULL);
}

static int commit_output(sm_host *h, const char *name, const char *tmp_path, const char *kind, const char *meta_json,
                         int durable, char digest_out[65]);
static void record_output(sm_host *h, const char *name, const char *digest, const char *final, const char *kind,
                          uint64_t bytes, json_t *meta);

static int h_output_commit(sm_host *h, const char *name, const char *tmp_path, const char *kind, const char *meta_json,
                           char digest_out[65]) {
    return commit_output(h, name, tmp_path, kind, meta_json, 1, digest_out);
}

static int commit_output(sm_host *h, const char *name, const char *tmp_path, const char *kind, const char *meta_json,
                         int durable, char digest_out[65]) {
    if (!name || !*name || !tmp_path || !kind) return SM_ERR_ARG;
    json_t *meta = NULL;
    if (meta_json) {
        meta = json_loads(meta_json, 0, NULL);
        if (!json_is_object(meta)) {
            json_decref(meta);
            h_log(h, SM_LOG_ERROR, "output %s: meta is not a JSON object", name);
            return SM_ERR_ARG;
        }
    }
    pthread_mutex_lock(&h->mu);
    int dup = json_object_get(h->outputs, name) != NULL;
    pthread_mutex_unlock(&h->mu);
    if (dup) {
        json_decref(meta);
        h_log(h, SM_LOG_ERROR, "output %s committed twice", name);
        return SM_ERR_ARG;
    }
    char digest[65], final[PATH_MAX];
    uint64_t bytes = 0;
    sm_error err = {0};
    int rc = sm_store_commit(&h->eng->ws, tmp_path, digest, &bytes, final, sizeof final, durable, &err);
    if (rc != SM_OK) {
        json_decref(meta);
        h_log(h, SM_LOG_ERROR, "%s", err.msg);
        return rc;
    }
    record_output(h, name, digest, final, kind, bytes, meta);
    if (digest_out) memcpy(digest_out, digest, 65);
    return SM_OK;
}

/* Records a stored object as output `name` of this stage and queues its lineage events (steals meta). */
static void record_output(sm_host *h, const char *name, const char *digest, const char *final, const char *kind,
                          uint64_t bytes, json_t *meta) {
    json_t *ref = json_pack("{s:s, s:s, s:s, s:s, s:I}", "digest", digest, "path", final, "kind", kind, "name", name,
                            "bytes", (json_int_t)bytes);
    pthread_mutex_lock(&h->mu);
    json_object_set(h->outputs, name, ref);
    pthread_mutex_unlock(&h->mu);
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:o, s:o}", "type", "artifact", "artifact_id", digest,
                           "kind", kind, "name", name, "path", final, "bytes", (json_int_t)bytes, "produced_by",
                           h->stage_run_id, "meta", meta ? meta : json_object(), "created_at", now_str());
    inbox_push(h->eng, h, ev, 0, NULL);
    inbox_push(h->eng, h,
               json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "io", "stage_run_id", h->stage_run_id, "artifact_id", digest,
                         "direction", "out", "name", name),
               0, NULL);
    json_decref(ref);
}

static void h_scratch_waiting(void *h, const char *lock) {
    h_log(h, SM_LOG_WARN, "waiting: another run is running this stage (same cache key) and holds %s", lock);
}
static int h_cancelled_any(void *h) { return h_cancelled(h); }
/* The stage's scratch folder, locked for this stage run (waits while another run holds it); locked on first
 * use, since most stages never need one. */
static const char *h_scratch_dir(sm_host *h) {
    if (h->scratch_lock >= 0) return h->scratch;
    sm_error err = {0};
    if (sm_scratch_lock(h->scratch, h, h_cancelled_any, h_scratch_waiting, &h->scratch_lock, &err) != SM_OK) {
        h_log(h, SM_LOG_WARN, "no scratch folder: %s", err.msg);
        return NULL;
    }
    return h->scratch;
}

static int h_metric(sm_host *h, const char *name, int64_t step, const char *domain, double value) {
    if (!name) return SM_ERR_ARG;
    json_t *ev = json_pack("{s:s, s:s, s:s, s:I, s:o, s:f, s:o}", "type", "metric", "stage_run_id", h->stage_run_id, "name",
                           name, "step", (json_int_t)step, "domain", domain ? json_string(domain) : json_null(), "value", value,
                           "recorded_at", now_str());
    if (!ev) return SM_ERR_ARG; /* e.g. a NaN value: jansson refuses it */
    inbox_push(h->eng, h, ev, 0, NULL);
    return SM_OK;
}

static int h_result(sm_host *h, const char *json_object_text) {
    json_error_t je;
    json_t *r = json_loads(json_object_text ? json_object_text : "", 0, &je);
    if (!json_is_object(r)) {
        json_decref(r);
        h_log(h, SM_LOG_ERROR, "result is not a JSON object: %s", je.text);
        return SM_ERR_ARG;
    }
    pthread_mutex_lock(&h->mu);
    json_object_update(h->result, r);
    pthread_mutex_unlock(&h->mu);
    json_decref(r);
    return SM_OK;
}

static int h_result_f64(sm_host *h, const char *name, const double *values, size_t n) {
    if (!name || (n && !values)) return SM_ERR_ARG;
    f64_array a = {strdup(name), malloc((n ? n : 1) * sizeof(double)), n};
    if (!a.name || !a.v) {
        free(a.name);
        free(a.v);
        return SM_ERR_NOMEM;
    }
    if (n) memcpy(a.v, values, n * sizeof(double));
    pthread_mutex_lock(&h->mu);
    f64_array *na = realloc(h->arrays, (h->narrays + 1) * sizeof *na);
    if (na) {
        h->arrays = na;
        h->arrays[h->narrays++] = a;
    }
    pthread_mutex_unlock(&h->mu);
    if (!na) {
        free(a.name);
        free(a.v);
        return SM_ERR_NOMEM;
    }
    return SM_OK;
}

static int h_mixture(sm_host *h, const char *method, double budget, size_t n, const char *const *domains,
                     const double *weights, const double *tokens) {
    json_t *entries = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(entries, json_pack("{s:s, s:f, s:f}", "domain", domains[i], "weight", weights[i], "tokens", tokens[i]));
    json_t *ev = json_pack("{s:s, s:s, s:s, s:f, s:o}", "type", "mixture", "stage_run_id", h->stage_run_id, "method",
                           method ? method : "", "budget_tokens", budget, "entries", entries);
    if (!ev) return SM_ERR_ARG;
    inbox_push(h->eng, h, ev, 0, NULL);
    return SM_OK;
}

static int h_fit(sm_host *h, const char *domain, double a, double b, double c, double rmse) {
    json_t *ev = json_pack("{s:s, s:s, s:s, s:f, s:f, s:f, s:f}", "type", "fit", "stage_run_id", h->stage_run_id, "domain",
                           domain ? domain : "", "a", a, "b", b, "c", c, "rmse", rmse);
    if (!ev) return SM_ERR_ARG;
    inbox_push(h->eng, h, ev, 0, NULL);
    return SM_OK;
}

static const sm_host_api host_api = {
    .struct_size = sizeof(sm_host_api),
    .abi_major = SM_PLUGIN_ABI_MAJOR,
    .abi_minor = SM_PLUGIN_ABI_MINOR,
    .log = h_log,
    .progress = h_progress,
    .cancelled = h_cancelled,
    .threads = h_threads,
    .output_path = h_output_path,
    .output_commit = h_output_commit,
    .scratch_dir = h_scratch_dir,
    .metric = h_metric,
    .result = h_result,
    .result_f64 = h_result_f64,
    .mixture = h_mixture,
    .fit = h_fit,
};

/* ---------- stage bookkeeping ---------- */

static stage_run *get_stage(sm_engine *e, int h) { return h >= 1 && h <= e->nstages ? e->stages[h - 1] : NULL; }

static void complete(sm_engine *e, stage_run *sr, int status) {
    sr->status = status;
    if (e->done_tail == e->done_cap) {
        int cap = e->done_cap ? 2 * e->done_cap : 64;
        int *nf = realloc(e->done_fifo, cap * sizeof *nf);
        if (!nf) abort(); /* a handful of ints: failing here means the process is already lost */
        e->done_fifo = nf;
        e->done_cap = cap;
    }
    e->done_fifo[e->done_tail++] = sr->handle;
}

static void finalize_texts(stage_run *sr) {
    free(sr->result_text);
    free(sr->outputs_text);
    sr->result_text = sm_json_canonical(sr->result);
    sr->outputs_text = sm_json_canonical(sr->outputs);
}

static int load_plugin(sm_engine *e, const char *name, sm_plugin **out, sm_error *err) {
    for (int i = 0; i < e->nplugins; i++)
        if (!strcmp(e->plugins[i].name, name)) {
            *out = e->plugins[i].p;
            return SM_OK;
        }
    char path[PATH_MAX];
    int rc = sm_plugin_find(name, path, sizeof path, err);
    if (rc != SM_OK) return rc;
    sm_plugin *p;
    if ((rc = sm_plugin_load(path, &p, err)) != SM_OK) return rc;
    plugin_slot *ns = realloc(e->plugins, (e->nplugins + 1) * sizeof *ns);
    if (!ns) {
        sm_plugin_unload(p);
        return sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    }
    e->plugins = ns;
    snprintf(e->plugins[e->nplugins].name, sizeof e->plugins[e->nplugins].name, "%s", name);
    e->plugins[e->nplugins++].p = p;
    *out = p;
    return SM_OK;
}

static void state_path(sm_engine *e, const char *stage_name, char *out, size_t cap) {
    char h[65];
    sm_sha256_hex(stage_name, strlen(stage_name), h);
    if (snprintf(out, cap, "%s/%.32s.json", e->state_dir, h) >= (int)cap) out[0] = 0;
}

static void emit_inputs(sm_engine *e, stage_run *sr, json_t *v, const char *name) {
    if (json_is_object(v) && json_is_string(json_object_get(v, "digest"))) {
        emit_event(e, json_pack("{s:s, s:s, s:O, s:s, s:s}", "type", "io", "stage_run_id", sr->stage_run_id, "artifact_id",
                                json_object_get(v, "digest"), "direction", "in", "name", name));
        return;
    }
    const char *k;
    json_t *x;
    size_t i;
    char sub[512];
    if (json_is_object(v)) json_object_foreach(v, k, x) {
            snprintf(sub, sizeof sub, "%s%s%s", name, *name ? "/" : "", k);
            emit_inputs(e, sr, x, sub);
        }
    else if (json_is_array(v)) json_array_foreach(v, i, x) {
            snprintf(sub, sizeof sub, "%s[%zu]", name, i);
            emit_inputs(e, sr, x, sub);
        }
}

static void emit_stage_start(sm_engine *e, stage_run *sr, int reused) {
    emit_event(e, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:O, s:b, s:i, s:o}", "type", "stage_start", "stage_run_id",
                            sr->stage_run_id, "stage", sr->stage_name, "plugin", sr->plugin->name, "plugin_version",
                            sr->plugin->desc->version, "plugin_sha256", sr->plugin->sha256, "cache_key", sr->key, "params",
                            sr->params, "reused", reused, "attempt", 1, "started_at", now_str()));
    emit_inputs(e, sr, sr->inputs, "");
}

static void emit_stage_end(sm_engine *e, stage_run *sr, const char *status) {
    emit_event(e, json_pack("{s:s, s:s, s:s, s:o, s:o, s:O}", "type", "stage_end", "stage_run_id", sr->stage_run_id, "status",
                            status, "finished_at", now_str(), "error", sr->error_text ? json_string(sr->error_text) : json_null(),
                            "result", sr->result));
}

/* ---------- running ---------- */

static void work_cb(uv_work_t *w) {
    stage_run *sr = w->data;
    sm_error err = {0};
    /* every store object the stage reads is hashed first: a corrupt one is set aside, never fed in */
    sr->rc = sm_store_verify_inputs(&sr->eng->ws, sr->inputs, &err);
    if (sr->rc == SM_OK) sr->rc = sr->plugin->desc->run(&host_api, sr, sr->params_text, sr->inputs_text, &err);
    if (sr->rc != SM_OK && !err.msg[0]) sm_error_set(&err, sr->rc, "stage failed with code %d (%s)", sr->rc, sm_error_name(sr->rc));
    sr->err = err;
}

static void try_start(sm_engine *e);

/* Every stage's result is also an artifact ("result", kind "result"), so that a stage fed with another's
 * numbers (fit with DDO results, extrapolate with fits) has a lineage edge to it. */
static int store_result(sm_engine *e, stage_run *sr) {
    char tmp[PATH_MAX], digest[65];
    if (sm_store_tmp_path(&e->ws, "result", tmp, sizeof tmp, NULL) != SM_OK) return SM_ERR_IO;
    pthread_mutex_lock(&sr->mu);
    char *text = sm_json_canonical(sr->result);
    pthread_mutex_unlock(&sr->mu);
    int rc = text ? sm_write_file_atomic(tmp, text, strlen(text), 0, NULL) : SM_ERR_NOMEM;
    free(text);
    if (rc == SM_OK) rc = commit_output(sr, "result", tmp, "result", NULL, 0, digest);
    inbox_drain(e);
    return rc;
}

static void finish_stage(sm_engine *e, stage_run *sr);

static void after_work_cb(uv_work_t *w, int status) {
    stage_run *sr = w->data;
    if (status == UV_ECANCELED) sr->rc = SM_ERR_CANCELLED;
    finish_stage(sr->eng, sr);
}

/* ---------- isolated stages: a child process speaking JSON lines (see sm_stage_exec.c) ---------- */

static void child_message(stage_run *sr, json_t *m) {
    const char *t = json_string_value(json_object_get(m, "t"));
    if (!t) return;
#define STR(k) json_string_value(json_object_get(m, k))
#define NUM(k) json_number_value(json_object_get(m, k))
    if (!strcmp(t, "log")) h_log(sr, (int)NUM("level"), "%s", STR("msg") ? STR("msg") : "");
    else if (!strcmp(t, "progress")) h_progress(sr, NUM("done"), NUM("total"), STR("unit"));
    else if (!strcmp(t, "metric")) h_metric(sr, STR("name"), (int64_t)NUM("step"), STR("domain"), NUM("value"));
    else if (!strcmp(t, "fit")) h_fit(sr, STR("domain"), NUM("a"), NUM("b"), NUM("c"), NUM("rmse"));
    else if (!strcmp(t, "output") && STR("name") && STR("digest") && STR("path") && STR("kind"))
        record_output(sr, STR("name"), STR("digest"), STR("path"), STR("kind"), (uint64_t)NUM("bytes"),
                      json_incref(json_is_object(json_object_get(m, "meta")) ? json_object_get(m, "meta") : json_object()));
    else if (!strcmp(t, "result")) {
        char *txt = sm_json_canonical(json_object_get(m, "json"));
        if (txt) h_result(sr, txt);
        free(txt);
    } else if (!strcmp(t, "f64") || !strcmp(t, "mixture")) {
        json_t *v = json_object_get(m, !strcmp(t, "f64") ? "values" : "weights");
        size_t n = json_array_size(v);
        double *a = calloc(n ? n : 1, sizeof *a), *b = calloc(n ? n : 1, sizeof *b);
        const char **names = calloc(n ? n : 1, sizeof *names);
        for (size_t i = 0; i < n; i++) {
            a[i] = json_number_value(json_array_get(v, i));
            b[i] = json_number_value(json_array_get(json_object_get(m, "tokens"), i));
            names[i] = json_string_value(json_array_get(json_object_get(m, "domains"), i));
        }
        if (!strcmp(t, "f64")) h_result_f64(sr, STR("name"), a, n);
        else h_mixture(sr, STR("method"), NUM("budget"), n, names, a, b);
        free(a);
        free(b);
        free(names);
    } else if (!strcmp(t, "done")) {
        sr->rc = (int)NUM("rc");
        if (sr->rc != SM_OK) sm_error_set(&sr->err, sr->rc, "%s", STR("msg") ? STR("msg") : "stage failed");
        sr->child_state |= 4;
    }
#undef STR
#undef NUM
}

static void child_handle_closed(uv_handle_t *hd) {
    stage_run *sr = hd->data;
    if (--sr->open_handles == 0) finish_stage(sr->eng, sr);
}

/* Finishes once the process has exited (bit 1) and its output is read to the end (bit 2). */
static void child_maybe_done(stage_run *sr) {
    if ((sr->child_state & 3) != 3) return;
    if (!(sr->child_state & 4)) {
        sr->rc = SM_ERR_PLUGIN;
        if (!sr->err.msg[0]) sm_error_set(&sr->err, SM_ERR_PLUGIN, "the stage's process ended without reporting a result");
    }
    uv_close((uv_handle_t *)&sr->proc, child_handle_closed);
    uv_close((uv_handle_t *)&sr->pout, child_handle_closed);
}

static void child_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf) {
    (void)hd;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void child_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
    stage_run *sr = st->data;
    if (n > 0) {
        if (sr->line_len + (size_t)n + 1 > sr->line_cap) {
            size_t cap = (sr->line_len + (size_t)n + 1) * 2;
            char *nl = realloc(sr->line, cap);
            if (nl) {
                sr->line = nl;
                sr->line_cap = cap;
            }
        }
        if (sr->line_len + (size_t)n + 1 <= sr->line_cap) {
            memcpy(sr->line + sr->line_len, buf->base, (size_t)n);
            size_t start = 0, scanned = sr->line_len; /* what came before holds no newline */
            sr->line_len += (size_t)n;
            for (size_t i = scanned; i < sr->line_len; i++) {
                if (sr->line[i] != '\n') continue;
                json_t *m = json_loadb(sr->line + start, i - start, 0, NULL);
                if (m) child_message(sr, m);
                json_decref(m);
                start = i + 1;
            }
            memmove(sr->line, sr->line + start, sr->line_len - start);
            sr->line_len -= start;
        }
    } else if (n < 0) {
        uv_read_stop(st);
        sr->child_state |= 2;
        child_maybe_done(sr);
    }
    free(buf->base);
}

static void child_exit(uv_process_t *p, int64_t status, int signal) {
    stage_run *sr = p->data;
    if (!(sr->child_state & 4)) {
        if (signal) sm_error_set(&sr->err, SM_ERR_PLUGIN, "the stage's process (pid %d) was killed by signal %d (%s)", p->pid, signal, strsignal(signal));
        else sm_error_set(&sr->err, SM_ERR_PLUGIN, "the stage's process (pid %d) exited with status %lld before reporting a result", p->pid, (long long)status);
    }
    sr->child_state |= 1;
    child_maybe_done(sr);
}

static void spec_written(uv_write_t *w, int status) {
    stage_run *sr = w->data;
    (void)status; /* a failed write shows up as the child's error */
    uv_close((uv_handle_t *)&sr->pin, child_handle_closed);
}

static int start_child(sm_engine *e, stage_run *sr, sm_error *err) {
    char exe[PATH_MAX + 16];
    snprintf(exe, sizeof exe, "%s/scalemix", sm_build_dir());
    json_t *spec = json_pack("{s:s, s:s, s:O, s:O, s:s, s:s, s:i}", "plugin_path", sr->plugin->path, "plugin_sha256",
                             sr->plugin->sha256, "params", sr->params, "inputs", sr->inputs, "workspace", e->ws.root, "scratch",
                             sr->scratch, "threads", sr->granted_threads);
    sr->spec_text = sm_json_canonical(spec);
    json_decref(spec);
    char *args[] = {exe, "stage-exec", NULL};
    uv_pipe_init(&e->loop, &sr->pin, 0);
    uv_pipe_init(&e->loop, &sr->pout, 0);
    sr->pin.data = sr->pout.data = sr->proc.data = sr->wreq.data = sr;
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&sr->pin},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&sr->pout},
        {.flags = UV_INHERIT_FD, .data.fd = 2}};
    uv_process_options_t po = {.exit_cb = child_exit, .file = exe, .args = args, .stdio_count = 3, .stdio = stdio};
    sr->open_handles = 3;
    int rc = uv_spawn(&e->loop, &sr->proc, &po);
    if (rc != 0) {
        sr->open_handles = 0;
        uv_close((uv_handle_t *)&sr->pin, NULL);
        uv_close((uv_handle_t *)&sr->pout, NULL);
        return sm_error_set(err, SM_ERR_PLUGIN, "cannot start %s stage-exec for an isolated stage: %s", exe, uv_strerror(rc));
    }
    uv_buf_t b = uv_buf_init(sr->spec_text, (unsigned)strlen(sr->spec_text));
    /* On a synchronous failure no callback comes: close stdin here; the child then reports a bad spec. */
    if (uv_write(&sr->wreq, (uv_stream_t *)&sr->pin, &b, 1, spec_written) != 0) uv_close((uv_handle_t *)&sr->pin, child_handle_closed);
    uv_read_start((uv_stream_t *)&sr->pout, child_alloc, child_read);
    return SM_OK;
}

static void finish_stage(sm_engine *e, stage_run *sr) {
    inbox_drain(e); /* the stage's own events precede its end */
    if (sr->rc != SM_OK && sr->scratch_lock >= 0) {
        close(sr->scratch_lock); /* kept for a resume; the folder is not live any more */
        sr->scratch_lock = -1;
    }
    e->running--;
    e->threads_used -= sr->granted_threads;
    if (sr->res.gpu) {
        e->gpu_running--;
        e->gpu_used -= sr->res.device_memory_bytes;
    }
    double secs = sm_monotonic() - sr->started;
    if (sr->rc == SM_OK && store_result(e, sr) != SM_OK) {
        sr->rc = SM_ERR_IO;
        sm_error_set(&sr->err, SM_ERR_IO, "cannot store the stage's result in the workspace");
    }
    if (sr->rc == SM_OK) {
        json_t *arrays = json_object();
        for (size_t i = 0; i < sr->narrays; i++) {
            json_t *a = json_array();
            for (size_t j = 0; j < sr->arrays[i].n; j++) json_array_append_new(a, json_real(sr->arrays[i].v[j]));
            json_object_set_new(arrays, sr->arrays[i].name, a);
        }
        json_t *entry = json_pack("{s:O, s:s, s:O, s:O, s:o, s:s, s:s, s:o}", "parts", sr->parts, "key", sr->key, "outputs",
                                  sr->outputs, "result", sr->result, "f64", arrays, "stage_run_id", sr->stage_run_id, "run_id",
                                  e->run_id, "created_at", now_str());
        sm_error err = {0};
        if (sm_cache_store(&e->ws, sr->key, entry, &err) != SM_OK)
            sm_display_line(SM_LOG_WARN, sr->stage_name, "result not cached: %s", err.msg);
        json_decref(entry);
        char sp[PATH_MAX];
        state_path(e, sr->stage_name, sp, sizeof sp);
        char *ps = sm_json_canonical(sr->parts);
        sm_write_file_atomic(sp, ps, strlen(ps), 0, NULL);
        free(ps);
        /* an isolated stage's process removed its scratch folder itself, under its lock */
        if (!sr->isolated && sr->scratch_lock >= 0) sm_remove_tree(sr->scratch);
        finalize_texts(sr);
        emit_stage_end(e, sr, "succeeded");
        sm_display_line(SM_LOG_INFO, sr->stage_name, "done in %.1fs", secs);
        if (sr->scratch_lock >= 0) close(sr->scratch_lock);
        sr->scratch_lock = -1;
        complete(e, sr, SM_STAGE_SUCCEEDED);
    } else {
        int cancelled = sr->rc == SM_ERR_CANCELLED;
        sr->error_text = strdup(cancelled ? "cancelled" : sr->err.msg);
        finalize_texts(sr);
        emit_stage_end(e, sr, cancelled ? "cancelled" : "failed");
        if (cancelled) sm_display_line(SM_LOG_WARN, sr->stage_name, "cancelled after %.1fs", secs);
        else sm_display_line(SM_LOG_ERROR, sr->stage_name, "failed after %.1fs: %s", secs, sr->err.msg);
        complete(e, sr, cancelled ? SM_STAGE_CANCELLED : SM_STAGE_FAILED);
    }
    try_start(e);
}

/* Device memory that GPU stages may share: $SCALEMIX_GPU_MEMORY (bytes) when set, else the free memory of the
 * current device as the CUDA backend reports it, else 0 (no GPU: such stages are admitted like CPU ones and
 * the model library says it has no device). */
static uint64_t gpu_budget(sm_engine *e) {
    if (e->gpu_probed) return e->gpu_budget;
    e->gpu_probed = 1;
    const char *env = getenv("SCALEMIX_GPU_MEMORY");
    if (env && *env) e->gpu_budget = strtoull(env, NULL, 10);
    else sm_gpt2_cuda_devices(&e->gpu_budget);
    if (e->gpu_budget) sm_display_line(SM_LOG_DEBUG, NULL, "GPU stages share %.2f GiB of device memory", e->gpu_budget / 1073741824.0);
    return e->gpu_budget;
}

static int admissible(sm_engine *e, stage_run *sr) {
    if (e->running == 0) return 1;
    if (e->running >= e->parallel) return 0;
    if (sr->res.gpu && gpu_budget(e) > 0)
        return e->gpu_running == 0 || e->gpu_used + sr->res.device_memory_bytes <= e->gpu_budget;
    return e->threads_used + sr->res.threads <= e->threads;
}

static void try_start(sm_engine *e) {
    while (e->queue_head && admissible(e, e->queue_head)) {
        stage_run *sr = e->queue_head;
        e->queue_head = sr->next_queued;
        if (!e->queue_head) e->queue_tail = NULL;
        if (atomic_load(&e->cancel)) {
            sr->error_text = strdup("cancelled before it started");
            finalize_texts(sr);
            complete(e, sr, SM_STAGE_CANCELLED);
            continue;
        }
        sr->granted_threads = sr->res.threads > e->threads ? e->threads : sr->res.threads;
        if (sr->res.gpu) {
            e->gpu_running++;
            e->gpu_used += sr->res.device_memory_bytes;
        }
        e->running++;
        e->threads_used += sr->granted_threads;
        sr->status = SM_STAGE_RUNNING;
        sr->started = sm_monotonic();
        sm_workspace_path(&e->ws, sr->scratch, sizeof sr->scratch, "scratch/%s", sr->key);
        emit_stage_start(e, sr, 0);
        sm_display_line(SM_LOG_INFO, sr->stage_name, "running (%s; %d thread%s)", sr->reason, sr->granted_threads,
                        sr->granted_threads == 1 ? "" : "s");
        if (sr->res.isolate) {
            sr->isolated = 1;
            if (start_child(e, sr, &sr->err) != SM_OK) {
                sr->rc = sr->err.code;
                finish_stage(e, sr);
            }
            continue;
        }
        sr->work.data = sr;
        uv_queue_work(&e->loop, &sr->work, work_cb, after_work_cb);
    }
}

static void on_tick(uv_timer_t *t) {
    sm_engine *e = t->data;
    sm_display_stage ds[64];
    int n = 0;
    for (int i = 0; i < e->nstages && n < 64; i++) {
        stage_run *sr = e->stages[i];
        if (sr->status != SM_STAGE_RUNNING) continue;
        pthread_mutex_lock(&sr->mu);
        ds[n] = (sm_display_stage){sr->stage_name, sr->prog_done, sr->prog_total, sr->prog_unit, sr->prog_rate,
                                   sm_monotonic() - sr->started};
        pthread_mutex_unlock(&sr->mu);
        n++;
    }
    sm_display_live(ds, n);
}

/* Sets the cancel flag threaded stages poll, and passes it on to isolated stages' processes. */
static void cancel_children(sm_engine *e) {
    atomic_store(&e->cancel, 1);
    for (int i = 0; i < e->nstages; i++)
        if (e->stages[i]->isolated && e->stages[i]->status == SM_STAGE_RUNNING && !(e->stages[i]->child_state & 1))
            uv_process_kill(&e->stages[i]->proc, SIGINT);
}

static void on_signal(uv_signal_t *s, int signum) {
    sm_engine *e = s->data;
    if (++e->sigints >= 2) {
        sm_display_clear();
        fprintf(stderr, "scalemix: stopped (second %s); completed stages are cached, the run stays recorded as cancelling\n",
                signum == SIGINT ? "Ctrl-C" : "SIGTERM");
        _exit(130);
    }
    cancel_children(e);
    sm_display_line(SM_LOG_WARN, NULL, "cancelling: running stages stop at their next check (press Ctrl-C again to force)");
    emit_event(e, json_pack("{s:s, s:s, s:o}", "type", "run_state", "state", "cancelling", "at", now_str()));
}

/* ---------- public ---------- */

static int nprocs(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int sm_engine_create(sm_engine **out, const sm_engine_opts *o, sm_error *err) {
    *out = NULL;
    sm_engine *e = calloc(1, sizeof *e);
    if (!e) return sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    e->o = *o;
    e->lease = -1;
    int rc = sm_workspace_open(&e->ws, o->workspace, err);
    if (rc != SM_OK) {
        free(e);
        return rc;
    }
    e->threads = o->threads > 0 ? o->threads : nprocs();
    e->parallel = o->parallel > 0 ? o->parallel : nprocs();
    /* Stages occupy thread-pool threads for their whole run; keep spare ones for file system work. */
    if (!getenv("UV_THREADPOOL_SIZE")) {
        char n[16];
        snprintf(n, sizeof n, "%d", e->parallel + 4);
        setenv("UV_THREADPOOL_SIZE", n, 1);
    }
    sm_uuid4(e->run_id);
    pthread_mutex_init(&e->inbox_mu, NULL);
    e->inputs_seen = json_object();
    e->lua_modules = json_array();
    char script_key[65];
    sm_sha256_hex(o->script_path ? o->script_path : "-", o->script_path ? strlen(o->script_path) : 1, script_key);
    char abs[PATH_MAX];
    if (o->script_path && realpath(o->script_path, abs)) sm_sha256_hex(abs, strlen(abs), script_key);
    sm_workspace_path(&e->ws, e->state_dir, sizeof e->state_dir, "state/%.24s", script_key);
    if ((rc = sm_mkdirs(e->state_dir, err)) != SM_OK) goto fail;
    uv_loop_init(&e->loop);
    uv_async_init(&e->loop, &e->wake, on_wake);
    e->wake.data = e;
    uv_signal_init(&e->loop, &e->sigint);
    uv_signal_init(&e->loop, &e->sigterm);
    e->sigint.data = e->sigterm.data = e;
    uv_signal_start(&e->sigint, on_signal, SIGINT);
    uv_signal_start(&e->sigterm, on_signal, SIGTERM);
    uv_timer_init(&e->loop, &e->ticker);
    e->ticker.data = e;
    uv_timer_start(&e->ticker, on_tick, 200, sm_display_is_tty() ? 200 : 1000);
    uv_unref((uv_handle_t *)&e->ticker);
    uv_unref((uv_handle_t *)&e->wake);
    uv_unref((uv_handle_t *)&e->sigint);
    uv_unref((uv_handle_t *)&e->sigterm);
    if (o->plan) {
        *out = e;
        return SM_OK;
    }
    if (o->events_path) {
        e->events_file = fopen(o->events_path, "ae");
        if (!e->events_file) {
            rc = sm_error_set(err, SM_ERR_IO, "cannot open the events file %s: %s", o->events_path, strerror(errno));
            goto fail_loop;
        }
    }
    if ((rc = sm_run_lease_take(e->ws.root, e->run_id, &e->lease, err)) != SM_OK) goto fail_loop;
    if ((rc = sm_db_resolve(e->ws.root, o->db, &e->dsn, err)) != SM_OK) goto fail_loop;
    if (e->dsn && (rc = sm_pg_sink_open(&e->loop, e->dsn, e->ws.root, &e->sink, err)) != SM_OK) goto fail_loop;
    if (e->dsn) { /* earlier runs whose process died (SIGKILL, crash) are marked abandoned */
        int gone = 0;
        sm_error aerr = {0};
        if (sm_db_mark_abandoned(e->ws.root, e->dsn, &gone, &aerr) != SM_OK) sm_display_line(SM_LOG_DEBUG, NULL, "%s", aerr.msg);
        else if (gone) sm_display_line(SM_LOG_INFO, NULL, "%d earlier run(s) whose process is gone marked abandoned", gone);
    }
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    const char *base = o->script_path ? strrchr(o->script_path, '/') : NULL;
    base = base ? base + 1 : o->script_path ? o->script_path : "-";
    char pipeline[256];
    snprintf(pipeline, sizeof pipeline, "%s", o->pipeline ? o->pipeline : base);
    char *dot = o->pipeline ? NULL : strrchr(pipeline, '.');
    if (dot && !strcmp(dot, ".lua")) *dot = 0;
    emit_event(e, json_pack("{s:s, s:s, s:s, s:s, s:O, s:s, s:o, s:o, s:n, s:o, s:s}", "type", "run_start", "pipeline", pipeline,
                            "script_path", o->script_path ? o->script_path : "", "script_sha256",
                            o->script_sha256 ? o->script_sha256 : "", "params", o->params ? o->params : json_object(), "trigger",
                            o->trigger ? o->trigger : "manual", "nominal_time",
                            o->nominal_time ? json_string(o->nominal_time) : json_null(), "schedule",
                            o->schedule ? json_string(o->schedule) : json_null(), "parent_run_id", "started_at", now_str(),
                            "host", host));
    *out = e;
    return SM_OK;
fail_loop:
    sm_run_lease_release(e->ws.root, e->run_id, e->lease);
    if (e->events_file) fclose(e->events_file);
    e->events_file = NULL;
    uv_close((uv_handle_t *)&e->wake, NULL);
    uv_close((uv_handle_t *)&e->sigint, NULL);
    uv_close((uv_handle_t *)&e->sigterm, NULL);
    uv_close((uv_handle_t *)&e->ticker, NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    uv_loop_close(&e->loop);
fail:
    json_decref(e->inputs_seen);
    json_decref(e->lua_modules);
    free(e->dsn);
    free(e);
    return rc;
}

static stage_run *new_stage(sm_engine *e) {
    if (e->nstages == e->capstages) {
        int cap = e->capstages ? 2 * e->capstages : 64;
        stage_run **ns = realloc(e->stages, cap * sizeof *ns);
        if (!ns) return NULL;
        e->stages = ns;
        e->capstages = cap;
    }
    stage_run *sr = calloc(1, sizeof *sr);
    if (!sr) return NULL;
    sr->eng = e;
    sr->handle = e->nstages + 1;
    sr->scratch_lock = -1;
    pthread_mutex_init(&sr->mu, NULL);
    sr->result = json_object();
    sr->outputs = json_object();
    sm_uuid4(sr->stage_run_id);
    e->stages[e->nstages++] = sr;
    return sr;
}

static void load_cached_arrays(stage_run *sr, json_t *arrays) {
    const char *k;
    json_t *a;
    json_object_foreach(arrays, k, a) {
        size_t n = json_array_size(a);
        double *v = malloc((n ? n : 1) * sizeof *v);
        if (!v) continue;
        for (size_t i = 0; i < n; i++) v[i] = json_number_value(json_array_get(a, i));
        h_result_f64(sr, k, v, n);
        free(v);
    }
}

/* The plugin and the canonical parameters of a stage call, or SM_ERR_ARG when the schema refuses them. */
static int stage_params(sm_engine *e, const char *plugin, const char *params_json, sm_plugin **p, json_t **canon,
                        sm_error *err) {
    int rc = load_plugin(e, plugin, p, err);
    if (rc != SM_OK) return rc;
    json_error_t je;
    json_t *params = json_loads(params_json && *params_json ? params_json : "{}", 0, &je);
    if (!params) return sm_error_set(err, SM_ERR_ARG, "stage %s: parameters are not valid JSON: %s", plugin, je.text);
    rc = sm_plugin_check_params(*p, params, canon, err);
    json_decref(params);
    return rc;
}

int sm_engine_check_params(sm_engine *e, const char *plugin, const char *params_json, sm_error *err) {
    sm_plugin *p;
    json_t *canon = NULL;
    int rc = stage_params(e, plugin, params_json, &p, &canon, err);
    if (rc != SM_OK || !p->desc->resources) {
        json_decref(canon);
        return rc;
    }
    char *text = sm_json_canonical(canon);
    sm_resources res = {.struct_size = sizeof(sm_resources), .threads = 1};
    sm_error rerr = {0};
    if (p->desc->resources(text, "{}", &res, &rerr) == SM_ERR_ARG)
        rc = sm_error_set(err, SM_ERR_ARG, "stage %s: %s", plugin, rerr.msg);
    free(text);
    json_decref(canon);
    return rc;
}

int sm_engine_submit(sm_engine *e, const char *plugin, const char *stage_name, const char *params_json,
                     const char *inputs_json, sm_error *err) {
    sm_plugin *p = NULL;
    json_t *canon = NULL;
    int rc = stage_params(e, plugin, params_json, &p, &canon, err);
    if (rc != SM_OK) return rc;
    json_error_t je;
    json_t *inputs = json_loads(inputs_json && *inputs_json ? inputs_json : "{}", 0, &je);
    if (!inputs || !json_is_object(inputs)) {
        json_decref(canon);
        json_decref(inputs);
        return sm_error_set(err, SM_ERR_ARG, "stage %s: inputs must be a table of artifacts", plugin);
    }
    stage_run *sr = new_stage(e);
    if (!sr) {
        json_decref(canon);
        json_decref(inputs);
        return sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    }
    sr->plugin = p;
    sr->stage_name = strdup(stage_name && *stage_name ? stage_name : plugin);
    sr->params = canon;
    sr->inputs = inputs;
    sr->params_text = sm_json_canonical(canon);
    sr->inputs_text = sm_json_canonical(inputs);
    sr->parts = sm_cache_parts(p, canon, inputs);
    sm_cache_key(sr->parts, sr->key);

    const char *why_unusable = NULL;
    json_t *hit = sm_cache_lookup(&e->ws, sr->key, &why_unusable);
    if (hit) {
        json_object_update(sr->result, json_object_get(hit, "result"));
        json_object_update(sr->outputs, json_object_get(hit, "outputs"));
        load_cached_arrays(sr, json_object_get(hit, "f64"));
        const char *orig = json_string_value(json_object_get(hit, "stage_run_id"));
        char buf[128];
        snprintf(buf, sizeof buf, "cached result of stage run %.8s", orig ? orig : "?");
        sr->reason = strdup(buf);
        finalize_texts(sr);
        if (e->o.plan) {
            printf("reuse  %-36s %s\n", sr->stage_name, sr->reason);
        } else {
            emit_stage_start(e, sr, 1);
            const char *k;
            json_t *o;
            json_object_foreach(sr->outputs, k, o)
                emit_event(e, json_pack("{s:s, s:s, s:O, s:s, s:s}", "type", "io", "stage_run_id", sr->stage_run_id, "artifact_id",
                                        json_object_get(o, "digest"), "direction", "out", "name", k));
            emit_stage_end(e, sr, "reused");
            sm_display_line(SM_LOG_INFO, sr->stage_name, "reused (%s)", sr->reason);
        }
        json_decref(hit);
        complete(e, sr, SM_STAGE_REUSED);
        return sr->handle;
    }
    char sp[PATH_MAX];
    state_path(e, sr->stage_name, sp, sizeof sp);
    json_t *before = json_load_file(sp, 0, NULL);
    char *why = sm_cache_explain(before, sr->parts);
    json_decref(before);
    if (why_unusable && !strncmp(why, "nothing changed", 15)) {
        free(why);
        why = strdup(why_unusable);
    }
    sr->reason = why;
    sr->res = (sm_resources){.struct_size = sizeof(sm_resources), .threads = 1};
    sm_error rerr = {0};
    int res_rc = p->desc->resources ? p->desc->resources(sr->params_text, sr->inputs_text, &sr->res, &rerr) : SM_OK;
    if (sr->res.threads < 1) sr->res.threads = 1;
    if (e->o.plan && res_rc != SM_ERR_ARG) { /* parameters that can never run are refused in plan too */
        /* what a stage that would run asks for (a GPU and its memory, several threads), or why it cannot */
        char needs[320] = "";
        if (res_rc != SM_OK) snprintf(needs, sizeof needs, " [cannot run: %.280s]", rerr.msg);
        else if (sr->res.gpu)
            snprintf(needs, sizeof needs, " [GPU, %.2f GiB of device memory]", sr->res.device_memory_bytes / 1073741824.0);
        else if (sr->res.threads > 1) snprintf(needs, sizeof needs, " [%d CPU threads]", sr->res.threads);
        printf("run    %-36s %s%s\n", sr->stage_name, sr->reason, needs);
        finalize_texts(sr);
        complete(e, sr, SM_STAGE_PLANNED);
        return sr->handle;
    }
    if (res_rc != SM_OK) {
        sr->error_text = strdup(rerr.msg);
        finalize_texts(sr);
        sm_error_set(err, rerr.code ? rerr.code : SM_ERR_PLUGIN, "stage %s: %s", sr->stage_name, rerr.msg);
        complete(e, sr, SM_STAGE_FAILED);
        sr->reported = 1;
        return err ? err->code : SM_ERR_PLUGIN;
    }
    sr->status = SM_STAGE_QUEUED;
    if (e->queue_tail) e->queue_tail->next_queued = sr;
    else e->queue_head = sr;
    e->queue_tail = sr;
    e->pending++;
    try_start(e);
    return sr->handle;
}

int sm_engine_wait(sm_engine *e) {
    for (;;) {
        while (e->done_head < e->done_tail) {
            int h = e->done_fifo[e->done_head++];
            if (e->done_head == e->done_tail) e->done_head = e->done_tail = 0;
            stage_run *sr = get_stage(e, h);
            if (sr->reported) continue;
            sr->reported = 1;
            return h;
        }
        if (!e->running && !e->queue_head) return 0;
        inbox_drain(e);
        uv_run(&e->loop, UV_RUN_ONCE);
    }
}

void sm_engine_poll(sm_engine *e) {
    inbox_drain(e);
    /* the signal watchers are unreferenced, and a loop with nothing referenced returns without polling */
    uv_ref((uv_handle_t *)&e->sigterm);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    uv_unref((uv_handle_t *)&e->sigterm);
}

int sm_engine_stage_status(sm_engine *e, int h) {
    stage_run *sr = get_stage(e, h);
    return sr ? sr->status : -1;
}
const char *sm_engine_stage_reason(sm_engine *e, int h) {
    stage_run *sr = get_stage(e, h);
    return sr && sr->reason ? sr->reason : "";
}
const char *sm_engine_stage_error(sm_engine *e, int h) {
    stage_run *sr = get_stage(e, h);
    return sr && sr->error_text ? sr->error_text : "";
}
const char *sm_engine_stage_name(sm_engine *e, int h) {
    stage_run *sr = get_stage(e, h);
    return sr ? sr->stage_name : "";
}
const char *sm_engine_stage_run_id(sm_engine *e, int h) {
    stage_run *sr = get_stage(e, h);
    return sr ? sr->stage_run_id : "";
}
const char *sm_engine_stage_result(sm_engine *e, int h) {
    stage_run *sr = get_stage(e, h);
    return sr && sr->result_text ? sr->result_text : "{}";
}
const char *sm_engine_stage_outputs(sm_engine *e, int h) {
    stage_run *sr = get_stage(e, h);
    return sr && sr->outputs_text ? sr->outputs_text : "{}";
}
const double *sm_engine_stage_f64(sm_engine *e, int h, const char *name, size_t *n) {
    stage_run *sr = get_stage(e, h);
    *n = 0;
    if (!sr || !name) return NULL;
    for (size_t i = 0; i < sr->narrays; i++)
        if (!strcmp(sr->arrays[i].name, name)) {
            *n = sr->arrays[i].n;
            return sr->arrays[i].v;
        }
    return NULL;
}

const char *sm_engine_input(sm_engine *e, const char *path, int is_dir, sm_error *err) {
    char abs[PATH_MAX];
    if (!realpath(path, abs)) {
        sm_error_set(err, SM_ERR_NOTFOUND, "input %s: %s", path, strerror(errno));
        return NULL;
    }
    json_t *seen = json_object_get(e->inputs_seen, abs);
    if (!seen) {
        char digest[65];
        uint64_t bytes = 0, files = 1;
        int rc;
        struct stat st;
        if (stat(abs, &st) != 0) {
            sm_error_set(err, SM_ERR_NOTFOUND, "input %s: %s", path, strerror(errno));
            return NULL;
        }
        if (is_dir != S_ISDIR(st.st_mode)) {
            sm_error_set(err, SM_ERR_ARG, "input %s is %s, not %s", path, S_ISDIR(st.st_mode) ? "a folder" : "a file",
                         is_dir ? "a folder (use sm.file)" : "a file (use sm.dir)");
            return NULL;
        }
        rc = is_dir ? sm_dir_digest(abs, digest, &bytes, &files, err) : sm_sha256_file(abs, digest, &bytes, err);
        if (rc != SM_OK) return NULL;
        seen = json_pack("{s:s, s:s, s:s, s:s, s:I}", "digest", digest, "path", abs, "kind", is_dir ? "dir" : "file", "name",
                         path, "bytes", (json_int_t)bytes);
        json_object_set_new(e->inputs_seen, abs, seen);
        emit_event(e, json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:n, s:{s:I}, s:o}", "type", "artifact", "artifact_id", digest,
                                "kind", is_dir ? "dir" : "file", "name", path, "path", abs, "bytes", (json_int_t)bytes,
                                "produced_by", "meta", "files", (json_int_t)files, "created_at", now_str()));
    }
    free(e->last_input);
    e->last_input = sm_json_canonical(seen);
    return e->last_input;
}

const sm_workspace *sm_engine_workspace(sm_engine *e) { return &e->ws; }
const char *sm_engine_run_id(sm_engine *e) { return e->run_id; }
const char *sm_engine_dsn(sm_engine *e) { return e->dsn; }
int sm_engine_planning(sm_engine *e) { return e->o.plan; }
int sm_engine_cancelled(sm_engine *e) { return atomic_load(&e->cancel); }
void sm_engine_cancel(sm_engine *e) { cancel_children(e); }
void sm_engine_set_parallel(sm_engine *e, int n) {
    if (n > 0) e->parallel = n;
    try_start(e);
}
void sm_engine_log(sm_engine *e, int level, const char *msg) {
    (void)e;
    sm_display_line(level, NULL, "%s", msg);
}

void sm_engine_note_module(sm_engine *e, const char *name, const char *path, const char *sha256) {
    json_array_append_new(e->lua_modules, json_pack("{s:s, s:s, s:s}", "name", name, "path", path, "sha256", sha256));
}

static void on_flushed(void *arg) { ((sm_engine *)arg)->flushed = 1; }

int sm_engine_finish(sm_engine *e, int status, const char *error) {
    /* Stages still running (a script that errored while others ran) are cancelled and awaited. */
    if (e->running || e->queue_head) {
        cancel_children(e);
        while (sm_engine_wait(e) > 0) {
        }
    }
    inbox_drain(e);
    sm_display_clear();
    if (e->o.plan) return SM_OK;
    const char *st = status == SM_STAGE_SUCCEEDED ? "succeeded" : status == SM_STAGE_CANCELLED ? "cancelled" : "failed";
    emit_event(e, json_pack("{s:s, s:s, s:o, s:o, s:O}", "type", "run_end", "status", st, "finished_at", now_str(), "error",
                            error ? json_string(error) : json_null(), "lua_modules", e->lua_modules));
    if (e->sink) {
        e->flushed = 0;
        e->sink->flush(e->sink, on_flushed, e);
        while (!e->flushed) uv_run(&e->loop, UV_RUN_ONCE);
    }
    return SM_OK;
}

void sm_engine_free(sm_engine *e) {
    if (!e) return;
    json_decref(e->lua_modules);
    if (e->sink) e->sink->close(e->sink);
    if (e->events_file) fclose(e->events_file);
    sm_run_lease_release(e->ws.root, e->run_id, e->lease);
    uv_close((uv_handle_t *)&e->wake, NULL);
    uv_close((uv_handle_t *)&e->sigint, NULL);
    uv_close((uv_handle_t *)&e->sigterm, NULL);
    uv_close((uv_handle_t *)&e->ticker, NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    uv_loop_close(&e->loop);
    for (int i = 0; i < e->nstages; i++) {
        stage_run *sr = e->stages[i];
        json_decref(sr->params);
        json_decref(sr->inputs);
        json_decref(sr->parts);
        json_decref(sr->result);
        json_decref(sr->outputs);
        free(sr->params_text);
        free(sr->inputs_text);
        free(sr->result_text);
        free(sr->outputs_text);
        free(sr->stage_name);
        free(sr->reason);
        free(sr->error_text);
        free(sr->spec_text);
        free(sr->line);
        for (size_t j = 0; j < sr->narrays; j++) {
            free(sr->arrays[j].name);
            free(sr->arrays[j].v);
        }
        free(sr->arrays);
        pthread_mutex_destroy(&sr->mu);
        free(sr);
    }
    for (int i = 0; i < e->nplugins; i++) sm_plugin_unload(e->plugins[i].p);
    free(e->plugins);
    free(e->stages);
    free(e->done_fifo);
    json_decref(e->inputs_seen);
    free(e->last_input);
    free(e->dsn);
    pthread_mutex_destroy(&e->inbox_mu);
    free(e);
}
