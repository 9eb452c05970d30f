/* sm_sched_cli.c - `scalemix schedule ...` and `scalemix daemon`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "web/sm_web.h"

#include "../sm_commands.h"
#include "sm_cron.h"
#include "sm_sched.h"
#include "sm_sched_int.h"

static const char *schedule_usage =
    "usage: scalemix schedule COMMAND ...\n"
    "  add NAME --cron EXPR [--tz ZONE] [--overlap skip|queue|cancel-old] [--catchup none|latest|all]\n"
    "      [--catchup-window DUR] [--when-changed PATH...] [--paused] [--replace] PIPELINE.lua [--param k=v ...]\n"
    "  list [--json]                      schedules, their next fire time (UTC) and last outcome\n"
    "  pause NAME | resume NAME | remove NAME\n"
    "  fires NAME [--limit N]             recent fires of a schedule\n"
    "  next --cron EXPR [--tz ZONE] [--from ISO8601] [--count N]\n"
    "                                     the next N fire times, one per line, UTC (no database needed)\n"
    "  backfill NAME --from T --to T [--dry-run] [--enqueue] [--max-runs N]\n"
    "                                     fire every nominal time in [T, T] now (or leave them to the daemon)\n"
    "Every command but next takes --db DSN (default: the workspace's embedded database).\n"
    "Cron: 'min hour day-of-month month day-of-week' with lists, ranges, steps, JAN-DEC, SUN-SAT (Sunday 0 or\n"
    "7), @hourly @daily @midnight @weekly @monthly @yearly @annually; if day-of-month and day-of-week are both\n"
    "restricted, either may match. Time zones are IANA names (default UTC). A wall time skipped by a DST jump\n"
    "fires at the first instant after the gap; a wall time that occurs twice fires once, at its first occurrence.\n"
    "overlap (a fire is due while an earlier one runs or waits): skip = record it as skipped; queue = run it\n"
    "after; cancel-old = interrupt the running one (SIGINT, then SIGKILL) and run the new one.\n"
    "catchup (fires missed while no daemon ran): none = only on-time fires; latest = the most recent missed one;\n"
    "all = every missed one, oldest first; only within --catchup-window (default 1d). Resume skips the paused time.\n"
    "--when-changed PATH...: fire only if the sha256 of these files/trees changed since the last successful run\n"
    "(when the pipeline follows directly, the last path is taken as the pipeline).\n"
    "Runs are `scalemix run --trigger schedule|backfill --schedule NAME --nominal-time T [--param k=v] PIPELINE`,\n"
    "with the database in SCALEMIX_DB; logs go to $SCALEMIX_HOME/logs/sched/NAME/.\n";

static const char *daemon_usage =
    "usage: scalemix daemon [--db DSN] [--max-runs N] [--poll SECS] [--lease SECS] [--kill-grace SECS]\n"
    "                       [--drain SECS] [--misfire-grace SECS] [--max-attempts N]\n"
    "                       [--serve [--listen HOST:PORT] [--token-file FILE]]\n"
    "--serve: the pages of `scalemix serve` beside the scheduler, on its loop (same --listen and --token-file).\n"
    "Fires due schedules (see `scalemix schedule --help`) as child processes, at most --max-runs (2) at once.\n"
    "Any number of daemons may share a database: a nominal time fires once, one fire per schedule runs at a\n"
    "time. A running fire holds a lease (--lease 30 s, renewed every third of it); when its daemon dies the run\n"
    "dies with it and another (or the restarted) daemon runs it again, unless the lineage shows it succeeded;\n"
    "after --max-attempts (3) such losses it is marked failed.\n"
    "SIGTERM/SIGINT: start nothing new, let running runs finish for up to --drain (30 s), then SIGINT them\n"
    "(SIGKILL after --kill-grace, 10 s) and queue their fires again; a second signal skips the wait.\n"
    "TEST-ONLY: --runner PROGRAM runs PROGRAM instead of this binary (same arguments); the clock can be faked\n"
    "with SCALEMIX_CLOCK_FILE=PATH (file: 'ISO8601 [SPEED]', time advancing from the file's mtime) or\n"
    "SCALEMIX_FAKE_NOW=ISO8601 [SCALEMIX_FAKE_SPEED=X].\n";

/* Matches "--name VALUE" or "--name=VALUE"; advances *i past what it used. */
static int opt(int argc, char **argv, int *i, const char *name, const char **val) {
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n)) return 0;
    if (argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n]) return 0;
    if (*i + 1 >= argc) {
        *val = NULL;
        return 1;
    }
    *val = argv[++*i];
    return 1;
}

static int usage_err(const char *usage, const char *fmt, const char *a) {
    fprintf(stderr, "scalemix: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n%s", usage);
    return 2;
}

static int fail(sm_error *e) {
    fprintf(stderr, "scalemix: %s\n", e->msg);
    return e->code == SM_ERR_ARG ? 2 : 1;
}

static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static int cmd_next(int argc, char **argv) {
    const char *cron = NULL, *tz = NULL, *from = NULL, *count = "5", *v;
    for (int i = 1; i < argc; i++) {
        if (opt(argc, argv, &i, "--cron", &v)) cron = v;
        else if (opt(argc, argv, &i, "--tz", &v)) tz = v;
        else if (opt(argc, argv, &i, "--from", &v)) from = v;
        else if (opt(argc, argv, &i, "--count", &v)) count = v;
        else return usage_err(schedule_usage, "schedule next: unexpected argument '%s'", argv[i]);
        if (!v) return usage_err(schedule_usage, "schedule next: %s needs a value", argv[i]);
    }
    if (!cron) return usage_err(schedule_usage, "schedule next: --cron EXPR is required%s", "");
    int n;
    if (parse_int(count, 1, 100000, &n)) return usage_err(schedule_usage, "schedule next: --count '%s': 1-100000", count);
    sm_error e;
    int64_t t0 = (int64_t)floor(sm_sched_now());
    if (from && sm_time_parse_iso(from, &t0, &e)) return fail(&e);
    if (from) t0--; /* --from is inclusive: a fire exactly at T is listed */
    int64_t *out = malloc(sizeof *out * (size_t)n);
    if (!out) return 1;
    if (sm_sched_next_times(cron, tz, t0, n, out, &e)) {
        free(out);
        return fail(&e);
    }
    for (int i = 0; i < n; i++) {
        char buf[32];
        sm_time_format_utc(out[i], buf);
        puts(buf);
    }
    free(out);
    return 0;
}

static int cmd_add(int argc, char **argv) {
    const char *db = NULL, *v;
    json_t *spec = json_object(), *params = json_object(), *wc = json_array();
    const char *pipeline = NULL;
    int replace = 0, last_wc_group_end = -1, rc = 2;
    for (int i = 1; i < argc; i++) {
        v = "";
        if (opt(argc, argv, &i, "--cron", &v)) json_object_set_new(spec, "cron", json_string(v ? v : ""));
        else if (opt(argc, argv, &i, "--tz", &v)) json_object_set_new(spec, "tz", json_string(v ? v : ""));
        else if (opt(argc, argv, &i, "--overlap", &v)) json_object_set_new(spec, "overlap", json_string(v ? v : ""));
        else if (opt(argc, argv, &i, "--catchup-window", &v)) json_object_set_new(spec, "catchup_window", json_string(v ? v : ""));
        else if (opt(argc, argv, &i, "--catchup", &v)) json_object_set_new(spec, "catchup", json_string(v ? v : ""));
        else if (opt(argc, argv, &i, "--db", &v)) db = v;
        else if (opt(argc, argv, &i, "--param", &v)) {
            const char *eq = v ? strchr(v, '=') : NULL;
            if (!eq || eq == v) {
                fprintf(stderr, "scalemix: schedule add: --param wants k=v, got '%s'\n", v ? v : "");
                goto out;
            }
            char key[256];
            snprintf(key, sizeof key, "%.*s", (int)(eq - v), v);
            json_object_set_new(params, key, json_string(eq + 1));
        } else if (!strcmp(argv[i], "--when-changed")) {
            int j = i + 1;
            while (j < argc && argv[j][0] != '-') json_array_append_new(wc, json_string(argv[j++]));
            if (j == i + 1) {
                fprintf(stderr, "scalemix: schedule add: --when-changed needs at least one path\n");
                goto out;
            }
            i = j - 1;
            last_wc_group_end = (int)json_array_size(wc);
        } else if (!strcmp(argv[i], "--paused")) json_object_set_new(spec, "paused", json_true());
        else if (!strcmp(argv[i], "--replace")) replace = 1;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "scalemix: schedule add: unknown option '%s'\n%s", argv[i], schedule_usage);
            goto out;
        } else if (!json_object_get(spec, "name")) json_object_set_new(spec, "name", json_string(argv[i]));
        else if (!pipeline) pipeline = argv[i];
        else {
            fprintf(stderr, "scalemix: schedule add: unexpected argument '%s'\n", argv[i]);
            goto out;
        }
        if (!v) {
            fprintf(stderr, "scalemix: schedule add: %s needs a value\n", argv[i]);
            goto out;
        }
    }
    static char stolen[4096];
    if (!pipeline && last_wc_group_end > 1) {
        snprintf(stolen, sizeof stolen, "%s", json_string_value(json_array_get(wc, json_array_size(wc) - 1)));
        json_array_remove(wc, json_array_size(wc) - 1);
        pipeline = stolen;
    }
    if (!json_object_get(spec, "name") || !pipeline) {
        fprintf(stderr, "scalemix: schedule add: NAME and PIPELINE.lua are required\n%s", schedule_usage);
        goto out;
    }
    json_object_set_new(spec, "pipeline", json_string(pipeline));
    json_object_set(spec, "params", params);
    json_object_set(spec, "when_changed", wc);
    sm_error e;
    json_t *norm;
    if (sm_sched_spec_normalize(spec, &norm, &e)) {
        rc = fail(&e);
        goto out;
    }
    PGconn *c = sm_sched_connect(db, NULL, &e);
    if (!c) {
        json_decref(norm);
        rc = fail(&e);
        goto out;
    }
    rc = sm_sched_store(c, norm, replace, &e) ? fail(&e) : 0;
    if (!rc) {
        sm_cron cr;
        sm_tz *tz;
        int64_t next;
        sm_cron_parse(json_string_value(json_object_get(norm, "cron")), &cr, NULL);
        sm_tz_load(json_string_value(json_object_get(norm, "tz")), &tz, NULL);
        char buf[32] = "never";
        if (sm_cron_next(&cr, tz, (int64_t)floor(sm_sched_now()), &next, NULL) == 0) sm_time_format_utc(next, buf);
        sm_tz_free(tz);
        printf("schedule %s %s; next fire %s\n", json_string_value(json_object_get(norm, "name")),
               replace ? "stored" : "added", buf);
    }
    PQfinish(c);
    json_decref(norm);
out:
    json_decref(spec);
    json_decref(params);
    json_decref(wc);
    return rc;
}

/* Parses "NAME [--db DSN] [extra options]" for the simple commands. */
static int name_and_db(int argc, char **argv, const char **name, const char **db, const char **limit) {
    const char *v;
    for (int i = 1; i < argc; i++) {
        if (opt(argc, argv, &i, "--db", &v)) *db = v;
        else if (limit && opt(argc, argv, &i, "--limit", &v)) *limit = v;
        else if (argv[i][0] != '-' && !*name) {
            *name = argv[i];
            continue;
        } else
            return usage_err(schedule_usage, "schedule: unexpected argument '%s'", argv[i]);
        if (!v) return usage_err(schedule_usage, "schedule: %s needs a value", argv[i]);
    }
    if (!*name) return usage_err(schedule_usage, "schedule %s: NAME is required", argv[0]);
    return 0;
}

static int cmd_simple(int argc, char **argv) {
    const char *name = NULL, *db = NULL;
    int u = name_and_db(argc, argv, &name, &db, NULL);
    if (u) return u;
    sm_error e;
    PGconn *c = sm_sched_connect(db, NULL, &e);
    if (!c) return fail(&e);
    char now[32];
    sm_time_format_utc((int64_t)floor(sm_sched_now()), now);
    const char *v[2] = {name, now};
    const char *sql = !strcmp(argv[0], "pause")
                          ? "UPDATE schedules SET paused = true, updated_at = now() WHERE name = $1 AND $2::text IS NOT NULL "
                            "RETURNING schedule_id"
                      : !strcmp(argv[0], "resume")
                          ? "UPDATE schedules SET paused = false, updated_at = now(), decided_through = "
                            "GREATEST(decided_through, $2::timestamptz) WHERE name = $1 RETURNING schedule_id"
                          : "WITH d AS (DELETE FROM schedules WHERE name = $1 RETURNING schedule_id), "
                            "q AS (UPDATE schedule_fires f SET state = 'cancelled', reason = 'schedule removed', "
                            "finished_at = now() FROM d WHERE f.schedule_id = d.schedule_id AND f.state = 'queued') "
                            "SELECT schedule_id FROM d WHERE $2::text IS NOT NULL";
    PGresult *r = sm_sched_q(c, sql, 2, v, &e);
    int rc;
    if (!r) rc = fail(&e);
    else if (PQntuples(r) == 0) {
        fprintf(stderr, "scalemix: no schedule named '%s' (see scalemix schedule list)\n", name);
        rc = 1;
    } else {
        printf("schedule %s %s\n", name,
               !strcmp(argv[0], "pause") ? "paused" : !strcmp(argv[0], "resume") ? "resumed" : "removed");
        rc = 0;
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}

static int cmd_list(int argc, char **argv) {
    const char *db = NULL, *v;
    int as_json = 0;
    for (int i = 1; i < argc; i++) {
        if (opt(argc, argv, &i, "--db", &v)) {
            if (!v) return usage_err(schedule_usage, "schedule list: --db needs a value%s", "");
            db = v;
        } else if (!strcmp(argv[i], "--json")) as_json = 1;
        else return usage_err(schedule_usage, "schedule list: unexpected argument '%s'", argv[i]);
    }
    sm_error e;
    PGconn *c = sm_sched_connect(db, NULL, &e);
    if (!c) return fail(&e);
    PGresult *r = sm_sched_q(
        c,
        "SELECT s.name, s.cron, s.tz, s.paused, s.overlap, s.catchup, floor(extract(epoch FROM s.decided_through))::bigint, "
        " s.pipeline, l.state, floor(extract(epoch FROM l.nominal_time))::bigint, l.exit_code, l.reason, "
        " (SELECT count(*) FROM schedule_fires x WHERE x.schedule_id = s.schedule_id AND x.state = 'running'), "
        " (SELECT count(*) FROM schedule_fires x WHERE x.schedule_id = s.schedule_id AND x.state = 'queued'), "
        " array_to_json(s.when_changed)::text, s.params::text "
        "FROM schedules s LEFT JOIN LATERAL (SELECT state, nominal_time, exit_code, reason FROM schedule_fires f "
        " WHERE f.schedule_id = s.schedule_id AND f.state IN ('succeeded', 'failed', 'cancelled', 'skipped') "
        " ORDER BY f.finished_at DESC NULLS LAST, f.nominal_time DESC LIMIT 1) l ON true ORDER BY s.name",
        0, NULL, &e);
    if (!r) {
        PQfinish(c);
        return fail(&e);
    }
    int64_t now = (int64_t)floor(sm_sched_now());
    json_t *arr = json_array();
    if (!as_json && PQntuples(r))
        printf("%-20s %-7s %-16s %-18s %-21s %-40s %s\n", "NAME", "STATE", "CRON", "TZ", "NEXT (UTC)", "LAST",
               "PIPELINE");
    for (int i = 0; i < PQntuples(r); i++) {
        const char *name = PQgetvalue(r, i, 0), *cron = PQgetvalue(r, i, 1), *tzn = PQgetvalue(r, i, 2);
        int paused = PQgetvalue(r, i, 3)[0] == 't';
        int64_t decided = strtoll(PQgetvalue(r, i, 6), NULL, 10), next;
        char nextb[32] = "-", last[200] = "-", lastnom[32] = "";
        sm_cron cr;
        sm_tz *tz = NULL;
        if (!paused && !sm_cron_parse(cron, &cr, NULL) && !sm_tz_load(tzn, &tz, NULL) &&
            !sm_cron_next(&cr, tz, decided > now ? decided : now, &next, NULL))
            sm_time_format_utc(next, nextb);
        sm_tz_free(tz);
        if (!PQgetisnull(r, i, 8)) {
            sm_time_format_utc(strtoll(PQgetvalue(r, i, 9), NULL, 10), lastnom);
            snprintf(last, sizeof last, "%s %s%s%s", PQgetvalue(r, i, 8), lastnom, PQgetisnull(r, i, 10) ? "" : " exit ",
                     PQgetvalue(r, i, 10));
        }
        const char *running = PQgetvalue(r, i, 12), *queued = PQgetvalue(r, i, 13);
        const char *state = paused ? "paused" : strcmp(running, "0") ? "running" : "active";
        if (as_json) {
            json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i}", "name", name, "cron", cron,
                                  "tz", tzn, "state", state, "overlap", PQgetvalue(r, i, 4), "catchup",
                                  PQgetvalue(r, i, 5), "pipeline", PQgetvalue(r, i, 7), "next_fire", nextb, "last",
                                  last, "running", atoi(running), "queued", atoi(queued));
            json_object_set_new(o, "when_changed", json_loads(PQgetvalue(r, i, 14), 0, NULL));
            json_object_set_new(o, "params", json_loads(PQgetvalue(r, i, 15), 0, NULL));
            if (!PQgetisnull(r, i, 11)) json_object_set_new(o, "last_reason", json_string(PQgetvalue(r, i, 11)));
            json_array_append_new(arr, o);
        } else
            printf("%-20s %-7s %-16s %-18s %-21s %-40s %s\n", name, state, cron, tzn, nextb, last, PQgetvalue(r, i, 7));
    }
    if (as_json) {
        char *s = json_dumps(arr, JSON_INDENT(2));
        puts(s);
        free(s);
    } else if (!PQntuples(r))
        printf("no schedules (add one with scalemix schedule add)\n");
    json_decref(arr);
    PQclear(r);
    PQfinish(c);
    return 0;
}

static int cmd_fires(int argc, char **argv) {
    const char *name = NULL, *db = NULL, *limit = "20";
    int u = name_and_db(argc, argv, &name, &db, &limit), n;
    if (u) return u;
    if (parse_int(limit, 1, 1000000, &n)) return usage_err(schedule_usage, "schedule fires: --limit '%s'", limit);
    sm_error e;
    PGconn *c = sm_sched_connect(db, NULL, &e);
    if (!c) return fail(&e);
    const char *v[2] = {name, limit};
    PGresult *r = sm_sched_q(c,
                             "SELECT floor(extract(epoch FROM nominal_time))::bigint, trigger, state, attempt, "
                             "coalesce(exit_code::text, '-'), coalesce(reason, '') FROM schedule_fires WHERE schedule = "
                             "$1 ORDER BY nominal_time DESC LIMIT $2::int",
                             2, v, &e);
    if (!r) {
        PQfinish(c);
        return fail(&e);
    }
    for (int i = PQntuples(r) - 1; i >= 0; i--) {
        char nom[32];
        sm_time_format_utc(strtoll(PQgetvalue(r, i, 0), NULL, 10), nom);
        printf("%s %-8s %-9s attempt %s exit %s %s\n", nom, PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
               PQgetvalue(r, i, 3), PQgetvalue(r, i, 4), PQgetvalue(r, i, 5));
    }
    PQclear(r);
    PQfinish(c);
    return 0;
}

static int cmd_backfill(int argc, char **argv) {
    const char *name = NULL, *from = NULL, *to = NULL, *v;
    int dry = 0, enqueue = 0;
    sm_sched_daemon_opts o;
    sm_sched_daemon_defaults(&o);
    o.max_runs = 1;
    for (int i = 1; i < argc; i++) {
        v = "";
        if (opt(argc, argv, &i, "--from", &v)) from = v;
        else if (opt(argc, argv, &i, "--to", &v)) to = v;
        else if (opt(argc, argv, &i, "--db", &v)) o.cli_dsn = v;
        else if (opt(argc, argv, &i, "--runner", &v)) o.runner = v;
        else if (opt(argc, argv, &i, "--max-runs", &v)) {
            if (parse_int(v, 1, 1024, &o.max_runs)) return usage_err(schedule_usage, "--max-runs '%s'", v ? v : "");
        } else if (!strcmp(argv[i], "--dry-run")) dry = 1;
        else if (!strcmp(argv[i], "--enqueue")) enqueue = 1;
        else if (argv[i][0] != '-' && !name) name = argv[i];
        else return usage_err(schedule_usage, "schedule backfill: unexpected argument '%s'", argv[i]);
        if (!v) return usage_err(schedule_usage, "schedule backfill: %s needs a value", argv[i]);
    }
    if (!name || !from || !to) return usage_err(schedule_usage, "schedule backfill: NAME, --from and --to are required%s", "");
    sm_error e;
    int64_t t0, t1;
    if (sm_time_parse_iso(from, &t0, &e) || sm_time_parse_iso(to, &t1, &e)) return fail(&e);
    if (t1 < t0) return usage_err(schedule_usage, "schedule backfill: --to is before --from%s", "");
    PGconn *c = sm_sched_connect(o.cli_dsn, NULL, &e);
    if (!c) return fail(&e);
    const char *nv[1] = {name};
    PGresult *r = sm_sched_q(c, "SELECT schedule_id, cron, tz FROM schedules WHERE name = $1", 1, nv, &e);
    if (!r || PQntuples(r) == 0) {
        if (r) fprintf(stderr, "scalemix: no schedule named '%s'\n", name);
        PQclear(r);
        PQfinish(c);
        return r ? 1 : fail(&e);
    }
    char sid[32];
    snprintf(sid, sizeof sid, "%s", PQgetvalue(r, 0, 0));
    sm_cron cr;
    sm_tz *tz = NULL;
    int bad = sm_cron_parse(PQgetvalue(r, 0, 1), &cr, &e) || sm_tz_load(PQgetvalue(r, 0, 2), &tz, &e);
    PQclear(r);
    if (bad) {
        PQfinish(c);
        return fail(&e);
    }
    enum { MAXN = 10000 };
    int64_t *times = malloc(sizeof *times * MAXN);
    int n = 0;
    for (int64_t t = t0 - 1, nx; sm_cron_next(&cr, tz, t, &nx, NULL) == 0 && nx <= t1; t = nx) {
        if (n == MAXN) {
            fprintf(stderr, "scalemix: backfill range holds more than %d fire times; split it\n", MAXN);
            free(times);
            sm_tz_free(tz);
            PQfinish(c);
            return 2;
        }
        times[n++] = nx;
    }
    sm_tz_free(tz);
    int rc = 0, queued = 0;
    for (int i = 0; i < n && !rc; i++) {
        char nom[32];
        sm_time_format_utc(times[i], nom);
        const char *v[3] = {sid, name, nom};
        if (dry) {
            r = sm_sched_q(c, "SELECT state FROM schedule_fires WHERE schedule_id = $1::bigint AND nominal_time = "
                              "$3::timestamptz AND $2::text IS NOT NULL", 3, v, &e);
            if (!r) { rc = fail(&e); break; }
            const char *st = PQntuples(r) ? PQgetvalue(r, 0, 0) : NULL;
            if (!st)
                printf("%s would run\n", nom);
            else if (!strcmp(st, "failed") || !strcmp(st, "cancelled") || !strcmp(st, "skipped"))
                printf("%s would run again (was %s)\n", nom, st);
            else
                printf("%s left alone (%s)\n", nom, st);
            PQclear(r);
            continue;
        }
        r = sm_sched_q(c,
                       "INSERT INTO schedule_fires (schedule_id, schedule, nominal_time, trigger, state) VALUES "
                       "($1::bigint, $2, $3::timestamptz, 'backfill', 'queued') ON CONFLICT (schedule_id, nominal_time) "
                       "DO UPDATE SET state = 'queued', trigger = 'backfill', reason = 'run again by backfill', "
                       "finished_at = NULL, exit_code = NULL, term_signal = NULL WHERE schedule_fires.state IN "
                       "('failed', 'cancelled', 'skipped') RETURNING fire_id",
                       3, v, &e);
        if (!r) { rc = fail(&e); break; }
        if (PQntuples(r)) queued++;
        else printf("%s left alone (already fired or pending)\n", nom);
        PQclear(r);
    }
    free(times);
    if (rc || dry) {
        PQfinish(c);
        return rc;
    }
    printf("backfill %s: %d of %d nominal time(s) queued\n", name, queued, n);
    if (!enqueue && queued) {
        o.only_schedule = strtoll(sid, NULL, 10);
        if (sm_sched_daemon_run(&o, &e)) {
            PQfinish(c);
            return fail(&e);
        }
        char a[32], b[32];
        sm_time_format_utc(t0, a);
        sm_time_format_utc(t1, b);
        const char *v[3] = {sid, a, b};
        r = sm_sched_q(c,
                       "SELECT floor(extract(epoch FROM nominal_time))::bigint, state, coalesce(exit_code::text, '-') "
                       "FROM schedule_fires WHERE schedule_id = $1::bigint AND nominal_time BETWEEN $2::timestamptz AND "
                       "$3::timestamptz ORDER BY nominal_time",
                       3, v, &e);
        if (!r) rc = fail(&e);
        for (int i = 0; r && i < PQntuples(r); i++) {
            char nom[32];
            sm_time_format_utc(strtoll(PQgetvalue(r, i, 0), NULL, 10), nom);
            printf("%s %s exit %s\n", nom, PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
            if (!strcmp(PQgetvalue(r, i, 1), "failed")) rc = 1;
        }
        PQclear(r);
    } else if (enqueue)
        printf("left for the daemon\n");
    PQfinish(c);
    return rc;
}

int sm_cmd_schedule(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(schedule_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    argc--, argv++;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help")) {
            fputs(schedule_usage, stdout);
            return 0;
        }
    if (!strcmp(sub, "next")) return cmd_next(argc, argv);
    if (!strcmp(sub, "add")) return cmd_add(argc, argv);
    if (!strcmp(sub, "list")) return cmd_list(argc, argv);
    if (!strcmp(sub, "fires")) return cmd_fires(argc, argv);
    if (!strcmp(sub, "backfill")) return cmd_backfill(argc, argv);
    if (!strcmp(sub, "pause") || !strcmp(sub, "resume") || !strcmp(sub, "remove")) return cmd_simple(argc, argv);
    return usage_err(schedule_usage, "schedule: unknown command '%s'", sub);
}

int sm_cmd_daemon(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "--exec-child")) return sm_sched_exec_child(argc, argv);
    sm_sched_daemon_opts o;
    sm_sched_daemon_defaults(&o);
    const char *v, *token_file = NULL;
    sm_web_opts web = {0};
    int serve = 0;
    for (int i = 1; i < argc; i++) {
        double x = 0;
        const char *name = argv[i];
        if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
            fputs(daemon_usage, stdout);
            return 0;
        }
        if (!strcmp(name, "--serve")) { serve = 1; continue; }
        if (opt(argc, argv, &i, "--db", &v)) o.cli_dsn = v;
        else if (opt(argc, argv, &i, "--listen", &v)) web.listen = v;
        else if (opt(argc, argv, &i, "--token-file", &v)) token_file = v;
        else if (opt(argc, argv, &i, "--runner", &v)) o.runner = v;
        else if (opt(argc, argv, &i, "--max-runs", &v)) {
            if (parse_int(v, 1, 1024, &o.max_runs)) return usage_err(daemon_usage, "daemon: --max-runs '%s': 1-1024", v ? v : "");
        } else if (opt(argc, argv, &i, "--max-attempts", &v)) {
            if (parse_int(v, 1, 1000, &o.max_attempts)) return usage_err(daemon_usage, "daemon: --max-attempts '%s'", v ? v : "");
        } else if (opt(argc, argv, &i, "--poll", &v) || opt(argc, argv, &i, "--lease", &v) ||
                   opt(argc, argv, &i, "--kill-grace", &v) || opt(argc, argv, &i, "--drain", &v) ||
                   opt(argc, argv, &i, "--misfire-grace", &v)) {
            sm_error e;
            if (!v || sm_sched_parse_duration(v, &x, &e)) return usage_err(daemon_usage, "daemon: bad duration for %s", name);
            if (!strncmp(name, "--poll", 6)) o.poll_s = x;
            else if (!strncmp(name, "--lease", 7)) o.lease_s = x;
            else if (!strncmp(name, "--kill-grace", 12)) o.kill_grace_s = x;
            else if (!strncmp(name, "--drain", 7)) o.drain_s = x;
            else o.misfire_s = x;
            continue;
        } else
            return usage_err(daemon_usage, "daemon: unexpected argument '%s'", name);
        if (!v) return usage_err(daemon_usage, "daemon: %s needs a value", name);
    }
    sm_error e;
    char *token = NULL;
    if (!serve && (web.listen || token_file)) return usage_err(daemon_usage, "daemon: --listen and --token-file go with --serve%s", "");
    if (token_file && sm_web_read_token(token_file, &token, &e)) return usage_err(daemon_usage, "daemon: %s", e.msg);
    web.token = token;
    if (serve) o.serve = &web;
    int rc = sm_sched_daemon_run(&o, &e);
    free(token);
    return rc ? fail(&e) : 0;
}
