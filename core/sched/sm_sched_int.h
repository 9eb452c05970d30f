/* sm_sched_int.h - shared between the schedule CLI and the daemon (not a public API). */
#ifndef SM_SCHED_INT_H
#define SM_SCHED_INT_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdint.h>
#include "../sm_common.h"

/* The clock every scheduling decision reads. TEST-ONLY injection: SCALEMIX_CLOCK_FILE=PATH, a file holding
 * "ISO8601 [SPEED]": now = that time + (real now - the file's mtime) * SPEED (default 1), re-read on
 * every call, so a test moves time for every process at once by rewriting the file; or
 * SCALEMIX_FAKE_NOW=ISO8601 with optional SCALEMIX_FAKE_SPEED, anchored when first read. */
double sm_sched_now(void);
/* Clock seconds per real second (1 unless faked). */
double sm_sched_speed(void);

/* $SCALEMIX_HOME, else ./.scalemix. */
const char *sm_sched_workspace(void);
/* Connects to the lineage database chosen by sm_db_resolve (cli_dsn = --db or NULL) and checks that the
 * schedule tables exist. *dsn_out (optional) receives the malloc'd connection string. */
PGconn *sm_sched_connect(const char *cli_dsn, char **dsn_out, sm_error *err);
/* Runs a parameterized statement; NULL with err set (the server's message) unless it succeeded. */
PGresult *sm_sched_q(PGconn *c, const char *sql, int n, const char *const *vals, sm_error *err);
/* Like sm_sched_q for statements whose result is not needed; 0 or SM_ERR_DB. */
int sm_sched_x(PGconn *c, const char *sql, int n, const char *const *vals, sm_error *err);

/* Checks and completes a spec (sm_sched.h): defaults filled, cron and zone validated, pipeline and
 * when_changed paths made absolute, catchup_window as seconds. Returns a new reference in *out. */
int sm_sched_spec_normalize(json_t *in, json_t **out, sm_error *err);
/* Inserts the normalized spec; replace=0 fails if the name exists, 1 updates it (see sm_sched_declare). */
int sm_sched_store(PGconn *c, json_t *spec, int replace, sm_error *err);
/* Parses "90", "90s", "15m", "6h", "2d" into seconds. */
int sm_sched_parse_duration(const char *s, double *secs, sm_error *err);
/* sha256 over the paths (each a file or a directory tree walked in name order, with relative names and
 * file digests), in the order given; a missing path is an error. */
int sm_sched_digest(const char *const *paths, size_t n, char hex[65], sm_error *err);

/* 1 if s is a valid schedule name: 1-64 characters of [A-Za-z0-9_.-], not starting with '.' or '-' (so it
 * is safe as a path component). The CLI checks it on input; the daemon on every name it reads back. */
int sm_sched_valid_name(const char *s);

/* What a schedule's authentication tag covers (sm_sched_auth.c); params and when_changed as JSON text in
 * any formatting (jsonb's rendering included). */
typedef struct sm_sched_auth_fields {
    const char *name, *pipeline, *script_sha256, *params, *cron, *tz, *when_changed;
} sm_sched_auth_fields;
/* The HMAC-SHA256 tag (hex) of f under the workspace's key <workspace>/sched.key (0600, made on first use). */
int sm_sched_auth_tag(const sm_sched_auth_fields *f, char hex[65], sm_error *err);
/* SM_OK if the daemon may run f: a valid name, a tag that verifies and (check_script) a pipeline script whose
 * sha256 is still f->script_sha256; otherwise err says which check refused it, starting "refused: ". */
int sm_sched_auth_check(const sm_sched_auth_fields *f, const char *tag, int check_script, sm_error *err);

typedef struct sm_sched_daemon_opts {
    const char *cli_dsn;
    int max_runs;          /* concurrent children of this daemon */
    double poll_s;         /* re-read schedules at least this often (real seconds) */
    double lease_s;        /* a running fire's lease; heartbeats renew it every lease/3 */
    double kill_grace_s;   /* SIGINT -> SIGKILL */
    double drain_s;        /* on SIGTERM, how long running children may finish before being interrupted */
    double misfire_s;      /* how late (clock seconds) a fire may start and still count as on time */
    int max_attempts;      /* a fire lost with its daemon this many times is marked failed */
    const char *runner;    /* TEST-ONLY: program run instead of this binary (gets the same argv) */
    int64_t only_schedule; /* > 0: backfill mode: only this schedule's backfill fires, exit when none left */
    const struct sm_web_opts *serve; /* non-NULL: the web pages on the daemon's loop too (core/web/sm_web.h) */
} sm_sched_daemon_opts;

void sm_sched_daemon_defaults(sm_sched_daemon_opts *o);
/* Runs the daemon until SIGTERM/SIGINT (or, in backfill mode, until its fires are done). */
int sm_sched_daemon_run(const sm_sched_daemon_opts *o, sm_error *err);

/* Entry for the child wrapper: `scalemix daemon --exec-child PPID -- PROGRAM ARGS...` asks the kernel to
 * kill the child when the daemon dies (so a killed daemon leaves no orphan run behind), then execs. */
int sm_sched_exec_child(int argc, char **argv);

#endif
