/* sm_exec_slurm.c - the "slurm" executor (sm_exec_slurm.h). Runs handed over by start() wait one loop turn
 * in a submission window, then go to sbatch grouped by plugin and resources: a group of several is one job
 * array. Each run's job appends its host calls to its out file in the shared workspace (the file transport,
 * sm_run_write_spec); a timer tails those files, asks squeue about every job in one call, emits stage_state
 * events, and ends a run on its stage's final status or, failing that, on Slurm's account of the job. Job ids
 * are recorded per cache key (sm_run_record_job), so an engine started after a SIGKILL re-attaches to the
 * jobs still running instead of submitting them again. */
#include "sm_exec_slurm.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sm_display.h"
#include "sm_wire.h"

#define TICK_MS 100         /* out files are tailed this often */
#define QUERY_EVERY_S 1.0   /* squeue is asked this often */
#define UNKNOWN_STRIKES 3   /* polls a job may be unknown to Slurm without a final status before its run fails */

enum { ST_NONE, ST_SUBMITTED, ST_PENDING, ST_RUNNING };

typedef struct sjob {
    sm_stage_run *r;
    char id[32];
    char spec[PATH_MAX], out[PATH_MAX];
    uint64_t offset;
    int state;      /* the last stage_state event sent */
    int cancel;     /* this run asked Slurm to cancel it */
    int cancel_sent;
    int requeued;
    int strikes;    /* consecutive polls Slurm did not know the job */
    int wait_slurm; /* the stage said "cancelled" without our asking: wait for Slurm's reason */
    struct sjob *next;
} sjob;

typedef struct slurm_x {
    sm_exec_slurm_opts o;
    char **extra; /* owned copies behind o.slurm */
    char *partition, *account, *time_limit;
    uv_timer_t timer;
    int timer_init, timer_on;
    double last_query;
    double warned_query;
    sjob *window; /* handed over, not submitted yet */
    sjob *active; /* submitted or re-attached, not ended */
    sm_executor *x;
} slurm_x;

/* ---------- ending runs ---------- */

static void unlink_job(sjob **list, sjob *j) {
    for (sjob **p = list; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            return;
        }
}

static void end_job(slurm_x *s, sjob **list, sjob *j, int rc, const char *msg) {
    unlink_job(list, j);
    if (rc == SM_OK) { /* what the run said is in the engine now; a failed run's files stay for a look */
        char log[PATH_MAX];
        sm_workspace_path(sm_run_workspace(j->r), log, sizeof log, "exec/slurm/%s.log", j->id);
        unlink(log);
        unlink(j->out);
        if (j->spec[0]) unlink(j->spec);
    }
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", msg ? msg : "");
    sm_stage_run *r = j->r;
    sm_run_set_data(r, NULL);
    free(j);
    (void)s;
    sm_run_end(r, rc, copy);
}

/* ---------- submission ---------- */

static const char job_script[] =
    "#!/bin/sh\n"
    "# scalemix: one stage run per Slurm job or array task. Arguments: the scalemix executable, then a spec\n"
    "# and an out file per task; task i (SLURM_ARRAY_TASK_ID, 0 for a single job) runs the i-th pair.\n"
    "exe=$1\n"
    "shift\n"
    "i=${SLURM_ARRAY_TASK_ID:-0}\n"
    "shift $((2 * i))\n"
    "exec \"$exe\" stage-exec --spec \"$1\" --out \"$2\"\n";

/* <workspace>/exec/slurm/job.sh (written when absent or different) and the folder of job logs. */
static int job_files(const sm_workspace *ws, char *script, char *logdir, size_t cap, sm_error *err) {
    sm_workspace_path(ws, logdir, cap, "exec/slurm");
    int rc = sm_mkdirs(logdir, err);
    if (rc != SM_OK) return rc;
    if (snprintf(script, cap, "%s/job.sh", logdir) >= (int)cap)
        return sm_error_set(err, SM_ERR_ARG, "workspace path %s is too long", logdir);
    char buf[sizeof job_script];
    FILE *f = fopen(script, "r");
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    if (n == sizeof job_script - 1 && !memcmp(buf, job_script, n)) return SM_OK;
    return sm_write_file_atomic(script, job_script, sizeof job_script - 1, 1, err);
}

/* The family of a stage name: what precedes its last '/' or '#' ("ddo/n1" of "ddo/n1/code x3"), the
 * whole name when it has neither. */
static size_t family_len(const char *name) {
    const char *a = strrchr(name, '/'), *b = strrchr(name, '#');
    const char *cut = a > b ? a : b;
    return cut && cut != name ? (size_t)(cut - name) : strlen(name);
}

/* Runs that go as one array: the same plugin, the same resources and the same family of stage names (the
 * 2m+1 DDO runs of one budget). */
static int same_group(sm_stage_run *a, sm_stage_run *b) {
    const sm_resources *ra = sm_run_resources(a), *rb = sm_run_resources(b);
    if (ra->threads != rb->threads || ra->gpu != rb->gpu) return 0;
    const char *na = sm_run_stage_name(a), *nb = sm_run_stage_name(b);
    size_t la = family_len(na);
    if (la != family_len(nb) || strncmp(na, nb, la)) return 0;
    json_t *sa = json_loads(sm_run_spec(a), 0, NULL), *sb = json_loads(sm_run_spec(b), 0, NULL);
    const char *pa = json_string_value(json_object_get(sa, "plugin_path"));
    const char *pb = json_string_value(json_object_get(sb, "plugin_path"));
    int same = pa && pb && !strcmp(pa, pb);
    json_decref(sa);
    json_decref(sb);
    return same;
}

static void request_for(slurm_x *s, sm_stage_run *r, sm_slurm_request *req) {
    const sm_resources *res = sm_run_resources(r);
    req->cpus = res->threads < 1 ? 1 : res->threads;
    req->gpus = res->gpu ? 1 : 0;
    req->mem_bytes = s->o.mem_bytes ? s->o.mem_bytes : res->host_memory_bytes; /* --slurm-mem, for every job, wins */
}

/* Submits group[0..n) as one job (n = 1) or one array; every run either becomes active or ends. */
static void submit_group(slurm_x *s, sjob **group, size_t n) {
    sm_stage_run *r0 = group[0]->r;
    sm_error err = {0};
    char script[PATH_MAX], logdir[PATH_MAX], log[PATH_MAX + 32], name[96];
    int rc = job_files(sm_run_workspace(r0), script, logdir, sizeof script, &err);
    const char **args = calloc(2 * n + 1, sizeof *args);
    char exe[PATH_MAX + 16];
    snprintf(exe, sizeof exe, "%s/scalemix", sm_build_dir());
    if (!args && rc == SM_OK) rc = sm_error_set(&err, SM_ERR_NOMEM, "out of memory");
    for (size_t i = 0; rc == SM_OK && i < n; i++) {
        rc = sm_run_write_spec(group[i]->r, group[i]->spec, group[i]->out, PATH_MAX, &err);
        args[1 + 2 * i] = group[i]->spec;
        args[2 + 2 * i] = group[i]->out;
    }
    char id[32] = "";
    if (rc == SM_OK) {
        args[0] = exe;
        /* the job is named after the stage (a single run) or the stages' family (an array) */
        const char *sn = sm_run_stage_name(r0);
        size_t len = n == 1 ? strlen(sn) : family_len(sn);
        snprintf(name, sizeof name, "sm:%.*s", (int)(len > 80 ? 80 : len), sn);
        snprintf(log, sizeof log, "%s/%s.log", logdir, n > 1 ? "%A_%a" : "%j");
        sm_slurm_request req = {.job_name = name, .array_size = n > 1 ? (int)n : 0, .log_path = log, .script = script,
                                .script_args = args, .n_script_args = 2 * n + 1};
        request_for(s, r0, &req);
        rc = sm_slurm_submit(&s->o.slurm, &req, id, &err);
    }
    free(args);
    for (size_t i = 0; i < n; i++) {
        sjob *j = group[i];
        if (rc != SM_OK) {
            end_job(s, &s->window, j, rc, err.msg);
            continue;
        }
        if (n > 1) snprintf(j->id, sizeof j->id, "%.20s_%u", id, (unsigned)i % 100000u);
        else snprintf(j->id, sizeof j->id, "%s", id);
        unlink_job(&s->window, j);
        j->next = s->active;
        s->active = j;
        json_t *extra = json_pack("{s:s, s:s}", "spec", j->spec, "slurm_job", id);
        sm_error rerr = {0};
        if (sm_run_record_job(j->r, j->id, j->out, extra, &rerr) != SM_OK)
            sm_display_line(SM_LOG_WARN, sm_run_stage_name(j->r), "job %s not recorded (a re-run could not re-attach): %s",
                            j->id, rerr.msg);
        json_decref(extra);
        j->state = ST_SUBMITTED;
        sm_run_state(j->r, "submitted", j->id, NULL);
        sm_display_line(SM_LOG_INFO, sm_run_stage_name(j->r), "submitted to Slurm as job %s", j->id);
    }
}

/* Submits every run in the window, grouped. */
static void flush_window(slurm_x *s) {
    while (s->window) {
        sjob *group[64];
        size_t n = 0;
        for (sjob *j = s->window; j && n < SM_ARRAY_LEN(group); j = j->next)
            if (n == 0 || same_group(group[0]->r, j->r)) group[n++] = j;
        if (group[0]->cancel) {
            end_job(s, &s->window, group[0], SM_ERR_CANCELLED, "cancelled before it was submitted");
            continue;
        }
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (!group[i]->cancel) group[m++] = group[i];
        submit_group(s, group, m);
    }
}

/* ---------- watching ---------- */

/* Reads what the job's stage appended since the last look. */
static void tail(sjob *j) {
    sm_error err = {0};
    int rc = sm_wire_tail(j->out, &j->offset, sm_run_deliver, j->r, &err);
    if (rc != SM_OK && rc != SM_ERR_NOTFOUND) sm_display_line(SM_LOG_WARN, sm_run_stage_name(j->r), "%s", err.msg);
}

/* Ends j when its stage reported its final status; 1 if it did. */
static int ended_by_stage(slurm_x *s, sjob *j) {
    int rc;
    const char *msg;
    if (j->wait_slurm || !sm_run_outcome(j->r, &rc, &msg)) return 0;
    if (rc == SM_ERR_CANCELLED && !j->cancel) { /* a signal from Slurm, not from this run: say what Slurm says */
        j->wait_slurm = 1;
        return 0;
    }
    end_job(s, &s->active, j, rc, msg);
    return 1;
}

/* Resubmits j alone (requeue once). */
static void requeue(slurm_x *s, sjob *j, const char *why) {
    sm_display_line(SM_LOG_WARN, sm_run_stage_name(j->r), "%s; submitting it once more (--slurm-requeue)", why);
    unlink_job(&s->active, j);
    /* the new job appends to a fresh out file (sm_run_write_spec names it again) after the old one is set aside */
    char old[PATH_MAX + 16];
    snprintf(old, sizeof old, "%s.failed", j->out);
    rename(j->out, old);
    j->offset = 0;
    j->requeued = 1;
    j->state = ST_NONE;
    j->next = s->window;
    s->window = j;
    sjob *one[1] = {j};
    submit_group(s, one, 1);
}

/* Slurm's account of a job whose stage gave no final status. */
static void ended_by_slurm(slurm_x *s, sjob *j, const sm_slurm_job *q) {
    char why[512];
    sm_slurm_describe(q, why, sizeof why);
    if (j->cancel) {
        end_job(s, &s->active, j, SM_ERR_CANCELLED, why);
        return;
    }
    if (q->status == SM_SLURM_UNKNOWN && ++j->strikes < UNKNOWN_STRIKES) return;
    int stage_done = !j->wait_slurm;
    if (s->o.requeue && !j->requeued && stage_done &&
        (q->retryable || (q->status == SM_SLURM_FAILED && q->signal) || q->status == SM_SLURM_UNKNOWN)) {
        requeue(s, j, why);
        return;
    }
    char msg[1024], log[PATH_MAX];
    sm_workspace_path(sm_run_workspace(j->r), log, sizeof log, "exec/slurm/%s.log", j->id);
    if (q->status == SM_SLURM_COMPLETED)
        snprintf(msg, sizeof msg, "%.400s, but its stage wrote no final status to %.250s (job log: %.250s)", why, j->out, log);
    else
        snprintf(msg, sizeof msg, "%.400s%s (job log: %.250s)", why, stage_done ? "" : "; the stage stopped on Slurm's signal", log);
    end_job(s, &s->active, j, SM_ERR_PLUGIN, msg);
}

static void send_state(sjob *j, const sm_slurm_job *q) {
    char why[512];
    if (q->status == SM_SLURM_PENDING && j->state < ST_PENDING) {
        j->state = ST_PENDING;
        sm_run_state(j->r, "pending", j->id, q->reason[0] && strcmp(q->reason, "None") ? q->reason : NULL);
    } else if (q->status == SM_SLURM_RUNNING && j->state < ST_RUNNING) {
        j->state = ST_RUNNING;
        snprintf(why, sizeof why, "on %s", q->node[0] ? q->node : "a node");
        sm_run_state(j->r, "running", j->id, why);
    }
}

static void query(slurm_x *s) {
    size_t n = 0;
    for (sjob *j = s->active; j; j = j->next) n++;
    if (!n) return;
    sm_slurm_job *q = calloc(n, sizeof *q);
    sjob **js = calloc(n, sizeof *js);
    if (!q || !js) {
        free(q);
        free(js);
        return;
    }
    size_t i = 0;
    for (sjob *j = s->active; j; j = j->next, i++) {
        js[i] = j;
        snprintf(q[i].id, sizeof q[i].id, "%s", j->id);
    }
    sm_error err = {0};
    if (sm_slurm_query(q, n, &err) != SM_OK) {
        /* the controller may be restarting: say so once a minute, keep polling */
        if (sm_monotonic() - s->warned_query > 60) {
            sm_display_line(SM_LOG_WARN, NULL, "Slurm does not answer (will keep asking): %s", err.msg);
            s->warned_query = sm_monotonic();
        }
    } else {
        for (i = 0; i < n; i++) {
            sjob *j = js[i];
            if (q[i].status != SM_SLURM_UNKNOWN) j->strikes = 0;
            if (q[i].status == SM_SLURM_PENDING || q[i].status == SM_SLURM_RUNNING) {
                send_state(j, &q[i]);
                continue;
            }
            tail(j); /* the job ended: whatever its stage wrote is there now */
            if (!ended_by_stage(s, j)) ended_by_slurm(s, j, &q[i]);
        }
    }
    free(q);
    free(js);
}

/* scancel every job whose run asked to stop, in one call. */
static void send_cancels(slurm_x *s) {
    const char *ids[256];
    size_t n = 0;
    for (sjob *j = s->active; j && n < SM_ARRAY_LEN(ids); j = j->next)
        if (j->cancel && !j->cancel_sent) {
            ids[n++] = j->id;
            j->cancel_sent = 1;
        }
    sm_error err = {0};
    if (n && sm_slurm_cancel(ids, n, &err) != SM_OK) sm_display_line(SM_LOG_WARN, NULL, "%s", err.msg);
}

static void on_tick(uv_timer_t *t) {
    slurm_x *s = t->data;
    flush_window(s);
    send_cancels(s);
    for (sjob *j = s->active, *next; j; j = next) {
        next = j->next;
        tail(j);
        ended_by_stage(s, j);
    }
    if (sm_monotonic() - s->last_query >= QUERY_EVERY_S) {
        s->last_query = sm_monotonic();
        query(s);
    }
    if (!s->window && !s->active) {
        uv_timer_stop(&s->timer);
        s->timer_on = 0;
    }
}

static void arm(slurm_x *s) {
    if (s->timer_on) return;
    s->timer_on = 1;
    /* the first tick comes at the next loop turn: what the script hands over until then is one window */
    uv_timer_start(&s->timer, on_tick, 0, TICK_MS);
}

static int ensure_timer(slurm_x *s, sm_stage_run *r, sm_error *err) {
    if (s->timer_init) return SM_OK;
    int rc = uv_timer_init(sm_run_loop(r), &s->timer);
    if (rc) return sm_error_set(err, SM_ERR_INTERNAL, "slurm executor: timer: %s", uv_strerror(rc));
    s->timer.data = s;
    s->timer_init = 1;
    return SM_OK;
}

/* ---------- the executor interface ---------- */

static int start(sm_executor *x, sm_stage_run *const *runs, size_t n, sm_error *err) {
    slurm_x *s = x->self;
    int rc = ensure_timer(s, runs[0], err);
    if (rc != SM_OK) return rc;
    sjob **tail_p = &s->window;
    while (*tail_p) tail_p = &(*tail_p)->next;
    for (size_t i = 0; i < n; i++) {
        sjob *j = calloc(1, sizeof *j);
        if (!j) {
            sm_run_end(runs[i], SM_ERR_NOMEM, "out of memory");
            continue;
        }
        j->r = runs[i];
        sm_run_set_data(runs[i], j);
        *tail_p = j;
        tail_p = &j->next;
    }
    arm(s);
    return SM_OK;
}

static void cancel(sm_executor *x, sm_stage_run *r) {
    slurm_x *s = x->self;
    sjob *j = sm_run_data(r);
    if (!j) return;
    j->cancel = 1;
    arm(s); /* the next tick sends one scancel for every run that asked */
}

/* Looks for the stage's final status in the out file without delivering anything. */
static void peek_done(void *ctx, const json_t *msg) {
    const char *t = json_string_value(json_object_get(msg, "t"));
    if (t && !strcmp(t, "done")) *(int *)ctx = 1;
}

static int reattach(sm_executor *x, sm_stage_run *r, const json_t *record, sm_error *err) {
    slurm_x *s = x->self;
    const char *id = json_string_value(json_object_get(record, "job_id"));
    const char *out = json_string_value(json_object_get(record, "out"));
    const char *spec = json_string_value(json_object_get(record, "spec"));
    if (!id || !*id || !out || !*out || strlen(id) >= 32 || strlen(out) >= PATH_MAX) return SM_ERR_NOTFOUND;
    int done = 0;
    uint64_t off = 0;
    sm_wire_tail(out, &off, peek_done, &done, NULL);
    sm_slurm_job q = {0};
    snprintf(q.id, sizeof q.id, "%s", id);
    int rc = sm_slurm_query(&q, 1, err);
    if (rc != SM_OK) return rc;
    /* a job that ended without its stage's final status belonged to the earlier run: start afresh */
    if (!done && q.status != SM_SLURM_PENDING && q.status != SM_SLURM_RUNNING) return SM_ERR_NOTFOUND;
    if ((rc = ensure_timer(s, r, err)) != SM_OK) return rc;
    sjob *j = calloc(1, sizeof *j);
    if (!j) return sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    j->r = r;
    snprintf(j->id, sizeof j->id, "%s", id);
    snprintf(j->out, sizeof j->out, "%s", out);
    snprintf(j->spec, sizeof j->spec, "%s", spec ? spec : "");
    j->state = ST_SUBMITTED;
    sm_run_set_data(r, j);
    j->next = s->active;
    s->active = j;
    char why[600];
    sm_slurm_describe(&q, why, sizeof why);
    sm_display_line(SM_LOG_INFO, sm_run_stage_name(r), "re-attached to Slurm job %s (%s)", id, why);
    if (q.status == SM_SLURM_PENDING || q.status == SM_SLURM_RUNNING) send_state(j, &q);
    s->last_query = sm_monotonic();
    arm(s);
    return SM_OK;
}

/* The sbatch request a run would get alone (runs handed over together share one, with --array). */
static int describe(sm_executor *x, sm_stage_run *r, char *out, size_t cap) {
    slurm_x *s = x->self;
    char script[PATH_MAX], name[96];
    sm_workspace_path(sm_run_workspace(r), script, sizeof script, "exec/slurm/job.sh");
    snprintf(name, sizeof name, "sm:%.80s", sm_run_stage_name(r));
    char exe[PATH_MAX + 16];
    snprintf(exe, sizeof exe, "%s/scalemix", sm_build_dir());
    const char *args[] = {exe, "SPEC", "OUT"};
    sm_slurm_request req = {.job_name = name, .script = script, .script_args = args, .n_script_args = 3};
    request_for(s, r, &req);
    char **argv;
    sm_error err = {0};
    int rc = sm_slurm_sbatch_argv(&s->o.slurm, &req, &argv, &err);
    if (rc != SM_OK) {
        snprintf(out, cap, "slurm: %s", err.msg);
        return SM_OK;
    }
    char *line = sm_slurm_argv_display(argv);
    sm_slurm_argv_free(argv);
    if (!line) return SM_ERR_NOMEM;
    snprintf(out, cap, "%s", line);
    free(line);
    return SM_OK;
}

static void closed(uv_handle_t *h) { free(h->data); }

static void xfree(sm_executor *x) {
    slurm_x *s = x->self;
    for (char **p = s->extra; p && *p; p++) free(*p);
    free(s->extra);
    free(s->partition);
    free(s->account);
    free(s->time_limit);
    if (s->timer_init) uv_close((uv_handle_t *)&s->timer, closed); /* s is freed once the loop let go of it */
    else free(s);
    free(x);
}

static char *dup_or_null(const char *v) { return v && *v ? strdup(v) : NULL; }

int sm_exec_slurm_create(sm_executor **out, const sm_exec_slurm_opts *o, sm_error *err) {
    slurm_x *s = calloc(1, sizeof *s);
    sm_executor *x = calloc(1, sizeof *x);
    char **extra = calloc(o->slurm.n_extra + 1, sizeof *extra);
    if (!s || !x || !extra) {
        free(s);
        free(x);
        free(extra);
        return sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    }
    s->o = *o;
    s->extra = extra;
    for (size_t i = 0; i < o->slurm.n_extra; i++) extra[i] = strdup(o->slurm.extra[i]);
    s->o.slurm.extra = (const char *const *)extra;
    s->o.slurm.partition = s->partition = dup_or_null(o->slurm.partition);
    s->o.slurm.account = s->account = dup_or_null(o->slurm.account);
    s->o.slurm.time_limit = s->time_limit = dup_or_null(o->slurm.time_limit);
    s->x = x;
    *x = (sm_executor){.name = "slurm", .remote = 1, .batch = 64, .start = start, .cancel = cancel, .reattach = reattach,
                       .free = xfree, .describe = describe, .self = s};
    *out = x;
    return SM_OK;
}
