/* sm_web_graph.c - lineage (the upstream graph of an artifact or a stage run, drawn as SVG) and schedules
 * (next fires in the schedule's zone and UTC, recent fires with their outcome, backfills). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sched/sm_cron.h"
#include "web/sm_web_int.h"

#define MAX_NODES 400

typedef struct gnode {
    const char *id, *label, *sub;
    int stage; /* 1 stage run, 0 artifact */
    int rank, row;
} gnode;

static int node_of(gnode *n, int nn, const char *id, int stage) {
    for (int i = 0; i < nn; i++)
        if (n[i].stage == stage && !strcmp(n[i].id, id)) return i;
    return -1;
}

static int add_node(gnode *n, int *nn, const char *id, int stage, const char *label, const char *sub) {
    int k = node_of(n, *nn, id, stage);
    if (k >= 0 || *nn == MAX_NODES) return k;
    n[*nn] = (gnode){id, label ? label : id, sub, stage, 0, 0};
    return (*nn)++;
}

/* Columns: the root on the right, each node one column left of the furthest node it feeds. */
static void draw_graph(sm_wbuf *b, gnode *n, int nn, const int (*e)[2], int ne) {
    for (int it = 0; it < nn + 1; it++) {
        int changed = 0;
        for (int k = 0; k < ne; k++)
            if (n[e[k][0]].rank < n[e[k][1]].rank + 1 && n[e[k][1]].rank + 1 <= nn) n[e[k][0]].rank = n[e[k][1]].rank + 1, changed = 1;
        if (!changed) break;
    }
    int maxr = 0, rows[MAX_NODES + 1] = {0}, maxrow = 0;
    for (int i = 0; i < nn; i++) if (n[i].rank > maxr) maxr = n[i].rank;
    for (int i = 0; i < nn; i++) {
        n[i].row = rows[n[i].rank]++;
        if (rows[n[i].rank] > maxrow) maxrow = rows[n[i].rank];
    }
    const int cw = 210, rh = 54, bw = 170, bh = 38;
    int W = (maxr + 1) * cw + 20, H = maxrow * rh + 20;
#define X(i) (10 + (maxr - n[i].rank) * cw)
#define Y(i) (10 + n[i].row * rh)
    sm_wbuf_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"graph\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                      "font-family=\"sans-serif\" font-size=\"11\"><defs><marker id=\"ah\" viewBox=\"0 0 10 10\" refX=\"10\" "
                      "refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\" fill=\"#777\"/>"
                      "</marker></defs>", W, H, W, H);
    for (int k = 0; k < ne; k++) {
        int a = e[k][0], z = e[k][1];
        sm_wbuf_printf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\" marker-end=\"url(#ah)\"/>", X(a) + bw,
                       Y(a) + bh / 2, X(z), Y(z) + bh / 2);
    }
    for (int i = 0; i < nn; i++) {
        sm_wbuf_puts(b, "<a href=\"");
        sm_wbuf_puts(b, n[i].stage ? "/lineage/stage/" : "/lineage/artifact/");
        sm_wbuf_url(b, n[i].id);
        sm_wbuf_printf(b, "\"><rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" rx=\"%d\" fill=\"%s\" stroke=\"#456\"/>", X(i), Y(i), bw,
                       bh, n[i].stage ? 3 : 12, n[i].stage ? "#dde8f7" : "#f4f1e4");
        sm_wbuf_printf(b, "<text x=\"%d\" y=\"%d\">", X(i) + 6, Y(i) + 15);
        char t[40];
        snprintf(t, sizeof t, "%.26s", n[i].label);
        sm_wbuf_esc(b, t);
        sm_wbuf_printf(b, "</text><text x=\"%d\" y=\"%d\" fill=\"#666\">", X(i) + 6, Y(i) + 30);
        snprintf(t, sizeof t, "%.28s", n[i].sub ? n[i].sub : "");
        sm_wbuf_esc(b, t);
        sm_wbuf_puts(b, "</text></a>");
    }
#undef X
#undef Y
    sm_wbuf_puts(b, "</svg>");
}

void sm_wpage_lineage(sm_wctx *c, const sm_wreq *q, const char *kind, const char *id, sm_wresp *r) {
    sm_error err = {0};
    int art = !strcmp(kind, "artifact");
    json_t *root = sm_wq1(c->db, &err, art ? "SELECT artifact_id, kind, name, path, bytes, produced_by, created_at, meta FROM artifacts WHERE artifact_id = $1"
                                           : "SELECT stage_run_id, run_id, stage, plugin, status, started_at FROM stage_runs WHERE stage_run_id = $1", 1, &id);
    if (!root) { sm_wresp_error(q, r, 500, "%s", err.msg); return; }
    if (json_is_null(root)) {
        /* an artifact may be known only by its edges (recorded before its artifact event) */
        json_t *edge = art ? sm_wq1(c->db, &err, "SELECT artifact_id FROM stage_io WHERE artifact_id = $1 LIMIT 1", 1, &id) : json_null();
        int known = json_is_object(edge);
        json_decref(edge);
        if (!known) { sm_wresp_error(q, r, 404, "no %s '%.80s'", art ? "artifact" : "stage run", id); return; }
        json_decref(root);
        root = json_pack("{s:s}", "artifact_id", id);
    }
    json_t *up = sm_wq(c->db, &err, art ? "SELECT depth, artifact_id, kind, path, stage_run_id, run_id, stage FROM lineage_up($1) LIMIT 2000"
                                        : "SELECT depth, artifact_id, kind, path, stage_run_id, run_id, stage FROM stage_upstream($1) LIMIT 2000", 1, &id);
    /* the consuming edges between the nodes found: stage runs of the walk (and the root stage run) */
    json_t *sids = json_array();
    if (!art) json_array_append_new(sids, json_string(id));
    size_t i;
    json_t *row;
    json_array_foreach(up, i, row)
        if (sm_wstr(row, "stage_run_id")) json_array_append(sids, json_object_get(row, "stage_run_id"));
    char *sj = json_dumps(sids, JSON_COMPACT);
    json_decref(sids);
    json_t *ins = up && sj ? sm_wq(c->db, &err,
        "SELECT stage_run_id, artifact_id FROM stage_io WHERE direction = 'in'"
        "   AND stage_run_id IN (SELECT jsonb_array_elements_text($1::jsonb))", 1, (const char *const *)&sj) : NULL;
    free(sj);
    if (!ins) { json_decref(root); json_decref(up); sm_wresp_error(q, r, 500, "%s", err.msg); return; }
    json_t *model = json_pack("{s:s,s:o,s:o,s:o}", "kind", kind, "root", root, "upstream", up, "inputs", ins);
    if (q->json) { sm_wresp_json(r, model); return; }
    char title[120];
    snprintf(title, sizeof title, "Lineage of %s %.16s", kind, id);
    sm_whtml_begin(r, title);
    sm_wbuf *b = &r->body;
    gnode *n = calloc(MAX_NODES, sizeof *n);
    int (*e)[2] = calloc(4 * MAX_NODES, sizeof *e);
    int nn = 0, ne = 0;
    if (!n || !e) { free(n); free(e); json_decref(model); sm_wresp_error(q, r, 500, "out of memory"); return; }
    if (art) add_node(n, &nn, id, 0, sm_wstr(root, "name") ? sm_wstr(root, "name") : id, sm_wstr(root, "kind"));
    else add_node(n, &nn, id, 1, sm_wstr(root, "stage"), sm_wstr(root, "run_id"));
    json_array_foreach(up, i, row) {
        const char *aid = sm_wstr(row, "artifact_id"), *sid = sm_wstr(row, "stage_run_id"), *path = sm_wstr(row, "path");
        const char *base = path && strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        int a = add_node(n, &nn, aid, 0, base ? base : aid, sm_wstr(row, "kind"));
        if (sid) {
            int s = add_node(n, &nn, sid, 1, sm_wstr(row, "stage"), sm_wstr(row, "run_id"));
            if (a >= 0 && s >= 0 && ne < 4 * MAX_NODES) e[ne][0] = s, e[ne][1] = a, ne++;
        }
    }
    json_array_foreach(ins, i, row) {
        int a = node_of(n, nn, sm_wstr(row, "artifact_id"), 0), s = node_of(n, nn, sm_wstr(row, "stage_run_id"), 1);
        if (a >= 0 && s >= 0 && ne < 4 * MAX_NODES) e[ne][0] = a, e[ne][1] = s, ne++;
    }
    sm_wbuf_printf(b, "<p>%d nodes upstream%s. Stage runs are square, artifacts rounded; each links to its own lineage.</p>", nn,
                   nn == MAX_NODES ? " (cut at the first 400)" : "");
    draw_graph(b, n, nn, (const int (*)[2])e, ne);
    free(n);
    free(e);
    sm_wbuf_puts(b, "<h2>Upstream</h2><table id=\"upstream\"><tr><th>depth</th><th>artifact</th><th>kind</th><th>produced by</th><th>run</th></tr>");
    json_array_foreach(up, i, row) {
        sm_wbuf_printf(b, "<tr><td>%lld</td><td class=\"mono\"><a href=\"/lineage/artifact/", (long long)json_integer_value(json_object_get(row, "depth")));
        sm_wbuf_url(b, sm_wstr(row, "artifact_id"));
        sm_wbuf_puts(b, "\">");
        sm_wbuf_esc(b, sm_wstr(row, "path") ? sm_wstr(row, "path") : sm_wstr(row, "artifact_id"));
        sm_wbuf_puts(b, "</a></td><td>");
        sm_wbuf_esc(b, sm_wstr(row, "kind"));
        sm_wbuf_puts(b, "</td><td>");
        if (sm_wstr(row, "stage_run_id")) {
            sm_wbuf_puts(b, "<a href=\"/lineage/stage/");
            sm_wbuf_url(b, sm_wstr(row, "stage_run_id"));
            sm_wbuf_puts(b, "\">");
            sm_wbuf_esc(b, sm_wstr(row, "stage"));
            sm_wbuf_puts(b, "</a></td><td>");
            sm_whtml_link(b, "/runs/", sm_wstr(row, "run_id"), sm_wstr(row, "run_id"));
        } else {
            sm_wbuf_puts(b, "from outside</td><td>");
        }
        sm_wbuf_puts(b, "</td></tr>");
    }
    sm_wbuf_puts(b, "</table>");
    json_decref(model);
    sm_whtml_end(r);
}

/* The next `k` fires of a schedule after now, in UTC and in its zone. */
static json_t *next_fires(const char *cron, const char *tzn, int k) {
    sm_cron cr;
    sm_tz *tz = NULL;
    sm_error err = {0};
    if (sm_cron_parse(cron, &cr, &err) || sm_tz_load(tzn, &tz, &err)) return json_pack("{s:s}", "error", err.msg);
    json_t *out = json_array();
    int64_t t = (int64_t)time(NULL);
    for (int i = 0; i < k && !sm_cron_next(&cr, tz, t, &t, &err); i++) {
        char utc[32], loc[48];
        sm_time_format_utc(t, utc);
        int32_t off = sm_tz_offset(tz, t);
        sm_time_format_utc(t + off, loc);
        loc[19] = 0;
        snprintf(loc + 19, sizeof loc - 19, "%c%02d:%02d", off < 0 ? '-' : '+', abs(off) / 3600, abs(off) / 60 % 60);
        json_array_append_new(out, json_pack("{s:s,s:s}", "utc", utc, "local", loc));
    }
    sm_tz_free(tz);
    return out;
}

void sm_wpage_schedules(sm_wctx *c, const sm_wreq *q, sm_wresp *r) {
    sm_error err = {0};
    json_t *rows = sm_wq(c->db, &err,
        "SELECT s.name, s.cron, s.tz, s.pipeline, s.params, s.overlap, s.catchup, s.paused, s.decided_through, s.updated_at,"
        "  (SELECT coalesce(jsonb_agg(f), '[]') FROM (SELECT fire_id, nominal_time, trigger, state, attempt, exit_code, reason,"
        "          run_id, run_status FROM schedule_fire_runs WHERE schedule = s.name ORDER BY nominal_time DESC LIMIT 10) f) AS recent,"
        "  (SELECT coalesce(jsonb_agg(f), '[]') FROM (SELECT nominal_time, state, reason FROM schedule_fires"
        "          WHERE schedule = s.name AND trigger = 'backfill' ORDER BY nominal_time DESC LIMIT 20) f) AS backfills"
        "  FROM schedules s ORDER BY s.name LIMIT 500", 0, NULL);
    if (!rows) { sm_wresp_error(q, r, 500, "%s", err.msg); return; }
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        json_object_set_new(row, "next", json_is_true(json_object_get(row, "paused")) ? json_array()
                                                                                        : next_fires(sm_wstr(row, "cron"), sm_wstr(row, "tz"), 3));
    json_t *model = json_pack("{s:o}", "schedules", rows);
    if (q->json) { sm_wresp_json(r, model); return; }
    sm_whtml_begin(r, "Schedules");
    sm_wbuf *b = &r->body;
    if (!json_array_size(rows)) sm_wbuf_puts(b, "<p>No schedule (scalemix schedule add).</p>");
    json_array_foreach(rows, i, row) {
        sm_wbuf_puts(b, "<h2>");
        sm_wbuf_esc(b, sm_wstr(row, "name"));
        sm_wbuf_puts(b, json_is_true(json_object_get(row, "paused")) ? " <span class=\"st-failed\">paused</span>" : "");
        sm_wbuf_puts(b, "</h2><table>");
        sm_whtml_kv(b, "cron", sm_wstr(row, "cron"));
        sm_whtml_kv(b, "time zone", sm_wstr(row, "tz"));
        sm_whtml_kv(b, "pipeline", sm_wstr(row, "pipeline"));
        sm_whtml_kv(b, "overlap / catch-up", sm_wstr(row, "overlap"));
        sm_whtml_kv(b, "decided through", sm_wstr(row, "decided_through"));
        sm_wbuf_puts(b, "<tr><th>next fires</th><td>");
        json_t *nx = json_object_get(row, "next"), *f;
        size_t k;
        if (json_is_object(nx)) sm_wbuf_esc(b, sm_wstr(nx, "error"));
        json_array_foreach(nx, k, f) {
            sm_wbuf_esc(b, sm_wstr(f, "local"));
            sm_wbuf_puts(b, " (");
            sm_wbuf_esc(b, sm_wstr(f, "utc"));
            sm_wbuf_puts(b, ")<br>");
        }
        if (json_is_array(nx) && !json_array_size(nx)) sm_wbuf_puts(b, "none while paused");
        sm_wbuf_puts(b, "</td></tr></table><table class=\"fires\"><tr><th>nominal time</th><th>trigger</th><th>outcome</th>"
                        "<th>attempt</th><th>run</th><th>reason</th></tr>");
        json_array_foreach(json_object_get(row, "recent"), k, f) {
            sm_wbuf_puts(b, "<tr><td>");
            sm_wbuf_esc(b, sm_wstr(f, "nominal_time"));
            sm_wbuf_puts(b, "</td><td>");
            sm_wbuf_esc(b, sm_wstr(f, "trigger"));
            sm_wbuf_puts(b, "</td><td class=\"st-");
            sm_wbuf_esc(b, sm_wstr(f, "state"));
            sm_wbuf_puts(b, "\">");
            sm_wbuf_esc(b, sm_wstr(f, "state"));
            sm_wbuf_printf(b, "</td><td>%lld</td><td>", (long long)json_integer_value(json_object_get(f, "attempt")));
            if (sm_wstr(f, "run_id")) {
                sm_whtml_link(b, "/runs/", sm_wstr(f, "run_id"), sm_wstr(f, "run_id"));
                sm_wbuf_puts(b, " ");
                sm_wbuf_esc(b, sm_wstr(f, "run_status"));
            }
            sm_wbuf_puts(b, "</td><td>");
            sm_wbuf_esc(b, sm_wstr(f, "reason"));
            sm_wbuf_puts(b, "</td></tr>");
        }
        sm_wbuf_printf(b, "</table><p>Backfills: %zu recent</p>", json_array_size(json_object_get(row, "backfills")));
    }
    json_decref(model);
    sm_whtml_end(r);
}
