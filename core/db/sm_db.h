/* sm_db.h - the lineage database: choosing the server (given DSN or embedded), migrations, and the
 * asynchronous event sink. Owner: the db module. Nothing outside core/db and core/sched speaks SQL. */
#ifndef SM_DB_H
#define SM_DB_H

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
 * nothing is written twice. */
int sm_pg_sink_open(uv_loop_t *loop, const char *dsn, const char *workspace, sm_sink **out, sm_error *err);

#endif
