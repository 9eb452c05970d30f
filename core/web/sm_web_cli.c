/* sm_web_cli.c - `scalemix serve`: the status pages on their own libuv loop until SIGINT or SIGTERM. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/sm_db.h"
#include "sm_commands.h"
#include "web/sm_web.h"

static const char usage[] =
    "usage: scalemix serve [--listen HOST:PORT] [--db DSN] [--token TOKEN | --token-file FILE]\n"
    "\n"
    "Serves pages about the runs recorded in the lineage database, read through its read-only role:\n"
    "  /runs (filter ?status= &pipeline=, paged by ?before=RUN_ID &limit=), /runs/RUN_ID, /autoscale?run=RUN_ID,\n"
    "  /lineage/artifact/SHA256, /lineage/stage/STAGE_RUN_ID, /schedules, /metrics?stage_run=ID&name=METRIC\n"
    "Each page is also JSON: add ?format=json or put /api before its path. Only GET and HEAD are answered.\n"
    "\n"
    "  --listen HOST:PORT  address to bind (default 127.0.0.1:8719; [::1]:8719 for IPv6; port 0 = any free port)\n"
    "  --token TOKEN       require TOKEN (16+ characters) on every request: header 'Authorization: Bearer TOKEN',\n"
    "                      or ?token=TOKEN once in a browser (a cookie keeps it); required off loopback\n"
    "  --token-file FILE   the token from the first line of FILE (keeps it out of the process list)\n"
    "  --db DSN            the lineage database (default: as `scalemix sql`)\n";

static void on_signal(uv_signal_t *h, int sig) {
    (void)sig;
    sm_log(SM_LOG_INFO, "serve: stopping");
    uv_stop(h->loop);
}

int sm_cmd_serve(int argc, char **argv) {
    sm_web_opts o = {0};
    const char *cli_dsn = NULL, *token_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(usage, stdout); return 0; }
        if (strcmp(a, "--listen") && strcmp(a, "--db") && strcmp(a, "--token") && strcmp(a, "--token-file")) {
            fprintf(stderr, "scalemix serve: unknown argument '%s'\n%s", a, usage);
            return 2;
        }
        if (!v) { fprintf(stderr, "scalemix serve: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "--listen")) o.listen = v;
        else if (!strcmp(a, "--db")) cli_dsn = v;
        else if (!strcmp(a, "--token")) o.token = v;
        else token_file = v;
        i++;
    }
    if (o.token && token_file) { fprintf(stderr, "scalemix serve: give --token or --token-file, not both\n"); return 2; }
    sm_error err = {0};
    char *tok = NULL, *dsn = NULL, ws[PATH_MAX];
    if (token_file) {
        if (sm_web_read_token(token_file, &tok, &err)) { fprintf(stderr, "scalemix serve: %s\n", err.msg); return 2; }
        o.token = tok;
    }
    char host[128];
    int port, loopback;
    if (sm_web_parse_listen(o.listen ? o.listen : "127.0.0.1:8719", host, sizeof host, &port, &loopback, &err) ||
        (!loopback && !o.token && sm_error_set(&err, SM_ERR_ARG, "listening on %s (not loopback) needs --token or --token-file", host))) {
        fprintf(stderr, "scalemix serve: %s\n", err.msg);
        free(tok);
        return 2;
    }
    if (sm_db_workspace(ws, sizeof ws, &err) || sm_db_resolve(ws, cli_dsn, &dsn, &err) ||
        (!dsn && sm_error_set(&err, SM_ERR_ARG, "the lineage database is disabled (--db none / SCALEMIX_DB=none)"))) {
        fprintf(stderr, "scalemix serve: %s\n", err.msg);
        free(tok);
        return err.code == SM_ERR_ARG ? 2 : 1;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    sm_web *w = NULL;
    int rc = sm_web_start(&loop, &o, dsn, &w, &err);
    free(dsn);
    free(tok);
    if (rc) {
        fprintf(stderr, "scalemix serve: %s\n", err.msg);
        uv_loop_close(&loop);
        return rc == SM_ERR_ARG ? 2 : 1;
    }
    printf("serving on port %d\n", sm_web_port(w));
    fflush(stdout);
    uv_signal_t si, st;
    uv_signal_init(&loop, &si);
    uv_signal_init(&loop, &st);
    uv_signal_start(&si, on_signal, SIGINT);
    uv_signal_start(&st, on_signal, SIGTERM);
    signal(SIGPIPE, SIG_IGN);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&si, NULL);
    uv_close((uv_handle_t *)&st, NULL);
    sm_web_stop(w);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return 0;
}
