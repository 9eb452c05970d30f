/* sm_api.h - the engine's public C API for Lua scripts, bound through LuaJIT's FFI by lua/scalemix.lua
 * (which repeats these declarations in ffi.cdef: keep the two in step). Every function acts on the run in
 * progress in this process; strings returned are owned by the engine and stay valid for the whole run. */
#ifndef SM_API_H
#define SM_API_H

#include <stddef.h>

/* Submits a stage on executor (NULL: the run's default); returns a handle > 0, or a negative code with
 * sm_api_error() set. */
int sm_api_submit(const char *plugin, const char *stage_name, const char *params_json, const char *inputs_json,
                  const char *executor);
/* Runs the loop until a stage completes; returns its handle, or 0 when nothing is pending. */
int sm_api_wait(void);
/* Status of a handle: 0 queued, 1 running, 2 succeeded, 3 reused, 4 failed, 5 cancelled, 6 planned. */
int sm_api_status(int handle);
const char *sm_api_reason(int handle);
const char *sm_api_stage_error(int handle);
const char *sm_api_stage_run_id(int handle);
const char *sm_api_result(int handle);
const char *sm_api_outputs(int handle);
/* A named double array of a stage's result, without copying; NULL and *n = 0 if absent. */
const double *sm_api_result_f64(int handle, const char *name, size_t *n);
/* An artifact reference (JSON) for a folder (is_dir = 1) or file outside the store; NULL on error. */
const char *sm_api_input(const char *path, int is_dir);
/* The message of the last failed call. */
const char *sm_api_error(void);
int sm_api_planning(void);
int sm_api_cancelled(void);
void sm_api_set_parallel(int n);
void sm_api_log(int level, const char *msg);
const char *sm_api_run_id(void);
const char *sm_api_workspace(void);
/* Usable CUDA devices (0 when the CUDA backend is not built or no GPU is present). */
int sm_api_gpu_devices(void);
/* Creates or updates a schedule (JSON spec, see core/sched/sm_sched.h) in this run's lineage database;
 * 0 or a negative code with sm_api_error() set. */
int sm_api_schedule_declare(const char *spec_json);
/* The lineage database's connection string, or NULL when the run has none. */
const char *sm_api_dsn(void);

#endif
