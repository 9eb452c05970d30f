/* test_db.c - the lineage database against a real embedded PostgreSQL started in a temporary workspace:
 * migrations (apply, idempotent, newer database refused, concurrent migrators), the SQL contract, the
 * sink's idempotent replay, lineage walks, the read-only role, rejected events, orphan journals. */
#include <libpq-fe.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "db/sm_db.h"
#include "../sm_test.h"

static char ws[64];
static char *dsn;
static PGconn *db;
static int have_server;

#define NEED_SERVER() do { if (!have_server) SKIP("no embedded server (see server_start)"); } while (0)

static PGresult *q(const char *sql, int n, const char *const *vals) {
    return PQexecParams(db, sql, n, NULL, vals, NULL, NULL, 0);
}

static long q_long(const char *sql, int n, const char *const *vals) {
    PGresult *r = q(sql, n, vals);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1) {
        fprintf(stderr, "  query failed: %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
        return -999;
    }
    long v = PQgetisnull(r, 0, 0) ? -1 : atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

static long q1(const char *sql, const char *arg) { return q_long(sql, arg ? 1 : 0, arg ? &arg : NULL); }

/* ---- events ---- */

typedef struct run_ctx {
    char run_id[48];
    long seq;
    json_t *events; /* every event emitted, for replays */
} run_ctx;

static void run_init(run_ctx *r, const char *id) {
    snprintf(r->run_id, sizeof r->run_id, "%s", id);
    r->seq = 0;
    r->events = json_array();
}

/* Adds common fields to ev (stolen) and records it. */
static json_t *ev_add(run_ctx *r, const char *type, json_t *ev) {
    char eid[96];
    r->seq++;
    snprintf(eid, sizeof eid, "%s/%ld", r->run_id, r->seq);
    json_object_set_new(ev, "type", json_string(type));
    json_object_set_new(ev, "run_id", json_string(r->run_id));
    json_object_set_new(ev, "seq", json_integer(r->seq));
    json_object_set_new(ev, "event_id", json_string(eid));
    json_array_append_new(r->events, ev);
    return ev;
}

static const char *T = "2026-11-24T12:00:00.000000Z";

static void ev_run_start(run_ctx *r, const char *pipeline) {
    ev_add(r, "run_start", json_pack("{s:s,s:s,s:s,s:{s:i},s:s,s:n,s:n,s:n,s:s,s:s}", "pipeline", pipeline,
                                     "script_path", "/p.lua", "script_sha256", "ab", "params", "budget", 5,
                                     "trigger", "manual", "nominal_time", "schedule", "parent_run_id",
                                     "started_at", T, "host", "test"));
}
static void ev_stage_start(run_ctx *r, const char *srid, const char *stage) {
    ev_add(r, "stage_start", json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:{},s:b,s:i,s:s}", "stage_run_id", srid, "stage",
                                       stage, "plugin", stage, "plugin_version", "1.0", "plugin_sha256", "cd",
                                       "cache_key", "key", "params", "reused", 0, "attempt", 1, "started_at", T));
}
static void ev_stage_end(run_ctx *r, const char *srid, const char *status) {
    ev_add(r, "stage_end", json_pack("{s:s,s:s,s:s,s:n,s:n}", "stage_run_id", srid, "status", status, "finished_at",
                                     T, "error", "result"));
}
static void ev_run_end(run_ctx *r, const char *status) {
    ev_add(r, "run_end", json_pack("{s:s,s:s,s:n}", "status", status, "finished_at", T, "error"));
}
static void art_id(const char *name, char hex[65]) { sm_sha256_hex(name, strlen(name), hex); }
static void ev_artifact(run_ctx *r, const char *name, const char *kind, const char *produced_by) {
    char hex[65];
    art_id(name, hex);
    ev_add(r, "artifact", json_pack("{s:s,s:s,s:s,s:s,s:i,s:o,s:{},s:s}", "artifact_id", hex, "kind", kind, "name",
                                    name, "path", name, "bytes", 100, "produced_by",
                                    produced_by ? json_string(produced_by) : json_null(), "meta", "created_at", T));
}
static void ev_io(run_ctx *r, const char *srid, const char *name, const char *dir) {
    char hex[65];
    art_id(name, hex);
    ev_add(r, "io", json_pack("{s:s,s:s,s:s,s:s}", "stage_run_id", srid, "artifact_id", hex, "direction", dir,
                              "name", name));
}
static void ev_metric(run_ctx *r, const char *srid, const char *name, long step, double v) {
    ev_add(r, "metric", json_pack("{s:s,s:s,s:I,s:n,s:f,s:s}", "stage_run_id", srid, "name", name, "step",
                                  (json_int_t)step, "domain", "value", v, "recorded_at", T));
}

/* ---- driving a sink ---- */

typedef struct drive {
    sm_sink *sink;
    uv_timer_t t;
    double deadline;
} drive;

static void drive_check(uv_timer_t *t) {
    drive *d = t->data;
    sm_pg_sink_stats s;
    sm_pg_sink_get_stats(d->sink, &s);
    if (s.committed + s.rejected >= s.emitted || sm_monotonic() > d->deadline) uv_close((uv_handle_t *)t, NULL);
}

/* Opens a sink on the test workspace, emits every event of each array, waits until the database has them
 * (or 30 s), closes the sink; returns its final stats. */
static sm_pg_sink_stats send_events(json_t *const *arrays, int n) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    drive d = {0};
    sm_error err = {0};
    sm_pg_sink_stats s = {0};
    if (sm_pg_sink_open(&loop, dsn, ws, &d.sink, &err)) FAILF("sink open: %s", err.msg);
    for (int a = 0; a < n; a++) {
        size_t i;
        json_t *ev;
        json_array_foreach(arrays[a], i, ev) d.sink->emit(d.sink, ev);
    }
    d.deadline = sm_monotonic() + 30;
    uv_timer_init(&loop, &d.t);
    d.t.data = &d;
    uv_timer_start(&d.t, drive_check, 5, 5);
    uv_run(&loop, UV_RUN_DEFAULT);
    sm_pg_sink_get_stats(d.sink, &s);
    d.sink->close(d.sink);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    return s;
}

/* ---- tests ---- */

TEST(test_workspace_and_socket_dir) {
    char out[512];
    sm_error err = {0};
    CHECK_EQ_INT(sm_db_socket_dir("/tmp/ws", out, sizeof out, &err), 0);
    CHECK_EQ_STR(out, "/tmp/ws/pg/run");
    char longws[300];
    memset(longws, 'a', sizeof longws);
    longws[0] = '/';
    longws[sizeof longws - 1] = 0;
    CHECK_EQ_INT(sm_db_socket_dir(longws, out, sizeof out, &err), 0);
    CHECK(strncmp(out, "/tmp/scalemix-", 14) == 0);
    CHECK(strlen(out) + strlen("/.s.PGSQL.5432") < 108);
    char again[512];
    sm_db_socket_dir(longws, again, sizeof again, &err);
    CHECK_EQ_STR(out, again);
    setenv("SCALEMIX_HOME", "/x/y", 1);
    CHECK_EQ_INT(sm_db_workspace(out, sizeof out, &err), 0);
    CHECK_EQ_STR(out, "/x/y");
    unsetenv("SCALEMIX_HOME");
    CHECK_EQ_INT(sm_db_workspace(out, sizeof out, &err), 0);
    CHECK(out[0] == '/' && strstr(out, "/.scalemix"));
}

TEST(test_none_and_bad_dsn) {
    char *d = (char *)1;
    sm_error err = {0};
    CHECK_EQ_INT(sm_db_resolve(ws, "none", &d, &err), 0);
    CHECK(d == NULL);
    CHECK_EQ_INT(sm_db_resolve(ws, "host='unterminated", &d, &err), SM_ERR_ARG);
    char red[256];
    sm_db_dsn_redact("host=/tmp user=u password=hunter2 dbname=x", red, sizeof red);
    CHECK(!strstr(red, "hunter2"));
    CHECK(strstr(red, "********"));
    sm_error e2 = {0};
    CHECK_EQ_INT(sm_db_migrate("host=/nonexistent-dir port=1 user=u password=hunter2 dbname=x", NULL, &e2),
                 SM_ERR_DB);
    CHECK(!strstr(e2.msg, "hunter2"));
}

TEST(test_migrations_apply_and_idempotent) {
    NEED_SERVER();
    CHECK_EQ_INT(q1("SELECT max(version) FROM schema_migrations", NULL), sm_db_schema_version_supported());
    long n = q1("SELECT count(*) FROM schema_migrations", NULL);
    CHECK(n >= 3);
    int applied = -1;
    sm_error err = {0};
    CHECK_EQ_INT(sm_db_migrate(dsn, &applied, &err), 0);
    CHECK_EQ_INT(applied, 0);
    CHECK_EQ_INT(q1("SELECT count(*) FROM schema_migrations", NULL), n);
    int v = 0;
    CHECK_EQ_INT(sm_db_schema_version(dsn, &v, &err), 0);
    CHECK_EQ_INT(v, sm_db_schema_version_supported());
}

TEST(test_newer_database_refused) {
    NEED_SERVER();
    PQclear(q("INSERT INTO schema_migrations (version, name, sha256) VALUES (999, '999_future.sql', 'x')", 0, NULL));
    sm_error err = {0};
    int rc = sm_db_migrate(dsn, NULL, &err);
    PQclear(q("DELETE FROM schema_migrations WHERE version = 999", 0, NULL));
    CHECK_EQ_INT(rc, SM_ERR_DB);
    CHECK_MSG(strstr(err.msg, "newer scalemix") && strstr(err.msg, "999"), "message: %s", err.msg);
    char *d = NULL;
    CHECK_EQ_INT(sm_db_resolve(ws, NULL, &d, &err), 0); /* and fine again without the future row */
    free(d);
}

/* Four processes migrate one fresh database at once: exactly one applies each migration. */
TEST(test_concurrent_migrators) {
    NEED_SERVER();
    char admin[512], fresh[512];
    char *u = strstr(dsn, "user='scalemix'");
    CHECK(u);
    char as_admin[512];
    snprintf(as_admin, sizeof as_admin, "%.*suser='scalemix_admin'%s", (int)(u - dsn), dsn, u + strlen("user='scalemix'"));
    char *pf = strstr(as_admin, "/scalemix.pgpass'"); /* and the admin's passfile, beside the writer's */
    CHECK(pf);
    snprintf(admin, sizeof admin, "%.*s/scalemix_admin.pgpass'%s", (int)(pf - as_admin), as_admin,
             pf + strlen("/scalemix.pgpass'"));
    char *p = strstr(admin, "dbname='scalemix'");
    CHECK(p);
    PGconn *a = PQconnectdb(admin);
    CHECK(PQstatus(a) == CONNECTION_OK);
    PQclear(PQexec(a, "SET client_min_messages = warning"));
    PQclear(PQexec(a, "DROP DATABASE IF EXISTS scalemix_conc"));
    PGresult *r = PQexec(a, "CREATE DATABASE scalemix_conc");
    CHECK_MSG(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(a));
    PQclear(r);
    PQfinish(a);
    snprintf(fresh, sizeof fresh, "%.*sdbname='scalemix_conc'%s", (int)(p - admin), admin, p + strlen("dbname='scalemix'"));
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t kids[4];
    for (int i = 0; i < 4; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            int applied = 0;
            sm_error err = {0};
            int rc = sm_db_migrate(fresh, &applied, &err);
            if (rc) fprintf(stderr, "  migrator %d: %s\n", i, err.msg);
            char b = (char)(rc ? -1 : applied);
            if (write(fds[1], &b, 1) != 1) _exit(3);
            _exit(rc ? 1 : 0);
        }
    }
    close(fds[1]);
    int total = 0, ok = 0;
    for (int i = 0; i < 4; i++) {
        int st;
        waitpid(kids[i], &st, 0);
        ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    char b;
    while (read(fds[0], &b, 1) == 1) total += b;
    close(fds[0]);
    CHECK_EQ_INT(ok, 4);
    long expected = q1("SELECT count(*) FROM schema_migrations", NULL);
    CHECK_EQ_INT(total, expected);
    PGconn *c = PQconnectdb(fresh);
    r = PQexec(c, "SELECT count(*), count(DISTINCT version) FROM schema_migrations");
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
    CHECK_EQ_INT(atol(PQgetvalue(r, 0, 0)), expected);
    CHECK_EQ_INT(atol(PQgetvalue(r, 0, 1)), expected);
    PQclear(r);
    PQfinish(c);
}

TEST(test_contract_columns) {
    NEED_SERVER();
    static const char *contract[][2] = {
        {"runs", "run_id,pipeline,script_sha256,params,status,trigger,nominal_time,started_at,finished_at,error,"
                 "parent_run_id,schedule"},
        {"stage_runs", "stage_run_id,run_id,stage,plugin,plugin_version,cache_key,reused,status,attempt,started_at,"
                       "finished_at,error,reason,resources"},
        {"stage_logs", "stage_run_id,seq,level,message,at"},
        {"stage_states", "stage_run_id,seq,state,executor,job_id,reason,at"},
        {"latest_stage_states", "stage_run_id,state,executor,job_id,reason,at"},
        {"artifacts", "artifact_id,kind,path,bytes,produced_by,created_at,meta"},
        {"stage_io", "stage_run_id,artifact_id,direction"},
        {"metrics", "stage_run_id,name,step,domain,value,recorded_at"},
        {"latest_metrics", "stage_run_id,name,step,domain,value,recorded_at"},
        {"mixtures", "stage_run_id,method,budget_tokens,domain,weight,tokens"},
        {"fits", "stage_run_id,domain,a,b,c,rmse"},
        {"run_states", "run_id,state,at"},
        {"lineage_events", "event,event_id,run_id"},
        {"schema_migrations", "version,name,applied_at"},
    };
    for (size_t t = 0; t < SM_ARRAY_LEN(contract); t++) {
        char cols[512];
        snprintf(cols, sizeof cols, "%s", contract[t][1]);
        for (char *save = NULL, *c = strtok_r(cols, ",", &save); c; c = strtok_r(NULL, ",", &save)) {
            const char *vals[] = {contract[t][0], c};
            long n = q_long("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' "
                            "AND table_name = $1 AND column_name = $2", 2, vals);
            CHECK_MSG(n == 1, "contract column %s.%s missing", contract[t][0], c);
        }
    }
    const char *jsonb_cols[][2] = {{"runs", "params"}, {"artifacts", "meta"}, {"lineage_events", "event"}};
    for (size_t i = 0; i < SM_ARRAY_LEN(jsonb_cols); i++) {
        const char *vals[] = {jsonb_cols[i][0], jsonb_cols[i][1]};
        CHECK_EQ_INT(q_long("SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND "
                            "column_name = $2 AND data_type = 'jsonb'", 2, vals), 1);
    }
    const char *fns[] = {"lineage_up", "lineage_down", "stage_upstream", "run_upstream", "run_downstream"};
    for (size_t i = 0; i < SM_ARRAY_LEN(fns); i++)
        CHECK_MSG(q1("SELECT count(*) FROM pg_proc WHERE proname = $1", fns[i]) == 1, "function %s missing", fns[i]);
}

TEST(test_ingest_and_idempotent_replay) {
    NEED_SERVER();
    run_ctx r;
    run_init(&r, "run-replay");
    ev_run_start(&r, "replay");
    ev_stage_start(&r, "sr-replay-1", "train");
    ev_artifact(&r, "replay-in", "shard", NULL);
    ev_io(&r, "sr-replay-1", "replay-in", "in");
    for (int i = 0; i < 50; i++) ev_metric(&r, "sr-replay-1", "loss", i, 4.0 - i * 0.01);
    ev_artifact(&r, "replay-model", "model", "sr-replay-1");
    ev_io(&r, "sr-replay-1", "replay-model", "out");
    ev_add(&r, "mixture", json_pack("{s:s,s:s,s:I,s:[{s:s,s:f,s:I},{s:s,s:f,s:I}]}", "stage_run_id", "sr-replay-1",
                                    "method", "autoscale", "budget_tokens", (json_int_t)1000000, "entries", "domain",
                                    "web", "weight", 0.7, "tokens", (json_int_t)700000, "domain", "code", "weight",
                                    0.3, "tokens", (json_int_t)300000));
    ev_add(&r, "fit", json_pack("{s:s,s:s,s:f,s:f,s:f,s:f}", "stage_run_id", "sr-replay-1", "domain", "web", "a", 1.5,
                                "b", 0.3, "c", 2.0, "rmse", 0.01));
    ev_stage_end(&r, "sr-replay-1", "succeeded");
    ev_add(&r, "run_state", json_pack("{s:s,s:s}", "state", "finishing", "at", T));
    /* Text that COPY must escape, and SQL that must stay data. */
    ev_add(&r, "metric", json_pack("{s:s,s:s,s:i,s:s,s:f,s:s}", "stage_run_id", "sr-replay-1", "name",
                                   "a\tb\\c\nd\r\u00e9'); DROP TABLE runs; --", "step", 7, "domain", "\\N",
                                   "value", 1e-300, "recorded_at", T));
    ev_run_end(&r, "succeeded");
    long nev = (long)json_array_size(r.events);
    sm_pg_sink_stats s = send_events(&r.events, 1);
    CHECK_EQ_INT(s.emitted, nev);
    CHECK_EQ_INT(s.committed, nev);
    const char *rid = r.run_id;
    CHECK_EQ_INT(q1("SELECT count(*) FROM runs WHERE run_id = $1 AND status = 'succeeded'", rid), 1);
    CHECK_EQ_INT(q1("SELECT count(*) FROM metrics WHERE stage_run_id = 'sr-replay-1'", NULL), 51);
    const char *odd = "a\tb\\c\nd\r\u00e9'); DROP TABLE runs; --";
    CHECK_EQ_INT(q1("SELECT count(*) FROM metrics WHERE name = $1 AND domain = '\\N' AND value = 1e-300", odd), 1);
    CHECK_EQ_INT(q1("SELECT count(*) FROM mixtures WHERE stage_run_id = 'sr-replay-1'", NULL), 2);
    CHECK_EQ_INT(q1("SELECT count(*) FROM fits WHERE stage_run_id = 'sr-replay-1'", NULL), 1);
    CHECK_EQ_INT(q1("SELECT count(*) FROM stage_io WHERE stage_run_id = 'sr-replay-1'", NULL), 2);
    CHECK_EQ_INT(q1("SELECT count(*) FROM run_states WHERE run_id = $1", rid), 3);
    CHECK_EQ_INT(q1("SELECT count(*) FROM lineage_events WHERE run_id = $1", rid), 5);
    CHECK_EQ_INT(q1("SELECT count(*) FROM latest_metrics WHERE stage_run_id = 'sr-replay-1' AND step = 49", NULL), 1);
    CHECK_EQ_INT(q1("SELECT count(*) FROM lineage_events WHERE run_id = $1 AND event->>'eventType' = 'COMPLETE' "
                    "AND jsonb_array_length(event->'outputs') = 1 AND jsonb_array_length(event->'inputs') = 1",
                    rid), 1);
    /* Fingerprint of every row's version: a replay that rewrote anything would change an xmin. */
    const char *fp_sql =
        "SELECT (SELECT count(*) FROM metrics) + (SELECT count(*) FROM lineage_events) * 1000 + "
        "(SELECT count(*) FROM run_states) * 100000 + "
        "(SELECT coalesce(sum(xmin::text::bigint), 0) FROM runs WHERE run_id = $1) + "
        "(SELECT coalesce(sum(xmin::text::bigint), 0) FROM stage_runs WHERE run_id = $1)";
    long before = q1(fp_sql, rid);
    json_t *twice[] = {r.events, r.events};
    s = send_events(twice, 2);
    CHECK_EQ_INT(s.committed, 2 * nev);
    CHECK_EQ_INT(q1(fp_sql, rid), before);
    CHECK_EQ_INT(q1("SELECT count(*) FROM metrics WHERE stage_run_id = 'sr-replay-1'", NULL), 51);
    /* The event log is append-only, even for the writer. */
    const char *edits[] = {"UPDATE lineage_events SET seq = 0", "DELETE FROM lineage_events", "TRUNCATE lineage_events"};
    for (size_t i = 0; i < SM_ARRAY_LEN(edits); i++) {
        PGresult *res = q(edits[i], 0, NULL);
        CHECK_MSG(PQresultStatus(res) == PGRES_FATAL_ERROR, "lineage_events allowed: %s", edits[i]);
        PQclear(res);
    }
    json_decref(r.events);
}

/* Migration 017: a stage's reason and resources, its log lines (2,000 and the drop notice) and a remote
 * executor's states land once each; replaying every event writes nothing; the read-only role reads them. */
TEST(test_stage_reason_logs_and_states) {
    NEED_SERVER();
    run_ctx r;
    run_init(&r, "run-logs");
    ev_run_start(&r, "logs");
    ev_stage_start(&r, "sr-logs", "train");
    json_t *start = json_array_get(r.events, json_array_size(r.events) - 1);
    json_object_set_new(start, "reason", json_string("parameter 'budget' changed (1000000 -> 2000000)"));
    json_object_set_new(start, "resources", json_pack("{s:i,s:i,s:I,s:i,s:s}", "threads", 8, "gpu", 1,
                                                      "device_memory_bytes", (json_int_t)2147483648LL, "isolate", 0,
                                                      "executor", "slurm"));
    ev_stage_start(&r, "sr-logs-old", "tokenize"); /* as an older engine sends it: neither field */
    ev_stage_start(&r, "sr-logs-empty", "shard");  /* an empty reason is no reason */
    json_object_set_new(json_array_get(r.events, json_array_size(r.events) - 1), "reason", json_string(""));
    const char *states[][3] = {{"submitted", NULL, NULL}, {"pending", "Resources", "123_4"}, {"running", NULL, "123_4"}};
    for (int i = 0; i < 3; i++)
        ev_add(&r, "stage_state", json_pack("{s:s,s:s,s:s,s:o,s:o,s:s}", "stage_run_id", "sr-logs", "state", states[i][0],
                                            "executor", "slurm", "job_id", states[i][2] ? json_string(states[i][2]) : json_null(),
                                            "reason", states[i][1] ? json_string(states[i][1]) : json_null(), "at", T));
    for (int i = 0; i < 2000; i++) {
        char msg[64];
        snprintf(msg, sizeof msg, "line %d <b>'quoted'</b>\ttab", i);
        ev_add(&r, "stage_log", json_pack("{s:s,s:s,s:s,s:s}", "stage_run_id", "sr-logs", "level",
                                          i % 100 ? "info" : "warn", "message", msg, "at", T));
    }
    ev_add(&r, "stage_log", json_pack("{s:s,s:s,s:s,s:s}", "stage_run_id", "sr-logs", "level", "warn", "message",
                                      "37 more log lines dropped (at most 2000 per stage run)", "at", T));
    ev_stage_end(&r, "sr-logs", "succeeded");
    ev_stage_end(&r, "sr-logs-old", "succeeded");
    ev_stage_end(&r, "sr-logs-empty", "succeeded");
    ev_run_end(&r, "succeeded");
    long nev = (long)json_array_size(r.events);
    sm_pg_sink_stats s = send_events(&r.events, 1);
    CHECK_EQ_INT(s.committed, nev);
    CHECK_EQ_INT(s.rejected, 0);
    CHECK_EQ_INT(q1("SELECT count(*) FROM stage_runs WHERE stage_run_id = 'sr-logs' AND reason = $1",
                    "parameter 'budget' changed (1000000 -> 2000000)"), 1);
    CHECK_EQ_INT(q1("SELECT (resources->>'device_memory_bytes')::bigint / 1048576 FROM stage_runs "
                    "WHERE stage_run_id = 'sr-logs' AND resources->>'executor' = 'slurm' AND "
                    "(resources->>'threads')::int = 8", NULL), 2048);
    CHECK_EQ_INT(q1("SELECT count(*) FROM stage_runs WHERE stage_run_id = 'sr-logs-old' AND reason IS NULL AND "
                    "resources IS NULL AND status = 'succeeded'", NULL), 1);
    CHECK_EQ_INT(q1("SELECT count(*) FROM stage_runs WHERE stage_run_id = 'sr-logs-empty' AND reason IS NULL", NULL), 1);
    CHECK_EQ_INT(q1("SELECT count(*) FROM stage_logs WHERE stage_run_id = 'sr-logs'", NULL), 2001);
    CHECK_EQ_INT(q1("SELECT count(*) FROM stage_logs WHERE stage_run_id = 'sr-logs' AND level = 'warn'", NULL), 21);
    CHECK_EQ_INT(q1("SELECT count(*) FROM stage_logs WHERE message = $1", "line 1999 <b>'quoted'</b>\ttab"), 1);
    /* The tail: the last 50 lines in order, the drop notice last, through the index. */
    CHECK_EQ_INT(q1("SELECT count(*) FROM (SELECT message FROM stage_logs WHERE stage_run_id = 'sr-logs' "
                    "ORDER BY seq DESC LIMIT 50) t WHERE message LIKE 'line 19%'", NULL), 49);
    CHECK_EQ_INT(q1("SELECT count(*) FROM (SELECT message FROM stage_logs WHERE stage_run_id = 'sr-logs' "
                    "ORDER BY seq DESC LIMIT 1) t WHERE message LIKE '37 more log lines dropped%'", NULL), 1);
    CHECK_EQ_INT(q1("SELECT count(*) FROM latest_stage_states WHERE stage_run_id = 'sr-logs' AND state = 'running' "
                    "AND job_id = '123_4' AND executor = 'slurm'", NULL), 1);
    CHECK_EQ_INT(q1("SELECT count(*) FROM stage_states WHERE stage_run_id = 'sr-logs' AND state = 'pending' "
                    "AND reason = 'Resources'", NULL), 1);
    /* Replayed twice more: not a row more, not a row version changed. */
    const char *fp_sql =
        "SELECT (SELECT count(*) FROM stage_logs) + (SELECT count(*) FROM stage_states) * 100000 + "
        "(SELECT coalesce(sum(xmin::text::bigint), 0) FROM stage_runs WHERE run_id = $1) + "
        "(SELECT coalesce(sum(xmin::text::bigint), 0) FROM stage_logs WHERE stage_run_id = 'sr-logs') + "
        "(SELECT coalesce(sum(xmin::text::bigint), 0) FROM stage_states WHERE stage_run_id = 'sr-logs')";
    long before = q1(fp_sql, r.run_id);
    json_t *twice[] = {r.events, r.events};
    s = send_events(twice, 2);
    CHECK_EQ_INT(s.committed, 2 * nev);
    CHECK_EQ_INT(q1(fp_sql, r.run_id), before);
    CHECK_EQ_INT(q1("SELECT count(*) FROM stage_logs WHERE stage_run_id = 'sr-logs'", NULL), 2001);
    /* A retry of the stage under the same stage_run_id: its own reason wins. */
    run_ctx r2;
    run_init(&r2, "run-logs-retry");
    ev_run_start(&r2, "logs");
    ev_stage_start(&r2, "sr-logs-retry", "train");
    json_object_set_new(json_array_get(r2.events, 1), "reason", json_string("no previous run of this stage"));
    ev_stage_end(&r2, "sr-logs-retry", "failed");
    ev_stage_start(&r2, "sr-logs-retry", "train");
    json_t *retry = json_array_get(r2.events, 3);
    json_object_set_new(retry, "attempt", json_integer(2));
    json_object_set_new(retry, "reason", json_string("the previous run of this stage failed"));
    ev_stage_end(&r2, "sr-logs-retry", "succeeded");
    json_t *first = json_array(), *second = json_array(); /* the retry in a later batch, as the engine sends it */
    for (size_t i = 0; i < json_array_size(r2.events); i++)
        json_array_append(i < 3 ? first : second, json_array_get(r2.events, i));
    json_t *halves[] = {first, second};
    s = send_events(&halves[0], 1);
    CHECK_EQ_INT(s.committed, 3);
    s = send_events(&halves[1], 1);
    CHECK_EQ_INT(s.committed, 2);
    json_decref(first);
    json_decref(second);
    CHECK_EQ_INT(q1("SELECT count(*) FROM stage_runs WHERE stage_run_id = 'sr-logs-retry' AND attempt = 2 AND "
                    "reason = 'the previous run of this stage failed'", NULL), 1);
    /* The read-only role reads the new tables and may not write them. */
    char *ro = NULL;
    sm_error err = {0};
    CHECK_EQ_INT(sm_db_ro_dsn(dsn, &ro, &err), 0);
    PGconn *c = PQconnectdb(ro);
    free(ro);
    CHECK_MSG(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    const char *reads[] = {"SELECT count(*) FROM stage_logs", "SELECT count(*) FROM stage_states",
                           "SELECT count(*) FROM latest_stage_states", "SELECT reason, resources FROM stage_runs"};
    for (size_t i = 0; i < SM_ARRAY_LEN(reads); i++) {
        PGresult *res = PQexec(c, reads[i]);
        CHECK_MSG(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", reads[i], PQresultErrorMessage(res));
        PQclear(res);
    }
    PQclear(PQexec(c, "SET default_transaction_read_only = off"));
    PGresult *res = PQexec(c, "DELETE FROM stage_logs");
    CHECK_EQ_STR(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42501");
    PQclear(res);
    PQfinish(c);
    json_decref(r.events);
    json_decref(r2.events);
}

/* raw -> tokenize -> shard -> two proxy runs -> models -> fit -> mixture -> final training -> model. */
TEST(test_lineage_walks) {
    NEED_SERVER();
    run_ctx prep, p1, p2, fit, fin;
    run_init(&prep, "walk-prep");
    ev_run_start(&prep, "walk");
    ev_artifact(&prep, "walk-raw", "corpus", NULL);
    ev_stage_start(&prep, "walk-tok", "tokenize");
    ev_io(&prep, "walk-tok", "walk-raw", "in");
    ev_artifact(&prep, "walk-shard", "shard", "walk-tok");
    ev_io(&prep, "walk-tok", "walk-shard", "out");
    ev_stage_end(&prep, "walk-tok", "succeeded");
    ev_run_end(&prep, "succeeded");
    run_ctx *proxies[] = {&p1, &p2};
    const char *pid[] = {"walk-proxy-1", "walk-proxy-2"}, *pm[] = {"walk-model-1", "walk-model-2"};
    for (int i = 0; i < 2; i++) {
        run_init(proxies[i], i ? "walk-p2" : "walk-p1");
        ev_run_start(proxies[i], "walk");
        ev_stage_start(proxies[i], pid[i], "proxy_train");
        ev_io(proxies[i], pid[i], "walk-shard", "in");
        ev_metric(proxies[i], pid[i], "val_loss", 10, 3.0 + i);
        ev_artifact(proxies[i], pm[i], "model", pid[i]);
        ev_io(proxies[i], pid[i], pm[i], "out");
        ev_stage_end(proxies[i], pid[i], "succeeded");
        ev_run_end(proxies[i], "succeeded");
    }
    run_init(&fit, "walk-fit");
    ev_run_start(&fit, "walk");
    ev_stage_start(&fit, "walk-fitstage", "fit");
    ev_io(&fit, "walk-fitstage", "walk-model-1", "in");
    ev_io(&fit, "walk-fitstage", "walk-model-2", "in");
    ev_add(&fit, "fit", json_pack("{s:s,s:s,s:f,s:f,s:f,s:f}", "stage_run_id", "walk-fitstage", "domain", "web", "a",
                                  1.0, "b", 0.2, "c", 2.5, "rmse", 0.02));
    ev_artifact(&fit, "walk-mixture", "mixture", "walk-fitstage");
    ev_io(&fit, "walk-fitstage", "walk-mixture", "out");
    ev_stage_end(&fit, "walk-fitstage", "succeeded");
    ev_run_end(&fit, "succeeded");
    run_init(&fin, "walk-final");
    ev_run_start(&fin, "walk");
    ev_stage_start(&fin, "walk-train", "train");
    ev_io(&fin, "walk-train", "walk-mixture", "in");
    ev_io(&fin, "walk-train", "walk-shard", "in");
    ev_artifact(&fin, "walk-final-model", "model", "walk-train");
    ev_io(&fin, "walk-train", "walk-final-model", "out");
    ev_stage_end(&fin, "walk-train", "succeeded");
    ev_run_end(&fin, "succeeded");
    json_t *all[] = {prep.events, p1.events, p2.events, fit.events, fin.events};
    sm_pg_sink_stats s = send_events(all, 5);
    CHECK_EQ_INT(s.committed, s.emitted);

    char model[65], raw[65], shard[65];
    art_id("walk-final-model", model);
    art_id("walk-raw", raw);
    art_id("walk-shard", shard);
    /* Upstream of the trained model: every artifact back to the raw corpus. */
    CHECK_EQ_INT(q1("SELECT count(DISTINCT artifact_id) FROM lineage_up($1)", model), 6);
    CHECK_EQ_INT(q1("SELECT depth FROM lineage_up($1) WHERE path = 'walk-raw'", model), 2);
    CHECK_EQ_INT(q1("SELECT count(*) FROM lineage_up($1) WHERE path = 'walk-raw' AND stage_run_id IS NULL", model), 1);
    /* The proxy runs behind the fit. */
    CHECK_EQ_INT(q1("SELECT count(DISTINCT u.run_id) FROM fits f, stage_upstream(f.stage_run_id) u "
                    "WHERE f.stage_run_id = 'walk-fitstage' AND u.stage = 'proxy_train'", NULL), 2);
    /* Downstream of the raw corpus: every stage run. */
    CHECK_EQ_INT(q1("SELECT count(DISTINCT stage_run_id) FROM lineage_down($1)", raw), 5);
    CHECK_EQ_INT(q1("SELECT max(depth) FROM lineage_down($1)", raw), 3);
    CHECK_EQ_INT(q1("SELECT count(DISTINCT run_id) FROM run_upstream('walk-final') WHERE run_id <> 'walk-final'",
                    NULL), 4);
    CHECK_EQ_INT(q1("SELECT count(DISTINCT run_id) FROM run_downstream('walk-p1')", NULL), 2);
    CHECK_EQ_INT(q1("SELECT count(*) FROM run_downstream('walk-final')", NULL), 0);
    /* A cycle in the recorded graph (which the engine never produces) still terminates. */
    PQclear(q("INSERT INTO stage_io (stage_run_id, artifact_id, direction, event_id) VALUES ('walk-tok', $1, 'in', 'x')",
              1, (const char *[]){model}));
    CHECK(q1("SELECT count(*) FROM lineage_up($1)", model) > 0);
    PQclear(q("DELETE FROM stage_io WHERE event_id = 'x'", 0, NULL));
    for (int i = 0; i < 5; i++) json_decref(all[i]);
}

TEST(test_readonly_role) {
    NEED_SERVER();
    char *ro = NULL;
    sm_error err = {0};
    CHECK_EQ_INT(sm_db_ro_dsn(dsn, &ro, &err), 0);
    CHECK(strstr(ro, "scalemix_ro"));
    PGconn *c = PQconnectdb(ro);
    free(ro);
    CHECK_MSG(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    PGresult *r = PQexec(c, "SELECT count(*) FROM runs");
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);
    r = PQexec(c, "SELECT count(*) FROM lineage_up(repeat('a', 64))");
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);
    const char *writes[] = {"INSERT INTO runs (run_id, event_id) VALUES ('ro', 'ro')", "DELETE FROM metrics",
                            "UPDATE runs SET status = 'x'", "CREATE TABLE evil (x int)",
                            "SELECT sm_ingest('[]')"};
    for (size_t i = 0; i < SM_ARRAY_LEN(writes); i++) {
        r = PQexec(c, writes[i]);
        int refused = PQresultStatus(r) == PGRES_FATAL_ERROR;
        PQclear(r);
        /* sm_ingest('[]') writes nothing, but anything that would is refused. */
        if (i < 4) CHECK_MSG(refused, "read-only role could run: %s", writes[i]);
    }
    /* Even after lifting the read-only default, privileges refuse the write. */
    PQclear(PQexec(c, "SET default_transaction_read_only = off"));
    r = PQexec(c, "INSERT INTO runs (run_id, event_id) VALUES ('ro', 'ro')");
    CHECK(PQresultStatus(r) == PGRES_FATAL_ERROR);
    CHECK_EQ_STR(PQresultErrorField(r, PG_DIAG_SQLSTATE), "42501");
    PQclear(r);
    PQfinish(c);
}

/* Sends r's events, of which exactly one is bad: it is refused and kept in rejected.jsonl (its last line
 * holding needle), the others land, two of them metrics of stage run srid. */
static void send_expecting_one_rejected(run_ctx *r, const char *srid, const char *needle) {
    sm_pg_sink_stats s = send_events(&r->events, 1);
    CHECK_EQ_INT(s.rejected, 1);
    CHECK_EQ_INT(s.committed, json_array_size(r->events) - 1);
    CHECK_EQ_INT(q1("SELECT count(*) FROM metrics WHERE stage_run_id = $1", srid), 2);
    char path[128], line[2048], last[2048] = "";
    snprintf(path, sizeof path, "%s/journal/rejected.jsonl", ws);
    FILE *f = fopen(path, "r");
    CHECK(f);
    while (f && fgets(line, sizeof line, f)) snprintf(last, sizeof last, "%s", line);
    if (f) fclose(f);
    CHECK_MSG(strstr(last, needle), "last rejected event: %s", last);
}

TEST(test_bad_event_rejected_others_kept) {
    NEED_SERVER();
    run_ctx r;
    run_init(&r, "run-bad");
    ev_run_start(&r, "bad");
    ev_stage_start(&r, "sr-bad", "train");
    ev_metric(&r, "sr-bad", "loss", 1, 1.0);
    ev_add(&r, "metric", json_pack("{s:s,s:s,s:i,s:f,s:s}", "stage_run_id", "sr-bad", "name", "loss", "step", 2,
                                   "value", 2.0, "recorded_at", "not a time"));
    ev_metric(&r, "sr-bad", "loss", 3, 3.0);
    ev_run_end(&r, "succeeded");
    send_expecting_one_rejected(&r, "sr-bad", "not a time");
    CHECK_EQ_INT(q1("SELECT count(*) FROM runs WHERE run_id = 'run-bad' AND status = 'succeeded'", NULL), 1);
    json_decref(r.events);
}

/* A metric for a stage run that does not exist is refused (foreign key, migration 011) and kept aside;
 * the metrics of real stage runs in the same batch still land. */
TEST(test_metric_of_unknown_stage_run_rejected) {
    NEED_SERVER();
    run_ctx r;
    run_init(&r, "run-nofk");
    ev_run_start(&r, "nofk");
    ev_stage_start(&r, "sr-nofk", "train");
    ev_metric(&r, "sr-nofk", "loss", 1, 1.0);
    ev_metric(&r, "sr-does-not-exist", "loss", 2, 2.0);
    ev_metric(&r, "sr-nofk", "loss", 3, 3.0);
    ev_run_end(&r, "succeeded");
    send_expecting_one_rejected(&r, "sr-nofk", "sr-does-not-exist");
    CHECK_EQ_INT(q1("SELECT count(*) FROM metrics WHERE stage_run_id = 'sr-does-not-exist'", NULL), 0);
    json_decref(r.events);
}

/* A sink that died leaves its journal; the next sink on the workspace sends what was not acknowledged. */
TEST(test_orphan_journal_taken_over) {
    NEED_SERVER();
    run_ctx r;
    run_init(&r, "run-orphan");
    ev_run_start(&r, "orphan");
    ev_stage_start(&r, "sr-orphan", "train");
    for (int i = 0; i < 20; i++) ev_metric(&r, "sr-orphan", "loss", i, 1.0);
    ev_run_end(&r, "succeeded");
    char jp[128], ap[128];
    snprintf(jp, sizeof jp, "%s/journal/dead-sink.jsonl", ws);
    snprintf(ap, sizeof ap, "%s/journal/dead-sink.acked", ws);
    FILE *f = fopen(jp, "w");
    CHECK(f);
    size_t i;
    json_t *ev;
    long acked = 0;
    json_array_foreach(r.events, i, ev) {
        char *s = json_dumps(ev, JSON_COMPACT);
        fprintf(f, "%s\n", s);
        free(s);
        if (i == 0) acked = ftell(f); /* the first event was acknowledged before the crash */
    }
    fputs("{\"type\":\"metric\",\"event_id\":\"torn", f); /* the crash tore the last line */
    fclose(f);
    f = fopen(ap, "w");
    fprintf(f, "%020ld\n", acked);
    fclose(f);
    json_t *none = json_array();
    sm_pg_sink_stats s = send_events(&none, 1);
    json_decref(none);
    CHECK_EQ_INT(s.replayed, json_array_size(r.events) - 1);
    CHECK_EQ_INT(s.committed, s.replayed);
    CHECK(access(jp, F_OK) != 0);
    CHECK_EQ_INT(q1("SELECT count(*) FROM metrics WHERE stage_run_id = 'sr-orphan'", NULL), 20);
    /* The acknowledged run_start was not resent, so the run row exists only if an earlier sink sent it;
     * here nothing did: the stage and metrics arrived, the run row did not. That is what acked means. */
    CHECK_EQ_INT(q1("SELECT count(*) FROM runs WHERE run_id = 'run-orphan'", NULL), 0);
    json_decref(r.events);
}

static void keepalive_cb(uv_timer_t *t) { (void)t; }

/* Two engines on one workspace: each sink keeps its own journal, neither takes over the other's. */
TEST(test_two_sinks_one_workspace) {
    NEED_SERVER();
    uv_loop_t la, lb;
    uv_loop_init(&la);
    uv_loop_init(&lb);
    sm_sink *a = NULL, *b = NULL;
    sm_error err = {0};
    CHECK_EQ_INT(sm_pg_sink_open(&la, dsn, ws, &a, &err), 0);
    run_ctx ra, rb;
    run_init(&ra, "two-a");
    run_init(&rb, "two-b");
    ev_run_start(&ra, "two");
    ev_run_start(&rb, "two");
    ev_stage_start(&ra, "two-sa", "train");
    ev_stage_start(&rb, "two-sb", "train");
    for (int i = 0; i < 100; i++) {
        ev_metric(&ra, "two-sa", "loss", i, 1.0);
        ev_metric(&rb, "two-sb", "loss", i, 1.0);
    }
    size_t i;
    json_t *ev;
    json_array_foreach(ra.events, i, ev) a->emit(a, ev);
    CHECK_EQ_INT(sm_pg_sink_open(&lb, dsn, ws, &b, &err), 0); /* while a's journal is live */
    json_array_foreach(rb.events, i, ev) b->emit(b, ev);
    /* The engine's own handles keep its loop alive; the sink's do not (they are unref'd while idle). */
    uv_timer_t ka, kb;
    uv_timer_init(&la, &ka);
    uv_timer_init(&lb, &kb);
    uv_timer_start(&ka, keepalive_cb, 100000, 0);
    uv_timer_start(&kb, keepalive_cb, 100000, 0);
    sm_pg_sink_stats sa, sb;
    double deadline = sm_monotonic() + 30;
    do {
        uv_run(&la, UV_RUN_NOWAIT);
        uv_run(&lb, UV_RUN_NOWAIT);
        sm_pg_sink_get_stats(a, &sa);
        sm_pg_sink_get_stats(b, &sb);
        usleep(2000);
    } while ((sa.committed < sa.emitted || sb.committed < sb.emitted) && sm_monotonic() < deadline);
    a->close(a);
    b->close(b);
    uv_close((uv_handle_t *)&ka, NULL);
    uv_close((uv_handle_t *)&kb, NULL);
    uv_run(&la, UV_RUN_DEFAULT);
    uv_run(&lb, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&la), 0);
    CHECK_EQ_INT(uv_loop_close(&lb), 0);
    CHECK_EQ_INT(sb.replayed, 0);
    CHECK_EQ_INT(sa.committed, 102);
    CHECK_EQ_INT(sb.committed, 102);
    CHECK_EQ_INT(q1("SELECT count(*) FROM metrics WHERE stage_run_id IN ('two-sa', 'two-sb')", NULL), 200);
    json_decref(ra.events);
    json_decref(rb.events);
}

static int server_start(void) {
    snprintf(ws, sizeof ws, "/tmp/sm-test-db.XXXXXX");
    if (!mkdtemp(ws) || chmod(ws, 0755) != 0) return -1;
    sm_error err = {0};
    if (sm_db_resolve(ws, NULL, &dsn, &err)) {
        fprintf(stderr, "embedded server: %s\n", err.msg);
        return -1;
    }
    db = PQconnectdb(dsn);
    if (PQstatus(db) != CONNECTION_OK) return -1;
    PQclear(PQexec(db, "SET client_min_messages = warning"));
    return 0;
}

int main(void) {
    unsetenv("SCALEMIX_DB");
    unsetenv("PGHOST");
    unsetenv("PGDATABASE");
    unsetenv("PGSERVICE");
    have_server = server_start() == 0;
    if (!have_server) printf("FAIL: server_start\n");
    RUN(test_workspace_and_socket_dir);
    RUN(test_none_and_bad_dsn);
    RUN(test_migrations_apply_and_idempotent);
    RUN(test_newer_database_refused);
    RUN(test_concurrent_migrators);
    RUN(test_contract_columns);
    RUN(test_ingest_and_idempotent_replay);
    RUN(test_stage_reason_logs_and_states);
    RUN(test_lineage_walks);
    RUN(test_readonly_role);
    RUN(test_bad_event_rejected_others_kept);
    RUN(test_metric_of_unknown_stage_run_rejected);
    RUN(test_orphan_journal_taken_over);
    RUN(test_two_sinks_one_workspace);
    if (db) PQfinish(db);
    sm_error err = {0};
    if (have_server && sm_db_server_stop(ws, &err)) fprintf(stderr, "stopping the server: %s\n", err.msg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", ws);
    if (ws[0] && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", ws);
    free(dsn);
    if (!have_server) return 1;
    TEST_EXIT();
}
