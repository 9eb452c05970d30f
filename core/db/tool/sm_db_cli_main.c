/* sm_db_cli_main.c - a test driver for the db commands until core/main.c dispatches to them:
 *   sm_db_cli sql|history|db ARGS...      as `scalemix sql|history|db ARGS...`
 *   sm_db_cli ingest [--db DSN] FILE      sends the JSON events of FILE (one per line) through the async
 *                                         sink, waits until the database has them all (or 60 s), and
 *                                         prints "emitted=N committed=N rejected=N". */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "db/sm_db.h"
#include "sm_commands.h"

typedef struct ingest_state {
    sm_sink *sink;
    uv_timer_t timer;
    double deadline;
    int timed_out;
} ingest_state;

static void watch(uv_timer_t *t) {
    ingest_state *st = t->data;
    sm_pg_sink_stats s;
    sm_pg_sink_get_stats(st->sink, &s);
    if (s.committed + s.rejected >= s.emitted || sm_monotonic() > st->deadline) {
        st->timed_out = s.committed + s.rejected < s.emitted;
        uv_timer_stop(t);
        uv_close((uv_handle_t *)t, NULL);
    }
}

static int ingest(int argc, char **argv) {
    const char *cli = NULL, *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--db") && i + 1 < argc) cli = argv[++i];
        else file = argv[i];
    }
    if (!file) { fprintf(stderr, "usage: sm_db_cli ingest [--db DSN] FILE\n"); return 2; }
    FILE *f = fopen(file, "r");
    if (!f) { perror(file); return 1; }
    sm_error err = {0};
    char ws[PATH_MAX], *dsn = NULL;
    if (sm_db_workspace(ws, sizeof ws, &err) || sm_db_resolve(ws, cli, &dsn, &err) || !dsn) {
        fprintf(stderr, "ingest: %s\n", dsn ? err.msg : "database disabled");
        fclose(f);
        return 1;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    ingest_state st = {0};
    if (sm_pg_sink_open(&loop, dsn, ws, &st.sink, &err)) {
        fprintf(stderr, "ingest: %s\n", err.msg);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        json_error_t je;
        json_t *ev = json_loadb(line, (size_t)n, 0, &je);
        if (!ev) { fprintf(stderr, "ingest: %s: line %d: %s\n", file, je.line, je.text); continue; }
        st.sink->emit(st.sink, ev);
        json_decref(ev);
    }
    free(line);
    fclose(f);
    st.deadline = sm_monotonic() + 60;
    uv_timer_init(&loop, &st.timer);
    st.timer.data = &st;
    uv_timer_start(&st.timer, watch, 10, 10);
    uv_run(&loop, UV_RUN_DEFAULT);
    sm_pg_sink_stats s;
    sm_pg_sink_get_stats(st.sink, &s);
    st.sink->close(st.sink);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(dsn);
    printf("emitted=%llu committed=%llu rejected=%llu\n", (unsigned long long)s.emitted,
           (unsigned long long)s.committed, (unsigned long long)s.rejected);
    return st.timed_out ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: sm_db_cli sql|history|db|ingest ARGS...\n");
        return 2;
    }
    if (!strcmp(argv[1], "sql")) return sm_cmd_sql(argc - 1, argv + 1);
    if (!strcmp(argv[1], "history")) return sm_cmd_history(argc - 1, argv + 1);
    if (!strcmp(argv[1], "db")) return sm_cmd_db(argc - 1, argv + 1);
    if (!strcmp(argv[1], "ingest")) return ingest(argc - 1, argv + 1);
    fprintf(stderr, "sm_db_cli: unknown command %s\n", argv[1]);
    return 2;
}
