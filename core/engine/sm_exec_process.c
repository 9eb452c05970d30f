/* sm_exec_process.c - the "process" executor: a stage runs in a `scalemix stage-exec` child of the engine
 * (its own address space and CUDA context), the spec on its stdin, its host calls as JSON lines on its
 * stdout pipe (sm_wire.h). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "sm_engine_int.h"
#include "sm_wire.h"

typedef struct child {
    stage_run *sr;
    uv_process_t proc;
    uv_pipe_t pin, pout;
    uv_write_t wreq;
    int exited, eof, open_handles;
    char exit_msg[PATH_MAX + 128];
    char *buf;
    size_t len, cap;
} child;

static void child_closed(uv_handle_t *hd) {
    child *c = hd->data;
    if (--c->open_handles) return;
    stage_run *sr = c->sr;
    int rc;
    const char *msg;
    if (!sm_run_outcome(sr, &rc, &msg)) { /* no final status: the process's end says why */
        rc = SM_ERR_PLUGIN;
        msg = c->exit_msg[0] ? c->exit_msg : "the stage's process ended without reporting a result";
    }
    sm_run_set_data(sr, NULL);
    sm_run_end(sr, rc, msg);
    free(c->buf);
    free(c);
}

/* Finishes once the process has exited and its output is read to the end. */
static void maybe_done(child *c) {
    if (!c->exited || !c->eof) return;
    uv_close((uv_handle_t *)&c->proc, child_closed);
    uv_close((uv_handle_t *)&c->pout, child_closed);
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf) {
    child *c = hd->data;
    if (c->cap - c->len < suggested) {
        char *nb = realloc(c->buf, c->len + suggested);
        if (nb) {
            c->buf = nb;
            c->cap = c->len + suggested;
        }
    }
    buf->base = c->buf + c->len;
    buf->len = c->cap - c->len;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
    (void)buf;
    child *c = st->data;
    if (n > 0) {
        c->len += (size_t)n;
        size_t used = sm_wire_lines(c->buf, c->len, sm_run_deliver, c->sr);
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
    } else if (n < 0) {
        uv_read_stop(st);
        c->eof = 1;
        maybe_done(c);
    }
}

static void on_child_exit(uv_process_t *p, int64_t status, int signal) {
    child *c = p->data;
    if (signal)
        snprintf(c->exit_msg, sizeof c->exit_msg, "the stage's process (pid %d) was killed by signal %d (%s)", p->pid, signal,
                 strsignal(signal));
    else
        snprintf(c->exit_msg, sizeof c->exit_msg, "the stage's process (pid %d) exited with status %lld before reporting a result",
                 p->pid, (long long)status);
    c->exited = 1;
    maybe_done(c);
}

static void spec_written(uv_write_t *w, int status) {
    child *c = w->data;
    (void)status; /* a failed write shows up as the child's error */
    uv_close((uv_handle_t *)&c->pin, child_closed);
}

static int start_one(stage_run *sr, sm_error *err) {
    uv_loop_t *loop = sm_run_loop(sr);
    child *c = calloc(1, sizeof *c);
    if (!c) return sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    c->sr = sr;
    char exe[PATH_MAX + 16];
    snprintf(exe, sizeof exe, "%s/scalemix", sm_build_dir());
    char *args[] = {exe, "stage-exec", NULL};
    uv_pipe_init(loop, &c->pin, 0);
    uv_pipe_init(loop, &c->pout, 0);
    c->pin.data = c->pout.data = c->proc.data = c->wreq.data = c;
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&c->pin},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&c->pout},
        {.flags = UV_INHERIT_FD, .data.fd = 2}};
    uv_process_options_t po = {.exit_cb = on_child_exit, .file = exe, .args = args, .stdio_count = 3, .stdio = stdio};
    int rc = uv_spawn(loop, &c->proc, &po);
    if (rc != 0) {
        /* the pipes close on the loop later; c is freed with them, not here */
        c->open_handles = 2;
        c->exited = c->eof = 1;
        snprintf(c->exit_msg, sizeof c->exit_msg, "cannot start %s stage-exec for an isolated stage: %s", exe, uv_strerror(rc));
        sm_run_set_data(sr, c);
        uv_close((uv_handle_t *)&c->pin, child_closed);
        uv_close((uv_handle_t *)&c->pout, child_closed);
        return SM_OK;
    }
    c->open_handles = 3;
    sm_run_set_data(sr, c);
    const char *spec = sm_run_spec(sr);
    uv_buf_t b = uv_buf_init((char *)spec, (unsigned)strlen(spec));
    /* On a synchronous failure no callback comes: close stdin here; the child then reports a bad spec. */
    if (uv_write(&c->wreq, (uv_stream_t *)&c->pin, &b, 1, spec_written) != 0) uv_close((uv_handle_t *)&c->pin, child_closed);
    uv_read_start((uv_stream_t *)&c->pout, on_alloc, on_read);
    return SM_OK;
}

static int start(sm_executor *x, sm_stage_run *const *runs, size_t n, sm_error *err) {
    (void)x;
    for (size_t i = 0; i < n; i++) start_one(runs[i], err);
    return SM_OK;
}

static void cancel(sm_executor *x, sm_stage_run *r) {
    (void)x;
    child *c = sm_run_data(r);
    if (c && !c->exited) uv_process_kill(&c->proc, SIGINT);
}

static void xfree(sm_executor *x) { free(x); }

int sm_exec_process_create(sm_executor **out, sm_error *err) {
    sm_executor *x = calloc(1, sizeof *x);
    if (!x) return sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    *x = (sm_executor){.name = "process", .batch = 1, .start = start, .cancel = cancel, .free = xfree};
    *out = x;
    return SM_OK;
}
