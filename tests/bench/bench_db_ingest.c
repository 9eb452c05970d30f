/* bench_db_ingest.c - sustained metric ingestion through the async PostgreSQL sink, and the event loop's
 * latency meanwhile. Starts its own embedded server in a temporary workspace. A producer timer offers
 * metric events at a fixed rate (every 1 ms a chunk) until N were emitted; the rate reported is N divided
 * by the time from the first emit until the database committed the last one (so a producer faster than
 * the database does not flatter the figure). A separate 1 ms timer records how late each of its ticks
 * fires: that is the latency the engine's loop sees under this load.
 * Usage: bench_db_ingest [N=300000] [offered events/s=150000] */
#include <dirent.h>
#include <jansson.h>
#include <sys/resource.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "db/sm_db.h"

typedef struct bench {
    uv_loop_t loop;
    sm_sink *sink;
    uv_timer_t producer, probe, watch;
    long n_total, n_sent, per_tick;
    double t0, t_end, probe_last, max_lag_at;
    double *lags, lags_max;
    size_t nlags, caplags;
    char run_id[37], stage_run_id[37];
    long seq;
    int done;
} bench;

static void emit_metric(bench *b) {
    char eid[64], ts[40];
    b->seq++;
    snprintf(eid, sizeof eid, "%s/%ld", b->run_id, b->seq);
    sm_iso8601(sm_now(), ts);
    json_t *ev = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:I, s:s, s:f, s:s}", "type", "metric", "run_id",
                           b->run_id, "seq", (json_int_t)b->seq, "event_id", eid, "stage_run_id", b->stage_run_id,
                           "name", "train_loss", "step", (json_int_t)b->n_sent, "domain",
                           (b->n_sent & 1) ? "web" : "code", "value", 3.0 + 1.0 / (double)(b->n_sent + 1),
                           "recorded_at", ts);
    b->sink->emit(b->sink, ev);
    json_decref(ev);
    b->n_sent++;
}

static void producer_cb(uv_timer_t *t) {
    bench *b = t->data;
    /* Catch up to the offered rate after timer jitter, but by at most 4 ticks' worth per callback, like a
     * training loop that reports what it has (and so that a starved process does not stall its own loop). */
    double due = (sm_monotonic() - b->t0) * (double)b->per_tick * 1000.0;
    long cap = b->n_sent + 4 * b->per_tick;
    while (b->n_sent < b->n_total && (double)b->n_sent < due && b->n_sent < cap) emit_metric(b);
    if (b->n_sent >= b->n_total) uv_timer_stop(t);
}

static void probe_cb(uv_timer_t *t) {
    bench *b = t->data;
    double now = sm_monotonic();
    double lag = (now - b->probe_last) - 0.001;
    b->probe_last = now;
    if (b->nlags == 0 || lag > b->lags_max) { b->lags_max = lag; b->max_lag_at = now - b->t0; }
    if (b->nlags == b->caplags) {
        b->caplags = b->caplags ? b->caplags * 2 : 4096;
        b->lags = realloc(b->lags, b->caplags * sizeof *b->lags);
    }
    b->lags[b->nlags++] = lag < 0 ? 0 : lag;
}

static void watch_cb(uv_timer_t *t) {
    bench *b = t->data;
    sm_pg_sink_stats s;
    sm_pg_sink_get_stats(b->sink, &s);
    if (b->n_sent >= b->n_total && s.committed + s.rejected >= s.emitted) {
        b->t_end = sm_monotonic();
        uv_timer_stop(&b->probe);
        uv_timer_stop(t);
        b->done = 1;
    } else if (sm_monotonic() - b->t0 > 300) {
        fprintf(stderr, "bench: not all committed after 300 s (emitted %llu, committed %llu)\n",
                (unsigned long long)s.emitted, (unsigned long long)s.committed);
        b->t_end = sm_monotonic();
        uv_timer_stop(&b->probe);
        uv_timer_stop(t);
    }
}

/* CPU seconds used so far by the embedded server: the postmaster and its children (the sink's backend,
 * WAL writer, checkpointer...). Exited children are not counted, so this is read while the sink is open. */
static double server_cpu(const char *ws) {
    char path[256];
    snprintf(path, sizeof path, "%s/pg/data/postmaster.pid", ws);
    FILE *f = fopen(path, "r");
    long pm = 0;
    if (!f || fscanf(f, "%ld", &pm) != 1) { if (f) fclose(f); return -1; }
    fclose(f);
    double total = 0, tick = (double)sysconf(_SC_CLK_TCK);
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        long pid = atol(de->d_name);
        if (pid <= 0) continue;
        char sp[64], buf[1024];
        snprintf(sp, sizeof sp, "/proc/%ld/stat", pid);
        FILE *sf = fopen(sp, "r");
        if (!sf) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, sf);
        fclose(sf);
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        long ppid;
        unsigned long ut, st;
        if (!p || sscanf(p + 2, "%*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ppid, &ut, &st) != 3) continue;
        if (pid == pm || ppid == pm) total += (double)(ut + st) / tick;
    }
    if (d) closedir(d);
    return total;
}

static double self_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void emit_json(bench *b, json_t *ev) {
    b->sink->emit(b->sink, ev);
    json_decref(ev);
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 300000, rate = argc > 2 ? atol(argv[2]) : 150000;
    char ws[] = "/tmp/sm-bench-db.XXXXXX";
    if (!mkdtemp(ws) || chmod(ws, 0755) != 0) { perror("mkdtemp"); return 1; }
    sm_error err = {0};
    char *dsn = NULL;
    double ts = sm_monotonic();
    if (sm_db_resolve(ws, NULL, &dsn, &err)) { fprintf(stderr, "bench: %s\n", err.msg); return 1; }
    printf("embedded server created, started and migrated in %.2f s\n", sm_monotonic() - ts);
    bench b = {0};
    b.n_total = n;
    b.per_tick = rate / 1000 > 0 ? rate / 1000 : 1;
    sm_uuid4(b.run_id);
    sm_uuid4(b.stage_run_id);
    uv_loop_init(&b.loop);
    if (sm_pg_sink_open(&b.loop, dsn, ws, &b.sink, &err)) { fprintf(stderr, "bench: %s\n", err.msg); return 1; }
    char now[40], eid[64];
    sm_iso8601(sm_now(), now);
    snprintf(eid, sizeof eid, "%s/%ld", b.run_id, ++b.seq);
    emit_json(&b, json_pack("{s:s,s:s,s:I,s:s,s:s,s:s,s:{},s:s,s:n,s:n,s:n,s:s,s:s}", "type", "run_start", "run_id",
                            b.run_id, "seq", (json_int_t)b.seq, "event_id", eid, "pipeline", "bench", "script_sha256",
                            "00", "params", "trigger", "manual", "nominal_time", "schedule", "parent_run_id",
                            "started_at", now, "host", "bench"));
    snprintf(eid, sizeof eid, "%s/%ld", b.run_id, ++b.seq);
    emit_json(&b, json_pack("{s:s,s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:{},s:b,s:i,s:s}", "type", "stage_start", "run_id",
                            b.run_id, "seq", (json_int_t)b.seq, "event_id", eid, "stage_run_id", b.stage_run_id,
                            "stage", "train", "plugin", "bench", "plugin_version", "1", "cache_key", "k", "params",
                            "reused", 0, "attempt", 1, "started_at", now));
    uv_timer_init(&b.loop, &b.producer);
    uv_timer_init(&b.loop, &b.probe);
    uv_timer_init(&b.loop, &b.watch);
    b.producer.data = b.probe.data = b.watch.data = &b;
    double cpu0 = self_cpu(), scpu0 = server_cpu(ws);
    b.t0 = b.probe_last = sm_monotonic();
    uv_timer_start(&b.producer, producer_cb, 1, 1);
    uv_timer_start(&b.probe, probe_cb, 1, 1);
    uv_timer_start(&b.watch, watch_cb, 5, 5);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    double elapsed = b.t_end - b.t0;
    double cpu = self_cpu() - cpu0, scpu = server_cpu(ws) - scpu0;
    sm_pg_sink_stats s;
    sm_pg_sink_get_stats(b.sink, &s);
    b.sink->close(b.sink);
    uv_close((uv_handle_t *)&b.producer, NULL);
    uv_close((uv_handle_t *)&b.probe, NULL);
    uv_close((uv_handle_t *)&b.watch, NULL);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_loop_close(&b.loop);

    PGconn *c = PQconnectdb(dsn);
    const char *vals[] = {b.stage_run_id};
    PGresult *r = PQexecParams(c, "SELECT count(*) FROM metrics WHERE stage_run_id = $1", 1, NULL, vals, NULL, NULL, 0);
    long rows = PQresultStatus(r) == PGRES_TUPLES_OK ? atol(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    PQfinish(c);

    qsort(b.lags, b.nlags, sizeof *b.lags, cmp_d);
    double p50 = b.nlags ? b.lags[b.nlags / 2] : 0, p99 = b.nlags ? b.lags[(size_t)(b.nlags * 0.99)] : 0;
    double mx = b.nlags ? b.lags[b.nlags - 1] : 0;
    printf("offered %ld metric events/s; %ld emitted, %llu committed in %llu batches, %ld metric rows in the "
           "database\n", rate, b.n_total, (unsigned long long)s.committed, (unsigned long long)s.batches, rows);
    printf("sustained ingestion: %.0f metric rows/s (%.2f s from first emit to last commit)\n",
           (double)b.n_total / elapsed, elapsed);
    printf("loop latency (1 ms timer, %zu ticks): p50 %.3f ms, p99 %.3f ms, max %.3f ms late (at %.2f s)\n",
           b.nlags, p50 * 1e3, p99 * 1e3, mx * 1e3, b.max_lag_at);
    double busiest = cpu > scpu ? cpu : scpu;
    printf("cpu: engine side %.2f s (%.1f us/row: events built, journaled, sent), server side %.2f s (%.1f us/row); "
           "each side needs about one core, so on 2 otherwise idle cores the path sustains about %.0f rows/s "
           "(derived from the cpu figures)\n", cpu, cpu / (double)b.n_total * 1e6, scpu, scpu / (double)b.n_total * 1e6,
           (double)b.n_total / busiest);
    double la[3] = {0};
    if (getloadavg(la, 3) == 3) printf("machine load average during the run: %.1f (1 min), %ld cpus\n", la[0],
                                       sysconf(_SC_NPROCESSORS_ONLN));
    free(b.lags);
    sm_db_server_stop(ws, &err);
    free(dsn);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", ws);
    if (system(cmd) != 0) fprintf(stderr, "bench: could not remove %s\n", ws);
    return rows == b.n_total ? 0 : 1;
}
