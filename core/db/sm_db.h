/* sm_db.h - the lineage database: choosing the server (given DSN or embedded), migrations, and the
 * asynchronous event sink. Owner: the db module. Nothing outside core/db and core/sched speaks SQL. */
#ifndef SM_DB_H
#define SM_DB_H

#include <stddef.h>
#include <uv.h>
#include "../sm_common.h"
#include "../sm_events.h"

/* Decides which database to use, in this order: cli_dsn (--db), $SCALEMIX_DB, the libpq environment
 * (PGHOST/PGDATABASE/PGSERVICE set), else the embedded server under <workspace>/pg, which is created
 * and started if needed (Unix socket only). "none" (from --db or SCALEMIX_DB) means no database:
 * *dsn_out is set to NULL and SM_OK returned. Otherwise *dsn_out is a malloc'd libpq connection
 * string. Applies pending migrations (under an advisory lock). */
int sm_db_resolve(const char *workspace, const char *cli_dsn, char **dsn_out, sm_error *err);

/* The PostgreSQL event sink: batches events and writes them over a non-blocking libpq connection driven
 * by loop (uv_poll on PQsocket); every event is first appended to <workspace>/journal (fsync'd in
 * batches) and replayed in order when the server is unreachable or restarts, keyed by event_id so that
 * nothing is written twice.
 * Loop use: the sink's handles keep the loop alive only while a flush() waits, so an idle sink never keeps
 * uv_run from returning. flush(done) completes when everything emitted before it is in the database, or
 * durably journaled while the database is unreachable (or still behind 30 s after the flush began). After
 * close(), run the loop once more so that the
 * sink's handles close and its memory is freed; events not yet in the database stay in the journal and
 * the next sink opened on the workspace sends them. A journal left by a sink that died is taken over at
 * open. Unsent events are kept in memory up to 64 MiB; beyond that they wait in the journal only and are
 * read back when their turn comes (the pending index still costs about 48 bytes per event). */
int sm_pg_sink_open(uv_loop_t *loop, const char *dsn, const char *workspace, sm_sink **out, sm_error *err);

/* Sends the events left in journals of sinks that are gone (a run that ended while the database was down)
 * and waits until the database has them, or is found unreachable, or 30 s passed; what is not sent stays
 * journaled. Does nothing (quickly) when there is no such journal. */
int sm_db_drain_journals(const char *workspace, const char *dsn, sm_error *err);

/* A run's liveness lease (core/db/sm_db_runs.c): an flock on <ws>/runs/<run_id>.lock held while the process
 * lives. take: SM_OK with *fd; release: removes the file and drops the lock (at a recorded end). */
int sm_run_lease_take(const char *workspace, const char *run_id, int *fd, sm_error *err);
void sm_run_lease_release(const char *workspace, const char *run_id, int fd);
/* Marks abandoned every run of this host that the database calls running or cancelling but whose lease in
 * this workspace is free (its process is gone: SIGKILL, crash); *marked: how many. */
int sm_db_mark_abandoned(const char *workspace, const char *dsn, int *marked, sm_error *err);

/* The workspace directory: $SCALEMIX_HOME if set, else ./.scalemix, made absolute (not created). */
int sm_db_workspace(char *out, size_t n, sm_error *err);

/* Like sm_db_resolve without applying migrations: picks the server (starting the embedded one). */
int sm_db_pick(const char *workspace, const char *cli_dsn, char **dsn_out, sm_error *err);

/* Creates (initdb) and starts the embedded server of workspace if needed, as an unprivileged user when
 * running as root; returns the writer DSN (malloc'd). Serialized across processes by a file lock. */
int sm_db_server_start(const char *workspace, char **dsn_out, sm_error *err);

/* Stops the embedded server of workspace (pg_ctl stop -m fast); SM_OK if it was not running. */
int sm_db_server_stop(const char *workspace, sm_error *err);
/* Stops the embedded server of workspace and deletes its cluster and credentials (<ws>/pg/data, log, run, auth,
 * and the cluster folder under /var/lib/scalemix that belongs to this workspace); nothing of any other
 * workspace. *removed lists what was deleted (space-separated, "" if there was nothing). */
int sm_db_server_remove(const char *workspace, char *removed, size_t n, sm_error *err);

/* *running = 1 if the embedded server of workspace answers; info gets a one-line description. */
int sm_db_server_status(const char *workspace, int *running, char *info, size_t n, sm_error *err);

/* The embedded server's Unix socket directory for workspace (<workspace>/pg/run, or a short directory
 * under /tmp keyed by a hash of the workspace when that path would exceed the socket path limit). */
int sm_db_socket_dir(const char *workspace, char *out, size_t n, sm_error *err);

/* The DSN of the read-only role for the database at dsn: $SCALEMIX_DB_RO if set, else dsn with the user
 * replaced by scalemix_ro, its password dropped, and a passfile .../scalemix.pgpass (the embedded server's,
 * one per role) replaced by .../scalemix_ro.pgpass (malloc'd). */
int sm_db_ro_dsn(const char *dsn, char **ro_out, sm_error *err);

/* Applies pending migrations to the database at dsn under an advisory lock, each in a transaction,
 * recorded in schema_migrations; refuses a database newer than this binary. *applied (may be NULL) gets
 * how many were applied now. */
int sm_db_migrate(const char *dsn, int *applied, sm_error *err);

/* The highest migration version this binary carries. */
int sm_db_schema_version_supported(void);

/* The highest version recorded in schema_migrations of dsn (0 if none). */
int sm_db_schema_version(const char *dsn, int *version, sm_error *err);

/* dsn re-rendered with any password masked, for messages and `scalemix db dsn`. */
void sm_db_dsn_redact(const char *dsn, char *out, size_t n);

/* Sink statistics for tests and benchmarks (the sink returned by sm_pg_sink_open). */
typedef struct sm_pg_sink_stats {
    uint64_t emitted;    /* events accepted by emit */
    uint64_t journaled;  /* events durably in the journal */
    uint64_t committed;  /* events whose batch the database committed */
    uint64_t rejected;   /* events the database refused one by one (kept in journal/rejected.jsonl) */
    uint64_t batches;    /* batches committed */
    uint64_t reconnects; /* connections (re)established after the first */
    uint64_t replayed;   /* events taken over from journals of earlier sinks at open */
    uint64_t spilled;    /* events kept in the journal only (memory cap) and read back to be sent */
    int connected;
} sm_pg_sink_stats;
void sm_pg_sink_get_stats(sm_sink *sink, sm_pg_sink_stats *out);

#endif
