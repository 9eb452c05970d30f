/* sm_web_runs.c - the request router, the runs page (keyset-paged) and a run's page (stages, parameters,
 * failure, live progress). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "web/sm_web_int.h"

/* Arguments a page accepts besides format and token; anything else is a 400. */
static int args_only(const sm_wreq *q, sm_wresp *r, const char *const *ok) {
    for (int i = 0; i < q->nargs; i++) {
        int known = !strcmp(q->keys[i], "format") || !strcmp(q->keys[i], "token");
        for (const char *const *k = ok; *k && !known; k++) known = !strcmp(q->keys[i], *k);
        if (!known) {
            sm_wresp_error(q, r, 400, "unknown argument '%.60s'", q->keys[i]);
            return 1;
        }
    }
    return 0;
}

void sm_wroute(sm_wctx *c, const sm_wreq *q, sm_wresp *r) {
    const char *p = q->path;
    static const char *const none[] = {NULL}, *const runs[] = {"status", "pipeline", "before", "limit", NULL},
                             *const as[] = {"run", NULL}, *const met[] = {"stage_run", "name", "domain", "points", NULL},
                             *const logs[] = {"after", "limit", NULL};
    if (!strcmp(p, "/") || !strcmp(p, "/runs")) {
        if (!args_only(q, r, runs)) sm_wpage_runs(c, q, r);
    } else if (!strncmp(p, "/runs/", 6)) {
        if (!sm_wid_ok(p + 6)) sm_wresp_error(q, r, 400, "malformed run id");
        else if (!args_only(q, r, none)) sm_wpage_run(c, q, p + 6, r);
    } else if (!strcmp(p, "/autoscale")) {
        if (!args_only(q, r, as)) sm_wpage_autoscale(c, q, r);
    } else if (!strncmp(p, "/lineage/artifact/", 18) || !strncmp(p, "/lineage/stage/", 15)) {
        int art = p[9] == 'a';
        const char *id = p + (art ? 18 : 15);
        if (art ? !sm_wsha_ok(id) : !sm_wid_ok(id))
            sm_wresp_error(q, r, 400, art ? "an artifact id is 64 lowercase hex characters" : "malformed stage run id");
        else if (!args_only(q, r, none)) sm_wpage_lineage(c, q, art ? "artifact" : "stage", id, r);
    } else if (!strncmp(p, "/log/", 5)) {
        if (!sm_wid_ok(p + 5)) sm_wresp_error(q, r, 400, "malformed stage run id");
        else if (!args_only(q, r, logs)) sm_wpage_log(c, q, p + 5, r);
    } else if (!strcmp(p, "/schedules")) {
        if (!args_only(q, r, none)) sm_wpage_schedules(c, q, r);
    } else if (!strcmp(p, "/metrics")) {
        if (!args_only(q, r, met)) sm_wpage_metrics(c, q, r);
    } else {
        sm_wresp_error(q, r, 404, "no such page (see /runs, /autoscale, /schedules, /metrics, /lineage/..., /log/...)");
    }
}

static int text_ok(const char *s) {
    if (!s || !*s || strlen(s) > 200) return 0;
    for (; *s; s++)
        if ((unsigned char)*s < ' ') return 0;
    return 1;
}

static void duration(sm_wbuf *b, json_t *secs) {
    if (!json_is_number(secs)) return;
    double s = json_number_value(secs);
    if (s < 60) sm_wbuf_printf(b, "%.1f s", s);
    else if (s < 3600) sm_wbuf_printf(b, "%d min %02d s", (int)(s / 60), (int)s % 60);
    else sm_wbuf_printf(b, "%d h %02d min", (int)(s / 3600), (int)s / 60 % 60);
}

static void status_cell(sm_wbuf *b, const char *st, const char *id) {
    sm_wbuf_puts(b, "<td class=\"st-");
    sm_wbuf_esc(b, st);
    sm_wbuf_puts(b, "\"");
    if (id) {
        sm_wbuf_puts(b, " id=\"st-");
        sm_wbuf_esc(b, id);
        sm_wbuf_puts(b, "\"");
    }
    sm_wbuf_puts(b, ">");
    sm_wbuf_esc(b, st);
    sm_wbuf_puts(b, "</td>");
}

void sm_wpage_runs(sm_wctx *c, const sm_wreq *q, sm_wresp *r) {
    const char *status = sm_wreq_arg(q, "status"), *pipeline = sm_wreq_arg(q, "pipeline"),
               *before = sm_wreq_arg(q, "before");
    if (status && !*status) status = NULL;
    if (pipeline && !*pipeline) pipeline = NULL;
    if ((status && !sm_wid_ok(status)) || (pipeline && !text_ok(pipeline)) || (before && !sm_wid_ok(before))) {
        sm_wresp_error(q, r, 400, "status, pipeline and before must be short printable text");
        return;
    }
    long limit = 50;
    if (sm_wreq_long(q, "limit", 1, 500, &limit)) { sm_wresp_error(q, r, 400, "limit must be 1 to 500"); return; }
    char lbuf[24];
    snprintf(lbuf, sizeof lbuf, "%ld", limit + 1);
    sm_error err = {0};
    const char *v[] = {status, pipeline, before, lbuf};
    if (before) {
        json_t *x = sm_wq1(c->db, &err, "SELECT 1 AS one FROM runs WHERE run_id = $1", 1, &before);
        int found = json_is_object(x);
        json_decref(x);
        if (!found) { sm_wresp_error(q, r, x ? 404 : 500, x ? "no run '%.60s' to page from" : "%s", x ? before : err.msg); return; }
    }
    /* Keyset paging on (start, run_id), served by the indexes of migration 015. */
    json_t *rows = sm_wq(c->db, &err,
        "SELECT r.run_id, r.pipeline, r.status, r.trigger, r.schedule, r.started_at, r.finished_at,"
        "       extract(epoch FROM coalesce(r.finished_at, now()) - r.started_at)::float8 AS duration_s,"
        "       s.ran, s.reused, s.failed, s.running, left(r.error, 200) AS error"
        "  FROM runs r LEFT JOIN LATERAL ("
        "       SELECT count(*) FILTER (WHERE NOT reused) AS ran, count(*) FILTER (WHERE reused) AS reused,"
        "              count(*) FILTER (WHERE status = 'failed') AS failed,"
        "              count(*) FILTER (WHERE status = 'running') AS running"
        "         FROM stage_runs WHERE run_id = r.run_id) s ON true"
        " WHERE ($1::text IS NULL OR r.status = $1) AND ($2::text IS NULL OR r.pipeline = $2)"
        "   AND ($3::text IS NULL OR (coalesce(r.started_at, '-infinity'), r.run_id) <"
        "        (SELECT coalesce(started_at, '-infinity'), run_id FROM runs WHERE run_id = $3))"
        " ORDER BY coalesce(r.started_at, '-infinity') DESC, r.run_id DESC LIMIT $4::integer", 4, v);
    json_t *total = rows ? sm_wq1(c->db, &err,
        "SELECT count(*) AS n FROM runs WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR pipeline = $2)", 2, v) : NULL;
    json_t *pipes = total ? sm_wq(c->db, &err, "SELECT DISTINCT pipeline FROM runs WHERE pipeline IS NOT NULL ORDER BY 1 LIMIT 200", 0, NULL) : NULL;
    if (!pipes) {
        json_decref(rows);
        json_decref(total);
        sm_wresp_error(q, r, 500, "%s", err.msg);
        return;
    }
    const char *next = NULL;
    if (json_array_size(rows) > (size_t)limit) {
        json_array_remove(rows, (size_t)limit);
        next = sm_wstr(json_array_get(rows, (size_t)limit - 1), "run_id");
    }
    json_t *model = json_pack("{s:o,s:O,s:o*,s:o*,s:o*,s:I}", "runs", rows, "total", json_object_get(total, "n"),
                              "status", status ? json_string(status) : NULL, "pipeline", pipeline ? json_string(pipeline) : NULL,
                              "next_before", next ? json_string(next) : NULL, "limit", (json_int_t)limit);
    json_decref(total);
    if (q->json) { json_decref(pipes); sm_wresp_json(r, model); return; }
    sm_whtml_begin(r, "Runs");
    sm_wbuf *b = &r->body;
    sm_wbuf_puts(b, "<form method=\"get\" action=\"/runs\">Status <select name=\"status\"><option value=\"\">any</option>");
    static const char *const sts[] = {"running", "succeeded", "failed", "cancelled", "cancelling"};
    for (size_t i = 0; i < SM_ARRAY_LEN(sts); i++)
        sm_wbuf_printf(b, "<option%s>%s</option>", status && !strcmp(status, sts[i]) ? " selected" : "", sts[i]);
    sm_wbuf_puts(b, "</select> Pipeline <select name=\"pipeline\"><option value=\"\">any</option>");
    size_t i;
    json_t *row;
    json_array_foreach(pipes, i, row) {
        const char *pn = sm_wstr(row, "pipeline");
        sm_wbuf_printf(b, "<option%s>", pipeline && !strcmp(pipeline, pn) ? " selected" : "");
        sm_wbuf_esc(b, pn);
        sm_wbuf_puts(b, "</option>");
    }
    json_decref(pipes);
    sm_wbuf_printf(b, "</select> <button>Filter</button></form><p id=\"total\">%lld runs</p>",
                   (long long)json_integer_value(json_object_get(model, "total")));
    sm_wbuf_puts(b, "<table id=\"runs\"><tr><th>run</th><th>status</th><th>pipeline</th><th>trigger</th><th>started (UTC)</th>"
                    "<th>duration</th><th>stages run</th><th>reused</th><th>failed</th></tr>");
    json_array_foreach(rows, i, row) {
        const char *id = sm_wstr(row, "run_id");
        sm_wbuf_puts(b, "<tr><td class=\"mono\"><a href=\"/runs/");
        sm_wbuf_url(b, id);
        sm_wbuf_puts(b, "\">");
        sm_wbuf_esc(b, id);
        sm_wbuf_puts(b, "</a></td>");
        status_cell(b, sm_wstr(row, "status"), NULL);
        sm_wbuf_puts(b, "<td>");
        sm_wbuf_esc(b, sm_wstr(row, "pipeline"));
        sm_wbuf_puts(b, "</td><td>");
        sm_wbuf_esc(b, sm_wstr(row, "trigger"));
        if (sm_wstr(row, "schedule")) {
            sm_wbuf_puts(b, " (");
            sm_wbuf_esc(b, sm_wstr(row, "schedule"));
            sm_wbuf_puts(b, ")");
        }
        sm_wbuf_puts(b, "</td><td>");
        sm_wbuf_esc(b, sm_wstr(row, "started_at"));
        sm_wbuf_puts(b, "</td><td>");
        duration(b, json_object_get(row, "duration_s"));
        sm_wbuf_printf(b, "</td><td>%lld</td><td>%lld</td><td>%lld</td></tr>", (long long)json_integer_value(json_object_get(row, "ran")),
                       (long long)json_integer_value(json_object_get(row, "reused")),
                       (long long)json_integer_value(json_object_get(row, "failed")));
    }
    sm_wbuf_puts(b, "</table>");
    if (next) {
        sm_wbuf_puts(b, "<p><a id=\"next\" href=\"/runs?before=");
        sm_wbuf_url(b, next);
        if (status) { sm_wbuf_puts(b, "&amp;status="); sm_wbuf_url(b, status); }
        if (pipeline) { sm_wbuf_puts(b, "&amp;pipeline="); sm_wbuf_url(b, pipeline); }
        sm_wbuf_printf(b, "&amp;limit=%ld\">older runs &rarr;</a></p>", limit);
    }
    json_decref(model);
    sm_whtml_end(r);
}

/* "script.lua:42" inside an error message: where the script failed. */
static json_t *script_line(const char *e) {
    for (const char *p = e ? strstr(e, ".lua:") : NULL; p; p = strstr(p + 1, ".lua:")) {
        if (!isdigit((unsigned char)p[5])) continue;
        const char *s = p;
        while (s > e && !isspace((unsigned char)s[-1]) && s[-1] != '\'' && s[-1] != '"' && s[-1] != '(') s--;
        const char *t = p + 5;
        while (isdigit((unsigned char)*t)) t++;
        return json_stringn(s, (size_t)(t - s));
    }
    return json_null();
}

static const char run_script[] =
    "<script>(function(){var u=location.pathname+'?format=json';function two(x){return (x<10?'0':'')+Math.floor(x)}"
    "function dur(s){return s<60?s.toFixed(1)+' s':s<3600?Math.floor(s/60)+' min '+two(s%60)+' s':"
    "Math.floor(s/3600)+' h '+two(s/60%60)+' min'}function tick(){fetch(u).then(function(r){return r.json()})"
    ".then(function(m){var s=document.getElementById('st-run');if(s&&m.run.status!==s.textContent){location.reload();return}"
    "var n=0;m.stages.forEach(function(st){var e=document.getElementById('st-'+st.stage_run_id);if(!e){n++;return}"
    "e.textContent=st.status;var d=document.getElementById('du-'+st.stage_run_id);if(d)d.textContent=dur(st.duration_s);"
    "var p=document.getElementById('pr-'+st.stage_run_id);if(p)p.textContent=(st.progress||[]).map(function(x){return x.name+"
    "(x.domain?'['+x.domain+']':'')+' '+x.value.toPrecision(4)+' @ '+x.step}).join(', ');"
    "var x=document.getElementById('sx-'+st.stage_run_id);if(x)x.textContent=st.state_text||'';"
    "var c=document.getElementById('ln-'+st.stage_run_id),l=document.getElementById('lt-'+st.stage_run_id);"
    "if(c&&l&&c.textContent!=String(st.log_lines)){c.textContent=st.log_lines;l.textContent=st.log_tail.map(function(y){"
    "return y.at.substr(11,8)+' '+y.level+' '+y.message+'\\n'}).join('')}});if(n)location.reload();"
    "setTimeout(tick,2000)}).catch(function(){setTimeout(tick,5000)})}setTimeout(tick,2000)})();</script>";

/* The row under a stage's: its log tail, open for stages that failed or still run, and a link to the whole log. */
static void log_row(sm_wbuf *b, json_t *st) {
    const char *sid = sm_wstr(st, "stage_run_id"), *status = sm_wstr(st, "status");
    long long n = (long long)json_integer_value(json_object_get(st, "log_lines"));
    int running = status && !strcmp(status, "running");
    sm_wbuf_puts(b, "<tr class=\"logrow\"><td></td><td colspan=\"9\">");
    if (!n && !running) {
        sm_wbuf_puts(b, "<span class=\"muted\">no log lines recorded</span></td></tr>");
        return;
    }
    sm_wbuf_puts(b, running || (status && !strcmp(status, "failed")) ? "<details open>" : "<details>");
    sm_wbuf_wrap(b, "<summary>log: <span id=\"ln-", sid, "\">");
    sm_wbuf_printf(b, "%lld</span> lines, the last 50 here; ", n);
    sm_whtml_link(b, "/log/", sid, "the whole log");
    sm_wbuf_wrap(b, "</summary><div class=\"logbox\"><pre class=\"log\" id=\"lt-", sid, "\">");
    sm_whtml_log_lines(b, json_object_get(st, "log_tail"));
    sm_wbuf_puts(b, "</pre></div></details></td></tr>");
}

void sm_wpage_run(sm_wctx *c, const sm_wreq *q, const char *run_id, sm_wresp *r) {
    sm_error err = {0};
    json_t *run = sm_wq1(c->db, &err,
        "SELECT run_id, pipeline, script_path, script_sha256, params, status, trigger, nominal_time, schedule, parent_run_id,"
        "       host, started_at, finished_at, error,"
        "       extract(epoch FROM coalesce(finished_at, now()) - started_at)::float8 AS duration_s"
        "  FROM runs WHERE run_id = $1", 1, &run_id);
    if (!run) { sm_wresp_error(q, r, 500, "%s", err.msg); return; }
    if (json_is_null(run)) { sm_wresp_error(q, r, 404, "no run '%.80s'", run_id); return; }
    json_t *stages = sm_wstages(c->db, &err, run_id);
    if (!stages) { json_decref(run); sm_wresp_error(q, r, 500, "%s", err.msg); return; }
    /* The failure: the first failed stage (else the run's own error) and the script line it names. */
    json_t *failure = json_null();
    size_t i;
    json_t *st;
    json_array_foreach(stages, i, st) {
        if (json_is_null(failure) && !strcmp(sm_wstr(st, "status") ? sm_wstr(st, "status") : "", "failed")) {
            const char *e = sm_wstr(st, "error");
            json_t *line = script_line(e);
            if (json_is_null(line)) { json_decref(line); line = script_line(sm_wstr(run, "error")); }
            failure = json_pack("{s:O,s:O,s:O,s:o}", "stage", json_object_get(st, "stage"), "stage_run_id",
                                json_object_get(st, "stage_run_id"), "error", json_object_get(st, "error"), "script_line", line);
        }
    }
    if (json_is_null(failure) && sm_wstr(run, "error"))
        failure = json_pack("{s:n,s:n,s:O,s:o}", "stage", "stage_run_id", "error", json_object_get(run, "error"),
                            "script_line", script_line(sm_wstr(run, "error")));
    json_t *model = json_pack("{s:o,s:o,s:o}", "run", run, "stages", stages, "failure", failure);
    if (q->json) { sm_wresp_json(r, model); return; }
    sm_wbuf *b = &r->body;
    char title[300];
    snprintf(title, sizeof title, "Run %s", run_id);
    sm_whtml_begin(r, title);
    const char *rs = sm_wstr(run, "status");
    sm_wbuf_puts(b, "<table id=\"run\"><tr><th>status</th>");
    status_cell(b, rs, "run");
    sm_wbuf_puts(b, "</tr>");
    static const char *const f[] = {"pipeline", "script_path", "trigger", "schedule", "nominal_time", "parent_run_id", "host",
                                    "started_at", "finished_at"};
    for (size_t k = 0; k < SM_ARRAY_LEN(f); k++)
        if (sm_wstr(run, f[k])) sm_whtml_kv(b, f[k], sm_wstr(run, f[k]));
    sm_wbuf_puts(b, "<tr><th>duration</th><td>");
    duration(b, json_object_get(run, "duration_s"));
    char *ptxt = sm_wjson_text(json_object_get(run, "params"));
    sm_wbuf_puts(b, "</td></tr>");
    sm_whtml_kv(b, "parameters", ptxt);
    free(ptxt);
    sm_wbuf_puts(b, "</table>");
    if (!json_is_null(failure)) {
        sm_wbuf_puts(b, "<div class=\"err\" id=\"failure\"><b>Failed");
        if (sm_wstr(failure, "stage")) { sm_wbuf_puts(b, " in stage "); sm_wbuf_esc(b, sm_wstr(failure, "stage")); }
        if (sm_wstr(failure, "script_line")) { sm_wbuf_puts(b, " at "); sm_wbuf_esc(b, sm_wstr(failure, "script_line")); }
        sm_wbuf_puts(b, "</b><pre>");
        sm_wbuf_esc(b, sm_wstr(failure, "error"));
        sm_wbuf_puts(b, "</pre></div>");
    }
    sm_wbuf_puts(b, "<h2>Stages</h2><table id=\"stages\"><tr><th>stage</th><th>status</th><th>reused or why it ran</th>"
                    "<th>duration</th><th>plugin</th><th>parameters</th><th>resources</th><th>outputs</th><th>metrics</th>"
                    "<th>state, progress, error</th></tr>");
    json_array_foreach(stages, i, st) {
        const char *sid = sm_wstr(st, "stage_run_id");
        sm_wbuf_puts(b, "<tr><td>");
        sm_whtml_link(b, "/lineage/stage/", sid, sm_wstr(st, "stage"));
        sm_wbuf_puts(b, "</td>");
        status_cell(b, sm_wstr(st, "status"), sid);
        sm_wbuf_puts(b, "<td class=\"why\">");
        sm_wbuf_esc(b, sm_wstr(st, "why"));
        sm_wbuf_puts(b, "</td><td id=\"du-");
        sm_wbuf_esc(b, sid);
        sm_wbuf_puts(b, "\">");
        duration(b, json_object_get(st, "duration_s"));
        sm_wbuf_puts(b, "</td><td>");
        sm_wbuf_esc(b, sm_wstr(st, "plugin"));
        sm_wbuf_puts(b, " ");
        sm_wbuf_esc(b, sm_wstr(st, "plugin_version"));
        char *sp = sm_wjson_text(json_object_get(st, "params"));
        sm_wbuf_puts(b, "</td><td class=\"mono params\">");
        if (sp && strlen(sp) > 300) strcpy(sp + 297, "...");
        sm_wbuf_esc(b, sp);
        free(sp);
        sm_wbuf_wrap(b, "</td><td>", sm_wstr(st, "resources_text"), "</td><td>");
        size_t k;
        json_t *o;
        json_array_foreach(json_object_get(st, "outputs"), k, o) {
            sm_whtml_link(b, "/lineage/artifact/", sm_wstr(o, "artifact_id"), sm_wstr(o, "name") ? sm_wstr(o, "name") : sm_wstr(o, "artifact_id"));
            sm_wbuf_puts(b, " ");
        }
        sm_wbuf_puts(b, "</td><td>");
        json_array_foreach(json_object_get(st, "metrics"), k, o) {
            sm_wbuf_puts(b, "<a href=\"/metrics?stage_run=");
            sm_wbuf_url(b, sid);
            sm_wbuf_puts(b, "&amp;name=");
            sm_wbuf_url(b, json_string_value(o));
            sm_wbuf_puts(b, "\">");
            sm_wbuf_esc(b, json_string_value(o));
            sm_wbuf_puts(b, "</a> ");
        }
        sm_wbuf_wrap(b, "</td><td><div class=\"state\" id=\"sx-", sid, "\">");
        sm_wbuf_wrap(b, "", sm_wstr(st, "state_text"), "</div>");
        sm_wbuf_wrap(b, "<span id=\"pr-", sid, "\">");
        json_array_foreach(json_object_get(st, "progress"), k, o) {
            sm_wbuf_printf(b, "%s", k ? ", " : "");
            sm_wbuf_esc(b, sm_wstr(o, "name"));
            sm_wbuf_printf(b, " %.4g @ %lld", json_number_value(json_object_get(o, "value")),
                           (long long)json_integer_value(json_object_get(o, "step")));
        }
        sm_wbuf_puts(b, "</span>");
        if (sm_wstr(st, "error")) {
            sm_wbuf_puts(b, "<pre>");
            sm_wbuf_esc(b, sm_wstr(st, "error"));
            sm_wbuf_puts(b, "</pre>");
        }
        sm_wbuf_puts(b, "</td></tr>");
        log_row(b, st);
    }
    sm_wbuf_puts(b, "</table>");
    if (rs && (!strcmp(rs, "running") || !strcmp(rs, "cancelling"))) sm_wbuf_puts(b, run_script);
    json_decref(model);
    sm_whtml_end(r);
}
