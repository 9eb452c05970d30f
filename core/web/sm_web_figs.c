/* sm_web_figs.c - the pages with figures: AutoScale (fits per budget, weights against budget, validation
 * curves, speed-ups; drawn by the plot stage) and metric curves (downsampled in the database). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "web/sm_web_int.h"

static void figure(sm_wctx *c, sm_wbuf *b, const char *kind, const char *title, json_t *data, const char *id) {
    sm_error err = {0};
    char *svg = sm_wplot(c->plot, kind, title, data, &err);
    sm_wbuf_printf(b, "<figure id=\"%s\">", id);
    if (svg) {
        const char *body = strstr(svg, "<svg"); /* inline: without the XML declaration */
        sm_wbuf_puts(b, body ? body : svg);
    } else {
        sm_wbuf_puts(b, "<p class=\"err\">cannot draw this figure: ");
        sm_wbuf_esc(b, err.msg);
        sm_wbuf_puts(b, "</p>");
    }
    sm_wbuf_puts(b, "</figure>");
    free(svg);
}

static void fit_table(sm_wbuf *b, json_t *res) {
    json_t *params = json_object_get(res, "params"), *p;
    const char *d;
    sm_wbuf_puts(b, "<table class=\"fit\"><tr><th>domain</th><th>a</th><th>b</th><th>c</th><th>rmse</th><th>points</th>"
                    "<th>optimum n</th><th>weight</th><th>flags</th><th>noise</th></tr>");
    json_object_foreach(params, d, p) {
        sm_wbuf_puts(b, "<tr><td>");
        sm_wbuf_esc(b, d);
        sm_wbuf_printf(b, "</td><td>%.4g</td><td>%.4g</td><td>%.4g</td><td>%.3g</td><td>%zu</td><td>%.4g</td><td>%.4g</td><td>",
                       json_number_value(json_object_get(p, "a")), json_number_value(json_object_get(p, "b")),
                       json_number_value(json_object_get(p, "c")),
                       json_number_value(json_object_get(json_object_get(res, "rmse"), d)),
                       json_array_size(json_object_get(json_object_get(res, "points"), d)),
                       json_number_value(json_object_get(json_object_get(res, "n"), d)),
                       json_number_value(json_object_get(json_object_get(res, "weights"), d)));
        char *fl = sm_wjson_text(json_object_get(json_object_get(res, "flags"), d));
        sm_wbuf_esc(b, fl && strcmp(fl, "[]") ? fl : "");
        free(fl);
        sm_wbuf_puts(b, "</td><td>");
        json_t *noise = json_object_get(json_object_get(res, "noise"), d);
        if (noise) {
            char *nt = sm_wjson_text(noise);
            sm_wbuf_esc(b, nt);
            free(nt);
        } else {
            sm_wbuf_puts(b, "not measured");
        }
        sm_wbuf_puts(b, "</td></tr>");
    }
    sm_wbuf_puts(b, "</table>");
}

void sm_wpage_autoscale(sm_wctx *c, const sm_wreq *q, sm_wresp *r) {
    const char *run = sm_wreq_arg(q, "run");
    if (run && !sm_wid_ok(run)) { sm_wresp_error(q, r, 400, "malformed run id"); return; }
    sm_error err = {0};
    json_t *runs = sm_wq(c->db, &err,
        "SELECT r.run_id, r.pipeline, r.status, r.started_at FROM runs r"
        " WHERE EXISTS (SELECT 1 FROM stage_runs s WHERE s.run_id = r.run_id AND s.plugin IN ('fit', 'compare', 'extrapolate'))"
        " ORDER BY coalesce(r.started_at, '-infinity') DESC, r.run_id DESC LIMIT 20", 0, NULL);
    if (!runs) { sm_wresp_error(q, r, 500, "%s", err.msg); return; }
    if (!run) run = sm_wstr(json_array_get(runs, 0), "run_id");
    json_t *fits = NULL, *mix = NULL, *cmp = NULL;
    if (run) {
        json_t *exists = sm_wq1(c->db, &err, "SELECT run_id FROM runs WHERE run_id = $1", 1, &run);
        if (exists && json_is_null(exists)) {
            sm_wresp_error(q, r, 404, "no run '%.80s'", run);
            json_decref(runs);
            return;
        }
        json_decref(exists);
        fits = exists ? sm_wq(c->db, &err,
            "SELECT stage_run_id, stage, status, result, (result->>'budget')::float8 AS budget FROM stage_runs"
            " WHERE run_id = $1 AND plugin = 'fit' AND jsonb_typeof(result->'params') = 'object'"
            " ORDER BY (result->>'budget')::float8 NULLS LAST, stage", 1, &run) : NULL;
        mix = fits ? sm_wq(c->db, &err,
            "SELECT m.stage_run_id, s.stage, m.method, m.budget_tokens::float8 AS budget,"
            "       jsonb_object_agg(m.domain, m.weight) AS weights"
            "  FROM mixtures m JOIN stage_runs s USING (stage_run_id) WHERE s.run_id = $1"
            " GROUP BY m.stage_run_id, s.stage, m.method, m.budget_tokens ORDER BY m.budget_tokens, m.method", 1, &run) : NULL;
        cmp = mix ? sm_wq(c->db, &err,
            "SELECT stage_run_id, stage, status, params->'curves' AS curves, params->>'metric' AS metric, result"
            "  FROM stage_runs WHERE run_id = $1 AND plugin = 'compare' ORDER BY started_at, stage", 1, &run) : NULL;
        if (!cmp) {
            json_decref(runs); json_decref(fits); json_decref(mix);
            sm_wresp_error(q, r, 500, "%s", err.msg);
            return;
        }
    }
    json_t *model = json_pack("{s:o,s:s?,s:o,s:o,s:o}", "runs", runs, "run", run, "fits", fits ? fits : json_array(),
                              "mixtures", mix ? mix : json_array(), "comparisons", cmp ? cmp : json_array());
    if (q->json) { sm_wresp_json(r, model); return; }
    sm_whtml_begin(r, "AutoScale");
    sm_wbuf *b = &r->body;
    size_t i;
    json_t *row;
    sm_wbuf_puts(b, "<p>Runs with fits or comparisons: ");
    json_array_foreach(runs, i, row) {
        const char *id = sm_wstr(row, "run_id");
        sm_wbuf_puts(b, run && !strcmp(run, id) ? "<b>" : "");
        sm_whtml_link(b, "/autoscale?run=", id, id);
        sm_wbuf_puts(b, " ");
        sm_wbuf_puts(b, run && !strcmp(run, id) ? "</b>" : "");
    }
    sm_wbuf_puts(b, "</p>");
    if (!run) {
        sm_wbuf_puts(b, "<p id=\"empty\">No run has a fit, extrapolate or compare stage yet.</p>");
        json_decref(model);
        sm_whtml_end(r);
        return;
    }
    sm_wbuf_puts(b, "<p>Run ");
    sm_whtml_link(b, "/runs/", run, run);
    sm_wbuf_puts(b, "</p><h2>Fits per budget</h2>");
    json_t *fitrows = json_object_get(model, "fits");
    if (!json_array_size(fitrows)) sm_wbuf_puts(b, "<p>No fit in this run.</p>");
    json_array_foreach(fitrows, i, row) {
        char title[200], id[32];
        double bud = json_number_value(json_object_get(row, "budget"));
        snprintf(title, sizeof title, "%s: fit per domain at budget %.4g tokens", sm_wstr(row, "stage"), bud);
        snprintf(id, sizeof id, "fit-%zu", i);
        sm_wbuf_puts(b, "<h3>");
        sm_wbuf_esc(b, title);
        sm_wbuf_puts(b, "</h3>");
        figure(c, b, "fit", title, json_object_get(row, "result"), id);
        fit_table(b, json_object_get(row, "result"));
    }
    sm_wbuf_puts(b, "<h2>Weights against budget</h2>");
    json_t *mixrows = json_object_get(model, "mixtures");
    if (json_array_size(mixrows)) {
        json_t *data = json_pack("{s:[]}", "mixtures"), *arr = json_object_get(data, "mixtures");
        json_array_foreach(mixrows, i, row)
            json_array_append_new(arr, json_pack("{s:O,s:O,s:O}", "budget", json_object_get(row, "budget"), "weights",
                                                 json_object_get(row, "weights"), "label", json_object_get(row, "method")));
        figure(c, b, "weights", NULL, data, "weights");
        json_decref(data);
        sm_wbuf_puts(b, "<table id=\"mixtures\"><tr><th>stage</th><th>method</th><th>budget (tokens)</th><th>weights</th></tr>");
        json_array_foreach(mixrows, i, row) {
            char *w = sm_wjson_text(json_object_get(row, "weights"));
            sm_wbuf_puts(b, "<tr><td>");
            sm_wbuf_esc(b, sm_wstr(row, "stage"));
            sm_wbuf_puts(b, "</td><td>");
            sm_wbuf_esc(b, sm_wstr(row, "method"));
            sm_wbuf_printf(b, "</td><td>%.4g</td><td class=\"mono\">", json_number_value(json_object_get(row, "budget")));
            sm_wbuf_esc(b, w);
            sm_wbuf_puts(b, "</td></tr>");
            free(w);
        }
        sm_wbuf_puts(b, "</table>");
    } else {
        sm_wbuf_puts(b, "<p>No mixture recorded in this run.</p>");
    }
    sm_wbuf_puts(b, "<h2>Validation curves and speed-up</h2>");
    json_t *cmprows = json_object_get(model, "comparisons");
    if (!json_array_size(cmprows)) sm_wbuf_puts(b, "<p>No compare stage in this run.</p>");
    json_array_foreach(cmprows, i, row) {
        char id[32];
        snprintf(id, sizeof id, "curves-%zu", i);
        const char *metric = sm_wstr(row, "metric");
        json_t *data = json_pack("{s:O,s:s,s:b}", "curves", json_object_get(row, "curves"), "metric",
                                 metric ? metric : "perplexity", "logy", 1);
        figure(c, b, "loss", "Validation curves (log axis)", data, id);
        json_decref(data);
        json_t *res = json_object_get(row, "result"), *v;
        const char *name;
        sm_wbuf_puts(b, "<table class=\"speedup\"><tr><th>baseline</th><th>speed-up of ");
        sm_wbuf_esc(b, sm_wstr(res, "target"));
        sm_wbuf_puts(b, "</th><th>final value</th><th>steps to reach</th><th>baseline's last step</th>"
                        "<th>with 90% intervals (compare's summary, as in the report)</th></tr>");
        json_object_foreach(json_object_get(res, "speedup"), name, v) {
            sm_wbuf_puts(b, "<tr><td>");
            sm_wbuf_esc(b, name);
            sm_wbuf_puts(b, "</td><td>");
            /* compare's speed-up is 1 - steps to reach / baseline's steps: a fraction, shown as the report shows it */
            if (json_is_number(v)) sm_wbuf_printf(b, "%+.1f%%", 100 * json_number_value(v));
            else sm_wbuf_puts(b, "not reached");
            sm_wbuf_printf(b, "</td><td>%.4g</td><td>%.4g</td><td>%.4g</td><td>",
                           json_number_value(json_object_get(json_object_get(res, "final"), name)),
                           json_number_value(json_object_get(json_object_get(res, "steps_to_reach"), name)),
                           json_number_value(json_object_get(json_object_get(res, "baseline_final_step"), name)));
            const char *summary = sm_wstr(json_object_get(res, "summary"), name);
            sm_wbuf_esc(b, summary ? summary : "not recorded (a compare stage older than the intervals)");
            sm_wbuf_puts(b, "</td></tr>");
        }
        sm_wbuf_puts(b, "</table>");
    }
    json_decref(model);
    sm_whtml_end(r);
}

#define MAX_SERIES 8

/* One metric of one stage run, min/max per bucket when longer than `buckets` points (exact otherwise). */
static json_t *series(sm_wctx *c, const char *sid, const char *name, const char *domain, const char *buckets, sm_error *err) {
    const char *v[] = {sid, name, domain, buckets};
    json_t *meta = sm_wq1(c->db, err, "SELECT stage, run_id FROM stage_runs WHERE stage_run_id = $1", 1, v);
    if (!meta || json_is_null(meta)) return meta;
    /* Two passes over the series, no intermediate table: its step range, then min and max per bucket of
     * equal step width (each step its own bucket when the range is no wider than the buckets). */
    json_t *range = sm_wq1(c->db, err,
        "SELECT min(step)::text AS lo, max(step)::text AS hi, (max(step) - min(step) + 1 <= $4::bigint) AS exact"
        "  FROM metrics WHERE stage_run_id = $1 AND name = $2 AND ($3::text IS NULL OR domain = $3)"
        "   AND step IS NOT NULL AND value IS NOT NULL", 4, v);
    if (!range) { json_decref(meta); return NULL; }
    json_t *rows = json_array();
    if (sm_wstr(range, "lo")) {
        const char *w[] = {sid, name, domain, sm_wstr(range, "lo"), sm_wstr(range, "hi"), buckets,
                           json_is_true(json_object_get(range, "exact")) ? "t" : "f"};
        json_decref(rows);
        rows = sm_wq(c->db, err,
            "SELECT coalesce(domain, '') AS domain, ((min(step) + max(step)) / 2.0)::float8 AS x, min(value) AS lo,"
            "       max(value) AS hi, count(*) AS n"
            "  FROM metrics WHERE stage_run_id = $1 AND name = $2 AND ($3::text IS NULL OR domain = $3)"
            "   AND step IS NOT NULL AND value IS NOT NULL"
            " GROUP BY 1, CASE WHEN $7::boolean THEN step"
            "                  ELSE floor((step - $4::bigint)::float8 * $6::integer / ($5::bigint - $4::bigint + 1))::bigint END"
            " ORDER BY 1, 2", 7, w);
    }
    json_decref(range);
    if (!rows) { json_decref(meta); return NULL; }
    /* one curve per domain: x, then the bucket's min and max (a vertical stroke when they differ) */
    json_t *curves = json_object();
    size_t i;
    json_t *row;
    json_int_t total = 0;
    json_array_foreach(rows, i, row) {
        const char *d = sm_wstr(row, "domain");
        json_t *cv = json_object_get(curves, d);
        if (!cv) {
            cv = json_pack("{s:[],s:[]}", "steps", "values");
            json_object_set_new(curves, d, cv);
        }
        json_t *x = json_object_get(row, "x"), *lo = json_object_get(row, "lo"), *hi = json_object_get(row, "hi");
        json_array_append(json_object_get(cv, "steps"), x);
        json_array_append(json_object_get(cv, "values"), lo);
        if (json_number_value(hi) != json_number_value(lo)) {
            json_array_append(json_object_get(cv, "steps"), x);
            json_array_append(json_object_get(cv, "values"), hi);
        }
        total += json_integer_value(json_object_get(row, "n"));
    }
    json_decref(rows);
    json_object_set_new(meta, "stage_run_id", json_string(sid));
    json_object_set_new(meta, "points", json_integer(total));
    json_object_set_new(meta, "curves", curves);
    return meta;
}

void sm_wpage_metrics(sm_wctx *c, const sm_wreq *q, sm_wresp *r) {
    const char *name = sm_wreq_arg(q, "name"), *domain = sm_wreq_arg(q, "domain");
    const char *sids[MAX_SERIES];
    int ns = 0;
    for (int i = 0; i < q->nargs; i++) {
        if (strcmp(q->keys[i], "stage_run") || !*q->vals[i]) continue;
        if (ns == MAX_SERIES) { sm_wresp_error(q, r, 400, "at most %d stage runs at once", MAX_SERIES); return; }
        if (!sm_wid_ok(q->vals[i])) { sm_wresp_error(q, r, 400, "malformed stage run id"); return; }
        sids[ns++] = q->vals[i];
    }
    if (domain && !*domain) domain = NULL;
    if ((name && (!*name || strlen(name) > 200)) || (domain && strlen(domain) > 200)) {
        sm_wresp_error(q, r, 400, "name and domain must be 1 to 200 characters");
        return;
    }
    if (ns && !name) { sm_wresp_error(q, r, 400, "name (the metric) is required with stage_run"); return; }
    long buckets = 1000;
    if (sm_wreq_long(q, "points", 10, 5000, &buckets)) { sm_wresp_error(q, r, 400, "points must be 10 to 5000"); return; }
    char bb[16];
    snprintf(bb, sizeof bb, "%ld", buckets);
    json_t *list = json_array();
    sm_error err = {0};
    for (int i = 0; i < ns; i++) {
        json_t *s = series(c, sids[i], name, domain, bb, &err);
        if (!s) { json_decref(list); sm_wresp_error(q, r, 500, "%s", err.msg); return; }
        if (json_is_null(s)) { json_decref(list); sm_wresp_error(q, r, 404, "no stage run '%.80s'", sids[i]); return; }
        json_array_append_new(list, s);
    }
    json_t *model = json_pack("{s:s?,s:s?,s:I,s:o}", "name", name, "domain", domain, "buckets", (json_int_t)buckets, "series", list);
    if (q->json) { sm_wresp_json(r, model); return; }
    sm_whtml_begin(r, name ? name : "Metrics");
    sm_wbuf *b = &r->body;
    sm_wbuf_puts(b, "<form method=\"get\" action=\"/metrics\">Metric <input name=\"name\" value=\"");
    sm_wbuf_esc(b, name);
    sm_wbuf_puts(b, "\"> stage runs");
    for (int i = 0; i < MAX_SERIES && i < ns + 2; i++) {
        sm_wbuf_puts(b, " <input name=\"stage_run\" size=\"14\" value=\"");
        sm_wbuf_esc(b, i < ns ? sids[i] : "");
        sm_wbuf_puts(b, "\">");
    }
    sm_wbuf_puts(b, " <button>Draw</button></form><p>Open a metric from a run's page; add stage runs to overlay them.</p>");
    size_t i;
    json_t *s;
    json_t *curves = json_object();
    json_array_foreach(list, i, s) {
        const char *d;
        json_t *cv;
        json_object_foreach(json_object_get(s, "curves"), d, cv) {
            char label[400];
            snprintf(label, sizeof label, "%s %s%s%s%s", sm_wstr(s, "stage"), sm_wstr(s, "run_id"), *d ? " [" : "", d, *d ? "]" : "");
            json_object_set(curves, label, cv);
        }
        sm_wbuf_puts(b, "<p class=\"overlay\">");
        sm_wbuf_esc(b, sm_wstr(s, "stage"));
        sm_wbuf_puts(b, " of run ");
        sm_whtml_link(b, "/runs/", sm_wstr(s, "run_id"), sm_wstr(s, "run_id"));
        sm_wbuf_printf(b, ": %lld points%s</p>", (long long)json_integer_value(json_object_get(s, "points")),
                       json_integer_value(json_object_get(s, "points")) > buckets ? " (drawn as min and max per bucket)" : "");
    }
    if (json_object_size(curves)) {
        json_t *data = json_pack("{s:o,s:s}", "curves", curves, "metric", name);
        figure(c, b, "loss", name, data, "metric");
        json_decref(data);
    } else {
        json_decref(curves);
        if (ns) sm_wbuf_puts(b, "<p id=\"empty\">No points of this metric in these stage runs.</p>");
    }
    json_decref(model);
    sm_whtml_end(r);
}
