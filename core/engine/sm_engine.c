/* sm_engine.c - one pipeline run: the loop, signals and live display, the run's lineage start and end,
 * inputs from outside the store, and the accessors scripts use. Stage runs: sm_submit.c. */
#include "sm_engine.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db/sm_db.h" /* the run lease that tells a live run from an abandoned one */
#include "sm_display.h"
#include "sm_engine_int.h"

static void on_wake(uv_async_t *a) { sm_ev_drain(a->data); }

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

static void on_signal(uv_signal_t *s, int signum) {
    sm_engine *e = s->data;
    if (++e->sigints >= 2) {
        sm_display_clear();
        fprintf(stderr, "scalemix: stopped (second %s); completed stages are cached, the run stays recorded as cancelling\n",
                signum == SIGINT ? "Ctrl-C" : "SIGTERM");
        _exit(130);
    }
    sm_submit_cancel_all(e);
    sm_display_line(SM_LOG_WARN, NULL, "cancelling: running stages stop at their next check (press Ctrl-C again to force)");
    sm_ev_emit(e, json_pack("{s:s, s:s, s:o}", "type", "run_state", "state", "cancelling", "at", sm_ev_now()));
}

static int nprocs(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void close_loop(sm_engine *e) {
    uv_close((uv_handle_t *)&e->wake, NULL);
    uv_close((uv_handle_t *)&e->sigint, NULL);
    uv_close((uv_handle_t *)&e->sigterm, NULL);
    uv_close((uv_handle_t *)&e->ticker, NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    uv_loop_close(&e->loop);
}

static void free_executors(sm_engine *e) {
    for (int i = 0; i < e->nexecutors; i++) e->executors[i]->free(e->executors[i]);
    free(e->executors);
    e->executors = NULL;
    e->nexecutors = 0;
}

int sm_engine_add_executor(sm_engine *e, sm_executor *x, sm_error *err) {
    for (int i = 0; i < e->nexecutors; i++)
        if (!strcmp(e->executors[i]->name, x->name)) return sm_error_set(err, SM_ERR_ARG, "executor %s is added twice", x->name);
    if (!strcmp(x->name, "local")) return sm_error_set(err, SM_ERR_ARG, "executor name 'local' is the engine's own choice");
    sm_executor **nx = realloc(e->executors, (e->nexecutors + 1) * sizeof *nx);
    if (!nx) return sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    e->executors = nx;
    e->executors[e->nexecutors++] = x;
    return SM_OK;
}

uv_loop_t *sm_engine_loop(sm_engine *e) { return &e->loop; }

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
    sm_executor *xt = NULL, *xp = NULL;
    if ((rc = sm_exec_thread_create(&xt, err)) != SM_OK || (rc = sm_engine_add_executor(e, xt, err)) != SM_OK ||
        (rc = sm_exec_process_create(&xp, err)) != SM_OK || (rc = sm_engine_add_executor(e, xp, err)) != SM_OK) {
        if (xt && e->nexecutors == 0) xt->free(xt);
        if (xp && e->nexecutors == 1) xp->free(xp);
        free_executors(e);
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
    if (o->open_sink && (rc = o->open_sink(o->sink_arg, &e->loop, e->ws.root, &e->sink, &e->dsn, err)) != SM_OK) goto fail_loop;
    sm_ev_run_start(e);
    *out = e;
    return SM_OK;
fail_loop:
    sm_run_lease_release(e->ws.root, e->run_id, e->lease);
    if (e->events_file) fclose(e->events_file);
    e->events_file = NULL;
    close_loop(e);
fail:
    free_executors(e);
    json_decref(e->inputs_seen);
    free(e->dsn);
    free(e);
    return rc;
}

int sm_engine_wait(sm_engine *e) {
    sm_submit_try_start(e);
    for (;;) {
        while (e->done_head < e->done_tail) {
            int h = e->done_fifo[e->done_head++];
            if (e->done_head == e->done_tail) e->done_head = e->done_tail = 0;
            stage_run *sr = sm_submit_get(e, h);
            if (sr->reported) continue;
            sr->reported = 1;
            return h;
        }
        if (!e->running && !e->queue_head) return 0;
        sm_ev_drain(e);
        uv_run(&e->loop, UV_RUN_ONCE);
    }
}

void sm_engine_poll(sm_engine *e) {
    sm_ev_drain(e);
    /* the signal watchers are unreferenced, and a loop with nothing referenced returns without polling */
    uv_ref((uv_handle_t *)&e->sigterm);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    uv_unref((uv_handle_t *)&e->sigterm);
}

int sm_engine_stage_status(sm_engine *e, int h) {
    stage_run *sr = sm_submit_get(e, h);
    return sr ? sr->status : -1;
}
const char *sm_engine_stage_reason(sm_engine *e, int h) {
    stage_run *sr = sm_submit_get(e, h);
    return sr && sr->reason ? sr->reason : "";
}
const char *sm_engine_stage_error(sm_engine *e, int h) {
    stage_run *sr = sm_submit_get(e, h);
    return sr && sr->error_text ? sr->error_text : "";
}
const char *sm_engine_stage_name(sm_engine *e, int h) {
    stage_run *sr = sm_submit_get(e, h);
    return sr ? sr->stage_name : "";
}
const char *sm_engine_stage_run_id(sm_engine *e, int h) {
    stage_run *sr = sm_submit_get(e, h);
    return sr ? sr->stage_run_id : "";
}
const char *sm_engine_stage_result(sm_engine *e, int h) {
    stage_run *sr = sm_submit_get(e, h);
    return sr && sr->result_text ? sr->result_text : "{}";
}
const char *sm_engine_stage_outputs(sm_engine *e, int h) {
    stage_run *sr = sm_submit_get(e, h);
    return sr && sr->outputs_text ? sr->outputs_text : "{}";
}
const double *sm_engine_stage_f64(sm_engine *e, int h, const char *name, size_t *n) {
    stage_run *sr = sm_submit_get(e, h);
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
        sm_ev_emit(e, json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:n, s:{s:I}, s:o}", "type", "artifact", "artifact_id", digest,
                                "kind", is_dir ? "dir" : "file", "name", path, "path", abs, "bytes", (json_int_t)bytes,
                                "produced_by", "meta", "files", (json_int_t)files, "created_at", sm_ev_now()));
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
void sm_engine_cancel(sm_engine *e) { sm_submit_cancel_all(e); }
void sm_engine_set_parallel(sm_engine *e, int n) {
    if (n > 0) e->parallel = n;
    sm_submit_try_start(e);
}
void sm_engine_log(sm_engine *e, int level, const char *msg) {
    (void)e;
    sm_display_line(level, NULL, "%s", msg);
}

static void on_flushed(void *arg) { ((sm_engine *)arg)->flushed = 1; }

int sm_engine_finish(sm_engine *e, int status, const char *error) {
    /* Stages still running (a script that errored while others ran) are cancelled and awaited. */
    if (e->running || e->queue_head) {
        sm_submit_cancel_all(e);
        while (sm_engine_wait(e) > 0) {
        }
    }
    sm_ev_drain(e);
    sm_display_clear();
    if (e->o.plan) return SM_OK;
    const char *st = status == SM_STAGE_SUCCEEDED ? "succeeded" : status == SM_STAGE_CANCELLED ? "cancelled" : "failed";
    sm_ev_emit(e, json_pack("{s:s, s:s, s:o, s:o}", "type", "run_end", "status", st, "finished_at", sm_ev_now(), "error",
                            error ? json_string(error) : json_null()));
    if (e->sink) {
        e->flushed = 0;
        e->sink->flush(e->sink, on_flushed, e);
        while (!e->flushed) uv_run(&e->loop, UV_RUN_ONCE);
    }
    return SM_OK;
}

void sm_engine_free(sm_engine *e) {
    if (!e) return;
    if (e->sink) e->sink->close(e->sink);
    if (e->events_file) fclose(e->events_file);
    sm_run_lease_release(e->ws.root, e->run_id, e->lease);
    free_executors(e); /* first: an executor may close handles of its own on the loop */
    close_loop(e);
    for (int i = 0; i < e->nstages; i++) sm_submit_free_run(e->stages[i]);
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
