/* sm_submit.c - stage runs from submission to end: plugin loading, parameter checks, the cache decision,
 * admission against threads and GPU memory, the hand-over to executors (in batches), and what the engine
 * records when a run ends (result artifact, cache entry, stage_end). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sm_display.h"
#include "sm_engine_int.h"

stage_run *sm_submit_get(sm_engine *e, int h) { return h >= 1 && h <= e->nstages ? e->stages[h - 1] : NULL; }

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

/* The executor a stage names (NULL or "local": chosen by its resources once known, returned as NULL). */
static int find_executor(sm_engine *e, const char *name, sm_executor **out, sm_error *err) {
    *out = NULL;
    if (!name || !strcmp(name, "local")) return SM_OK;
    char known[256] = "local";
    for (int i = 0; i < e->nexecutors; i++) {
        if (!strcmp(e->executors[i]->name, name)) {
            *out = e->executors[i];
            return SM_OK;
        }
        size_t n = strlen(known);
        snprintf(known + n, sizeof known - n, ", %s", e->executors[i]->name);
    }
    return sm_error_set(err, SM_ERR_ARG, "unknown executor '%s' (this run has: %s)", name, known);
}

static void state_path(sm_engine *e, const char *stage_name, char *out, size_t cap) {
    char h[65];
    sm_sha256_hex(stage_name, strlen(stage_name), h);
    if (snprintf(out, cap, "%s/%.32s.json", e->state_dir, h) >= (int)cap) out[0] = 0;
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
    pthread_mutex_init(&sr->mu, NULL);
    sr->result = json_object();
    sr->outputs = json_object();
    sm_uuid4(sr->stage_run_id);
    e->stages[e->nstages++] = sr;
    return sr;
}

void sm_submit_free_run(stage_run *sr) {
    json_decref(sr->params);
    json_decref(sr->inputs);
    json_decref(sr->parts);
    json_decref(sr->result);
    json_decref(sr->outputs);
    free(sr->params_text);
    free(sr->inputs_text);
    free(sr->result_text);
    free(sr->outputs_text);
    free(sr->spec_text);
    free(sr->stage_name);
    free(sr->reason);
    free(sr->error_text);
    free(sr->done_msg);
    for (size_t j = 0; j < sr->narrays; j++) {
        free(sr->arrays[j].name);
        free(sr->arrays[j].v);
    }
    free(sr->arrays);
    pthread_mutex_destroy(&sr->mu);
    free(sr);
}

static void load_cached_arrays(stage_run *sr, json_t *arrays) {
    const char *k;
    json_t *a;
    json_object_foreach(arrays, k, a) {
        size_t n = json_array_size(a);
        double *v = malloc((n ? n : 1) * sizeof *v);
        if (!v) continue;
        for (size_t i = 0; i < n; i++) v[i] = json_number_value(json_array_get(a, i));
        sm_calls_add_f64(sr, k, v, n);
        free(v);
    }
}

/* A cache hit: the stage completes at once with the cached result and outputs. */
static int reuse(sm_engine *e, stage_run *sr, json_t *hit) {
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
        sm_ev_stage_start(e, sr, 1);
        const char *k;
        json_t *o;
        json_object_foreach(sr->outputs, k, o)
            sm_ev_emit(e, json_pack("{s:s, s:s, s:O, s:s, s:s}", "type", "io", "stage_run_id", sr->stage_run_id, "artifact_id",
                                    json_object_get(o, "digest"), "direction", "out", "name", k));
        sm_ev_stage_end(e, sr, "reused");
        sm_display_line(SM_LOG_INFO, sr->stage_name, "reused (%s)", sr->reason);
    }
    json_decref(hit);
    complete(e, sr, SM_STAGE_REUSED);
    return sr->handle;
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
                     const char *inputs_json, const char *executor, sm_error *err) {
    sm_plugin *p = NULL;
    sm_executor *named = NULL;
    int rc = find_executor(e, executor ? executor : e->o.executor, &named, err);
    if (rc != SM_OK) return rc;
    json_t *canon = NULL;
    if ((rc = stage_params(e, plugin, params_json, &p, &canon, err)) != SM_OK) return rc;
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
    if (hit) return reuse(e, sr, hit);
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
    sr->x = named ? named : e->executors[sr->res.isolate ? 1 : 0];
    if (e->o.plan && res_rc != SM_ERR_ARG) { /* parameters that can never run are refused in plan too */
        /* what a stage that would run asks for (a GPU and its memory, several threads), or why it cannot */
        char needs[320] = "";
        if (res_rc != SM_OK) snprintf(needs, sizeof needs, " [cannot run: %.280s]", rerr.msg);
        else if (sr->res.gpu)
            snprintf(needs, sizeof needs, " [GPU, %.2f GiB of device memory]", sr->res.device_memory_bytes / 1073741824.0);
        else if (sr->res.threads > 1) snprintf(needs, sizeof needs, " [%d CPU threads]", sr->res.threads);
        printf("run    %-36s %s%s\n", sr->stage_name, sr->reason, needs);
        char how[2048];
        if (res_rc == SM_OK && sr->x->describe && sr->x->describe(sr->x, sr, how, sizeof how) == SM_OK) printf("         %s\n", how);
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
    /* an executor that takes batches (a job array) gets them when the script waits, not one by one */
    if (sr->x->batch <= 1) sm_submit_try_start(e);
    return sr->handle;
}

/* Device memory that GPU stages may share, from the probe the caller passed (0: no GPU: such stages are
 * admitted like CPU ones and the model library says it has no device). */
static uint64_t gpu_budget(sm_engine *e) {
    if (e->gpu_probed) return e->gpu_budget;
    e->gpu_probed = 1;
    e->gpu_budget = e->o.gpu_probe ? e->o.gpu_probe(e->o.gpu_arg) : 0;
    if (e->gpu_budget) sm_display_line(SM_LOG_DEBUG, NULL, "GPU stages share %.2f GiB of device memory", e->gpu_budget / 1073741824.0);
    return e->gpu_budget;
}

static int admissible(sm_engine *e, stage_run *sr) {
    if (e->running == 0) return 1;
    if (e->running >= e->parallel) return 0;
    if (sr->x->remote) return 1;
    if (sr->res.gpu && gpu_budget(e) > 0)
        return e->gpu_running == 0 || e->gpu_used + sr->res.device_memory_bytes <= e->gpu_budget;
    return e->threads_used + sr->res.threads <= e->threads;
}

/* Takes the queue's head into the running set: its share of threads and GPU memory, stage_start. */
static void begin(sm_engine *e, stage_run *sr) {
    /* a remote run gets what it asks for from its own machine */
    sr->granted_threads = sr->res.threads > e->threads && !sr->x->remote ? e->threads : sr->res.threads;
    if (!sr->x->remote) {
        if (sr->res.gpu) {
            e->gpu_running++;
            e->gpu_used += sr->res.device_memory_bytes;
        }
        e->threads_used += sr->granted_threads;
    }
    e->running++;
    sr->status = SM_STAGE_RUNNING;
    sr->started = sm_monotonic();
    sm_workspace_path(&e->ws, sr->scratch, sizeof sr->scratch, "scratch/%s", sr->key);
    sm_ev_stage_start(e, sr, 0);
    sm_display_line(SM_LOG_INFO, sr->stage_name, "running (%s; %d thread%s)", sr->reason, sr->granted_threads,
                    sr->granted_threads == 1 ? "" : "s");
}

static void job_record_path(stage_run *sr, char *out, size_t cap) {
    sm_workspace_path(&sr->eng->ws, out, cap, "exec/%s.job.json", sr->key);
}

/* A run an earlier engine process handed to this executor and recorded: 1 if the executor took it over (or
 * ended it), 0 to start it afresh. */
static int reattach(stage_run *sr) {
    if (!sr->x->reattach) return 0;
    char path[PATH_MAX];
    job_record_path(sr, path, sizeof path);
    json_t *rec = json_load_file(path, 0, NULL);
    const char *xn = json_string_value(json_object_get(rec, "executor"));
    if (!rec || !xn || strcmp(xn, sr->x->name)) {
        json_decref(rec);
        return 0;
    }
    sm_error err = {0};
    int rc = sr->x->reattach(sr->x, sr, rec, &err);
    json_decref(rec);
    if (rc == SM_ERR_NOTFOUND) {
        unlink(path);
        return 0;
    }
    if (rc != SM_OK) sm_run_end(sr, rc, err.msg);
    return 1;
}

void sm_submit_try_start(sm_engine *e) {
    if (e->starting) return; /* a run ended while starting others: the loop below goes on */
    e->starting = 1;
    while (e->queue_head && admissible(e, e->queue_head)) {
        sm_executor *x = e->queue_head->x;
        stage_run *batch[64];
        size_t n = 0, most = x->batch < 1 ? 1 : x->batch > 64 ? 64 : (size_t)x->batch;
        while (n < most && e->queue_head && e->queue_head->x == x && admissible(e, e->queue_head)) {
            stage_run *sr = e->queue_head;
            e->queue_head = sr->next_queued;
            if (!e->queue_head) e->queue_tail = NULL;
            if (atomic_load(&e->cancel)) {
                sr->error_text = strdup("cancelled before it started");
                finalize_texts(sr);
                complete(e, sr, SM_STAGE_CANCELLED);
                continue;
            }
            begin(e, sr);
            if (!reattach(sr)) batch[n++] = sr;
        }
        sm_error err = {0};
        if (n && x->start(x, batch, n, &err) != SM_OK)
            for (size_t i = 0; i < n; i++) sm_run_end(batch[i], err.code ? err.code : SM_ERR_PLUGIN, err.msg);
    }
    e->starting = 0;
}

/* Every stage's result is also an artifact ("result", kind "result"), so that a stage fed with another's
 * numbers (fit with DDO results, extrapolate with fits) has a lineage edge to it. */
static int store_result(sm_engine *e, stage_run *sr) {
    char tmp[PATH_MAX], digest[65], final[PATH_MAX];
    uint64_t bytes = 0;
    if (json_object_get(sr->outputs, "result")) return SM_ERR_ARG; /* the stage committed an output of that name */
    if (sm_store_tmp_path(&e->ws, "result", tmp, sizeof tmp, NULL) != SM_OK) return SM_ERR_IO;
    pthread_mutex_lock(&sr->mu);
    char *text = sm_json_canonical(sr->result);
    pthread_mutex_unlock(&sr->mu);
    int rc = text ? sm_write_file_atomic(tmp, text, strlen(text), 0, NULL) : SM_ERR_NOMEM;
    free(text);
    if (rc == SM_OK) rc = sm_store_commit(&e->ws, tmp, digest, &bytes, final, sizeof final, 0, NULL);
    if (rc == SM_OK) sm_calls_record_output(sr, "result", digest, final, "result", bytes, NULL);
    sm_ev_drain(e);
    return rc;
}

static void cache_success(sm_engine *e, stage_run *sr) {
    json_t *arrays = json_object();
    for (size_t i = 0; i < sr->narrays; i++) {
        json_t *a = json_array();
        for (size_t j = 0; j < sr->arrays[i].n; j++) json_array_append_new(a, json_real(sr->arrays[i].v[j]));
        json_object_set_new(arrays, sr->arrays[i].name, a);
    }
    json_t *entry = json_pack("{s:O, s:s, s:O, s:O, s:o, s:s, s:s, s:o}", "parts", sr->parts, "key", sr->key, "outputs",
                              sr->outputs, "result", sr->result, "f64", arrays, "stage_run_id", sr->stage_run_id, "run_id",
                              e->run_id, "created_at", sm_ev_now());
    sm_error err = {0};
    if (sm_cache_store(&e->ws, sr->key, entry, &err) != SM_OK)
        sm_display_line(SM_LOG_WARN, sr->stage_name, "result not cached: %s", err.msg);
    json_decref(entry);
    char sp[PATH_MAX];
    state_path(e, sr->stage_name, sp, sizeof sp);
    char *ps = sm_json_canonical(sr->parts);
    sm_write_file_atomic(sp, ps, strlen(ps), 0, NULL);
    free(ps);
}

void sm_run_end(sm_stage_run *sr, int rc, const char *msg) {
    sm_engine *e = sr->eng;
    sm_ev_drain(e); /* the stage's own events precede its end */
    sr->rc = rc;
    if (rc != SM_OK && msg != sr->err.msg) sm_error_set(&sr->err, rc, "%s", msg && *msg ? msg : "stage failed");
    else if (rc != SM_OK && !sr->err.msg[0]) sm_error_set(&sr->err, rc, "stage failed");
    e->running--;
    if (!sr->x->remote) {
        e->threads_used -= sr->granted_threads;
        if (sr->res.gpu) {
            e->gpu_running--;
            e->gpu_used -= sr->res.device_memory_bytes;
        }
    }
    if (sr->x->reattach) { /* the run is over: a later engine must not take it over again */
        char path[PATH_MAX];
        job_record_path(sr, path, sizeof path);
        unlink(path);
    }
    double secs = sm_monotonic() - sr->started;
    if (sr->rc == SM_OK && store_result(e, sr) != SM_OK) {
        sr->rc = SM_ERR_IO;
        sm_error_set(&sr->err, SM_ERR_IO, "cannot store the stage's result in the workspace");
    }
    if (sr->rc == SM_OK) {
        cache_success(e, sr);
        finalize_texts(sr);
        sm_ev_stage_end(e, sr, "succeeded");
        sm_display_line(SM_LOG_INFO, sr->stage_name, "done in %.1fs", secs);
        complete(e, sr, SM_STAGE_SUCCEEDED);
    } else {
        int cancelled = sr->rc == SM_ERR_CANCELLED;
        sr->error_text = strdup(cancelled ? "cancelled" : sr->err.msg);
        finalize_texts(sr);
        sm_ev_stage_end(e, sr, cancelled ? "cancelled" : "failed");
        if (cancelled) sm_display_line(SM_LOG_WARN, sr->stage_name, "cancelled after %.1fs", secs);
        else sm_display_line(SM_LOG_ERROR, sr->stage_name, "failed after %.1fs: %s", secs, sr->err.msg);
        complete(e, sr, cancelled ? SM_STAGE_CANCELLED : SM_STAGE_FAILED);
    }
    sm_submit_try_start(e);
}

void sm_submit_cancel_all(sm_engine *e) {
    atomic_store(&e->cancel, 1);
    for (int i = 0; i < e->nstages; i++)
        if (e->stages[i]->status == SM_STAGE_RUNNING) e->stages[i]->x->cancel(e->stages[i]->x, e->stages[i]);
}
