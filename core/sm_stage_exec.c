/* sm_stage_exec.c - `scalemix stage-exec`: runs one stage in this (child) process for an engine that asked
 * for isolation (sm_resources.isolate, e.g. a CUDA context). The stage run arrives as a self-contained JSON
 * spec on stdin: {plugin_path, plugin_sha256, params, inputs, workspace, scratch, threads}; everything the
 * plugin reports goes back as JSON lines on the stdout pipe, one message each:
 *   {"t":"log","level":L,"msg":S}  {"t":"progress","done":D,"total":T,"unit":U}
 *   {"t":"output","name","digest","path","kind","bytes","meta"}  {"t":"metric","name","step","domain","value"}
 *   {"t":"result","json":{...}}  {"t":"f64","name","values":[...]}  {"t":"mixture",...}  {"t":"fit",...}
 *   {"t":"done","rc":RC,"msg":S}   (last)
 * The plugin's own stdout is sent to stderr so that it cannot corrupt the protocol. SIGINT or SIGTERM sets
 * the cancel flag the plugin polls. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sm_cache.h"
#include "sm_commands.h"
#include "sm_plugins.h"
#include "sm_store.h"

struct sm_host {
    int proto_fd;
    pthread_mutex_t mu;
    sm_workspace ws;
    const char *scratch;
    int scratch_lock; /* fd holding <scratch>.lock once the stage asked for its folder; released at exit */
    int threads;
    json_t *outputs; /* names committed so far: each once, as in a threaded stage */
};

static volatile sig_atomic_t cancel_flag;
static void on_cancel(int sig) {
    (void)sig;
    cancel_flag = 1;
}

/* Writes one message (steals the reference). */
static int send_msg(sm_host *h, json_t *m) {
    if (!m) return SM_ERR_ARG; /* e.g. a NaN that JSON cannot carry */
    char *s = json_dumps(m, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(m);
    if (!s) return SM_ERR_NOMEM;
    size_t n = strlen(s);
    s[n] = '\n';
    pthread_mutex_lock(&h->mu);
    const char *p = s;
    size_t left = n + 1;
    int rc = SM_OK;
    while (left) {
        ssize_t w = write(h->proto_fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            rc = SM_ERR_IO;
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    pthread_mutex_unlock(&h->mu);
    free(s);
    return rc;
}

static void x_log(sm_host *h, int level, const char *fmt, ...) {
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    send_msg(h, json_pack("{s:s, s:i, s:s}", "t", "log", "level", level, "msg", msg));
}
static void x_progress(sm_host *h, double done, double total, const char *unit) {
    send_msg(h, json_pack("{s:s, s:f, s:f, s:s}", "t", "progress", "done", done, "total", total, "unit", unit ? unit : ""));
}
static int x_cancelled(sm_host *h) {
    (void)h;
    return cancel_flag;
}
static int x_threads(sm_host *h) { return h->threads; }
static int x_output_path(sm_host *h, const char *name, char *out, size_t cap) {
    return sm_store_tmp_path(&h->ws, name, out, cap, NULL);
}
static int x_output_commit(sm_host *h, const char *name, const char *tmp, const char *kind, const char *meta_json,
                           char digest_out[65]) {
    if (!name || !*name || !tmp || !kind) return SM_ERR_ARG;
    json_t *meta = meta_json ? json_loads(meta_json, 0, NULL) : json_object();
    if (!json_is_object(meta)) {
        json_decref(meta);
        x_log(h, SM_LOG_ERROR, "output %s: meta is not a JSON object", name);
        return SM_ERR_ARG;
    }
    pthread_mutex_lock(&h->mu);
    int dup = json_object_get(h->outputs, name) != NULL;
    if (!dup) json_object_set_new(h->outputs, name, json_true());
    pthread_mutex_unlock(&h->mu);
    if (dup) {
        json_decref(meta);
        x_log(h, SM_LOG_ERROR, "output %s committed twice", name);
        return SM_ERR_ARG;
    }
    char digest[65], final[PATH_MAX];
    uint64_t bytes = 0;
    sm_error err = {0};
    int rc = sm_store_commit(&h->ws, tmp, digest, &bytes, final, sizeof final, 1, &err);
    if (rc != SM_OK) {
        json_decref(meta);
        x_log(h, SM_LOG_ERROR, "%s", err.msg);
        return rc;
    }
    if (digest_out) memcpy(digest_out, digest, 65);
    return send_msg(h, json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:o}", "t", "output", "name", name, "digest", digest, "path",
                                 final, "kind", kind, "bytes", (json_int_t)bytes, "meta", meta));
}
static void x_scratch_waiting(void *h, const char *lock) {
    x_log(h, SM_LOG_WARN, "waiting: another run is running this stage (same cache key) and holds %s", lock);
}
static int x_cancelled_any(void *h) { return x_cancelled(h); }
/* The stage's scratch folder, locked for this process (waits while another run holds it). */
static const char *x_scratch_dir(sm_host *h) {
    if (h->scratch_lock >= 0) return h->scratch;
    sm_error err = {0};
    if (sm_scratch_lock(h->scratch, h, x_cancelled_any, x_scratch_waiting, &h->scratch_lock, &err) != SM_OK) {
        x_log(h, SM_LOG_WARN, "no scratch folder: %s", err.msg);
        return NULL;
    }
    return h->scratch;
}
static int x_metric(sm_host *h, const char *name, int64_t step, const char *domain, double value) {
    return send_msg(h, json_pack("{s:s, s:s, s:I, s:o, s:f}", "t", "metric", "name", name, "step", (json_int_t)step, "domain",
                                 domain ? json_string(domain) : json_null(), "value", value));
}
static int x_result(sm_host *h, const char *json_object_text) {
    json_t *r = json_loads(json_object_text ? json_object_text : "", 0, NULL);
    if (!json_is_object(r)) {
        json_decref(r);
        return SM_ERR_ARG;
    }
    return send_msg(h, json_pack("{s:s, s:o}", "t", "result", "json", r));
}
static int x_result_f64(sm_host *h, const char *name, const double *v, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_real(v[i]));
    return send_msg(h, json_pack("{s:s, s:s, s:o}", "t", "f64", "name", name, "values", a));
}
static int x_mixture(sm_host *h, const char *method, double budget, size_t n, const char *const *domains, const double *w,
                     const double *tokens) {
    json_t *d = json_array(), *wa = json_array(), *ta = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(d, json_string(domains[i]));
        json_array_append_new(wa, json_real(w[i]));
        json_array_append_new(ta, json_real(tokens[i]));
    }
    return send_msg(h, json_pack("{s:s, s:s, s:f, s:o, s:o, s:o}", "t", "mixture", "method", method ? method : "", "budget",
                                 budget, "domains", d, "weights", wa, "tokens", ta));
}
static int x_fit(sm_host *h, const char *domain, double a, double b, double c, double rmse) {
    return send_msg(h, json_pack("{s:s, s:s, s:f, s:f, s:f, s:f}", "t", "fit", "domain", domain ? domain : "", "a", a, "b", b,
                                 "c", c, "rmse", rmse));
}

static const sm_host_api child_api = {
    .struct_size = sizeof(sm_host_api), .abi_major = SM_PLUGIN_ABI_MAJOR, .abi_minor = SM_PLUGIN_ABI_MINOR,
    .log = x_log, .progress = x_progress, .cancelled = x_cancelled, .threads = x_threads,
    .output_path = x_output_path, .output_commit = x_output_commit, .scratch_dir = x_scratch_dir,
    .metric = x_metric, .result = x_result, .result_f64 = x_result_f64, .mixture = x_mixture, .fit = x_fit,
};

int sm_cmd_stage_exec(int argc, char **argv) {
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "scalemix stage-exec: internal command; the engine runs it with a stage spec on stdin\n");
        return 2;
    }
    sm_host h = {.proto_fd = dup(1), .mu = PTHREAD_MUTEX_INITIALIZER, .scratch_lock = -1};
    pthread_mutex_init(&h.mu, NULL);
    if (h.proto_fd < 0 || dup2(2, 1) < 0) return 1;
    signal(SIGINT, on_cancel);
    signal(SIGTERM, on_cancel);
    json_error_t je;
    json_t *spec = json_loadf(stdin, 0, &je);
    sm_error err = {0};
    int rc = SM_OK;
    sm_plugin *p = NULL;
    char *params = NULL, *inputs = NULL;
    const char *path = json_string_value(json_object_get(spec, "plugin_path"));
    const char *sha = json_string_value(json_object_get(spec, "plugin_sha256"));
    const char *ws = json_string_value(json_object_get(spec, "workspace"));
    h.scratch = json_string_value(json_object_get(spec, "scratch"));
    h.threads = (int)json_integer_value(json_object_get(spec, "threads"));
    h.outputs = json_object();
    if (!spec || !path || !sha || !ws || !h.scratch || h.threads < 1) {
        rc = sm_error_set(&err, SM_ERR_ARG, "stage-exec: invalid stage spec on stdin (%s)", spec ? "missing fields" : je.text);
    } else if ((rc = sm_workspace_open(&h.ws, ws, &err)) == SM_OK && (rc = sm_plugin_load(path, &p, &err)) == SM_OK) {
        if (strcmp(p->sha256, sha))
            rc = sm_error_set(&err, SM_ERR_PLUGIN, "plugin %s changed on disk after the engine loaded it; run again", path);
    }
    if (rc == SM_OK) {
        params = sm_json_canonical(json_object_get(spec, "params"));
        inputs = sm_json_canonical(json_object_get(spec, "inputs"));
        rc = sm_store_verify_inputs(&h.ws, json_object_get(spec, "inputs"), &err);
        if (rc == SM_OK) rc = p->desc->run(&child_api, &h, params, inputs, &err);
        if (rc != SM_OK && !err.msg[0]) sm_error_set(&err, rc, "stage failed with code %d (%s)", rc, sm_error_name(rc));
    }
    if (rc == SM_OK && h.scratch_lock >= 0) sm_remove_tree(h.scratch); /* done: removed under the lock */
    int sent = send_msg(&h, json_pack("{s:s, s:i, s:s}", "t", "done", "rc", rc, "msg", rc == SM_OK ? "" : err.msg));
    free(params);
    free(inputs);
    sm_plugin_unload(p);
    json_decref(h.outputs);
    json_decref(spec);
    return sent == SM_OK ? 0 : 1;
}
