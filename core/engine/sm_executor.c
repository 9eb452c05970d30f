/* sm_executor.c - what an executor may ask of a stage run (see sm_executor.h): its spec, its files in the
 * workspace, its external job record and its state events. */
#include <stdlib.h>
#include <string.h>

#include "sm_engine_int.h"

const char *sm_run_spec(sm_stage_run *r) {
    if (r->spec_text) return r->spec_text;
    json_t *spec = json_pack("{s:s, s:s, s:O, s:O, s:s, s:s, s:i, s:i}", "plugin_path", r->plugin->path, "plugin_sha256",
                             r->plugin->sha256, "params", r->params, "inputs", r->inputs, "workspace", r->eng->ws.root,
                             "scratch", r->scratch, "threads", r->granted_threads, "log_level", sm_log_get_level());
    r->spec_text = sm_json_canonical(spec);
    json_decref(spec);
    return r->spec_text;
}

const char *sm_run_key(sm_stage_run *r) { return r->key; }
const char *sm_run_id(sm_stage_run *r) { return r->stage_run_id; }
const char *sm_run_stage_name(sm_stage_run *r) { return r->stage_name; }
const sm_resources *sm_run_resources(sm_stage_run *r) { return &r->res; }
int sm_run_threads(sm_stage_run *r) { return r->granted_threads; }
const sm_workspace *sm_run_workspace(sm_stage_run *r) { return &r->eng->ws; }
uv_loop_t *sm_run_loop(sm_stage_run *r) { return &r->eng->loop; }
void *sm_run_data(sm_stage_run *r) { return r->xdata; }
void sm_run_set_data(sm_stage_run *r, void *data) { r->xdata = data; }

int sm_run_write_spec(sm_stage_run *r, char *spec_path, char *out_path, size_t cap, sm_error *err) {
    char dir[PATH_MAX];
    sm_workspace_path(&r->eng->ws, dir, sizeof dir, "exec");
    int rc = sm_mkdirs(dir, err);
    if (rc != SM_OK) return rc;
    if (snprintf(spec_path, cap, "%s/%s.spec.json", dir, r->key) >= (int)cap ||
        snprintf(out_path, cap, "%s/%s.%s.jsonl", dir, r->key, r->stage_run_id) >= (int)cap)
        return sm_error_set(err, SM_ERR_ARG, "workspace path %s is too long for a stage's files", dir);
    const char *spec = sm_run_spec(r);
    return sm_write_file_atomic(spec_path, spec, strlen(spec), 1, err);
}

int sm_run_record_job(sm_stage_run *r, const char *job_id, const char *out_path, const json_t *extra, sm_error *err) {
    json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:s}", "executor", r->x->name, "job_id", job_id ? job_id : "", "out",
                            out_path ? out_path : "", "stage_run_id", r->stage_run_id, "run_id", r->eng->run_id);
    if (!rec) return sm_error_set(err, SM_ERR_ARG, "job record of stage %s: job id or path is not valid UTF-8", r->stage_name);
    if (extra) json_object_update_missing(rec, (json_t *)extra);
    char path[PATH_MAX], dir[PATH_MAX];
    sm_workspace_path(&r->eng->ws, dir, sizeof dir, "exec");
    sm_workspace_path(&r->eng->ws, path, sizeof path, "exec/%s.job.json", r->key);
    char *text = sm_json_canonical(rec);
    json_decref(rec);
    int rc = text ? sm_mkdirs(dir, err) : sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    if (rc == SM_OK) rc = sm_write_file_atomic(path, text, strlen(text), 1, err);
    free(text);
    return rc;
}

void sm_run_state(sm_stage_run *r, const char *state, const char *job_id, const char *reason) {
    sm_ev_emit(r->eng, json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "type", "stage_state", "stage_run_id", r->stage_run_id,
                                 "state", state, "executor", sm_ev_executor(r), "job_id", job_id ? json_string(job_id) : json_null(),
                                 "reason", reason ? json_string(reason) : json_null(), "at", sm_ev_now()));
}
