/* sm_host_calls.c - host call messages on the engine's side: one handler per message type, the same for
 * every transport (a thread calls them directly, a pipe or file reader after decoding a line). Adding a host
 * call: its function in sm_host.c builds the message, one row in SM_HOST_CALLS and its handler here. */
#include <stdlib.h>
#include <string.h>

#include "sm_display.h"
#include "sm_engine_int.h"

#define SM_HOST_CALLS(X) X(log) X(progress) X(output) X(metric) X(result) X(f64) X(mixture) X(fit) X(done)

#define STR(m, k) json_string_value(json_object_get(m, k))
#define NUM(m, k) json_number_value(json_object_get(m, k))

static int on_log(stage_run *sr, const json_t *m) {
    const char *msg = STR(m, "msg");
    char *line = strdup(msg ? msg : "");
    if (!line) return SM_ERR_NOMEM;
    sm_ev_stage_log(sr, (int)NUM(m, "level"), line);
    sm_ev_push(sr->eng, sr, NULL, (int)NUM(m, "level"), line);
    return SM_OK;
}

static int on_progress(stage_run *sr, const json_t *m) {
    double now = sm_monotonic(), done = NUM(m, "done");
    pthread_mutex_lock(&sr->mu);
    if (sr->prog_last_t > 0 && now - sr->prog_last_t >= 1.0) {
        double r = (done - sr->prog_last_done) / (now - sr->prog_last_t);
        sr->prog_rate = sr->prog_rate > 0 ? 0.7 * sr->prog_rate + 0.3 * r : r;
        sr->prog_last_t = now;
        sr->prog_last_done = done;
    } else if (sr->prog_last_t == 0) {
        sr->prog_last_t = now;
        sr->prog_last_done = done;
    }
    sr->prog_done = done;
    sr->prog_total = NUM(m, "total");
    snprintf(sr->prog_unit, sizeof sr->prog_unit, "%s", STR(m, "unit") ? STR(m, "unit") : "");
    pthread_mutex_unlock(&sr->mu);
    return SM_OK;
}

void sm_calls_record_output(stage_run *sr, const char *name, const char *digest, const char *path, const char *kind,
                            uint64_t bytes, const json_t *meta) {
    json_t *ref = json_pack("{s:s, s:s, s:s, s:s, s:I}", "digest", digest, "path", path, "kind", kind, "name", name, "bytes",
                            (json_int_t)bytes);
    pthread_mutex_lock(&sr->mu);
    json_object_set_new(sr->outputs, name, ref);
    pthread_mutex_unlock(&sr->mu);
    sm_ev_push(sr->eng, sr,
               json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:o, s:o}", "type", "artifact", "artifact_id", digest, "kind", kind,
                         "name", name, "path", path, "bytes", (json_int_t)bytes, "produced_by", sr->stage_run_id, "meta",
                         json_is_object(meta) ? json_deep_copy(meta) : json_object(), "created_at", sm_ev_now()),
               0, NULL);
    sm_ev_push(sr->eng, sr,
               json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "io", "stage_run_id", sr->stage_run_id, "artifact_id", digest,
                         "direction", "out", "name", name),
               0, NULL);
}

static int on_output(stage_run *sr, const json_t *m) {
    const char *name = STR(m, "name"), *digest = STR(m, "digest"), *path = STR(m, "path"), *kind = STR(m, "kind");
    if (!name || !digest || !path || !kind) return SM_ERR_FORMAT;
    sm_calls_record_output(sr, name, digest, path, kind, (uint64_t)NUM(m, "bytes"), json_object_get(m, "meta"));
    return SM_OK;
}

static int on_metric(stage_run *sr, const json_t *m) {
    json_t *domain = json_object_get(m, "domain");
    json_t *ev = json_pack("{s:s, s:s, s:s, s:I, s:O, s:f, s:o}", "type", "metric", "stage_run_id", sr->stage_run_id, "name",
                           STR(m, "name"), "step", (json_int_t)NUM(m, "step"), "domain", json_is_string(domain) ? domain : json_null(),
                           "value", NUM(m, "value"), "recorded_at", sm_ev_now());
    if (!ev) return SM_ERR_FORMAT;
    sm_ev_push(sr->eng, sr, ev, 0, NULL);
    return SM_OK;
}

static int on_result(stage_run *sr, const json_t *m) {
    json_t *r = json_object_get(m, "json");
    if (!json_is_object(r)) return SM_ERR_FORMAT;
    pthread_mutex_lock(&sr->mu);
    json_object_update(sr->result, r);
    pthread_mutex_unlock(&sr->mu);
    return SM_OK;
}

int sm_calls_add_f64(stage_run *sr, const char *name, const double *v, size_t n) {
    f64_array a = {strdup(name), malloc((n ? n : 1) * sizeof(double)), n};
    if (!a.name || !a.v) {
        free(a.name);
        free(a.v);
        return SM_ERR_NOMEM;
    }
    if (n) memcpy(a.v, v, n * sizeof(double));
    pthread_mutex_lock(&sr->mu);
    f64_array *na = realloc(sr->arrays, (sr->narrays + 1) * sizeof *na);
    if (na) {
        sr->arrays = na;
        sr->arrays[sr->narrays++] = a;
    }
    pthread_mutex_unlock(&sr->mu);
    if (!na) {
        free(a.name);
        free(a.v);
        return SM_ERR_NOMEM;
    }
    return SM_OK;
}

static int on_f64(stage_run *sr, const json_t *m) {
    const json_t *vals = json_object_get(m, "values");
    if (!STR(m, "name") || !json_is_array(vals)) return SM_ERR_FORMAT;
    size_t n = json_array_size(vals);
    double *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return SM_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) v[i] = json_number_value(json_array_get(vals, i));
    int rc = sm_calls_add_f64(sr, STR(m, "name"), v, n);
    free(v);
    return rc;
}

static int on_mixture(stage_run *sr, const json_t *m) {
    const json_t *d = json_object_get(m, "domains"), *w = json_object_get(m, "weights"), *t = json_object_get(m, "tokens");
    json_t *entries = json_array();
    for (size_t i = 0; i < json_array_size(d); i++)
        json_array_append_new(entries, json_pack("{s:O, s:f, s:f}", "domain", json_array_get(d, i), "weight",
                                                 json_number_value(json_array_get(w, i)), "tokens",
                                                 json_number_value(json_array_get(t, i))));
    json_t *ev = json_pack("{s:s, s:s, s:s, s:f, s:o}", "type", "mixture", "stage_run_id", sr->stage_run_id, "method",
                           STR(m, "method") ? STR(m, "method") : "", "budget_tokens", NUM(m, "budget"), "entries", entries);
    if (!ev) return SM_ERR_FORMAT;
    sm_ev_push(sr->eng, sr, ev, 0, NULL);
    return SM_OK;
}

static int on_fit(stage_run *sr, const json_t *m) {
    json_t *ev = json_pack("{s:s, s:s, s:s, s:f, s:f, s:f, s:f}", "type", "fit", "stage_run_id", sr->stage_run_id, "domain",
                           STR(m, "domain") ? STR(m, "domain") : "", "a", NUM(m, "a"), "b", NUM(m, "b"), "c", NUM(m, "c"),
                           "rmse", NUM(m, "rmse"));
    if (!ev) return SM_ERR_FORMAT;
    sm_ev_push(sr->eng, sr, ev, 0, NULL);
    return SM_OK;
}

static int on_done(stage_run *sr, const json_t *m) {
    const char *msg = STR(m, "msg");
    pthread_mutex_lock(&sr->mu);
    free(sr->done_msg);
    sr->done_msg = strdup(msg ? msg : "");
    sr->done_rc = (int)json_integer_value(json_object_get(m, "rc"));
    sr->done_seen = 1;
    pthread_mutex_unlock(&sr->mu);
    return SM_OK;
}

static const struct {
    const char *t;
    int (*fn)(stage_run *sr, const json_t *m);
} calls[] = {
#define ROW(name) {#name, on_##name},
    SM_HOST_CALLS(ROW)
#undef ROW
};

int sm_run_message(sm_stage_run *r, const json_t *msg) {
    const char *t = STR(msg, "t");
    for (size_t i = 0; t && i < sizeof calls / sizeof calls[0]; i++)
        if (!strcmp(calls[i].t, t)) return calls[i].fn(r, msg);
    return SM_ERR_FORMAT;
}

void sm_run_deliver(void *run, const json_t *msg) { sm_run_message(run, msg); }

int sm_run_outcome(sm_stage_run *r, int *rc, const char **msg) {
    pthread_mutex_lock(&r->mu);
    int seen = r->done_seen;
    if (seen) {
        *rc = r->done_rc;
        *msg = r->done_msg;
    }
    pthread_mutex_unlock(&r->mu);
    return seen;
}
