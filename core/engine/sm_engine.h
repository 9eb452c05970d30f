/* sm_engine.h - one pipeline run: the libuv loop, stage submission and admission, the plugin host API,
 * the stage cache and the lineage events (core/engine/README.md: the pieces). Loop thread only (plugins
 * run on worker threads or in stage processes). */
#ifndef SM_ENGINE_H
#define SM_ENGINE_H

#include <jansson.h>
#include <uv.h>
#include "sm_common.h"
#include "sm_events.h"
#include "sm_executor.h"
#include "sm_store.h"

typedef struct sm_engine sm_engine;

enum {
    SM_STAGE_QUEUED = 0,
    SM_STAGE_RUNNING = 1,
    SM_STAGE_SUCCEEDED = 2,
    SM_STAGE_REUSED = 3,
    SM_STAGE_FAILED = 4,
    SM_STAGE_CANCELLED = 5,
    SM_STAGE_PLANNED = 6 /* plan mode: would run */
};

/* Opens the lineage sink on the engine's loop for the workspace root: *sink NULL means no database; *dsn
 * (malloc'd, may stay NULL) is what sm_engine_dsn reports. Called once by sm_engine_create, unless planning. */
typedef int (*sm_sink_open_fn)(void *arg, uv_loop_t *loop, const char *workspace, sm_sink **sink, char **dsn,
                               sm_error *err);
/* Device memory (bytes) GPU stages may share; 0: no GPU. Called once, when a GPU stage first asks. */
typedef uint64_t (*sm_gpu_probe_fn)(void *arg);

typedef struct sm_engine_opts {
    const char *workspace;    /* NULL: $SCALEMIX_HOME or ./.scalemix */
    sm_sink_open_fn open_sink; /* NULL: no database */
    void *sink_arg;
    sm_gpu_probe_fn gpu_probe; /* NULL: no GPU budget (GPU stages are admitted like CPU ones) */
    void *gpu_arg;
    const char *executor;     /* executor of stages that name none: "local" (NULL) or one added with
                               * sm_engine_add_executor. "local" runs a stage on a thread, or in a process of
                               * its own when its resources ask for isolate */
    const char *events_path;  /* also append every event as a JSON line to this file (NULL: no) */
    int parallel;             /* most stages at once (0: number of CPU cores) */
    int threads;              /* CPU threads shared by running stages (0: number of CPU cores) */
    int plan;                 /* dry run: decide reuse/run per stage, run nothing, record nothing */
    const char *script_path;  /* as the user typed it */
    const char *script_sha256;
    const char *pipeline;     /* pipeline name (default: the script's base name) */
    json_t *params;           /* run parameters (borrowed) */
    const char *trigger;      /* "manual" (default), "schedule", "backfill" */
    const char *nominal_time; /* ISO 8601 or NULL */
    const char *schedule;     /* schedule name or NULL */
} sm_engine_opts;

/* Opens the workspace, the database sink and the loop, and (unless planning) records the run's start. */
int sm_engine_create(sm_engine **out, const sm_engine_opts *opts, sm_error *err);
/* Submits a stage run of plugin with params/inputs (JSON objects) under a stable stage name (for plan
 * explanations), on executor (NULL: the run's default). Returns a handle > 0, or a negative code with err
 * filled (unknown stage or executor, bad parameter). A cache hit (or a plan) completes at once; otherwise
 * the stage is queued and started when admitted. */
int sm_engine_submit(sm_engine *e, const char *plugin, const char *stage_name, const char *params_json,
                     const char *inputs_json, const char *executor, sm_error *err);
/* Adds an executor stages may name (the engine frees it); SM_ERR_ARG if its name is taken. */
int sm_engine_add_executor(sm_engine *e, sm_executor *x, sm_error *err);
/* The engine's loop, for executors and sinks created after the engine. */
uv_loop_t *sm_engine_loop(sm_engine *e);
/* Runs the loop until a submitted stage completes and returns its handle (each handle once), or 0 when
 * nothing is pending. */
int sm_engine_wait(sm_engine *e);
/* Turns the loop once without blocking (signals, stage messages): for a script computing between stage
 * calls. Never call from a loop callback. */
void sm_engine_poll(sm_engine *e);
/* Accessors for a handle (strings owned by the engine, valid until sm_engine_free). */
int sm_engine_stage_status(sm_engine *e, int h);
const char *sm_engine_stage_reason(sm_engine *e, int h);
const char *sm_engine_stage_error(sm_engine *e, int h);
const char *sm_engine_stage_name(sm_engine *e, int h);
const char *sm_engine_stage_run_id(sm_engine *e, int h);
const char *sm_engine_stage_result(sm_engine *e, int h);  /* canonical JSON object text */
const char *sm_engine_stage_outputs(sm_engine *e, int h); /* {name: {digest, path, kind, bytes, name}} */
const double *sm_engine_stage_f64(sm_engine *e, int h, const char *name, size_t *n);
/* An input artifact reference (JSON text) for a folder or a file outside the store, recorded in the lineage. */
const char *sm_engine_input(sm_engine *e, const char *path, int is_dir, sm_error *err);
/* Engine-level facts. */
const sm_workspace *sm_engine_workspace(sm_engine *e);
const char *sm_engine_run_id(sm_engine *e);
const char *sm_engine_dsn(sm_engine *e); /* NULL when no database */
int sm_engine_planning(sm_engine *e);
int sm_engine_cancelled(sm_engine *e);
/* Cancels the run as a first Ctrl-C does (running stages stop at their next check), without a message. */
void sm_engine_cancel(sm_engine *e);
void sm_engine_set_parallel(sm_engine *e, int n);
/* Emits a log line from the script. */
void sm_engine_log(sm_engine *e, int level, const char *msg);
/* Records the run's end (status SM_STAGE_SUCCEEDED / FAILED / CANCELLED), flushes the lineage. */
int sm_engine_finish(sm_engine *e, int status, const char *error);
void sm_engine_free(sm_engine *e);

#endif
