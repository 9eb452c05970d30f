/* sm_executor.h - how a stage run is carried out: the interface between the engine (which decides what runs,
 * admits it and records it) and an executor (which makes it happen somewhere). Built in: "thread" (on an
 * engine worker thread) and "process" (a `scalemix stage-exec` child). core/engine/README.md describes how
 * to add one (e.g. Slurm). Every function here is called on the engine's loop thread unless it says so. */
#ifndef SM_EXECUTOR_H
#define SM_EXECUTOR_H

#include <jansson.h>
#include <uv.h>
#include "sm_plugin.h"
#include "sm_store.h"

typedef struct sm_stage_run sm_stage_run; /* one stage run, owned by the engine */
typedef struct sm_executor sm_executor;

struct sm_executor {
    const char *name; /* what --executor / a stage's executor option names: "slurm", ... */
    /* 1: runs elsewhere; admission counts its runs against --parallel only, not local threads or GPU memory */
    int remote;
    /* most runs one start() takes (>= 1). With batch > 1 the engine starts this executor's queued runs when
     * the script waits (sm_engine_wait), so runs submitted together (sm.async, a DDO budget) arrive in one
     * start() call; with 1 each starts at submission */
    int batch;
    /* Starts n >= 1 runs. Each run then ends exactly once through sm_run_end (later, on the loop); a run
     * the executor could not start is ended by it too. A negative return ends every run given with err. */
    int (*start)(sm_executor *x, sm_stage_run *const *runs, size_t n, sm_error *err);
    /* Asks a started run to stop (Ctrl-C): it ends later through sm_run_end, typically SM_ERR_CANCELLED. */
    void (*cancel)(sm_executor *x, sm_stage_run *r);
    /* Optional (NULL: none): takes over a run an earlier engine process started, from its record (see
     * sm_run_record_job). SM_OK: it ends later through sm_run_end; SM_ERR_NOTFOUND: that job is gone (the
     * engine starts the run afresh); other codes end the run with err. */
    int (*reattach)(sm_executor *x, sm_stage_run *r, const json_t *record, sm_error *err);
    /* Releases the executor after every run ended. */
    void (*free)(sm_executor *x);
    /* Optional (NULL: none): one line for `scalemix plan` on how a run that would run is started there
     * (the Slurm executor: its sbatch request). */
    int (*describe)(sm_executor *x, sm_stage_run *r, char *out, size_t cap);
    void *self; /* the executor's own state */
};

/* ---- what an executor may ask of a run ---- */
/* The self-contained spec `scalemix stage-exec` runs (canonical JSON text): plugin_path, plugin_sha256,
 * params, inputs, workspace, scratch, threads, log_level. Valid until the run ends. */
const char *sm_run_spec(sm_stage_run *r);
const char *sm_run_key(sm_stage_run *r);          /* cache key: names the run's files in the workspace */
const char *sm_run_id(sm_stage_run *r);           /* stage_run_id */
const char *sm_run_stage_name(sm_stage_run *r);
const sm_resources *sm_run_resources(sm_stage_run *r);
int sm_run_threads(sm_stage_run *r);              /* CPU threads granted */
const sm_workspace *sm_run_workspace(sm_stage_run *r);
uv_loop_t *sm_run_loop(sm_stage_run *r);
void *sm_run_data(sm_stage_run *r);               /* the executor's per-run pointer (NULL at first) */
void sm_run_set_data(sm_stage_run *r, void *data);

/* Hands the engine one host call message the stage sent ({"t": ...}, as sm_wire decodes it; borrowed).
 * Any thread. A "done" message records the stage's own outcome for sm_run_outcome. */
int sm_run_message(sm_stage_run *r, const json_t *msg);
/* sm_run_message in the shape sm_wire_lines / sm_wire_tail call (run is the sm_stage_run). */
void sm_run_deliver(void *run, const json_t *msg);
/* 1 once the stage's "done" message arrived, with its code and message; 0 before. */
int sm_run_outcome(sm_stage_run *r, int *rc, const char **msg);
/* Ends the run: rc SM_OK (succeeded), SM_ERR_CANCELLED, or another code with msg. Once per run. */
void sm_run_end(sm_stage_run *r, int rc, const char *msg);

/* Paths for the file transport of this run: the spec (written by this call) and the out file the stage's
 * process appends its host calls to (`scalemix stage-exec --spec SPEC --out OUT`), both under
 * <workspace>/exec/. The out file name carries the stage run id, so a re-run never reads an old one. */
int sm_run_write_spec(sm_stage_run *r, char *spec_path, char *out_path, size_t cap, sm_error *err);
/* Records an external job for this run's cache key in <workspace>/exec/<key>.job.json (atomically):
 * {executor, job_id, out, stage_run_id, run_id} plus the fields of extra (may be NULL). An engine started
 * later finds it (the record is removed when the run ends) and calls the executor's reattach with it. */
int sm_run_record_job(sm_stage_run *r, const char *job_id, const char *out_path, const json_t *extra, sm_error *err);
/* Emits a stage_state event: state "submitted" | "pending" | "running", job_id and reason may be NULL. */
void sm_run_state(sm_stage_run *r, const char *state, const char *job_id, const char *reason);

/* The built-in executors (the engine creates them). */
int sm_exec_thread_create(sm_executor **out, sm_error *err);
int sm_exec_process_create(sm_executor **out, sm_error *err);

#endif
