/* sm_exec_thread.c - the "thread" executor: a stage runs on a worker thread of the engine's loop, its host
 * calls handed to the engine's dispatch directly. */
#include <stdlib.h>

#include "sm_engine_int.h"

static int send_direct(void *ctx, const json_t *msg) { return sm_run_message(ctx, msg); }

static void work_cb(uv_work_t *w) {
    stage_run *sr = w->data;
    sr->rc = sm_host_run(&sr->host, sr->plugin, sr->inputs, sr->params_text, sr->inputs_text, &sr->err);
}

static void after_work_cb(uv_work_t *w, int status) {
    stage_run *sr = w->data;
    int rc = status == UV_ECANCELED ? SM_ERR_CANCELLED : sr->rc;
    sm_host_fini(&sr->host); /* a failed stage's scratch folder stays for a resume; its lock goes */
    sm_run_end(sr, rc, sr->err.msg);
}

static int start(sm_executor *x, sm_stage_run *const *runs, size_t n, sm_error *err) {
    (void)x;
    (void)err;
    for (size_t i = 0; i < n; i++) {
        stage_run *sr = runs[i];
        sm_host_init(&sr->host, &sr->eng->ws, sr->scratch, sr->granted_threads, sm_log_get_level(), &sr->eng->cancel,
                     send_direct, sr);
        sr->work.data = sr;
        uv_queue_work(&sr->eng->loop, &sr->work, work_cb, after_work_cb);
    }
    return SM_OK;
}

static void cancel(sm_executor *x, sm_stage_run *r) {
    (void)x;
    atomic_store(&r->host.cancel, 1);
}

static void xfree(sm_executor *x) { free(x); }

int sm_exec_thread_create(sm_executor **out, sm_error *err) {
    sm_executor *x = calloc(1, sizeof *x);
    if (!x) return sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    *x = (sm_executor){.name = "thread", .batch = 1, .start = start, .cancel = cancel, .free = xfree};
    *out = x;
    return SM_OK;
}
