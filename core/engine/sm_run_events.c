/* sm_run_events.c - the lineage events of a run (shapes in sm_events.h): numbering, the inbox that carries
 * events and log lines from stage threads to the loop, and the run and stage events built from the engine's
 * state. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sm_display.h"
#include "sm_engine_int.h"

void sm_ev_emit(sm_engine *e, json_t *ev) {
    if (e->o.plan || !ev) {
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

json_t *sm_ev_now(void) {
    char ts[40];
    sm_iso8601(sm_now(), ts);
    return json_string(ts);
}

void sm_ev_push(sm_engine *e, stage_run *sr, json_t *ev, int level, char *log) {
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

void sm_ev_drain(sm_engine *e) {
    pthread_mutex_lock(&e->inbox_mu);
    inbox_msg *m = e->inbox_head;
    e->inbox_head = e->inbox_tail = NULL;
    pthread_mutex_unlock(&e->inbox_mu);
    while (m) {
        inbox_msg *next = m->next;
        if (m->event) sm_ev_emit(e, m->event);
        if (m->log) sm_display_line(m->level, m->sr ? m->sr->stage_name : NULL, "%s", m->log);
        free(m->log);
        free(m);
        m = next;
    }
}

void sm_ev_run_start(sm_engine *e) {
    const sm_engine_opts *o = &e->o;
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    const char *base = o->script_path ? strrchr(o->script_path, '/') : NULL;
    base = base ? base + 1 : o->script_path ? o->script_path : "-";
    char pipeline[256];
    snprintf(pipeline, sizeof pipeline, "%s", o->pipeline ? o->pipeline : base);
    char *dot = o->pipeline ? NULL : strrchr(pipeline, '.');
    if (dot && !strcmp(dot, ".lua")) *dot = 0;
    sm_ev_emit(e, json_pack("{s:s, s:s, s:s, s:s, s:O, s:s, s:o, s:o, s:n, s:o, s:s}", "type", "run_start", "pipeline", pipeline,
                            "script_path", o->script_path ? o->script_path : "", "script_sha256",
                            o->script_sha256 ? o->script_sha256 : "", "params", o->params ? o->params : json_object(), "trigger",
                            o->trigger ? o->trigger : "manual", "nominal_time",
                            o->nominal_time ? json_string(o->nominal_time) : json_null(), "schedule",
                            o->schedule ? json_string(o->schedule) : json_null(), "parent_run_id", "started_at", sm_ev_now(),
                            "host", host));
}

static void emit_inputs(sm_engine *e, stage_run *sr, json_t *v, const char *name) {
    if (json_is_object(v) && json_is_string(json_object_get(v, "digest"))) {
        sm_ev_emit(e, json_pack("{s:s, s:s, s:O, s:s, s:s}", "type", "io", "stage_run_id", sr->stage_run_id, "artifact_id",
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

/* What a running stage was given: {threads, gpu, device_memory_bytes, isolate, executor}; null when reused. */
static json_t *resources_of(stage_run *sr, int reused) {
    if (reused) return json_null();
    return json_pack("{s:i, s:i, s:I, s:i, s:s}", "threads", sr->granted_threads, "gpu", sr->res.gpu ? 1 : 0,
                     "device_memory_bytes", (json_int_t)sr->res.device_memory_bytes, "isolate", sr->res.isolate ? 1 : 0,
                     "executor", sm_ev_executor(sr));
}

const char *sm_ev_executor(stage_run *sr) { return sr->x->remote ? sr->x->name : "local"; }

void sm_ev_stage_start(sm_engine *e, stage_run *sr, int reused) {
    sm_ev_emit(e, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:O, s:b, s:i, s:o, s:s, s:o}", "type", "stage_start",
                            "stage_run_id", sr->stage_run_id, "stage", sr->stage_name, "plugin", sr->plugin->name,
                            "plugin_version", sr->plugin->desc->version, "plugin_sha256", sr->plugin->sha256, "cache_key",
                            sr->key, "params", sr->params, "reused", reused, "attempt", 1, "started_at", sm_ev_now(), "reason",
                            sr->reason ? sr->reason : "", "resources", resources_of(sr, reused)));
    emit_inputs(e, sr, sr->inputs, "");
}

/* At most this many stage_log events per stage run; the rest are counted and said once at its end. */
enum { STAGE_LOG_CAP = 2000 };
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void sm_ev_stage_log(stage_run *sr, int level, const char *msg) {
    int shown = sm_log_get_level();
    if (level > (shown > SM_LOG_INFO ? shown : SM_LOG_INFO)) return; /* info and up, debug when --verbose */
    if (level < SM_LOG_ERROR) level = SM_LOG_ERROR;
    if (level > SM_LOG_DEBUG) level = SM_LOG_DEBUG;
    pthread_mutex_lock(&sr->mu);
    int keep = sr->log_lines < STAGE_LOG_CAP;
    if (keep) sr->log_lines++;
    else sr->log_dropped++;
    pthread_mutex_unlock(&sr->mu);
    if (!keep) return;
    json_t *text = json_string(msg);
    if (!text) text = json_string("(a log line that is not valid UTF-8)");
    sm_ev_push(sr->eng, sr,
               json_pack("{s:s, s:s, s:s, s:o, s:o}", "type", "stage_log", "stage_run_id", sr->stage_run_id, "level",
                         level_names[level], "message", text, "at", sm_ev_now()),
               0, NULL);
}

void sm_ev_stage_end(sm_engine *e, stage_run *sr, const char *status) {
    if (sr->log_dropped) {
        char msg[160];
        snprintf(msg, sizeof msg, "%d more log lines of this stage run were not recorded (at most %d are)", sr->log_dropped,
                 STAGE_LOG_CAP);
        sm_ev_emit(e, json_pack("{s:s, s:s, s:s, s:s, s:o}", "type", "stage_log", "stage_run_id", sr->stage_run_id, "level",
                                "warn", "message", msg, "at", sm_ev_now()));
    }
    sm_ev_emit(e, json_pack("{s:s, s:s, s:s, s:o, s:o, s:O}", "type", "stage_end", "stage_run_id", sr->stage_run_id, "status",
                            status, "finished_at", sm_ev_now(), "error", sr->error_text ? json_string(sr->error_text) : json_null(),
                            "result", sr->result));
}
