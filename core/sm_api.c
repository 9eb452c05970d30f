/* sm_api.c - the FFI surface over the run in progress (see sm_api.h). */
#include "sm_api.h"

#include <stdio.h>

#include "sched/sm_sched.h"

#include "sm_engine.h"
#include "model/sm_gpt2.h"
#include "sm_lua.h"

static sm_error last;

int sm_api_submit(const char *plugin, const char *stage_name, const char *params_json, const char *inputs_json,
                  const char *executor) {
    last.msg[0] = 0;
    return sm_engine_submit(sm_lua_engine(), plugin, stage_name, params_json, inputs_json, executor, &last);
}
int sm_api_wait(void) { return sm_engine_wait(sm_lua_engine()); }
int sm_api_status(int h) { return sm_engine_stage_status(sm_lua_engine(), h); }
const char *sm_api_reason(int h) { return sm_engine_stage_reason(sm_lua_engine(), h); }
const char *sm_api_stage_error(int h) { return sm_engine_stage_error(sm_lua_engine(), h); }
const char *sm_api_stage_run_id(int h) { return sm_engine_stage_run_id(sm_lua_engine(), h); }
const char *sm_api_result(int h) { return sm_engine_stage_result(sm_lua_engine(), h); }
const char *sm_api_outputs(int h) { return sm_engine_stage_outputs(sm_lua_engine(), h); }
const double *sm_api_result_f64(int h, const char *name, size_t *n) { return sm_engine_stage_f64(sm_lua_engine(), h, name, n); }
const char *sm_api_input(const char *path, int is_dir) {
    last.msg[0] = 0;
    return sm_engine_input(sm_lua_engine(), path, is_dir, &last);
}
const char *sm_api_error(void) { return last.msg; }
int sm_api_planning(void) { return sm_engine_planning(sm_lua_engine()); }
int sm_api_cancelled(void) { return sm_engine_cancelled(sm_lua_engine()); }
void sm_api_set_parallel(int n) { sm_engine_set_parallel(sm_lua_engine(), n); }
void sm_api_log(int level, const char *msg) { sm_engine_log(sm_lua_engine(), level, msg); }
const char *sm_api_run_id(void) { return sm_engine_run_id(sm_lua_engine()); }
const char *sm_api_workspace(void) { return sm_engine_workspace(sm_lua_engine())->root; }
const char *sm_api_dsn(void) { return sm_engine_dsn(sm_lua_engine()); }

int sm_api_gpu_devices(void) { return sm_gpt2_cuda_devices(NULL); }

int sm_api_schedule_declare(const char *spec_json) {
    last.msg[0] = 0;
    const char *dsn = sm_engine_dsn(sm_lua_engine());
    if (!dsn) return sm_error_set(&last, SM_ERR_DB, "schedules live in the lineage database, and this run has none (--db none)");
    return sm_sched_declare(dsn, spec_json, &last);
}
