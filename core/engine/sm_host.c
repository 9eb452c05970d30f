/* sm_host.c - the host API a plugin calls, the same in every transport (see sm_host.h). */
#include "sm_host.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/* Sends a message built by json_pack (NULL when a value cannot be carried, e.g. a NaN). */
static int send_new(sm_host *h, json_t *m) {
    if (!m) return SM_ERR_ARG;
    int rc = h->send(h->ctx, m);
    json_decref(m);
    return rc;
}

static void h_log(sm_host *h, int level, const char *fmt, ...) {
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    json_t *text = json_string(msg);
    free(msg);
    if (!text) text = json_string("(a log line that is not valid UTF-8)");
    send_new(h, json_pack("{s:s, s:i, s:o}", "t", "log", "level", level, "msg", text));
}

static void h_progress(sm_host *h, double done, double total, const char *unit) {
    send_new(h, json_pack("{s:s, s:f, s:f, s:s}", "t", "progress", "done", done, "total", total, "unit", unit ? unit : ""));
}

static int h_cancelled(sm_host *h) { return atomic_load(&h->cancel) || (h->cancel_all && atomic_load(h->cancel_all)); }
static int h_threads(sm_host *h) { return h->threads; }
static int h_log_level(sm_host *h) { return h->log_level; }

static int h_output_path(sm_host *h, const char *name, char *path_out, size_t cap) {
    return sm_store_tmp_path(&h->ws, name, path_out, cap, NULL);
}

static int h_output_commit(sm_host *h, const char *name, const char *tmp_path, const char *kind, const char *meta_json,
                           char digest_out[65]) {
    if (!name || !*name || !tmp_path || !kind) return SM_ERR_ARG;
    json_t *meta = meta_json ? json_loads(meta_json, 0, NULL) : json_object();
    if (!json_is_object(meta)) {
        json_decref(meta);
        h_log(h, SM_LOG_ERROR, "output %s: meta is not a JSON object", name);
        return SM_ERR_ARG;
    }
    /* checked and claimed under one lock: two threads committing the same name cannot both pass */
    pthread_mutex_lock(&h->mu);
    int dup = json_object_get(h->committed, name) != NULL;
    if (!dup) json_object_set_new(h->committed, name, json_true());
    pthread_mutex_unlock(&h->mu);
    if (dup) {
        json_decref(meta);
        h_log(h, SM_LOG_ERROR, "output %s committed twice", name);
        return SM_ERR_ARG;
    }
    char digest[65], final[PATH_MAX];
    uint64_t bytes = 0;
    sm_error err = {0};
    int rc = sm_store_commit(&h->ws, tmp_path, digest, &bytes, final, sizeof final, 1, &err);
    if (rc != SM_OK) {
        pthread_mutex_lock(&h->mu);
        json_object_del(h->committed, name);
        pthread_mutex_unlock(&h->mu);
        json_decref(meta);
        h_log(h, SM_LOG_ERROR, "output %s: %s", name, err.msg);
        return rc;
    }
    if (digest_out) memcpy(digest_out, digest, 65);
    return send_new(h, json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:o}", "t", "output", "name", name, "digest", digest, "path",
                                 final, "kind", kind, "bytes", (json_int_t)bytes, "meta", meta));
}

static void scratch_waiting(void *h, const char *lock) {
    h_log(h, SM_LOG_WARN, "waiting: another run is running this stage (same cache key) and holds %s", lock);
}
static int scratch_cancelled(void *h) { return h_cancelled(h); }
/* The stage's scratch folder, locked for this stage run (waits while another run holds it); locked on first
 * use, since most stages never need one. */
static const char *h_scratch_dir(sm_host *h) {
    if (h->scratch_lock >= 0) return h->scratch;
    sm_error err = {0};
    if (sm_scratch_lock(h->scratch, h, scratch_cancelled, scratch_waiting, &h->scratch_lock, &err) != SM_OK) {
        h_log(h, SM_LOG_WARN, "no scratch folder: %s", err.msg);
        return NULL;
    }
    return h->scratch;
}

static int h_metric(sm_host *h, const char *name, int64_t step, const char *domain, double value) {
    if (!name) return SM_ERR_ARG;
    return send_new(h, json_pack("{s:s, s:s, s:I, s:o, s:f}", "t", "metric", "name", name, "step", (json_int_t)step, "domain",
                                 domain ? json_string(domain) : json_null(), "value", value));
}

static int h_result(sm_host *h, const char *json_object_text) {
    json_error_t je;
    json_t *r = json_loads(json_object_text ? json_object_text : "", 0, &je);
    if (!json_is_object(r)) {
        json_decref(r);
        h_log(h, SM_LOG_ERROR, "result is not a JSON object: %s", je.text);
        return SM_ERR_ARG;
    }
    return send_new(h, json_pack("{s:s, s:o}", "t", "result", "json", r));
}

static int h_result_f64(sm_host *h, const char *name, const double *values, size_t n) {
    if (!name || (n && !values)) return SM_ERR_ARG;
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(a, json_real(values[i])) != 0) {
            json_decref(a);
            h_log(h, SM_LOG_ERROR, "result array %s: element %zu is not a finite number", name, i);
            return SM_ERR_ARG;
        }
    return send_new(h, json_pack("{s:s, s:s, s:o}", "t", "f64", "name", name, "values", a));
}

static int h_mixture(sm_host *h, const char *method, double budget, size_t n, const char *const *domains,
                     const double *weights, const double *tokens) {
    json_t *d = json_array(), *w = json_array(), *t = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(d, json_string(domains[i] ? domains[i] : ""));
        json_array_append_new(w, json_real(weights[i]));
        json_array_append_new(t, json_real(tokens[i]));
    }
    return send_new(h, json_pack("{s:s, s:s, s:f, s:o, s:o, s:o}", "t", "mixture", "method", method ? method : "", "budget",
                                 budget, "domains", d, "weights", w, "tokens", t));
}

static int h_fit(sm_host *h, const char *domain, double a, double b, double c, double rmse) {
    return send_new(h, json_pack("{s:s, s:s, s:f, s:f, s:f, s:f}", "t", "fit", "domain", domain ? domain : "", "a", a, "b", b,
                                 "c", c, "rmse", rmse));
}

const sm_host_api sm_host_table = {
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
    .log_level = h_log_level,
};

void sm_host_init(sm_host *h, const sm_workspace *ws, const char *scratch, int threads, int log_level,
                  const atomic_int *cancel_all, sm_host_send_fn send, void *ctx) {
    memset(h, 0, sizeof *h);
    h->ws = *ws;
    snprintf(h->scratch, sizeof h->scratch, "%s", scratch ? scratch : "");
    h->scratch_lock = -1;
    h->threads = threads;
    h->log_level = log_level;
    atomic_init(&h->cancel, 0);
    h->cancel_all = cancel_all;
    pthread_mutex_init(&h->mu, NULL);
    h->committed = json_object();
    h->send = send;
    h->ctx = ctx;
}

void sm_host_fini(sm_host *h) {
    if (h->scratch_lock >= 0) close(h->scratch_lock);
    h->scratch_lock = -1;
    json_decref(h->committed);
    h->committed = NULL;
    pthread_mutex_destroy(&h->mu);
}

int sm_host_run(sm_host *h, const sm_plugin *p, json_t *inputs, const char *params_text, const char *inputs_text,
                sm_error *err) {
    /* every store object the stage reads is hashed first: a corrupt one is set aside, never fed in */
    int rc = sm_store_verify_inputs(&h->ws, inputs, err);
    if (rc == SM_OK) {
        if (p->log_bind) p->log_bind(&sm_host_table, h);
        rc = p->desc->run(&sm_host_table, h, params_text, inputs_text, err);
        if (p->log_bind) p->log_bind(NULL, NULL);
    }
    if (rc != SM_OK && !err->msg[0]) sm_error_set(err, rc, "stage failed with code %d (%s)", rc, sm_error_name(rc));
    if (rc == SM_OK && h->scratch_lock >= 0) sm_remove_tree(h->scratch); /* done: removed under the lock */
    return rc;
}
