/* sm_sched_daemon.c - the scheduling daemon: a libuv loop with one timer (armed for the next due fire, a
 * heartbeat, a kill deadline or the poll interval, whichever is first), synchronous libpq statements
 * between loop iterations, and pipeline runs as child processes (uv_spawn).
 *
 * Work is coordinated only through the database, so any number of daemons may share it:
 *  - deciding: the schedule row is locked FOR UPDATE SKIP LOCKED (one decider at a time), due nominal
 *    times are inserted with INSERT ... ON CONFLICT DO NOTHING (unique per schedule and nominal time),
 *    and decided_through moves forward in the same transaction;
 *  - starting: a queued fire is claimed with one UPDATE over a FOR UPDATE SKIP LOCKED pick, under a
 *    partial unique index that allows one running fire per schedule;
 *  - liveness: a running fire carries a lease renewed by heartbeats; a lapsed lease means its daemon died
 *    (its child was killed with it through PR_SET_PDEATHSIG), and any daemon requeues the fire, unless the
 *    lineage already shows a succeeded run for that nominal time.
 *
 * SIGTERM/SIGINT rule: stop deciding and starting; let running children finish for up to --drain seconds;
 * then SIGINT them (SIGKILL after --kill-grace) and put their fires back in the queue for the next daemon.
 * A second signal skips the drain. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "sm_cron.h"
#include "sm_sched_int.h"
#include "web/sm_web.h"

extern char **environ;

enum { INT_NONE, INT_CANCEL, INT_SHUTDOWN, INT_LOST };

typedef struct sched_daemon sched_daemon;

typedef struct {
    int used, exited, closed, recorded;
    uv_process_t proc;
    int64_t fire_id;
    char schedule[80], nominal[32];
    int interrupt, killed;
    double kill_at;
    int64_t exit_status;
    int term_signal;
    sched_daemon *d;
    char log[PATH_MAX + 64]; /* the run's output: a failed run's own error line becomes the fire's reason */
} slot;

struct sched_daemon {
    sm_sched_daemon_opts o;
    uv_loop_t loop;
    uv_timer_t timer;
    uv_signal_t sig_term, sig_int;
    PGconn *db;
    char *dsn;
    char id[96], host[256], exe[PATH_MAX], pid[16];
    slot *slots;
    int stopping, hard_stop, finished;
    double stop_started, last_hb, last_db_warn;
    int rc;
};

static int nused(sched_daemon *d) {
    int n = 0;
    for (int i = 0; i < d->o.max_runs; i++) n += d->slots[i].used;
    return n;
}

static int db_ok(sched_daemon *d) {
    if (PQstatus(d->db) == CONNECTION_OK) return 1;
    PQreset(d->db);
    if (PQstatus(d->db) == CONNECTION_OK) {
        sm_log(SM_LOG_INFO, "daemon %s: database connection restored", d->id);
        return 1;
    }
    if (sm_monotonic() - d->last_db_warn > 30) {
        sm_log(SM_LOG_WARN, "daemon %s: database unreachable (%s); retrying", d->id, PQerrorMessage(d->db));
        d->last_db_warn = sm_monotonic();
    }
    return 0;
}

static void interrupt_slot(slot *s, int why, double grace) {
    if (!s->used || s->exited || s->interrupt) return;
    s->interrupt = why;
    s->kill_at = sm_monotonic() + grace;
    /* The child leads its own process group (detached), so the group gets the signal: a runner's own
     * children stop too. */
    if (kill(-s->proc.pid, SIGINT) && kill(s->proc.pid, SIGINT))
        sm_log(SM_LOG_WARN, "cannot signal run of %s %s (pid %d): %s", s->schedule, s->nominal, s->proc.pid,
               strerror(errno));
    else
        sm_log(SM_LOG_INFO, "interrupting run of %s %s (pid %d): %s", s->schedule, s->nominal, s->proc.pid,
               why == INT_CANCEL ? "cancelled by a newer fire" : why == INT_SHUTDOWN ? "daemon stopping"
                                                                               : "its lease was taken over");
}

/* The last error line a failed `scalemix run` printed (its "scalemix ...: why" line; not the "scalemix: run ID
 * failed" summary) from the tail of its log, or "" when there is none. */
static void run_error_line(const char *log, char *out, size_t cap) {
    out[0] = 0;
    FILE *f = fopen(log, "rb");
    if (!f) return;
    char tail[4097];
    if (fseek(f, -4096, SEEK_END) != 0) rewind(f);
    size_t n = fread(tail, 1, sizeof tail - 1, f);
    fclose(f);
    tail[n] = 0;
    for (char *line = strtok(tail, "\n"); line; line = strtok(NULL, "\n"))
        if (!strncmp(line, "scalemix", 8) && strncmp(line, "scalemix: run ", 14)) snprintf(out, cap, "%s", line);
}

/* Writes a finished child's outcome; kept pending (and retried each tick) while the database is away. */
static void record_result(sched_daemon *d, slot *s) {
    if (s->recorded || !s->exited) return;
    if (s->interrupt == INT_LOST) {
        s->recorded = 1;
        return;
    }
    const char *state;
    char reason[1024], why[900];
    if (s->exit_status == 0 && s->term_signal == 0) {
        state = "succeeded"; /* it completed before the interrupt took effect */
        reason[0] = 0;
    } else if (s->interrupt == INT_SHUTDOWN) {
        state = "queued";
        snprintf(reason, sizeof reason, "interrupted by the shutdown of daemon %s; will run again", d->id);
    } else if (s->interrupt == INT_CANCEL) {
        state = "cancelled";
        snprintf(reason, sizeof reason, "cancelled by a newer fire (overlap=cancel-old)");
    } else {
        state = "failed";
        if (s->term_signal)
            snprintf(reason, sizeof reason, "run killed by signal %d", s->term_signal);
        else {
            run_error_line(s->log, why, sizeof why);
            snprintf(reason, sizeof reason, "run exited with code %lld%s%s", (long long)s->exit_status, why[0] ? ": " : "", why);
        }
    }
    char fid[32], code[32], sig[16];
    snprintf(fid, sizeof fid, "%lld", (long long)s->fire_id);
    snprintf(code, sizeof code, "%lld", (long long)s->exit_status);
    snprintf(sig, sizeof sig, "%d", s->term_signal);
    const char *v[6] = {fid, state, reason[0] ? reason : NULL, code, sig, d->id};
    sm_error err;
    PGresult *r = sm_sched_q(d->db,
                             "UPDATE schedule_fires SET state = $2, reason = $3, exit_code = $4::int, "
                             "term_signal = NULLIF($5::int, 0), finished_at = CASE WHEN $2 = 'queued' THEN NULL "
                             "ELSE now() END, lease_until = NULL, cancel_requested = false, daemon_id = CASE WHEN "
                             "$2 = 'queued' THEN NULL ELSE daemon_id END WHERE fire_id = $1::bigint AND daemon_id = "
                             "$6 AND state = 'running'",
                             6, v, &err);
    if (!r) {
        sm_log(SM_LOG_WARN, "recording fire %s (%s %s) failed, will retry: %s", fid, s->schedule, s->nominal, err.msg);
        return;
    }
    if (strcmp(PQcmdTuples(r), "1"))
        sm_log(SM_LOG_WARN, "fire %s (%s %s) was taken over by another daemon; its outcome (%s) is not recorded", fid,
               s->schedule, s->nominal, state);
    else
        sm_log(SM_LOG_INFO, "fire %s %s %s: %s%s%s", fid, s->schedule, s->nominal, state, reason[0] ? ": " : "",
               reason);
    PQclear(r);
    s->recorded = 1;
}

static void maybe_free(slot *s) {
    if (s->used && s->exited && s->closed && s->recorded) s->used = 0;
}

static void on_tick(uv_timer_t *t);
static void tick_soon(sched_daemon *d) {
    if (!d->finished) uv_timer_start(&d->timer, on_tick, 0, 0);
}

static void on_closed(uv_handle_t *h) {
    slot *s = h->data;
    s->closed = 1;
    maybe_free(s);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig) {
    slot *s = p->data;
    s->exited = 1;
    s->exit_status = status;
    s->term_signal = sig;
    record_result(s->d, s);
    uv_close((uv_handle_t *)p, on_closed);
    tick_soon(s->d);
}

static void fmt_epoch(const char *epoch, char out[32]) { sm_time_format_utc(strtoll(epoch, NULL, 10), out); }

static void spawn_fire(sched_daemon *d, PGresult *r) {
    const char *fid = PQgetvalue(r, 0, 0), *name = PQgetvalue(r, 0, 1), *trigger = PQgetvalue(r, 0, 3),
               *attempt = PQgetvalue(r, 0, 4), *pipeline = PQgetvalue(r, 0, 5), *params = PQgetvalue(r, 0, 6);
    slot *s = NULL;
    for (int i = 0; i < d->o.max_runs && !s; i++)
        if (!d->slots[i].used) s = &d->slots[i];
    char nominal[32];
    fmt_epoch(PQgetvalue(r, 0, 2), nominal);
    memset(s, 0, sizeof *s);
    s->used = 1;
    s->d = d;
    s->fire_id = strtoll(fid, NULL, 10);
    snprintf(s->schedule, sizeof s->schedule, "%s", name);
    snprintf(s->nominal, sizeof s->nominal, "%s", nominal);

    json_t *pj = json_loads(params, 0, NULL);
    size_t np = json_object_size(pj);
    char **args = calloc(18 + 2 * np, sizeof *args), **kv = calloc(np + 1, sizeof *kv);
    char ppid[16];
    snprintf(ppid, sizeof ppid, "%d", (int)getpid());
    int a = 0;
    args[a++] = d->exe;
    args[a++] = "daemon";
    args[a++] = "--exec-child";
    args[a++] = ppid;
    args[a++] = "--";
    args[a++] = (char *)(d->o.runner ? d->o.runner : d->exe);
    args[a++] = "run"; /* options before the script: `scalemix run` stops option parsing at the script */
    args[a++] = "--trigger";
    args[a++] = (char *)trigger;
    args[a++] = "--schedule";
    args[a++] = (char *)name;
    args[a++] = "--nominal-time";
    args[a++] = nominal;
    args[a++] = "--expect-sha256"; /* the run loads only the bytes the registration's digest names */
    args[a++] = PQgetvalue(r, 0, 8);
    const char *key;
    json_t *val;
    size_t k = 0;
    json_object_foreach(pj, key, val) {
        size_t n = strlen(key) + strlen(json_string_value(val) ? json_string_value(val) : "") + 2;
        kv[k] = malloc(n);
        snprintf(kv[k], n, "%s=%s", key, json_string_value(val) ? json_string_value(val) : "");
        args[a++] = "--param";
        args[a++] = kv[k++];
    }
    args[a++] = (char *)pipeline;
    args[a] = NULL;

    /* The database goes to the child by environment, not argv, so that a password never shows in ps. */
    size_t ne = 0;
    while (environ[ne]) ne++;
    char **env = calloc(ne + 2, sizeof *env), *dbenv = NULL;
    size_t e = 0;
    for (size_t i = 0; i < ne; i++)
        if (strncmp(environ[i], "SCALEMIX_DB=", 12)) env[e++] = environ[i];
    if (d->dsn) {
        size_t n = strlen(d->dsn) + 13;
        dbenv = malloc(n);
        snprintf(dbenv, n, "SCALEMIX_DB=%s", d->dsn);
        env[e++] = dbenv;
    }

    char logdir[PATH_MAX], logpath[PATH_MAX + 64];
    snprintf(logdir, sizeof logdir, "%s/logs/sched/%s", sm_sched_workspace(), name);
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", logdir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') *p = 0, mkdir(tmp, 0755), *p = '/';
    mkdir(tmp, 0755);
    snprintf(logpath, sizeof logpath, "%s/%s-a%s.log", logdir, nominal, attempt);
    snprintf(s->log, sizeof s->log, "%s", logpath);
    int logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = stdio[2].flags = logfd >= 0 ? UV_INHERIT_FD : UV_IGNORE;
    stdio[1].data.fd = stdio[2].data.fd = logfd;
    uv_process_options_t opt;
    memset(&opt, 0, sizeof opt);
    opt.file = d->exe;
    opt.args = args;
    opt.env = env;
    opt.exit_cb = on_exit_cb;
    opt.stdio = stdio;
    opt.stdio_count = 3;
    opt.flags = UV_PROCESS_DETACHED; /* own session: a Ctrl-C at the daemon's terminal is the daemon's to handle */
    s->proc.data = s;
    int rc = uv_spawn(&d->loop, &s->proc, &opt);
    if (logfd >= 0) close(logfd);
    char pidbuf[16];
    if (rc) {
        sm_log(SM_LOG_ERROR, "fire %s %s %s: cannot start %s: %s", fid, name, nominal, d->exe, uv_strerror(rc));
        s->exited = 1;
        s->exit_status = 127;
        record_result(d, s);
        uv_close((uv_handle_t *)&s->proc, on_closed); /* a failed uv_spawn still needs its handle closed */
    } else {
        snprintf(pidbuf, sizeof pidbuf, "%d", s->proc.pid);
        const char *v[3] = {fid, pidbuf, logpath};
        sm_error err;
        if (sm_sched_x(d->db, "UPDATE schedule_fires SET pid = $2::int, log_path = $3 WHERE fire_id = $1::bigint", 3, v,
                       &err))
            sm_log(SM_LOG_WARN, "%s", err.msg);
        sm_log(SM_LOG_INFO, "fire %s %s %s: started (%s, attempt %s, pid %d, log %s)", fid, name, nominal, trigger,
               attempt, s->proc.pid, logpath);
    }
    for (size_t i = 0; i < k; i++) free(kv[i]);
    free(kv);
    free(args);
    free(env);
    free(dbenv);
    json_decref(pj);
}

/* 1 if the claimed fire (a start_queued row) may run: its schedule row verifies (sm_sched_auth_check) and the
 * fire names that schedule. Otherwise the fire is recorded failed with the reason, which is also logged. */
static int fire_authorized(sched_daemon *d, PGresult *r) {
    const char *fid = PQgetvalue(r, 0, 0), *fname = PQgetvalue(r, 0, 1);
    sm_sched_auth_fields af = {PQgetvalue(r, 0, 7), PQgetvalue(r, 0, 5), PQgetvalue(r, 0, 8), PQgetvalue(r, 0, 6),
                               PQgetvalue(r, 0, 9), PQgetvalue(r, 0, 10), PQgetvalue(r, 0, 11)};
    sm_error err = {0};
    int ok = sm_sched_auth_check(&af, PQgetvalue(r, 0, 12), 1, &err) == SM_OK;
    if (ok && strcmp(fname, af.name)) {
        sm_error_set(&err, SM_ERR_ARG, "refused: the fire's schedule name does not match its schedule '%s'", af.name);
        ok = 0;
    }
    if (ok) return 1;
    char nominal[32];
    fmt_epoch(PQgetvalue(r, 0, 2), nominal);
    sm_log(SM_LOG_ERROR, "fire %s %s %s: %s", fid, sm_sched_valid_name(fname) ? fname : "(invalid name)", nominal,
           err.msg);
    const char *v[3] = {fid, err.msg, d->id};
    sm_error uerr;
    if (sm_sched_x(d->db,
                   "UPDATE schedule_fires SET state = 'failed', reason = $2, finished_at = now(), lease_until = NULL "
                   "WHERE fire_id = $1::bigint AND daemon_id = $3 AND state = 'running'",
                   3, v, &uerr))
        sm_log(SM_LOG_WARN, "recording the refusal of fire %s: %s", fid, uerr.msg);
    return 0;
}

static void start_queued(sched_daemon *d) {
    char lease[32], only[32];
    snprintf(lease, sizeof lease, "%.3f", d->o.lease_s);
    snprintf(only, sizeof only, "%lld", (long long)d->o.only_schedule);
    while (!d->stopping && nused(d) < d->o.max_runs) {
        const char *v[4] = {d->id, d->host, lease, only};
        sm_error err;
        PGresult *r = sm_sched_q(
            d->db,
            "WITH c AS (SELECT f.fire_id FROM schedule_fires f JOIN schedules s ON s.schedule_id = f.schedule_id "
            " WHERE f.state = 'queued' AND (NOT s.paused OR f.trigger = 'backfill')"
            "   AND ($4::bigint = 0 OR (f.schedule_id = $4::bigint AND f.trigger = 'backfill'))"
            "   AND NOT EXISTS (SELECT 1 FROM schedule_fires x WHERE x.schedule_id = f.schedule_id AND x.state = "
            "'running')"
            " ORDER BY f.nominal_time, f.fire_id LIMIT 1 FOR UPDATE OF f SKIP LOCKED) "
            "UPDATE schedule_fires f SET state = 'running', daemon_id = $1, host = $2, attempt = f.attempt + 1, "
            " lease_until = now() + make_interval(secs => $3::float8), started_at = now(), finished_at = NULL, "
            " exit_code = NULL, term_signal = NULL, cancel_requested = false "
            "FROM c, schedules s WHERE f.fire_id = c.fire_id AND s.schedule_id = f.schedule_id "
            "RETURNING f.fire_id, f.schedule, extract(epoch FROM f.nominal_time)::bigint, f.trigger, f.attempt, "
            " s.pipeline, s.params::text, s.name, s.script_sha256, s.cron, s.tz, array_to_json(s.when_changed)::text, "
            " s.auth_tag",
            4, v, &err);
        if (!r) {
            /* 23505: another daemon started a fire of the same schedule a moment ago; retry next tick */
            if (!strstr(err.msg, "SQLSTATE 23505")) sm_log(SM_LOG_WARN, "claiming a fire: %s", err.msg);
            return;
        }
        int n = PQntuples(r);
        if (n && fire_authorized(d, r)) spawn_fire(d, r);
        PQclear(r);
        if (!n) return;
    }
}

static void heartbeat(sched_daemon *d) {
    char lease[32];
    snprintf(lease, sizeof lease, "%.3f", d->o.lease_s);
    const char *v[3] = {d->id, d->host, d->pid};
    sm_error err;
    if (sm_sched_x(d->db,
                   "INSERT INTO schedule_daemons (daemon_id, host, pid) VALUES ($1, $2, $3::int) ON CONFLICT "
                   "(daemon_id) DO UPDATE SET heartbeat_at = now()",
                   3, v, &err)) {
        sm_log(SM_LOG_WARN, "heartbeat: %s", err.msg);
        return;
    }
    const char *v2[2] = {d->id, lease};
    PGresult *r = sm_sched_q(d->db,
                             "UPDATE schedule_fires SET lease_until = now() + make_interval(secs => $2::float8) "
                             "WHERE daemon_id = $1 AND state = 'running' RETURNING fire_id, cancel_requested",
                             2, v2, &err);
    if (!r) {
        sm_log(SM_LOG_WARN, "renewing leases: %s", err.msg);
        return;
    }
    for (int i = 0; i < d->o.max_runs; i++) {
        slot *s = &d->slots[i];
        if (!s->used || s->exited) continue;
        int held = 0, cancel = 0;
        for (int j = 0; j < PQntuples(r); j++)
            if (strtoll(PQgetvalue(r, j, 0), NULL, 10) == s->fire_id)
                held = 1, cancel = PQgetvalue(r, j, 1)[0] == 't';
        if (!held)
            interrupt_slot(s, INT_LOST, d->o.kill_grace_s);
        else if (cancel)
            interrupt_slot(s, INT_CANCEL, d->o.kill_grace_s);
    }
    PQclear(r);
}

static void rescue(sched_daemon *d) {
    char maxa[16];
    snprintf(maxa, sizeof maxa, "%d", d->o.max_attempts);
    const char *v[2] = {d->id, maxa};
    sm_error err;
    PGresult *r = sm_sched_q(
        d->db,
        "WITH lost AS (SELECT f.fire_id, f.daemon_id AS old, CASE WHEN EXISTS (SELECT 1 FROM runs r WHERE "
        "  r.schedule = f.schedule AND r.nominal_time = f.nominal_time AND r.status = 'succeeded') THEN 'succeeded' "
        "  WHEN f.attempt >= $2::int THEN 'failed' ELSE 'queued' END AS st "
        " FROM schedule_fires f WHERE f.state = 'running' AND f.lease_until < now() "
        "  AND f.daemon_id IS DISTINCT FROM $1 FOR UPDATE OF f SKIP LOCKED) "
        "UPDATE schedule_fires f SET state = lost.st, daemon_id = NULL, lease_until = NULL, "
        " finished_at = CASE WHEN lost.st = 'queued' THEN NULL ELSE now() END, "
        " reason = CASE lost.st WHEN 'succeeded' THEN 'daemon ' || coalesce(lost.old, '?') || ' was lost; the "
        "lineage shows its run succeeded' WHEN 'failed' THEN 'lost with its daemon ' || f.attempt || ' times' ELSE "
        "'requeued: daemon ' || coalesce(lost.old, '?') || ' stopped renewing its lease' END "
        "FROM lost WHERE f.fire_id = lost.fire_id "
        "RETURNING f.fire_id, f.schedule, extract(epoch FROM f.nominal_time)::bigint, f.state",
        2, v, &err);
    if (!r) {
        sm_log(SM_LOG_WARN, "rescuing lost fires: %s", err.msg);
        return;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        char nominal[32];
        fmt_epoch(PQgetvalue(r, i, 2), nominal);
        sm_log(SM_LOG_WARN, "fire %s %s %s lost its daemon: now %s", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), nominal,
               PQgetvalue(r, i, 3));
    }
    PQclear(r);
}

/* Decides every due nominal time of one schedule (see the catch-up and overlap rules in sm_sched.h). */
static void decide_one(sched_daemon *d, const char *sid, double now) {
    sm_error err;
    if (sm_sched_x(d->db, "BEGIN", 0, NULL, &err)) return;
    const char *v[1] = {sid};
    PGresult *r = sm_sched_q(d->db,
                             "SELECT name, cron, tz, overlap, catchup, extract(epoch FROM catchup_window)::float8, "
                             "array_to_json(when_changed)::text, floor(extract(epoch FROM decided_through))::bigint, "
                             "pipeline, script_sha256, params::text, auth_tag "
                             "FROM schedules WHERE schedule_id = $1::bigint AND NOT paused FOR UPDATE SKIP LOCKED",
                             1, v, &err);
    if (!r || PQntuples(r) == 0) { /* another daemon is deciding it, or it was paused or removed */
        PQclear(r);
        sm_sched_x(d->db, "ROLLBACK", 0, NULL, NULL);
        return;
    }
    char name[80], dbname[80], overlap[16], catchup[16], refused[1100] = "";
    snprintf(dbname, sizeof dbname, "%s", PQgetvalue(r, 0, 0)); /* as stored; name: as logged */
    snprintf(name, sizeof name, "%s", dbname);
    /* Nothing the row says is acted on (not even hashing its when-changed paths) unless it verifies. */
    sm_sched_auth_fields af = {PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 8), PQgetvalue(r, 0, 9), PQgetvalue(r, 0, 10),
                               PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 6)};
    if (sm_sched_auth_check(&af, PQgetvalue(r, 0, 11), 1, &err)) {
        snprintf(refused, sizeof refused, "%s", err.msg);
        if (!sm_sched_valid_name(name)) snprintf(name, sizeof name, "(invalid name, id %s)", sid);
        sm_log(SM_LOG_ERROR, "schedule %s: %s", name, refused);
    }
    snprintf(overlap, sizeof overlap, "%s", PQgetvalue(r, 0, 3));
    snprintf(catchup, sizeof catchup, "%s", PQgetvalue(r, 0, 4));
    double window = strtod(PQgetvalue(r, 0, 5), NULL);
    json_t *wc = json_loads(PQgetvalue(r, 0, 6), 0, NULL);
    int64_t decided = strtoll(PQgetvalue(r, 0, 7), NULL, 10), inow = (int64_t)floor(now);
    sm_cron c;
    sm_tz *tz = NULL;
    int bad = sm_cron_parse(PQgetvalue(r, 0, 1), &c, &err) || sm_tz_load(PQgetvalue(r, 0, 2), &tz, &err);
    PQclear(r);
    if (bad) {
        sm_log(SM_LOG_ERROR, "schedule %s: %s (skipped; fix it with schedule add --replace)", name, err.msg);
        sm_sched_x(d->db, "ROLLBACK", 0, NULL, NULL);
        json_decref(wc);
        return;
    }
    /* Runnable nominal times: after decided_through, not older than the window (none: the misfire grace). */
    double lower = strcmp(catchup, "none") == 0 ? now - d->o.misfire_s : now - window;
    int64_t from = decided > (int64_t)floor(lower) - 1 ? decided : (int64_t)floor(lower) - 1;
    enum { CAP = 1000 };
    int64_t due[CAP];
    int ndue = 0, dropped = 0, missed = 0;
    for (int64_t t = from, n; sm_cron_next(&c, tz, t, &n, NULL) == 0 && n <= inow; t = n) {
        if (ndue == CAP) memmove(due, due + 1, sizeof due[0] * (CAP - 1)), ndue--, dropped++;
        due[ndue++] = n;
    }
    if (decided < from) {
        int64_t n;
        if (sm_cron_next(&c, tz, decided, &n, NULL) == 0 && n <= from) missed = 1;
    }
    sm_tz_free(tz);
    int first = 0;
    if (strcmp(catchup, "all") && ndue > 1) first = ndue - 1;
    if (ndue && strcmp(catchup, "none") == 0 && now - (double)due[ndue - 1] > d->o.misfire_s) first = ndue;
    if (missed || dropped || first)
        sm_log(SM_LOG_INFO, "schedule %s: passing over %s%d missed fire(s) (catchup=%s, window %.0f s)", name,
               missed ? "more than " : "", first + dropped, catchup, window);

    char digest[65] = "", prev[65] = "", derr[1100] = "";
    size_t nwc = json_array_size(wc);
    if (first < ndue && nwc && !refused[0]) {
        const char **paths = calloc(nwc, sizeof *paths);
        for (size_t i = 0; i < nwc; i++) paths[i] = json_string_value(json_array_get(wc, i));
        if (sm_sched_digest(paths, nwc, digest, &err)) {
            snprintf(derr, sizeof derr, "when-changed: %s", err.msg);
            digest[0] = 0;
        }
        free(paths);
        r = sm_sched_q(d->db,
                       "SELECT input_digest FROM schedule_fires WHERE schedule_id = $1::bigint AND input_digest IS "
                       "NOT NULL AND state IN ('succeeded', 'queued', 'running') ORDER BY nominal_time DESC LIMIT 1",
                       1, v, &err);
        if (r && PQntuples(r)) snprintf(prev, sizeof prev, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    json_decref(wc);
    int busy = 0;
    if (first < ndue) {
        r = sm_sched_q(d->db,
                       "SELECT count(*) FROM schedule_fires WHERE schedule_id = $1::bigint AND state IN ('running', "
                       "'queued')",
                       1, v, &err);
        busy = r && strcmp(PQgetvalue(r, 0, 0), "0") != 0;
        PQclear(r);
        if (busy && strcmp(overlap, "cancel-old") == 0) {
            sm_sched_x(d->db,
                       "UPDATE schedule_fires SET cancel_requested = true WHERE schedule_id = $1::bigint AND state = "
                       "'running'",
                       1, v, NULL);
            sm_sched_x(d->db,
                       "UPDATE schedule_fires SET state = 'cancelled', finished_at = now(), reason = 'superseded by "
                       "a newer fire (overlap=cancel-old)' WHERE schedule_id = $1::bigint AND state = 'queued' AND "
                       "trigger = 'schedule'",
                       1, v, NULL);
        }
    }
    for (int i = first; i < ndue; i++) {
        const char *state = "queued";
        char reason[1200] = "", nominal[32], dnow[32];
        sm_time_format_utc(due[i], nominal);
        if (refused[0]) {
            state = "failed";
            snprintf(reason, sizeof reason, "%s", refused);
        } else if (busy && strcmp(overlap, "skip") == 0) {
            state = "skipped";
            snprintf(reason, sizeof reason, "an earlier fire was still running or waiting (overlap=skip)");
        } else if (derr[0]) {
            state = "failed";
            snprintf(reason, sizeof reason, "%s", derr);
        } else if (digest[0] && strcmp(digest, prev) == 0) {
            state = "skipped";
            snprintf(reason, sizeof reason, "inputs unchanged since the last successful run (sha256 %.16s...)", digest);
        }
        snprintf(dnow, sizeof dnow, "%s", nominal);
        const char *iv[6] = {sid, dbname, dnow, state, reason[0] ? reason : NULL, digest[0] ? digest : NULL};
        r = sm_sched_q(d->db,
                       "INSERT INTO schedule_fires (schedule_id, schedule, nominal_time, trigger, state, reason, "
                       "input_digest, finished_at) VALUES ($1::bigint, $2, $3::timestamptz, 'schedule', $4, $5, $6, "
                       "CASE WHEN $4 = 'queued' THEN NULL ELSE now() END) ON CONFLICT (schedule_id, nominal_time) DO "
                       "NOTHING RETURNING fire_id",
                       6, iv, &err);
        if (!r) {
            sm_log(SM_LOG_WARN, "schedule %s: recording fire %s: %s", name, nominal, err.msg);
            sm_sched_x(d->db, "ROLLBACK", 0, NULL, NULL);
            return;
        }
        if (PQntuples(r))
            sm_log(SM_LOG_INFO, "schedule %s: fire %s for %s %s%s%s", name, PQgetvalue(r, 0, 0), nominal, state,
                   reason[0] ? ": " : "", reason);
        PQclear(r);
        if (!strcmp(state, "queued") && digest[0]) snprintf(prev, sizeof prev, "%s", digest);
    }
    char nowiso[32];
    sm_time_format_utc(inow, nowiso);
    const char *uv[2] = {sid, nowiso};
    if (sm_sched_x(d->db,
                   "UPDATE schedules SET decided_through = GREATEST(decided_through, $2::timestamptz) WHERE "
                   "schedule_id = $1::bigint",
                   2, uv, &err) ||
        sm_sched_x(d->db, "COMMIT", 0, NULL, &err)) {
        sm_log(SM_LOG_WARN, "schedule %s: %s", name, err.msg);
        sm_sched_x(d->db, "ROLLBACK", 0, NULL, NULL);
    }
}

/* Decides every due schedule; returns the earliest upcoming fire time (clock seconds), or +inf. */
static double decide_all(sched_daemon *d) {
    sm_error err;
    PGresult *r = sm_sched_q(d->db,
                             "SELECT schedule_id, cron, tz, floor(extract(epoch FROM decided_through))::bigint, name "
                             "FROM schedules WHERE NOT paused ORDER BY schedule_id",
                             0, NULL, &err);
    if (!r) {
        sm_log(SM_LOG_WARN, "reading schedules: %s", err.msg);
        return INFINITY;
    }
    double soonest = INFINITY, now = sm_sched_now();
    for (int i = 0; i < PQntuples(r); i++) {
        sm_cron c;
        sm_tz *tz = NULL;
        if (sm_cron_parse(PQgetvalue(r, i, 1), &c, NULL) || sm_tz_load(PQgetvalue(r, i, 2), &tz, NULL)) continue;
        int64_t decided = strtoll(PQgetvalue(r, i, 3), NULL, 10), next;
        if (sm_cron_next(&c, tz, decided, &next, NULL) == 0) {
            if ((double)next <= now) {
                decide_one(d, PQgetvalue(r, i, 0), now);
                /* whatever happened (decided here or by another daemon), the next one is after now */
                if (sm_cron_next(&c, tz, (int64_t)floor(now), &next, NULL)) next = INT64_MAX;
            }
            if ((double)next < soonest) soonest = (double)next;
        }
        sm_tz_free(tz);
    }
    PQclear(r);
    return soonest;
}

static int backfill_done(sched_daemon *d) {
    char only[32];
    snprintf(only, sizeof only, "%lld", (long long)d->o.only_schedule);
    const char *v[1] = {only};
    PGresult *r = sm_sched_q(d->db,
                             "SELECT count(*) FROM schedule_fires WHERE schedule_id = $1::bigint AND trigger = "
                             "'backfill' AND state IN ('queued', 'running')",
                             1, v, NULL);
    int done = r && strcmp(PQgetvalue(r, 0, 0), "0") == 0;
    PQclear(r);
    return done;
}

static void finish(sched_daemon *d) {
    if (d->finished) return;
    d->finished = 1;
    const char *v[1] = {d->id};
    if (PQstatus(d->db) == CONNECTION_OK)
        sm_sched_x(d->db, "UPDATE schedule_daemons SET stopped_at = now() WHERE daemon_id = $1", 1, v, NULL);
    uv_timer_stop(&d->timer);
    uv_close((uv_handle_t *)&d->timer, NULL);
    uv_close((uv_handle_t *)&d->sig_term, NULL);
    uv_close((uv_handle_t *)&d->sig_int, NULL);
}

static void on_tick(uv_timer_t *t) {
    sched_daemon *d = t->data;
    if (d->finished) return;
    double delay = d->o.poll_s, hb_every = d->o.lease_s / 3;
    int ok = db_ok(d);
    double mnow = sm_monotonic();
    if (ok) {
        for (int i = 0; i < d->o.max_runs; i++) {
            record_result(d, &d->slots[i]);
            maybe_free(&d->slots[i]);
        }
        if (mnow - d->last_hb >= hb_every) {
            d->last_hb = mnow; /* the attempt counts: a failing statement is retried at the heartbeat pace */
            heartbeat(d);
            rescue(d);
        }
    } else
        delay = 2;
    for (int i = 0; i < d->o.max_runs; i++) {
        slot *s = &d->slots[i];
        if (s->used && !s->exited && s->interrupt && !s->killed && mnow >= s->kill_at) {
            sm_log(SM_LOG_WARN, "run of %s %s (pid %d) ignored SIGINT for %.0f s: SIGKILL", s->schedule, s->nominal,
                   s->proc.pid, d->o.kill_grace_s);
            if (kill(-s->proc.pid, SIGKILL)) kill(s->proc.pid, SIGKILL);
            s->killed = 1;
        }
        if (s->used && !s->exited && s->interrupt && !s->killed && s->kill_at - mnow < delay) delay = s->kill_at - mnow;
    }
    if (d->stopping) {
        if (!d->hard_stop && mnow - d->stop_started >= d->o.drain_s) {
            d->hard_stop = 1;
            sm_log(SM_LOG_INFO, "daemon %s: drain period over; interrupting %d run(s)", d->id, nused(d));
        }
        if (d->hard_stop)
            for (int i = 0; i < d->o.max_runs; i++) interrupt_slot(&d->slots[i], INT_SHUTDOWN, d->o.kill_grace_s);
        if (nused(d) == 0 || (!ok && d->hard_stop && mnow - d->stop_started > d->o.drain_s + 60)) {
            sm_log(SM_LOG_INFO, "daemon %s: stopped", d->id);
            finish(d);
            return;
        }
        uv_timer_start(&d->timer, on_tick, 200, 0);
        return;
    }
    if (ok) {
        if (d->o.only_schedule == 0) {
            double next = decide_all(d);
            if (isfinite(next)) {
                double real = (next - sm_sched_now()) / sm_sched_speed();
                if (real < delay) delay = real;
            }
        }
        start_queued(d);
        if (d->o.only_schedule && nused(d) == 0 && backfill_done(d)) {
            finish(d);
            return;
        }
        double hb_left = hb_every - (sm_monotonic() - d->last_hb);
        if (hb_left < delay) delay = hb_left;
    }
    if (delay < 0.02) delay = 0.02;
    uv_timer_start(&d->timer, on_tick, (uint64_t)(delay * 1000), 0);
}

static void on_signal(uv_signal_t *h, int signum) {
    sched_daemon *d = h->data;
    if (!d->stopping) {
        d->stopping = 1;
        d->stop_started = sm_monotonic();
        sm_log(SM_LOG_INFO, "daemon %s: %s received; starting nothing new, waiting up to %.0f s for %d run(s)", d->id,
               strsignal(signum), d->o.drain_s, nused(d));
    } else if (!d->hard_stop) {
        d->hard_stop = 1;
        sm_log(SM_LOG_INFO, "daemon %s: second signal; interrupting runs now", d->id);
    }
    tick_soon(d);
}

void sm_sched_daemon_defaults(sm_sched_daemon_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_runs = 2;
    o->poll_s = 5;
    o->lease_s = 30;
    o->kill_grace_s = 10;
    o->drain_s = 30;
    o->misfire_s = 60;
    o->max_attempts = 3;
}

int sm_sched_daemon_run(const sm_sched_daemon_opts *o, sm_error *err) {
    if (o->max_runs < 1 || o->max_runs > 1024 || o->poll_s <= 0 || o->lease_s <= 0 || o->kill_grace_s < 0 ||
        o->drain_s < 0 || o->max_attempts < 1)
        return sm_error_set(err, SM_ERR_ARG, "daemon: option out of range");
    sched_daemon *d = calloc(1, sizeof *d);
    if (!d) return sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    d->o = *o;
    d->db = sm_sched_connect(o->cli_dsn, &d->dsn, err);
    if (!d->db) {
        free(d);
        return err ? err->code : SM_ERR_DB;
    }
    ssize_t n = readlink("/proc/self/exe", d->exe, sizeof d->exe - 1);
    if (n <= 0) {
        PQfinish(d->db);
        free(d->dsn);
        free(d);
        return sm_error_set(err, SM_ERR_IO, "cannot find the running binary (/proc/self/exe): %s", strerror(errno));
    }
    d->exe[n] = 0;
    if (o->runner && access(o->runner, X_OK))
        sm_log(SM_LOG_WARN, "runner %s is not executable: fires will fail", o->runner);
    gethostname(d->host, sizeof d->host - 1);
    char uuid[37];
    sm_uuid4(uuid);
    snprintf(d->pid, sizeof d->pid, "%d", (int)getpid());
    snprintf(d->id, sizeof d->id, "%.64s/%s/%.8s", d->host, d->pid, uuid);
    d->slots = calloc((size_t)o->max_runs, sizeof *d->slots);
    d->last_hb = -1e9;
    uv_loop_init(&d->loop);
    uv_timer_init(&d->loop, &d->timer);
    d->timer.data = d;
    uv_signal_init(&d->loop, &d->sig_term);
    uv_signal_init(&d->loop, &d->sig_int);
    d->sig_term.data = d->sig_int.data = d;
    uv_signal_start(&d->sig_term, on_signal, SIGTERM);
    uv_signal_start(&d->sig_int, on_signal, SIGINT);
    sm_log(SM_LOG_INFO, "daemon %s: %s (max %d runs, lease %.0f s, runner %s)", d->id,
           o->only_schedule ? "backfilling" : "started", o->max_runs, o->lease_s, o->runner ? o->runner : d->exe);
    sm_web *web = NULL;
    int web_rc = o->serve ? sm_web_start(&d->loop, o->serve, d->dsn, &web, err) : SM_OK;
    if (web_rc) finish(d); /* --serve cannot start: stop before firing anything */
    uv_timer_start(&d->timer, on_tick, 0, 0);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    sm_web_stop(web);
    uv_loop_close(&d->loop);
    PQfinish(d->db);
    free(d->dsn);
    free(d->slots);
    free(d);
    return web_rc;
}

int sm_sched_exec_child(int argc, char **argv) {
    /* argv: daemon --exec-child PPID -- PROGRAM ARGS... */
    if (argc < 5 || strcmp(argv[3], "--")) {
        fprintf(stderr, "scalemix daemon --exec-child: internal use only\n");
        return 2;
    }
    pid_t want = (pid_t)strtol(argv[2], NULL, 10);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) perror("prctl(PR_SET_PDEATHSIG)");
    if (getppid() != want) return 1; /* the daemon died before we got here */
    execvp(argv[4], argv + 4);
    fprintf(stderr, "scalemix daemon: cannot run %s: %s\n", argv[4], strerror(errno));
    return 127;
}
