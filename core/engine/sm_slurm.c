/* sm_slurm.c - Slurm's commands as functions: argv building, spawning with captured output, parsing. */
#include "sm_slurm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define SM_SLURM_CAPTURE_MAX (1u << 20)
/* What sm_slurm_query asks squeue for; sm_slurm_parse_squeue reads the fields in this order. */
#define SQUEUE_FORMAT "JobArrayID:|,JobID:|,State:|,Reason:|,exit_code:|,NodeList:|"

/* ---------- argv ---------- */

typedef struct argv_buf {
    char **v;
    size_t n, cap;
    int oom;
} argv_buf;

static void argv_push(argv_buf *a, const char *s) {
    if (a->oom) return;
    if (a->n + 2 > a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 32;
        char **v = realloc(a->v, cap * sizeof *v);
        if (!v) {
            a->oom = 1;
            return;
        }
        a->v = v;
        a->cap = cap;
    }
    char *c = strdup(s);
    if (!c) {
        a->oom = 1;
        return;
    }
    a->v[a->n++] = c;
    a->v[a->n] = NULL;
}

static void argv_pushf(argv_buf *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void argv_pushf(argv_buf *a, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    argv_push(a, buf);
}

static int argv_done(argv_buf *a, char ***out, sm_error *err) {
    if (a->oom) {
        sm_slurm_argv_free(a->v);
        return sm_error_set(err, SM_ERR_NOMEM, "slurm: out of memory building a command line");
    }
    *out = a->v;
    return SM_OK;
}

void sm_slurm_argv_free(char **argv) {
    if (!argv) return;
    for (char **p = argv; *p; p++) free(*p);
    free(argv);
}

static int given(const char *s) { return s && *s; }

int sm_slurm_sbatch_argv(const sm_slurm_opts *o, const sm_slurm_request *r, char ***argv_out, sm_error *err) {
    *argv_out = NULL;
    if (r->cpus < 1 || r->gpus < 0 || r->array_size < 0 || !given(r->script) || !given(r->job_name))
        return sm_error_set(err, SM_ERR_ARG, "slurm: invalid job request (cpus %d, gpus %d, array %d, script %s)", r->cpus,
                            r->gpus, r->array_size, given(r->script) ? r->script : "missing");
    for (size_t i = 0; i < o->n_extra; i++)
        if (!given(o->extra[i])) return sm_error_set(err, SM_ERR_ARG, "slurm: extra sbatch option %zu is empty", i + 1);
    argv_buf a = {0};
    argv_push(&a, "sbatch");
    argv_push(&a, "--parsable");
    argv_pushf(&a, "--job-name=%s", r->job_name);
    if (given(o->partition)) argv_pushf(&a, "--partition=%s", o->partition);
    if (given(o->account)) argv_pushf(&a, "--account=%s", o->account);
    if (given(o->time_limit)) argv_pushf(&a, "--time=%s", o->time_limit);
    argv_push(&a, "--nodes=1");
    argv_push(&a, "--ntasks=1");
    argv_pushf(&a, "--cpus-per-task=%d", r->cpus);
    if (r->mem_bytes) argv_pushf(&a, "--mem=%lluM", (unsigned long long)((r->mem_bytes + (1u << 20) - 1) >> 20));
    if (r->gpus) argv_pushf(&a, "--gres=gpu:%d", r->gpus);
    if (r->array_size) argv_pushf(&a, "--array=0-%d", r->array_size - 1);
    if (given(r->log_path)) {
        argv_pushf(&a, "--output=%s", r->log_path);
        argv_pushf(&a, "--error=%s", r->log_path);
    }
    if (given(r->workdir)) argv_pushf(&a, "--chdir=%s", r->workdir);
    /* the user's options last: where they repeat one of ours, sbatch takes theirs */
    for (size_t i = 0; i < o->n_extra; i++) argv_push(&a, o->extra[i]);
    argv_push(&a, r->script);
    for (size_t i = 0; i < r->n_script_args; i++) argv_push(&a, r->script_args[i]);
    return argv_done(&a, argv_out, err);
}

char *sm_slurm_argv_display(char *const *argv) {
    size_t cap = 1;
    for (char *const *p = argv; *p; p++) cap += strlen(*p) * 4 + 3;
    char *s = malloc(cap), *w = s;
    if (!s) return NULL;
    for (char *const *p = argv; *p; p++) {
        if (p != argv) *w++ = ' ';
        int plain = **p != 0;
        for (const char *c = *p; *c; c++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=.,:/%@+", *c)) plain = 0;
        if (plain) {
            w = stpcpy(w, *p);
            continue;
        }
        *w++ = '\'';
        for (const char *c = *p; *c; c++) w = *c == '\'' ? stpcpy(w, "'\\''") : (*w++ = *c, w);
        *w++ = '\'';
    }
    *w = 0;
    return s;
}

/* ---------- running a command ---------- */

typedef struct capture {
    char *buf;
    size_t n, cap;
} capture;

static int capture_add(capture *c, const char *data, size_t n) {
    if (c->n >= SM_SLURM_CAPTURE_MAX) return SM_OK; /* the rest is dropped */
    if (n > SM_SLURM_CAPTURE_MAX - c->n) n = SM_SLURM_CAPTURE_MAX - c->n;
    if (c->n + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->n + n + 1) cap *= 2;
        char *b = realloc(c->buf, cap);
        if (!b) return SM_ERR_NOMEM;
        c->buf = b;
        c->cap = cap;
    }
    memcpy(c->buf + c->n, data, n);
    c->n += n;
    c->buf[c->n] = 0;
    return SM_OK;
}

static char *capture_take(capture *c) {
    if (!c->buf) return strdup("");
    return c->buf;
}

int sm_slurm_run(char *const *argv, char **out, char **errout, int *status, sm_error *err) {
    *out = *errout = NULL;
    *status = -1;
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) {
        int e = errno;
        for (int i = 0; i < 2; i++) {
            if (po[i] >= 0) close(po[i]);
            if (pe[i] >= 0) close(pe[i]);
        }
        return sm_error_set(err, SM_ERR_IO, "slurm: cannot create a pipe for %s: %s", argv[0], strerror(e));
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(po[1]);
    close(pe[1]);
    if (rc) {
        close(po[0]);
        close(pe[0]);
        return sm_error_set(err, SM_ERR_IO, "slurm: cannot run %s: %s (is Slurm installed and on PATH?)", argv[0],
                            strerror(rc));
    }
    capture co = {0}, ce = {0};
    struct pollfd fds[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    int open_fds = 2, nomem = 0;
    while (open_fds) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[8192];
            ssize_t r = read(fds[i].fd, buf, sizeof buf);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
                continue;
            }
            if (capture_add(i ? &ce : &co, buf, (size_t)r) != SM_OK) nomem = 1;
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0) close(fds[i].fd);
    int ws;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    *status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    if (nomem) {
        free(co.buf);
        free(ce.buf);
        return sm_error_set(err, SM_ERR_NOMEM, "slurm: out of memory reading the output of %s", argv[0]);
    }
    *out = capture_take(&co);
    *errout = capture_take(&ce);
    return SM_OK;
}

/* The first line of s without trailing blanks. */
static void first_line(const char *s, char *out, size_t cap) {
    size_t n = strcspn(s, "\n");
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\r')) n--;
    if (n >= cap) n = cap - 1;
    memcpy(out, s, n);
    out[n] = 0;
}

/* A command's message for people: its lines joined with "; " (sbatch explains over several lines). */
static void message_of(const char *s, char *out, size_t cap) {
    size_t w = 0;
    out[0] = 0;
    for (const char *p = s; *p && w + 3 < cap;) {
        char line[512];
        first_line(p, line, sizeof line);
        p += strcspn(p, "\n");
        if (*p) p++;
        if (!line[0]) continue;
        w += (size_t)snprintf(out + w, cap - w, "%s%s", w ? "; " : "", line);
    }
    if (w >= cap) out[cap - 1] = 0;
}

/* Runs argv; a non-zero exit is SM_ERR_IO carrying the command's stderr (out and errout are then NULL). */
static int run_checked(char *const *argv, char **out, char **errout, sm_error *err) {
    int status;
    int rc = sm_slurm_run(argv, out, errout, &status, err);
    if (rc != SM_OK) return rc;
    if (status != 0) {
        char line[768];
        message_of(**errout ? *errout : *out, line, sizeof line);
        free(*out);
        free(*errout);
        *out = *errout = NULL;
        return sm_error_set(err, SM_ERR_IO, "%s exited with status %d: %s", argv[0], status, line[0] ? line : "(no message)");
    }
    return SM_OK;
}

/* ---------- submit ---------- */

int sm_slurm_parse_submit(const char *text, char job_id_out[32], sm_error *err) {
    size_t n = strspn(text, "0123456789");
    if (n == 0 || n >= 32 || (text[n] && !strchr(";\r\n", text[n])))
        return sm_error_set(err, SM_ERR_FORMAT, "sbatch --parsable printed no job id: '%.80s'", text);
    memcpy(job_id_out, text, n);
    job_id_out[n] = 0;
    return SM_OK;
}

int sm_slurm_submit(const sm_slurm_opts *o, const sm_slurm_request *r, char job_id_out[32], sm_error *err) {
    char **argv, *out = NULL, *errout = NULL;
    int rc = sm_slurm_sbatch_argv(o, r, &argv, err);
    if (rc != SM_OK) return rc;
    rc = run_checked(argv, &out, &errout, err);
    if (rc == SM_OK) rc = sm_slurm_parse_submit(out, job_id_out, err);
    if (rc != SM_OK) sm_error_wrap(err, "submitting %s to Slurm", r->job_name);
    sm_slurm_argv_free(argv);
    free(out);
    free(errout);
    return rc;
}

/* ---------- states ---------- */

static const struct {
    const char *state;
    int status, retryable;
} states[] = {
    {"PENDING", SM_SLURM_PENDING, 0},       {"CONFIGURING", SM_SLURM_PENDING, 0},
    {"REQUEUED", SM_SLURM_PENDING, 0},      {"REQUEUE_HOLD", SM_SLURM_PENDING, 0},
    {"REQUEUE_FED", SM_SLURM_PENDING, 0},   {"RESV_DEL_HOLD", SM_SLURM_PENDING, 0},
    {"SPECIAL_EXIT", SM_SLURM_PENDING, 0},  {"RUNNING", SM_SLURM_RUNNING, 0},
    {"COMPLETING", SM_SLURM_RUNNING, 0},    {"SUSPENDED", SM_SLURM_RUNNING, 0},
    {"STOPPED", SM_SLURM_RUNNING, 0},       {"SIGNALING", SM_SLURM_RUNNING, 0},
    {"STAGE_OUT", SM_SLURM_RUNNING, 0},     {"RESIZING", SM_SLURM_RUNNING, 0},
    {"COMPLETED", SM_SLURM_COMPLETED, 0},   {"CANCELLED", SM_SLURM_CANCELLED, 0},
    {"FAILED", SM_SLURM_FAILED, 0},         {"TIMEOUT", SM_SLURM_FAILED, 0},
    {"OUT_OF_MEMORY", SM_SLURM_FAILED, 0},  {"DEADLINE", SM_SLURM_FAILED, 0},
    {"REVOKED", SM_SLURM_FAILED, 0},        {"NODE_FAIL", SM_SLURM_FAILED, 1},
    {"BOOT_FAIL", SM_SLURM_FAILED, 1},      {"PREEMPTED", SM_SLURM_FAILED, 1},
};

static void copy_field(char *dst, size_t cap, const char *src, size_t n) {
    while (n && (*src == ' ')) src++, n--;
    while (n && (src[n - 1] == ' ' || src[n - 1] == '\r')) n--;
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

void sm_slurm_classify(sm_slurm_job *j, const char *state) {
    copy_field(j->state, sizeof j->state, state, strcspn(state, " "));
    j->status = SM_SLURM_UNKNOWN;
    j->retryable = 0;
    for (size_t i = 0; i < SM_ARRAY_LEN(states); i++)
        if (!strcmp(j->state, states[i].state)) {
            j->status = states[i].status;
            j->retryable = states[i].retryable;
        }
}

static sm_slurm_job *find_job(sm_slurm_job *jobs, size_t n, const char *id, size_t id_len) {
    for (size_t i = 0; i < n; i++)
        if (strlen(jobs[i].id) == id_len && !memcmp(jobs[i].id, id, id_len)) return &jobs[i];
    return NULL;
}

static void set_node(sm_slurm_job *j, const char *s, size_t n) {
    copy_field(j->node, sizeof j->node, s, n);
    if (!strcmp(j->node, "(null)") || !strcmp(j->node, "None assigned")) j->node[0] = 0;
}

/* Splits line[0..len) at '|' into at most max fields (pointer and length each); returns how many. */
static size_t split_fields(const char *line, size_t len, const char **f, size_t *fl, size_t max) {
    size_t nf = 0;
    for (const char *p = line; nf < max && p <= line + len;) {
        size_t k = strcspn(p, "|\n");
        if (p + k > line + len) k = (size_t)(line + len - p);
        f[nf] = p;
        fl[nf++] = k;
        p += k + 1;
    }
    return nf;
}

int sm_slurm_parse_squeue(const char *text, sm_slurm_job *jobs, size_t n) {
    int filled = 0;
    for (const char *line = text; *line;) {
        size_t len = strcspn(line, "\n");
        const char *f[7];
        size_t fl[7], nf = split_fields(line, len, f, fl, 7);
        sm_slurm_job *j = nf >= 6 ? find_job(jobs, n, f[0], fl[0]) : NULL;
        if (j) {
            char state[32], code[32];
            copy_field(state, sizeof state, f[2], fl[2]);
            sm_slurm_classify(j, state);
            copy_field(j->reason, sizeof j->reason, f[3], fl[3]);
            copy_field(code, sizeof code, f[4], fl[4]);
            int raw = atoi(code); /* a wait(2) status: exit code in bits 8-15, signal in 0-6 */
            j->exit_code = (raw >> 8) & 0xff;
            j->signal = raw & 0x7f;
            set_node(j, f[5], fl[5]);
            filled++;
        }
        line += len;
        if (*line) line++;
    }
    return filled;
}

/* The value of " Key=" in a one-line scontrol record: up to the next " Word=" (values may hold spaces, as
 * "ReqNodeNotAvail, UnavailableNodes:n1"). */
static int scontrol_value(const char *rec, size_t rec_len, const char *key, char *out, size_t cap) {
    size_t kl = strlen(key);
    for (const char *p = rec; p + kl + 1 <= rec + rec_len; p++) {
        if ((p != rec && p[-1] != ' ') || strncmp(p, key, kl) || p[kl] != '=') continue;
        const char *v = p + kl + 1, *end = v;
        while (end < rec + rec_len) {
            if (*end == ' ') {
                const char *w = end + 1;
                while (w < rec + rec_len && *w != ' ' && *w != '=') w++;
                if (w < rec + rec_len && *w == '=') break;
            }
            end++;
        }
        copy_field(out, cap, v, (size_t)(end - v));
        return 1;
    }
    return 0;
}

int sm_slurm_parse_scontrol(const char *text, sm_slurm_job *jobs, size_t n) {
    int filled = 0;
    for (const char *line = text; *line;) {
        size_t len = strcspn(line, "\n");
        char id[64], task[32], state[32], code[32];
        if (scontrol_value(line, len, "JobId", id, sizeof id) && scontrol_value(line, len, "JobState", state, sizeof state)) {
            if (scontrol_value(line, len, "ArrayTaskId", task, sizeof task) &&
                scontrol_value(line, len, "ArrayJobId", id, sizeof id) && strlen(id) + strlen(task) + 2 <= sizeof id) {
                strcat(id, "_");
                strcat(id, task);
            }
            sm_slurm_job *j = find_job(jobs, n, id, strlen(id));
            if (j) {
                sm_slurm_classify(j, state);
                if (!scontrol_value(line, len, "Reason", j->reason, sizeof j->reason)) j->reason[0] = 0;
                j->exit_code = j->signal = 0;
                if (scontrol_value(line, len, "ExitCode", code, sizeof code)) {
                    j->exit_code = atoi(code);
                    const char *colon = strchr(code, ':');
                    j->signal = colon ? atoi(colon + 1) : 0;
                }
                char node[128];
                if (scontrol_value(line, len, "NodeList", node, sizeof node)) set_node(j, node, strlen(node));
                filled++;
            }
        }
        line += len;
        if (*line) line++;
    }
    return filled;
}

int sm_slurm_parse_sacct(const char *text, sm_slurm_job *jobs, size_t n) {
    int filled = 0;
    for (const char *line = text; *line;) {
        size_t len = strcspn(line, "\n");
        const char *f[5];
        size_t fl[5], nf = split_fields(line, len, f, fl, 5);
        sm_slurm_job *j = nf == 5 ? find_job(jobs, n, f[0], fl[0]) : NULL;
        if (j) {
            char state[64], code[32];
            copy_field(state, sizeof state, f[1], fl[1]);
            sm_slurm_classify(j, state); /* "CANCELLED by 0": the first word */
            copy_field(code, sizeof code, f[2], fl[2]);
            j->exit_code = atoi(code);
            const char *colon = strchr(code, ':');
            j->signal = colon ? atoi(colon + 1) : 0;
            copy_field(j->reason, sizeof j->reason, f[3], fl[3]);
            set_node(j, f[4], fl[4]);
            filled++;
        }
        line += len;
        if (*line) line++;
    }
    return filled;
}

void sm_slurm_describe(const sm_slurm_job *j, char *out, size_t cap) {
    const char *on = j->node[0] ? " on " : "", *node = j->node;
    const char *why = j->reason[0] && strcmp(j->reason, "None") ? j->reason : "";
    const char *lp = why[0] ? " (" : "", *rp = why[0] ? ")" : "";
    switch (j->status) {
    case SM_SLURM_PENDING: snprintf(out, cap, "job %s is pending%s%s%s", j->id, lp, why, rp); return;
    case SM_SLURM_RUNNING: snprintf(out, cap, "job %s is %s%s%s", j->id, !strcmp(j->state, "RUNNING") ? "running" : j->state, on, node); return;
    case SM_SLURM_COMPLETED: snprintf(out, cap, "job %s completed%s%s", j->id, on, node); return;
    case SM_SLURM_CANCELLED: snprintf(out, cap, "job %s was cancelled (scancel, by this run, a user or an administrator)", j->id); return;
    case SM_SLURM_UNKNOWN:
        if (j->state[0]) snprintf(out, cap, "job %s is in a state this engine does not know: %s%s%s%s", j->id, j->state, lp, why, rp);
        else snprintf(out, cap, "job %s is no longer known to Slurm (it left the queue and the cluster keeps no accounting)", j->id);
        return;
    }
    if (!strcmp(j->state, "TIMEOUT"))
        snprintf(out, cap, "job %s%s%s hit its time limit (TIMEOUT; raise --slurm-time)", j->id, on, node);
    else if (!strcmp(j->state, "OUT_OF_MEMORY"))
        snprintf(out, cap, "job %s%s%s ran out of memory (OUT_OF_MEMORY; raise its --mem through --slurm-option)", j->id, on, node);
    else if (!strcmp(j->state, "NODE_FAIL"))
        snprintf(out, cap, "job %s: node %s failed (NODE_FAIL%s%s)", j->id, j->node[0] ? j->node : "(none)", why[0] ? ", " : "", why);
    else if (!strcmp(j->state, "PREEMPTED"))
        snprintf(out, cap, "job %s%s%s was preempted (PREEMPTED)", j->id, on, node);
    else if (j->signal)
        snprintf(out, cap, "job %s%s%s failed: killed by signal %d (%s%s%s)", j->id, on, node, j->signal, j->state, why[0] ? ", " : "", why);
    else
        snprintf(out, cap, "job %s%s%s failed: exit code %d (%s%s%s)", j->id, on, node, j->exit_code, j->state, why[0] ? ", " : "", why);
}

/* ---------- queries ---------- */

/* "a,b,c" of the jobs' ids. */
static char *id_list(const sm_slurm_job *jobs, size_t n) {
    size_t cap = 1;
    for (size_t i = 0; i < n; i++) cap += strlen(jobs[i].id) + 1;
    char *s = malloc(cap), *w = s;
    if (!s) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (i) *w++ = ',';
        w = stpcpy(w, jobs[i].id);
    }
    *w = 0;
    return s;
}

int sm_slurm_has_accounting(sm_error *err) {
    char *argv[] = {"scontrol", "show", "config", NULL}, *out, *errout;
    int rc = run_checked(argv, &out, &errout, err);
    if (rc != SM_OK) return rc;
    /* "AccountingStorageType   = accounting_storage/none" */
    const char *p = strstr(out, "AccountingStorageType");
    int has = 0;
    if (p) {
        char line[256];
        first_line(p, line, sizeof line);
        has = !strstr(line, "accounting_storage/none");
    }
    free(out);
    free(errout);
    return has;
}

int sm_slurm_query(sm_slurm_job *jobs, size_t n, sm_error *err) {
    if (n == 0) return SM_OK;
    char *ids = id_list(jobs, n), *out = NULL, *errout = NULL;
    if (!ids) return sm_error_set(err, SM_ERR_NOMEM, "slurm: out of memory");
    char *argv[] = {"squeue", "-h", "-t", "all", "-r", "-j", ids, "-O", SQUEUE_FORMAT, NULL};
    int status, rc = sm_slurm_run(argv, &out, &errout, &status, err);
    free(ids);
    if (rc != SM_OK) return rc;
    /* squeue exits 1 when none of the ids is known any more: those are looked up below */
    if (status != 0 && !strstr(errout, "Invalid job id")) {
        char line[768];
        message_of(errout, line, sizeof line);
        rc = sm_error_set(err, SM_ERR_IO, "squeue exited with status %d: %s", status, line);
    }
    int found[n];
    memset(found, 0, sizeof found);
    if (rc == SM_OK)
        for (size_t i = 0; i < n; i++) found[i] = sm_slurm_parse_squeue(out, &jobs[i], 1);
    free(out);
    free(errout);
    int missing = 0;
    for (size_t i = 0; rc == SM_OK && i < n; i++) {
        if (found[i]) continue;
        char *sargv[] = {"scontrol", "-o", "show", "job", jobs[i].id, NULL};
        rc = sm_slurm_run(sargv, &out, &errout, &status, err);
        if (rc != SM_OK) break;
        if (status == 0) found[i] = sm_slurm_parse_scontrol(out, &jobs[i], 1);
        else if (!strstr(errout, "Invalid job id")) {
            char line[768];
            message_of(errout, line, sizeof line);
            rc = sm_error_set(err, SM_ERR_IO, "scontrol show job %s exited with status %d: %s", jobs[i].id, status, line);
        }
        free(out);
        free(errout);
        out = errout = NULL;
        if (!found[i]) missing++;
    }
    if (rc != SM_OK || !missing) return rc;
    int acct = sm_slurm_has_accounting(err);
    if (acct < 0) return acct;
    for (size_t i = 0; i < n; i++)
        if (!found[i]) {
            sm_slurm_job *j = &jobs[i];
            char id[32];
            memcpy(id, j->id, sizeof id);
            memset(j, 0, sizeof *j);
            memcpy(j->id, id, sizeof id);
        }
    if (!acct) return SM_OK;
    for (size_t i = 0; i < n; i++) {
        if (found[i]) continue;
        char *aargv[] = {"sacct", "-n", "-P", "-X", "-j", jobs[i].id, "-o", "JobID,State,ExitCode,Reason,NodeList", NULL};
        rc = run_checked(aargv, &out, &errout, err);
        if (rc != SM_OK) return rc;
        sm_slurm_parse_sacct(out, &jobs[i], 1);
        free(out);
        free(errout);
    }
    return SM_OK;
}

int sm_slurm_cancel(const char *const *ids, size_t n, sm_error *err) {
    if (n == 0) return SM_OK;
    char **argv = calloc(n + 2, sizeof *argv), *out, *errout;
    if (!argv) return sm_error_set(err, SM_ERR_NOMEM, "slurm: out of memory");
    argv[0] = "scancel";
    for (size_t i = 0; i < n; i++) argv[i + 1] = (char *)ids[i];
    int rc = run_checked(argv, &out, &errout, err);
    free(argv);
    if (rc != SM_OK) return sm_error_wrap(err, "cancelling Slurm jobs");
    free(out);
    free(errout);
    return SM_OK;
}
