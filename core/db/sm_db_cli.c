/* sm_db_cli.c - the db commands: `scalemix sql`, `scalemix history`, `scalemix db`. */
#include "db/sm_db_internal.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sm_commands.h"

static const char *workspace_opt; /* --workspace DIR, as `scalemix run` takes it */

/* Removes --db DSN / --db=DSN and --workspace DIR from argv (anywhere); returns the new argc. */
static int take_db_opt(int argc, char **argv, const char **dsn) {
    int o = 0;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && !strcmp(argv[i], "--db") && i + 1 < argc) {
            *dsn = argv[++i];
        } else if (i > 0 && !strncmp(argv[i], "--db=", 5)) {
            *dsn = argv[i] + 5;
        } else if (i > 0 && !strcmp(argv[i], "--workspace") && i + 1 < argc) {
            workspace_opt = argv[++i];
        } else {
            argv[o++] = argv[i];
        }
    }
    argv[o] = NULL;
    return o;
}

static int workspace(char *out, size_t n, sm_error *err) {
    if (!workspace_opt || !*workspace_opt) return sm_db_workspace(out, n, err);
    char cwd[PATH_MAX];
    if (workspace_opt[0] != '/' && !getcwd(cwd, sizeof cwd)) return sm_error_set(err, SM_ERR_IO, "getcwd: %s", strerror(errno));
    int l = workspace_opt[0] == '/' ? snprintf(out, n, "%s", workspace_opt) : snprintf(out, n, "%s/%s", cwd, workspace_opt);
    return l < 0 || (size_t)l >= n ? sm_error_set(err, SM_ERR_ARG, "workspace path too long") : SM_OK;
}

static int open_db(const char *cli_dsn, char **dsn, sm_error *err) {
    char ws[PATH_MAX];
    int rc = workspace(ws, sizeof ws, err);
    if (!rc) rc = sm_db_resolve(ws, cli_dsn, dsn, err);
    if (!rc && !*dsn) rc = sm_error_set(err, SM_ERR_ARG, "the lineage database is disabled (--db none / SCALEMIX_DB=none)");
    if (!rc) {
        /* A run that ended while the database was down left its events journaled: show them too. */
        sm_error derr = {0};
        if (sm_db_drain_journals(ws, *dsn, &derr)) sm_log(SM_LOG_WARN, "db: journaled events not sent: %s", derr.msg);
        int gone = 0; /* runs whose process died without an end: abandoned, not running forever */
        if (sm_db_mark_abandoned(ws, *dsn, &gone, &derr)) sm_log(SM_LOG_WARN, "db: %s", derr.msg);
    }
    return rc;
}

static int report(const char *cmd, const sm_error *err) {
    fprintf(stderr, "scalemix %s: %s\n", cmd, err->msg);
    return err->code == SM_ERR_ARG ? 2 : 1;
}

/* A passfile line field: ':' and '\' escaped. */
static void passfile_escape(FILE *f, const char *v) {
    for (; *v; v++) {
        if (*v == ':' || *v == '\\') fputc('\\', f);
        fputc(*v, f);
    }
}

/* Runs psql with the connection given through the environment and, for a password, a private passfile,
 * so that nothing secret is on psql's command line. Returns psql's exit status. */
static int run_psql(const char *dsn, char **args, int nargs, sm_error *err) {
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &msg);
    if (!opts) {
        sm_error_set(err, SM_ERR_ARG, "not a libpq connection string: %s", msg ? msg : "?");
        PQfreemem(msg);
        return -1;
    }
    char passfile[] = "/tmp/scalemix-pgpass.XXXXXX";
    int have_pass = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val) continue;
        if (!strcmp(o->keyword, "password")) {
            int fd = mkstemp(passfile);
            FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
            if (!f) {
                if (fd >= 0) { close(fd); unlink(passfile); }
                PQconninfoFree(opts);
                sm_error_set(err, SM_ERR_IO, "creating a private password file: %s", strerror(errno));
                return -1;
            }
            fputs("*:*:*:*:", f);
            passfile_escape(f, o->val);
            fputc('\n', f);
            fclose(f);
            setenv("PGPASSFILE", passfile, 1);
            unsetenv("PGPASSWORD");
            have_pass = 1;
        } else if (o->envvar) {
            setenv(o->envvar, o->val, 1);
        }
    }
    PQconninfoFree(opts);
    char psql[PATH_MAX] = "psql";
    const char *bindir = getenv("SCALEMIX_PG_BINDIR");
    if (bindir && *bindir) snprintf(psql, sizeof psql, "%s/psql", bindir);
    char **argv = calloc((size_t)nargs + 2, sizeof *argv);
    if (!argv) return sm_error_set(err, SM_ERR_NOMEM, "out of memory"), -1;
    argv[0] = psql;
    for (int i = 0; i < nargs; i++) argv[i + 1] = args[i];
    /* Like system(): psql handles Ctrl-C itself; we only wait for it. */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_int, old_quit;
    sigaction(SIGINT, &ign, &old_int);
    sigaction(SIGQUIT, &ign, &old_quit);
    pid_t pid = fork();
    if (pid == 0) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGQUIT, &old_quit, NULL);
        execvp(psql, argv);
        fprintf(stderr, "scalemix sql: cannot run %s: %s (install postgresql-client)\n", psql, strerror(errno));
        _exit(127);
    }
    int st = 0, rc;
    if (pid < 0) {
        rc = -1;
        sm_error_set(err, SM_ERR_IO, "fork: %s", strerror(errno));
    } else {
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
        rc = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
    if (have_pass) unlink(passfile);
    free(argv);
    return rc;
}

int sm_cmd_sql(int argc, char **argv) {
    const char *cli = NULL;
    argc = take_db_opt(argc, argv, &cli);
    if (argc > 1 && !strcmp(argv[1], "--help")) {
        printf("usage: scalemix sql [--db DSN] [--workspace DIR] [psql arguments]\n"
               "Runs psql on the lineage database as the read-only role scalemix_ro (for a server given by DSN:\n"
               "$SCALEMIX_DB_RO if set, else the same server with user scalemix_ro). Example:\n"
               "  scalemix sql -At -c \"select run_id, status from runs order by started_at desc limit 5\"\n");
        return 0;
    }
    sm_error err = {0};
    char *dsn = NULL, *ro = NULL;
    if (open_db(cli, &dsn, &err) || sm_db_ro_dsn(dsn, &ro, &err)) {
        free(dsn);
        return report("sql", &err);
    }
    int rc = run_psql(ro, argv + 1, argc - 1, &err);
    free(dsn);
    free(ro);
    if (rc < 0) return report("sql", &err);
    return rc;
}

static void print_table(PGresult *r) {
    int nf = PQnfields(r), nt = PQntuples(r);
    int w[32] = {0};
    if (nf > 32) nf = 32;
    for (int j = 0; j < nf; j++) {
        w[j] = (int)strlen(PQfname(r, j));
        for (int i = 0; i < nt; i++) {
            int l = PQgetlength(r, i, j);
            if (l > w[j]) w[j] = l;
        }
        if (w[j] > 60) w[j] = 60;
    }
    for (int j = 0; j < nf; j++) printf("%s%-*s", j ? "  " : "", w[j], PQfname(r, j));
    printf("\n");
    for (int j = 0; j < nf; j++) {
        printf("%s", j ? "  " : "");
        for (int k = 0; k < w[j]; k++) putchar('-');
    }
    printf("\n");
    for (int i = 0; i < nt; i++) {
        for (int j = 0; j < nf; j++) printf("%s%-*.*s", j ? "  " : "", w[j], w[j], PQgetvalue(r, i, j));
        printf("\n");
    }
    printf("(%d run%s)\n", nt, nt == 1 ? "" : "s");
}

int sm_cmd_history(int argc, char **argv) {
    const char *cli = NULL, *limit = "20", *pipeline = NULL, *status = NULL;
    argc = take_db_opt(argc, argv, &cli);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            printf("usage: scalemix history [--db DSN] [--workspace DIR] [-n N] [--pipeline NAME] [--status STATUS]\n"
                   "Prints the most recent runs (default 20), newest first.\n");
            return 0;
        } else if (!strcmp(argv[i], "-n") && i + 1 < argc) {
            limit = argv[++i];
        } else if (!strcmp(argv[i], "--pipeline") && i + 1 < argc) {
            pipeline = argv[++i];
        } else if (!strcmp(argv[i], "--status") && i + 1 < argc) {
            status = argv[++i];
        } else {
            fprintf(stderr, "scalemix history: unknown argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    char *end;
    long n = strtol(limit, &end, 10);
    if (*end || n <= 0 || n > 1000000) {
        fprintf(stderr, "scalemix history: -n wants a positive number, got '%s'\n", limit);
        return 2;
    }
    sm_error err = {0};
    char *dsn = NULL, *ro = NULL;
    if (open_db(cli, &dsn, &err) || sm_db_ro_dsn(dsn, &ro, &err)) {
        free(dsn);
        return report("history", &err);
    }
    PGconn *c = sm_db_connect(ro, "scalemix-history", 10, &err);
    if (!c) {
        /* A server given by DSN may have no scalemix_ro role; this fixed, parameterized query is safe to run
         * as the writer. */
        sm_log(SM_LOG_DEBUG, "history: read-only role unavailable (%s); using the writer role", err.msg);
        c = sm_db_connect(dsn, "scalemix-history", 10, &err);
    }
    free(dsn);
    free(ro);
    if (!c) return report("history", &err);
    const char *vals[] = {limit, pipeline, status};
    PGresult *r = PQexecParams(
        c,
        "SELECT run_id, pipeline, status, trigger,"
        "       to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || 'Z' AS started_utc,"
        "       CASE WHEN finished_at IS NOT NULL THEN"
        "            round(extract(epoch FROM finished_at - started_at)::numeric, 1)::text || 's' END AS duration,"
        "       (SELECT count(*) FROM stage_runs s WHERE s.run_id = r.run_id) AS stages,"
        "       coalesce(left(error, 60), '') AS error"
        "  FROM runs r"
        " WHERE ($2::text IS NULL OR pipeline = $2) AND ($3::text IS NULL OR status = $3)"
        " ORDER BY started_at DESC NULLS LAST LIMIT $1::integer",
        3, NULL, vals, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "scalemix history: %s", PQerrorMessage(c));
        rc = 1;
    } else {
        print_table(r);
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}

static int db_usage(FILE *f) {
    fprintf(f, "usage: scalemix db [--db DSN] [--workspace DIR] status|start|stop|remove --yes|migrate|dsn\n"
               "  status   the embedded server's state, or the given server's schema version\n"
               "  start    create and start the embedded server (Unix socket in the workspace), migrate\n"
               "  stop     stop the embedded server\n"
               "  remove --yes  stop the embedded server and delete its cluster (the lineage) and credentials,\n"
               "           also its folder under /var/lib/scalemix (root in a private home); nothing of another workspace\n"
               "  migrate  apply pending migrations\n"
               "  dsn      print the connection string in use (password masked)\n"
               "The workspace is --workspace, else $SCALEMIX_HOME, else ./.scalemix; --db, SCALEMIX_DB or the PG*\n"
               "environment pick another server (--db none: no database).\n");
    return f == stdout ? 0 : 2;
}

int sm_cmd_db(int argc, char **argv) {
    const char *cli = NULL;
    argc = take_db_opt(argc, argv, &cli);
    if (argc < 2) return db_usage(stderr);
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "help")) return db_usage(stdout);
    sm_error err = {0};
    char ws[PATH_MAX];
    if (workspace(ws, sizeof ws, &err)) return report("db", &err);
    const char *given = cli && *cli ? cli : getenv("SCALEMIX_DB");
    int external = (given && *given) || getenv("PGHOST") || getenv("PGDATABASE") || getenv("PGSERVICE");
    if (!strcmp(sub, "start") || !strcmp(sub, "stop") || !strcmp(sub, "remove")) {
        if (external) {
            fprintf(stderr, "scalemix db %s: a server is given (--db, SCALEMIX_DB or PG*): only the embedded "
                    "server is started and stopped by scalemix\n", sub);
            return 2;
        }
        if (!strcmp(sub, "stop")) {
            if (sm_db_server_stop(ws, &err)) return report("db", &err);
            printf("stopped\n");
            return 0;
        }
        if (!strcmp(sub, "remove")) {
            if (argc != 3 || strcmp(argv[2], "--yes")) {
                fprintf(stderr, "scalemix db remove: deletes the lineage database of workspace %s for good; "
                        "confirm with --yes\n", ws);
                return 2;
            }
            char removed[8 * PATH_MAX];
            if (sm_db_server_remove(ws, removed, sizeof removed, &err)) return report("db", &err);
            printf("%s%s\n", removed[0] ? "removed " : "no embedded server to remove", removed);
            return 0;
        }
        char *dsn = NULL;
        int applied = 0, version = 0;
        if (sm_db_server_start(ws, &dsn, &err) || sm_db_migrate(dsn, &applied, &err) ||
            sm_db_schema_version(dsn, &version, &err)) {
            free(dsn);
            return report("db", &err);
        }
        char sock[PATH_MAX];
        sm_db_socket_dir(ws, sock, sizeof sock, &err);
        printf("running (socket %s, schema version %d, %d migration%s applied now)\n", sock, version, applied,
               applied == 1 ? "" : "s");
        free(dsn);
        return 0;
    }
    if (!strcmp(sub, "status")) {
        if (external) {
            char *dsn = NULL, safe[1024];
            int version = 0;
            if (sm_db_pick(ws, cli, &dsn, &err)) return report("db", &err);
            if (!dsn) { printf("disabled (none)\n"); return 0; }
            sm_db_dsn_redact(dsn, safe, sizeof safe);
            int rc = sm_db_schema_version(dsn, &version, &err);
            free(dsn);
            if (rc) { printf("unreachable: %s\n", err.msg); return 1; }
            printf("reachable: %s, schema version %d (this scalemix: %d)\n", safe, version,
                   sm_db_schema_version_supported());
            return 0;
        }
        int running = 0;
        char info[PATH_MAX * 3 + 128];
        if (sm_db_server_status(ws, &running, info, sizeof info, &err)) return report("db", &err);
        printf("%s\n", info);
        return running ? 0 : 3;
    }
    if (!strcmp(sub, "migrate")) {
        char *dsn = NULL;
        int applied = 0, version = 0;
        if (sm_db_pick(ws, cli, &dsn, &err)) return report("db", &err);
        if (!dsn) { fprintf(stderr, "scalemix db migrate: the database is disabled (none)\n"); return 2; }
        if (sm_db_migrate(dsn, &applied, &err) || sm_db_schema_version(dsn, &version, &err)) {
            free(dsn);
            return report("db", &err);
        }
        free(dsn);
        printf("schema version %d (%d migration%s applied now)\n", version, applied, applied == 1 ? "" : "s");
        return 0;
    }
    if (!strcmp(sub, "dsn")) {
        char *dsn = NULL, safe[1024];
        if (sm_db_pick(ws, cli, &dsn, &err)) return report("db", &err);
        if (!dsn) { printf("none\n"); return 0; }
        sm_db_dsn_redact(dsn, safe, sizeof safe);
        free(dsn);
        printf("%s\n", safe);
        return 0;
    }
    fprintf(stderr, "scalemix db: unknown subcommand '%s'\n", sub);
    return db_usage(stderr);
}
