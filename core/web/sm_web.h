/* sm_web.h - the status pages (`scalemix serve`, `scalemix daemon --serve`): runs, a run, AutoScale figures,
 * lineage graphs, schedules and metric curves, rendered on the server from the lineage database (read-only
 * role), each page also as JSON. HTTP by libmicrohttpd driven from a libuv loop; pages are built on the
 * loop's worker threads so that the loop never waits on the database. */
#ifndef SM_WEB_H
#define SM_WEB_H

#include <uv.h>
#include "sm_common.h"

typedef struct sm_web_opts {
    const char *listen;     /* "HOST:PORT" (IPv4 literal or [IPv6]); NULL = 127.0.0.1:8719; port 0 = any */
    const char *token;      /* required on every request when not NULL; mandatory off loopback */
} sm_web_opts;

typedef struct sm_web sm_web;

/* Starts serving on loop: checks the options (a non-loopback address without a token is SM_ERR_ARG),
 * connects to the read-only role of the database at dsn (the writer DSN; see sm_db_ro_dsn), loads the plot
 * stage for the figures and binds. The server's handles do not keep loop alive on their own. */
int sm_web_start(uv_loop_t *loop, const sm_web_opts *o, const char *dsn, sm_web **out, sm_error *err);
/* The TCP port actually bound (useful with port 0). */
int sm_web_port(const sm_web *w);
/* Stops accepting, waits for pages being built, closes its handles and runs loop until they are closed. */
void sm_web_stop(sm_web *w);
/* Parses --listen: "HOST:PORT"; *loopback set when HOST is 127.0.0.0/8 or ::1. */
int sm_web_parse_listen(const char *s, char *host, size_t hn, int *port, int *loopback, sm_error *err);
/* Reads a token file (first line, whitespace trimmed; at least 16 characters); malloc'd into *out. */
int sm_web_read_token(const char *path, char **out, sm_error *err);

#endif
