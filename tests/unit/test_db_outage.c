/* test_db_outage.c - nothing is lost when the database goes away. A synthetic producer on a uv loop emits
 * run, stage and metric events through the sink while the test stops the real server (pg_ctl stop -m fast)
 * and starts it again; afterwards every row must be present exactly once. A second test runs a whole
 * "run" while the server is down and checks that the next sink sends it. */
#include <dirent.h>
#include <libpq-fe.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "db/sm_db.h"
#include "../sm_test.h"

static char ws[64];
static char *dsn;

static long q1(const char *sql, const char *arg) {
    PGconn *c = PQconnectdb(dsn);
    PGresult *r = PQexecParams(c, sql, arg ? 1 : 0, NULL, arg ? &arg : NULL, NULL, NULL, 0);
    long v = -999;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) v = atol(PQgetvalue(r, 0, 0));
    else fprintf(stderr, "  query failed: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return v;
}

typedef struct producer {
    uv_loop_t loop;
    sm_sink *sink;
    uv_timer_t tick, watch, restart;
    uv_work_t work;
    char run_id[37], stage[64];
    long seq, ticks, metrics, stages;
    int stage_open, finished, server_phase; /* 0 up, 1 stopping, 2 down, 3 starting, 4 back */
    long emitted_at_down, emitted_at_up;
    double last_tick, max_gap;
    int work_rc;
    sm_error work_err;
} producer;

enum { TICKS = 1500, METRICS_PER_TICK = 20, TICKS_PER_STAGE = 100, STOP_AT = 300 };

static void emit(producer *p, const char *type, json_t *ev) {
    char eid[80], ts[40];
    sm_iso8601(sm_now(), ts);
    snprintf(eid, sizeof eid, "%s/%ld", p->run_id, ++p->seq);
    json_object_set_new(ev, "type", json_string(type));
    json_object_set_new(ev, "run_id", json_string(p->run_id));
    json_object_set_new(ev, "seq", json_integer(p->seq));
    json_object_set_new(ev, "event_id", json_string(eid));
    if (!strcmp(type, "metric")) json_object_set_new(ev, "recorded_at", json_string(ts));
    if (!strcmp(type, "stage_start") || !strcmp(type, "run_start")) json_object_set_new(ev, "started_at", json_string(ts));
    if (!strcmp(type, "stage_end") || !strcmp(type, "run_end")) json_object_set_new(ev, "finished_at", json_string(ts));
    p->sink->emit(p->sink, ev);
    json_decref(ev);
}

static void emit_run_start(producer *p, const char *pipeline) {
    emit(p, "run_start", json_pack("{s:s,s:s,s:{},s:s,s:n,s:n,s:n,s:s}", "pipeline", pipeline, "script_sha256", "00", "params",
                                   "trigger", "manual", "nominal_time", "schedule", "parent_run_id", "host", "test"));
}

static void stage_begin(producer *p) {
    snprintf(p->stage, sizeof p->stage, "%s-s%ld", p->run_id, ++p->stages);
    emit(p, "stage_start", json_pack("{s:s,s:s,s:s,s:s,s:s,s:{},s:b,s:i}", "stage_run_id", p->stage, "stage", "train",
                                     "plugin", "train", "plugin_version", "1", "cache_key", "k", "params", "reused", 0,
                                     "attempt", 1));
    p->stage_open = 1;
}

static void stage_finish(producer *p) {
    emit(p, "stage_end", json_pack("{s:s,s:s,s:n,s:n}", "stage_run_id", p->stage, "status", "succeeded", "error",
                                   "result"));
    p->stage_open = 0;
}

static void stop_work(uv_work_t *w) {
    producer *p = w->data;
    p->work_rc = p->server_phase == 1 ? sm_db_server_stop(ws, &p->work_err) : 0;
    if (p->server_phase == 3) {
        char *d = NULL;
        p->work_rc = sm_db_server_start(ws, &d, &p->work_err);
        free(d);
    }
}

static void restart_cb(uv_timer_t *t);

static void work_done(uv_work_t *w, int status) {
    producer *p = w->data;
    (void)status;
    if (p->work_rc) fprintf(stderr, "  server control failed: %s\n", p->work_err.msg);
    if (p->server_phase == 1) {
        p->server_phase = 2;
        p->emitted_at_down = p->seq;
        uv_timer_start(&p->restart, restart_cb, 1000, 0); /* down for a second while the run goes on */
    } else {
        p->server_phase = 4;
        p->emitted_at_up = p->seq;
    }
}

static void restart_cb(uv_timer_t *t) {
    producer *p = t->data;
    p->server_phase = 3;
    p->work.data = p;
    uv_queue_work(&p->loop, &p->work, stop_work, work_done);
}

static void tick_cb(uv_timer_t *t) {
    producer *p = t->data;
    double now = sm_monotonic();
    if (p->last_tick > 0 && now - p->last_tick > p->max_gap) p->max_gap = now - p->last_tick;
    p->last_tick = now;
    if (p->ticks == STOP_AT) {
        p->server_phase = 1;
        p->work.data = p;
        uv_queue_work(&p->loop, &p->work, stop_work, work_done);
    }
    if (p->ticks % TICKS_PER_STAGE == 0) {
        if (p->stage_open) stage_finish(p);
        stage_begin(p);
    }
    for (int i = 0; i < METRICS_PER_TICK; i++) {
        emit(p, "metric", json_pack("{s:s,s:s,s:I,s:s,s:f}", "stage_run_id", p->stage, "name", "loss", "step",
                                    (json_int_t)p->metrics, "domain", i % 2 ? "web" : "code", "value",
                                    1.0 / (double)(p->metrics + 1)));
        p->metrics++;
    }
    if (++p->ticks == TICKS) {
        stage_finish(p);
        emit(p, "run_end", json_pack("{s:s,s:n}", "status", "succeeded", "error"));
        p->finished = 1;
        uv_timer_stop(t);
    }
}

static void watch_cb(uv_timer_t *t) {
    producer *p = t->data;
    sm_pg_sink_stats s;
    sm_pg_sink_get_stats(p->sink, &s);
    static double deadline;
    if (!deadline) deadline = sm_monotonic() + 120;
    if ((p->finished && p->server_phase == 4 && s.committed >= s.emitted) || sm_monotonic() > deadline) {
        uv_timer_stop(t);
        uv_timer_stop(&p->tick);
    }
}

TEST(test_outage_mid_run_every_row_once) {
    producer p = {0};
    sm_error err = {0};
    uv_loop_init(&p.loop);
    sm_uuid4(p.run_id);
    CHECK_MSG(sm_pg_sink_open(&p.loop, dsn, ws, &p.sink, &err) == 0, "%s", err.msg);
    emit_run_start(&p, "outage");
    uv_timer_init(&p.loop, &p.tick);
    uv_timer_init(&p.loop, &p.watch);
    uv_timer_init(&p.loop, &p.restart);
    p.tick.data = p.watch.data = p.restart.data = &p;
    uv_timer_start(&p.tick, tick_cb, 2, 2);
    uv_timer_start(&p.watch, watch_cb, 20, 20);
    uv_run(&p.loop, UV_RUN_DEFAULT);
    sm_pg_sink_stats s;
    sm_pg_sink_get_stats(p.sink, &s);
    p.sink->close(p.sink);
    uv_close((uv_handle_t *)&p.tick, NULL);
    uv_close((uv_handle_t *)&p.watch, NULL);
    uv_close((uv_handle_t *)&p.restart, NULL);
    uv_run(&p.loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&p.loop), 0);
    printf("  outage run: %ld events, %ld emitted while the server was going down or down, reconnects %llu, "
           "batches %llu, longest gap between producer ticks %.1f ms\n", p.seq, p.emitted_at_up - p.emitted_at_down,
           (unsigned long long)s.reconnects, (unsigned long long)s.batches, p.max_gap * 1e3);
    CHECK_EQ_INT(p.finished, 1);
    CHECK_EQ_INT(p.server_phase, 4);
    CHECK(p.emitted_at_up > p.emitted_at_down); /* the run went on while the server was down */
    CHECK(s.reconnects >= 1);
    CHECK_EQ_INT(s.emitted, p.seq);
    CHECK_EQ_INT(s.committed, p.seq);
    CHECK_EQ_INT(s.rejected, 0);
    const char *rid = p.run_id;
    CHECK_EQ_INT(q1("SELECT count(*) FROM metrics m JOIN stage_runs s USING (stage_run_id) WHERE s.run_id = $1", rid),
                 TICKS * METRICS_PER_TICK);
    CHECK_EQ_INT(q1("SELECT count(DISTINCT (stage_run_id, step)) FROM metrics m WHERE stage_run_id LIKE $1 || '%'",
                    rid), TICKS * METRICS_PER_TICK);
    CHECK_EQ_INT(q1("SELECT count(*) FROM stage_runs WHERE run_id = $1 AND status = 'succeeded'", rid),
                 TICKS / TICKS_PER_STAGE);
    CHECK_EQ_INT(q1("SELECT count(*) FROM runs WHERE run_id = $1 AND status = 'succeeded' AND last_seq = "
                    "(SELECT max(seq) FROM run_states WHERE run_id = $1)", rid), 1);
    CHECK_EQ_INT(q1("SELECT count(*) FROM lineage_events WHERE run_id = $1", rid), 2 + 2 * (TICKS / TICKS_PER_STAGE));
    /* Fully acknowledged: the sink removed its journal. */
    char jd[128];
    snprintf(jd, sizeof jd, "%s/journal", ws);
    DIR *d = opendir(jd);
    CHECK(d);
    struct dirent *de;
    int journals = 0;
    while ((de = readdir(d))) journals += strstr(de->d_name, ".jsonl") != NULL;
    closedir(d);
    CHECK_EQ_INT(journals, 0);
}

typedef struct flushed {
    int done;
} flushed;
static void on_flush(void *arg) { ((flushed *)arg)->done = 1; }

/* A whole run: run_start; with metrics > 0 a stage with that many metric rows; run_end. */
static void emit_run(producer *p, const char *pipeline, int metrics) {
    emit_run_start(p, pipeline);
    if (metrics > 0) {
        stage_begin(p);
        for (int i = 0; i < metrics; i++)
            emit(p, "metric", json_pack("{s:s,s:s,s:i,s:n,s:f}", "stage_run_id", p->stage, "name", "loss", "step", i,
                                        "domain", "value", 1.0));
        stage_finish(p);
    }
    emit(p, "run_end", json_pack("{s:s,s:n}", "status", "succeeded", "error"));
}

/* Stops the server and sends a whole run (run_start; with metrics > 0 a stage with that many metric rows;
 * run_end) into a sink, then flushes and closes it: the flush completes with every event journaled only.
 * *stats: the sink's figures after the flush. */
static void run_while_down(producer *p, const char *pipeline, int metrics, sm_pg_sink_stats *stats) {
    sm_error err = {0};
    CHECK_MSG(sm_db_server_stop(ws, &err) == 0, "%s", err.msg);
    uv_loop_t loop;
    uv_loop_init(&loop);
    sm_uuid4(p->run_id);
    CHECK_MSG(sm_pg_sink_open(&loop, dsn, ws, &p->sink, &err) == 0, "%s", err.msg);
    emit_run(p, pipeline, metrics);
    flushed f = {0};
    p->sink->flush(p->sink, on_flush, &f);
    uv_run(&loop, UV_RUN_DEFAULT); /* returns once the flush is done: the sink's handles hold the loop only then */
    CHECK_EQ_INT(f.done, 1);
    sm_pg_sink_get_stats(p->sink, stats);
    p->sink->close(p->sink);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

/* A whole run while the server is down: flush completes (durably journaled), the next sink sends it. */
TEST(test_run_while_down_sent_by_next_sink) {
    sm_error err = {0};
    producer p = {0};
    sm_pg_sink_stats s;
    run_while_down(&p, "down", 500, &s);
    CHECK_EQ_INT(s.journaled, p.seq);
    CHECK_EQ_INT(s.committed, 0);

    char *d = NULL;
    CHECK_MSG(sm_db_server_start(ws, &d, &err) == 0, "%s", err.msg);
    free(d);
    uv_loop_t loop;
    uv_loop_init(&loop);
    sm_sink *next = NULL;
    CHECK_MSG(sm_pg_sink_open(&loop, dsn, ws, &next, &err) == 0, "%s", err.msg);
    flushed f = {0};
    next->flush(next, on_flush, &f);
    uv_run(&loop, UV_RUN_DEFAULT);
    sm_pg_sink_get_stats(next, &s);
    next->close(next);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    CHECK_EQ_INT(s.replayed, p.seq);
    CHECK_EQ_INT(s.committed, p.seq);
    CHECK_EQ_INT(q1("SELECT count(*) FROM metrics WHERE stage_run_id = $1", p.stage), 500);
    CHECK_EQ_INT(q1("SELECT count(*) FROM runs WHERE run_id = $1 AND status = 'succeeded'", p.run_id), 1);
}

/* What a run journaled while the server was down is sent by sm_db_drain_journals (which `scalemix sql` and
 * `scalemix history` call), with no new run needed. */
TEST(test_drain_after_outage) {
    sm_error err = {0};
    producer p = {0};
    sm_pg_sink_stats s;
    run_while_down(&p, "drain", 0, &s);
    /* Still down: draining keeps the events journaled and says nothing went wrong. */
    CHECK_EQ_INT(sm_db_drain_journals(ws, dsn, &err), 0);
    char *d = NULL;
    CHECK_MSG(sm_db_server_start(ws, &d, &err) == 0, "%s", err.msg);
    free(d);
    CHECK_EQ_INT(q1("SELECT count(*) FROM runs WHERE run_id = $1", p.run_id), 0);
    CHECK_EQ_INT(sm_db_drain_journals(ws, dsn, &err), 0);
    CHECK_EQ_INT(q1("SELECT count(*) FROM runs WHERE run_id = $1 AND status = 'succeeded'", p.run_id), 1);
}

static void keepalive_cb(uv_timer_t *t) { (void)t; }

/* A long outage does not grow memory without bound: past the cap, events wait in the journal only and are
 * read back from it when the server returns. */
TEST(test_spill_to_journal_during_outage) {
    sm_error err = {0};
    CHECK_MSG(sm_db_server_stop(ws, &err) == 0, "%s", err.msg);
    setenv("SCALEMIX_SINK_MEM_CAP", "20000", 1);
    uv_loop_t loop;
    uv_loop_init(&loop);
    producer p = {0};
    sm_uuid4(p.run_id);
    int orc = sm_pg_sink_open(&loop, dsn, ws, &p.sink, &err);
    unsetenv("SCALEMIX_SINK_MEM_CAP");
    CHECK_MSG(orc == 0, "%s", err.msg);
    emit_run_start(&p, "spill");
    stage_begin(&p);
    for (int i = 0; i < 3000; i++)
        emit(&p, "metric", json_pack("{s:s,s:s,s:i,s:s,s:f}", "stage_run_id", p.stage, "name", "loss", "step", i,
                                     "domain", "web", "value", (double)i));
    stage_finish(&p);
    emit(&p, "run_end", json_pack("{s:s,s:n}", "status", "succeeded", "error"));
    flushed f = {0};
    p.sink->flush(p.sink, on_flush, &f);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(f.done, 1);
    char *d = NULL;
    CHECK_MSG(sm_db_server_start(ws, &d, &err) == 0, "%s", err.msg);
    free(d);
    uv_timer_t keep;
    uv_timer_init(&loop, &keep);
    uv_timer_start(&keep, keepalive_cb, 1, 1);
    sm_pg_sink_stats s;
    double deadline = sm_monotonic() + 60;
    do {
        uv_run(&loop, UV_RUN_ONCE);
        sm_pg_sink_get_stats(p.sink, &s);
    } while (s.committed < s.emitted && sm_monotonic() < deadline);
    p.sink->close(p.sink);
    uv_close((uv_handle_t *)&keep, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    CHECK_EQ_INT(s.committed, p.seq);
    CHECK_EQ_INT(s.rejected, 0);
    CHECK(s.spilled > 2500);
    CHECK_EQ_INT(q1("SELECT count(*) FROM metrics WHERE stage_run_id = $1", p.stage), 3000);
    CHECK_EQ_INT(q1("SELECT sum(step) FROM metrics WHERE stage_run_id = $1", p.stage), 3000 * 2999 / 2);
    CHECK_EQ_INT(q1("SELECT count(*) FROM runs WHERE run_id = $1 AND status = 'succeeded'", p.run_id), 1);
}

/* Fills a tmpfs mounted on the journal folder (root; a test that cannot mount fails): 1 when full. */
static int fill_journal_fs(const char *jdir, const char *filler) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && mount -t tmpfs -o size=1m tmpfs '%s' && "
             "(dd if=/dev/zero of='%s' bs=4k 2>/dev/null; true) && ! echo x >> '%s/probe' 2>/dev/null", jdir, jdir, filler, jdir);
    return system(cmd) == 0;
}

/* A full disk under the journal while the server is down: no event is claimed journaled while the write
 * fails, the events are kept in memory and the write retried, and once space returns they reach the journal
 * and from there the database: nothing is lost. */
TEST(test_journal_disk_full_is_not_claimed_and_retried) {
    sm_error err = {0};
    CHECK_MSG(sm_db_server_stop(ws, &err) == 0, "%s", err.msg);
    char jdir[128], filler[160], keep_dir[160], cmd[1400];
    snprintf(jdir, sizeof jdir, "%s/journal", ws);
    snprintf(filler, sizeof filler, "%s/filler", jdir);
    snprintf(keep_dir, sizeof keep_dir, "%s/journal-copy", ws);
    if (!fill_journal_fs(jdir, filler)) {
        CHECK_MSG(0, "cannot mount and fill a tmpfs on %s (needs root)", jdir);
        return;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    producer p = {0};
    sm_uuid4(p.run_id);
    CHECK_MSG(sm_pg_sink_open(&loop, dsn, ws, &p.sink, &err) == 0, "%s", err.msg);
    emit_run(&p, "full", 300);
    flushed f = {0};
    p.sink->flush(p.sink, on_flush, &f);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(f.done, 1);
    sm_pg_sink_stats s;
    sm_pg_sink_get_stats(p.sink, &s);
    CHECK_MSG(s.journaled == 0, "%llu event(s) claimed journaled on a full disk", (unsigned long long)s.journaled);
    /* space returns while the process lives: the kept events reach the journal */
    unlink(filler);
    uv_timer_t keep;
    uv_timer_init(&loop, &keep);
    uv_timer_start(&keep, keepalive_cb, 1, 1);
    double deadline = sm_monotonic() + 20;
    do {
        uv_run(&loop, UV_RUN_ONCE);
        sm_pg_sink_get_stats(p.sink, &s);
    } while (s.journaled < s.emitted && sm_monotonic() < deadline);
    CHECK_EQ_INT(s.journaled, p.seq);
    p.sink->close(p.sink);
    uv_close((uv_handle_t *)&keep, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    /* the journal moves off the tmpfs; the next sink sends it */
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp -a '%s'/. '%s'/ && umount '%s' && cp -a '%s'/. '%s'/ && rm -rf '%s' '%s/probe'",
             keep_dir, jdir, keep_dir, jdir, keep_dir, jdir, keep_dir, jdir);
    CHECK(system(cmd) == 0);
    char *d = NULL;
    CHECK_MSG(sm_db_server_start(ws, &d, &err) == 0, "%s", err.msg);
    free(d);
    CHECK_EQ_INT(sm_db_drain_journals(ws, dsn, &err), 0);
    CHECK_EQ_INT(q1("SELECT count(*) FROM metrics WHERE stage_run_id = $1", p.stage), 300);
    CHECK_EQ_INT(q1("SELECT count(*) FROM runs WHERE run_id = $1 AND status = 'succeeded'", p.run_id), 1);
}

int main(void) {
    unsetenv("SCALEMIX_DB");
    unsetenv("PGHOST");
    unsetenv("PGDATABASE");
    unsetenv("PGSERVICE");
    snprintf(ws, sizeof ws, "/tmp/sm-test-dbo.XXXXXX");
    sm_error err = {0};
    if (!mkdtemp(ws) || chmod(ws, 0755) != 0 || sm_db_resolve(ws, NULL, &dsn, &err)) {
        printf("FAIL: server_start (%s)\n", err.msg);
        return 1;
    }
    RUN(test_outage_mid_run_every_row_once);
    RUN(test_run_while_down_sent_by_next_sink);
    RUN(test_drain_after_outage);
    RUN(test_spill_to_journal_during_outage);
    RUN(test_journal_disk_full_is_not_claimed_and_retried);
    sm_db_server_stop(ws, &err);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "umount '%s/journal' 2>/dev/null; rm -rf '%s'", ws, ws);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", ws);
    free(dsn);
    TEST_EXIT();
}
