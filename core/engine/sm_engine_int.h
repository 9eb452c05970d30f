/* sm_engine_int.h - what the engine's own files share: the run and stage-run structures and the functions
 * one concern offers the others. Not for code outside core/engine/. */
#ifndef SM_ENGINE_INT_H
#define SM_ENGINE_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "sm_cache.h"
#include "sm_engine.h"
#include "sm_host.h"
#include "sm_plugins.h"

typedef struct f64_array {
    char *name;
    double *v;
    size_t n;
} f64_array;

struct sm_stage_run {
    sm_engine *eng;
    int handle, status, reported;
    char stage_run_id[37], key[65];
    char *stage_name, *reason, *error_text;
    sm_plugin *plugin;
    sm_executor *x; /* the executor chosen at submission */
    void *xdata;    /* that executor's per-run state */
    json_t *params, *inputs, *parts;
    char *params_text, *inputs_text, *result_text, *outputs_text, *spec_text;
    sm_resources res;
    int granted_threads;
    char scratch[PATH_MAX];
    int rc;
    sm_error err;
    int done_seen, done_rc; /* the stage's own "done" message */
    char *done_msg;
    double started;
    /* written by host calls (any thread) under mu */
    pthread_mutex_t mu;
    json_t *result, *outputs;
    f64_array *arrays;
    size_t narrays;
    int log_lines, log_dropped; /* stage_log events emitted, and those over the cap */
    double prog_done, prog_total, prog_rate, prog_last_t, prog_last_done;
    char prog_unit[16];
    struct sm_stage_run *next_queued;
    sm_host host; /* the thread executor's host */
    uv_work_t work;
};
typedef struct sm_stage_run stage_run;

typedef struct inbox_msg {
    json_t *event; /* an event to emit, or NULL */
    char *log;     /* a log line, or NULL */
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
    stage_run **stages; /* by handle - 1 */
    int nstages, capstages;
    stage_run *queue_head, *queue_tail;
    int *done_fifo, done_head, done_tail, done_cap;
    int running, pending, threads_used, parallel, threads;
    int starting; /* inside sm_submit_try_start */
    plugin_slot *plugins;
    int nplugins;
    sm_executor **executors; /* [0] thread, [1] process, then those added */
    int nexecutors;
    pthread_mutex_t inbox_mu;
    inbox_msg *inbox_head, *inbox_tail;
    atomic_int cancel;
    int sigints;
    int gpu_probed, gpu_running;
    uint64_t gpu_budget, gpu_used; /* device memory the engine hands out to running GPU stages */
    json_t *inputs_seen;           /* path -> ref, so a folder is hashed once per run */
    char *last_input;
    int flushed;
    int lease; /* fd holding runs/<run_id>.lock while the process lives (-1: none) */
};

/* ---- events (sm_run_events.c) ---- */
/* Numbers and emits an event (steals it); nothing while planning. Loop thread. */
void sm_ev_emit(sm_engine *e, json_t *ev);
json_t *sm_ev_now(void);
/* From any thread: queues an event (stolen) or a log line (stolen) for the loop thread. */
void sm_ev_push(sm_engine *e, stage_run *sr, json_t *ev, int level, char *log);
/* Emits what the inbox holds. Loop thread. */
void sm_ev_drain(sm_engine *e);
void sm_ev_run_start(sm_engine *e);
/* stage_start (with its input edges) and stage_end. */
void sm_ev_stage_start(sm_engine *e, stage_run *sr, int reused);
void sm_ev_stage_end(sm_engine *e, stage_run *sr, const char *status);
/* A stage_log event for a line the stage logged (any thread): info and up (debug too with --verbose), even
 * under --quiet, at most 2,000 per stage
 * run; stage_end is preceded by one more saying how many were dropped. */
void sm_ev_stage_log(stage_run *sr, int level, const char *msg);
/* The executor as events name it: "local" for thread and process, else its name. */
const char *sm_ev_executor(stage_run *sr);

/* ---- host calls, the engine's side (sm_host_calls.c) ---- */
/* Records a stored object as output `name` of sr and queues its lineage events (meta borrowed, may be NULL). */
void sm_calls_record_output(stage_run *sr, const char *name, const char *digest, const char *path, const char *kind,
                            uint64_t bytes, const json_t *meta);
/* Adds a named f64 array to sr's result (copied). */
int sm_calls_add_f64(stage_run *sr, const char *name, const double *v, size_t n);

/* ---- submission and admission (sm_submit.c) ---- */
void sm_submit_try_start(sm_engine *e);
/* Sets the cancel flag and asks every executor to stop its running stages. */
void sm_submit_cancel_all(sm_engine *e);
stage_run *sm_submit_get(sm_engine *e, int h);
void sm_submit_free_run(stage_run *sr);

#endif
