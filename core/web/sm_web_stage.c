/* sm_web_stage.c - what the run page says about one stage beyond its row in stage_runs: why it ran (the
 * planner's recorded reason), its resources, where a remote executor has it, its log tail; and a stage's
 * full log as its own page, paged by seq (migration 017). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "web/sm_web_int.h"

/* The log lines' columns; times as ISO UTC so that the JSON twin is unambiguous. */
#define LOG_COLS "seq, level, message, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS at"

static long long jint(json_t *o, const char *k) { return (long long)json_integer_value(json_object_get(o, k)); }

static void clear(sm_wbuf *t) {
    t->n = 0;
    if (t->s) t->s[0] = 0;
}

static void resources_text(json_t *st, sm_wbuf *t) {
    json_t *res = json_object_get(st, "resources");
    if (!json_is_object(res)) { sm_wbuf_puts(t, "not recorded"); return; }
    const char *sep = "";
    if (json_is_integer(json_object_get(res, "threads"))) {
        sm_wbuf_printf(t, "%lld thread%s", jint(res, "threads"), jint(res, "threads") == 1 ? "" : "s");
        sep = ", ";
    }
    if (jint(res, "gpu")) {
        double mib = (double)jint(res, "device_memory_bytes") / (1024.0 * 1024.0);
        sm_wbuf_printf(t, "%sGPU", sep);
        if (mib >= 1024) sm_wbuf_printf(t, " with %.1f GiB device memory", mib / 1024);
        else if (mib > 0) sm_wbuf_printf(t, " with %.0f MiB device memory", mib);
        sep = ", ";
    }
    if (jint(res, "isolate")) { sm_wbuf_printf(t, "%sisolated", sep); sep = ", "; }
    if (sm_wstr(res, "executor")) { sm_wbuf_printf(t, "%s%s", sep, sm_wstr(res, "executor")); sep = ", "; }
    if (sm_wstr(st, "job_id")) sm_wbuf_printf(t, "%sSlurm job %s", sep, sm_wstr(st, "job_id"));
}

static void annotate(json_t *st) {
    const char *reason = sm_wstr(st, "reason");
    int reused = json_is_true(json_object_get(st, "reused"));
    sm_wbuf t = {0};
    if (reason) sm_wbuf_puts(&t, reason);
    else sm_wbuf_puts(&t, reused ? "reused (reason not recorded)" : "ran (reason not recorded)");
    if (jint(st, "attempt") > 1) sm_wbuf_printf(&t, "; attempt %lld", jint(st, "attempt"));
    json_object_set_new(st, "why", json_string(t.s ? t.s : ""));
    clear(&t);
    resources_text(st, &t);
    json_object_set_new(st, "resources_text", json_string(t.s ? t.s : ""));
    /* A remote executor's view matters only while the stage has not finished. */
    json_t *state = json_object_get(st, "state");
    const char *status = sm_wstr(st, "status");
    clear(&t);
    if (json_is_object(state) && status && !strcmp(status, "running") && sm_wstr(state, "state")) {
        sm_wbuf_puts(&t, sm_wstr(state, "state"));
        if (sm_wstr(state, "executor")) sm_wbuf_printf(&t, " on %s", sm_wstr(state, "executor"));
        if (sm_wstr(state, "reason")) sm_wbuf_printf(&t, " (%s)", sm_wstr(state, "reason"));
        if (sm_wstr(state, "job_id")) sm_wbuf_printf(&t, ", job %s", sm_wstr(state, "job_id"));
    }
    json_object_set_new(st, "state_text", t.n ? json_string(t.s) : json_null());
    free(t.s);
}

void sm_whtml_log_lines(sm_wbuf *b, json_t *lines) {
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l) {
        const char *at = sm_wstr(l, "at"), *lv = sm_wstr(l, "level");
        sm_wbuf_wrap(b, "<span class=\"lv-", lv, "\">");
        if (at && strlen(at) >= 19) sm_wbuf_put(b, at + 11, 8); /* HH:MM:SS of the ISO time */
        sm_wbuf_wrap(b, " ", lv, " ");
        sm_wbuf_wrap(b, "", sm_wstr(l, "message"), "</span>\n");
    }
}

void sm_wpage_log(sm_wctx *c, const sm_wreq *q, const char *stage_run_id, sm_wresp *r) {
    long after = 0, limit = 500;
    if (sm_wreq_long(q, "after", 0, 9000000000000000000L, &after)) {
        sm_wresp_error(q, r, 400, "after must be a line number (seq) of 0 or more");
        return;
    }
    if (sm_wreq_long(q, "limit", 1, 2000, &limit)) { sm_wresp_error(q, r, 400, "limit must be 1 to 2000"); return; }
    sm_error err = {0};
    json_t *stage = sm_wq1(c->db, &err,
        "SELECT s.stage_run_id, s.run_id, s.stage, s.status,"
        "       (SELECT count(*) FROM stage_logs WHERE stage_run_id = s.stage_run_id) AS log_lines"
        "  FROM stage_runs s WHERE s.stage_run_id = $1", 1, &stage_run_id);
    if (!stage) { sm_wresp_error(q, r, 500, "%s", err.msg); return; }
    if (json_is_null(stage)) { sm_wresp_error(q, r, 404, "no stage run '%.80s'", stage_run_id); return; }
    char abuf[24], lbuf[24];
    snprintf(abuf, sizeof abuf, "%ld", after);
    snprintf(lbuf, sizeof lbuf, "%ld", limit + 1);
    const char *v[] = {stage_run_id, abuf, lbuf};
    json_t *lines = sm_wq(c->db, &err, "SELECT " LOG_COLS " FROM stage_logs WHERE stage_run_id = $1 AND seq > $2::bigint"
                                       " ORDER BY seq LIMIT $3::integer", 3, v);
    if (!lines) { json_decref(stage); sm_wresp_error(q, r, 500, "%s", err.msg); return; }
    json_t *next = json_null();
    if (json_array_size(lines) > (size_t)limit) {
        json_array_remove(lines, (size_t)limit);
        next = json_incref(json_object_get(json_array_get(lines, (size_t)limit - 1), "seq"));
    }
    json_t *model = json_pack("{s:o,s:o,s:o,s:I,s:I}", "stage_run", stage, "lines", lines, "next_after", next,
                              "after", (json_int_t)after, "limit", (json_int_t)limit);
    if (q->json) { sm_wresp_json(r, model); return; }
    char title[300];
    snprintf(title, sizeof title, "Log of %s", sm_wstr(stage, "stage"));
    sm_whtml_begin(r, title);
    sm_wbuf *b = &r->body;
    sm_wbuf_puts(b, "<p>Run ");
    sm_whtml_link(b, "/runs/", sm_wstr(stage, "run_id"), sm_wstr(stage, "run_id"));
    sm_wbuf_puts(b, ", stage run ");
    sm_whtml_link(b, "/lineage/stage/", stage_run_id, stage_run_id);
    sm_wbuf_printf(b, ": <span id=\"total\">%lld lines</span>; these follow seq %ld.</p><pre id=\"log\" class=\"log full\">",
                   jint(stage, "log_lines"), after);
    sm_whtml_log_lines(b, lines);
    sm_wbuf_puts(b, "</pre>");
    if (!json_is_null(next)) {
        sm_wbuf_puts(b, "<p><a id=\"next\" href=\"/log/");
        sm_wbuf_url(b, stage_run_id);
        sm_wbuf_printf(b, "?after=%lld&amp;limit=%ld\">next lines &rarr;</a></p>", (long long)json_integer_value(next), limit);
    }
    json_decref(model);
    sm_whtml_end(r);
}

json_t *sm_wstages(PGconn *db, sm_error *err, const char *run_id) {
    json_t *stages = sm_wq(db, err,
        "SELECT s.stage_run_id, s.stage, s.plugin, s.plugin_version, s.status, s.reused, s.attempt, s.cache_key,"
        "       s.params, s.result, s.error, s.started_at, s.finished_at, s.reason, s.resources,"
        "       extract(epoch FROM coalesce(s.finished_at, now()) - s.started_at)::float8 AS duration_s,"
        "       (SELECT coalesce(jsonb_agg(jsonb_build_object('artifact_id', a.artifact_id, 'name', io.name, 'kind', a.kind)"
        "                 ORDER BY io.name), '[]') FROM stage_io io LEFT JOIN artifacts a USING (artifact_id)"
        "         WHERE io.stage_run_id = s.stage_run_id AND io.direction = 'out') AS outputs,"
        "       (WITH RECURSIVE t(n) AS (SELECT min(name) FROM metrics WHERE stage_run_id = s.stage_run_id"
        "         UNION ALL SELECT (SELECT min(name) FROM metrics WHERE stage_run_id = s.stage_run_id AND name > t.n)"
        "         FROM t WHERE t.n IS NOT NULL) SELECT coalesce(jsonb_agg(n), '[]') FROM t WHERE n IS NOT NULL) AS metrics,"
        "       CASE WHEN s.status = 'running' THEN (SELECT coalesce(jsonb_agg(x), '[]') FROM ("
        "            SELECT DISTINCT ON (name, domain) name, domain, step, value FROM metrics m"
        "             WHERE m.stage_run_id = s.stage_run_id ORDER BY name, domain, step DESC NULLS LAST) x) END AS progress,"
        "       (SELECT to_jsonb(x) FROM (SELECT state, executor, job_id, reason FROM stage_states"
        "         WHERE stage_run_id = s.stage_run_id ORDER BY seq DESC LIMIT 1) x) AS state,"
        "       (SELECT job_id FROM stage_states WHERE stage_run_id = s.stage_run_id AND job_id IS NOT NULL"
        "         ORDER BY seq DESC LIMIT 1) AS job_id,"
        "       (SELECT count(*) FROM stage_logs WHERE stage_run_id = s.stage_run_id) AS log_lines,"
        "       (SELECT coalesce(jsonb_agg(x ORDER BY x.seq), '[]') FROM (SELECT " LOG_COLS " FROM stage_logs"
        "         WHERE stage_run_id = s.stage_run_id ORDER BY seq DESC LIMIT 50) x) AS log_tail"
        "  FROM stage_runs s WHERE s.run_id = $1 ORDER BY s.started_at NULLS LAST, s.stage", 1, &run_id);
    size_t i;
    json_t *st;
    json_array_foreach(stages, i, st) annotate(st);
    return stages;
}
