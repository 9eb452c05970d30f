/* test_sched_spec.c - schedule specs (defaults, validation, paths), durations, the --when-changed digest,
 * the fake clock, and sm_sched_declare (upsert by name) against a real database when SCALEMIX_DB is set
 * (tests/integration/test_sched_cli.sh runs this binary with the embedded server's DSN). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "../../core/sched/sm_sched.h"
#include "../../core/sched/sm_sched_int.h"
#include "../../core/sched/sm_tz.h"
#include "../sm_test.h"

static json_t *norm(const char *text, sm_error *e, int *rc) {
    json_t *in = json_loads(text, 0, NULL), *out = NULL;
    if (!in) FAILF("bad test JSON %s", text);
    *rc = sm_sched_spec_normalize(in, &out, e);
    json_decref(in);
    return out;
}

TEST(spec_defaults_and_paths) {
    sm_error e;
    int rc;
    json_t *s = norm("{\"name\":\"n1\",\"cron\":\"@daily\",\"pipeline\":\"p.lua\",\"params\":{\"a\":1,\"b\":\"x\",\"c\":true}}", &e, &rc);
    CHECK_MSG(rc == 0, "%s", e.msg);
    CHECK_EQ_STR(json_string_value(json_object_get(s, "tz")), "UTC");
    CHECK_EQ_STR(json_string_value(json_object_get(s, "overlap")), "skip");
    CHECK_EQ_STR(json_string_value(json_object_get(s, "catchup")), "latest");
    CHECK(json_real_value(json_object_get(s, "catchup_window")) == 86400);
    const char *p = json_string_value(json_object_get(s, "pipeline"));
    CHECK(p[0] == '/' && strstr(p, "/p.lua"));
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(s, "params"), "a")), "1");
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(s, "params"), "c")), "true");
    json_decref(s);
    s = norm("{\"name\":\"n2\",\"cron\":\"0 2 * * *\",\"tz\":\"Asia/Kolkata\",\"pipeline\":\"p.lua\",\"overlap\":"
             "\"cancel-old\",\"catchup\":\"all\",\"catchup_window\":\"6h\",\"when_changed\":[\"/data\",\"rel\"],"
             "\"paused\":true}",
             &e, &rc);
    CHECK_MSG(rc == 0, "%s", e.msg);
    CHECK(json_real_value(json_object_get(s, "catchup_window")) == 6 * 3600);
    CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(s, "when_changed"), 0)), "/data");
    CHECK(json_string_value(json_array_get(json_object_get(s, "when_changed"), 1))[0] == '/');
    CHECK(json_is_true(json_object_get(s, "paused")));
    json_decref(s);
}

TEST(spec_errors) {
    static const char *const bad[][2] = {
        {"{\"cron\":\"@daily\",\"pipeline\":\"p\"}", "schedule name '(missing)'"},
        {"{\"name\":\"bad name\",\"cron\":\"@daily\",\"pipeline\":\"p\"}", "schedule name 'bad name'"},
        {"{\"name\":\"n\",\"pipeline\":\"p\"}", "cron expression missing"},
        {"{\"name\":\"n\",\"cron\":\"0 0 32 * *\",\"pipeline\":\"p\"}", "field 3 (day of month) '32': out of range 1-31"},
        {"{\"name\":\"n\",\"cron\":\"@daily\",\"tz\":\"Mars/Base\",\"pipeline\":\"p\"}", "time zone 'Mars/Base'"},
        {"{\"name\":\"n\",\"cron\":\"@daily\"}", "pipeline script missing"},
        {"{\"name\":\"n\",\"cron\":\"@daily\",\"pipeline\":\"p\",\"overlap\":\"maybe\"}", "overlap 'maybe'"},
        {"{\"name\":\"n\",\"cron\":\"@daily\",\"pipeline\":\"p\",\"catchup\":\"some\"}", "catchup 'some'"},
        {"{\"name\":\"n\",\"cron\":\"@daily\",\"pipeline\":\"p\",\"catchup_window\":\"soon\"}", "duration 'soon'"},
        {"{\"name\":\"n\",\"cron\":\"@daily\",\"pipeline\":\"p\",\"params\":{\"a\":[1]}}", "param 'a'"},
        {"{\"name\":\"n\",\"cron\":\"@daily\",\"pipeline\":\"p\",\"when_changed\":\"x\"}", "list of paths"},
        {"{\"name\":\"n\",\"cron\":\"@daily\",\"pipeline\":\"p\",\"colour\":\"red\"}", "unknown field 'colour'"},
        {"{\"name\":\"n\",\"cron\":\"@daily\",\"pipeline\":\"/nonexistent/p.lua\"}",
         "pipeline script /nonexistent/p.lua: No such file or directory"},
        {"{\"name\":\"n\",\"cron\":\"@daily\",\"pipeline\":\"/tmp\"}", "pipeline script /tmp: is not a regular file"},
    };
    for (size_t i = 0; i < SM_ARRAY_LEN(bad); i++) {
        sm_error e = {0};
        int rc;
        json_t *s = norm(bad[i][0], &e, &rc);
        CHECK_MSG(rc == SM_ERR_ARG && !s, "%s accepted", bad[i][0]);
        CHECK_MSG(strstr(e.msg, bad[i][1]), "%s: message '%s' lacks '%s'", bad[i][0], e.msg, bad[i][1]);
    }
}

TEST(durations) {
    double s;
    sm_error e;
    CHECK(sm_sched_parse_duration("90", &s, &e) == 0 && s == 90);
    CHECK(sm_sched_parse_duration("1.5m", &s, &e) == 0 && s == 90);
    CHECK(sm_sched_parse_duration("2d", &s, &e) == 0 && s == 172800);
    CHECK(sm_sched_parse_duration("3x", &s, &e) == SM_ERR_ARG);
    CHECK(sm_sched_parse_duration("-1", &s, &e) == SM_ERR_ARG);
    CHECK(sm_sched_parse_duration("", &s, &e) == SM_ERR_ARG);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) FAILF("cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

TEST(when_changed_digest) {
    char dir[] = "/tmp/sm-digest.XXXXXX";
    CHECK(mkdtemp(dir));
    char sub[256], a[256], b[256];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(a, sizeof a, "%s/sub/a.txt", dir);
    snprintf(b, sizeof b, "%s/b.txt", dir);
    mkdir(sub, 0755);
    write_file(a, "one");
    write_file(b, "two");
    const char *paths[1] = {dir};
    char h1[65], h2[65], h3[65], h4[65];
    sm_error e;
    CHECK(sm_sched_digest(paths, 1, h1, &e) == 0);
    CHECK(sm_sched_digest(paths, 1, h2, &e) == 0);
    CHECK_EQ_STR(h1, h2);
    write_file(a, "ONE");
    CHECK(sm_sched_digest(paths, 1, h3, &e) == 0);
    CHECK(strcmp(h1, h3) != 0); /* content change deep in the tree */
    char a2[256];
    snprintf(a2, sizeof a2, "%s/sub/c.txt", dir);
    rename(a, a2);
    CHECK(sm_sched_digest(paths, 1, h4, &e) == 0);
    CHECK(strcmp(h3, h4) != 0); /* a rename changes it too */
    const char *file[1] = {b};
    CHECK(sm_sched_digest(file, 1, h1, &e) == 0);
    const char *missing[1] = {"/nonexistent/input"};
    CHECK(sm_sched_digest(missing, 1, h2, &e) == SM_ERR_IO);
    CHECK(strstr(e.msg, "/nonexistent/input") != NULL);
    unlink(a2);
    unlink(b);
    rmdir(sub);
    rmdir(dir);
}

TEST(fake_clock) {
    char path[] = "/tmp/sm-clock.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    write_file(path, "2026-03-08T06:59:00Z 60\n");
    setenv("SCALEMIX_CLOCK_FILE", path, 1);
    double t = sm_sched_now();
    CHECK_MSG(t >= 1772953140.0 && t < 1772953140.0 + 120, "clock %.3f", t); /* 2026-03-08T06:59:00Z = 1772953140 */
    CHECK(sm_sched_speed() == 60);
    unsetenv("SCALEMIX_CLOCK_FILE");
    unlink(path);
    CHECK(sm_sched_now() > 1.7e9 && sm_sched_speed() == 1);
}

TEST(next_times_api) {
    int64_t out[3];
    sm_error e;
    CHECK(sm_sched_next_times("@weekly", "Europe/London", 1772953140, 3, out, &e) == 0);
    char buf[32];
    sm_time_format_utc(out[0], buf);
    CHECK_EQ_STR(buf, "2026-03-15T00:00:00Z");
    sm_time_format_utc(out[2], buf);
    CHECK_EQ_STR(buf, "2026-03-29T00:00:00Z"); /* still GMT: the clocks go forward at 01:00 */
    CHECK(sm_sched_next_times("@sometimes", NULL, 0, 1, out, &e) == SM_ERR_ARG);
}

TEST(declare_upserts_by_name) {
    const char *dsn = getenv("SCALEMIX_DB");
    if (!dsn || !*dsn || !strcmp(dsn, "none")) SKIP("needs SCALEMIX_DB (run by tests/integration/test_sched_cli.sh)");
    sm_error e;
    CHECK_MSG(sm_sched_declare(NULL, "{\"name\":\"decl\",\"cron\":\"0 3 * * *\",\"pipeline\":\"p.lua\"}", &e) == 0,
              "%s", e.msg);
    CHECK_MSG(sm_sched_declare(dsn, "{\"name\":\"decl\",\"cron\":\"0 4 * * *\",\"tz\":\"Europe/Berlin\",\"pipeline\":"
                                    "\"p.lua\",\"overlap\":\"queue\"}",
                               &e) == 0,
              "%s", e.msg);
    PGconn *c = sm_sched_connect(dsn, NULL, &e);
    CHECK_MSG(c, "%s", e.msg);
    PGresult *r = sm_sched_q(c, "SELECT count(*), min(cron), min(tz), min(overlap) FROM schedules WHERE name = 'decl'",
                             0, NULL, &e);
    CHECK(r);
    CHECK_EQ_STR(PQgetvalue(r, 0, 0), "1");
    CHECK_EQ_STR(PQgetvalue(r, 0, 1), "0 4 * * *");
    CHECK_EQ_STR(PQgetvalue(r, 0, 2), "Europe/Berlin");
    CHECK_EQ_STR(PQgetvalue(r, 0, 3), "queue");
    PQclear(r);
    CHECK(sm_sched_declare(dsn, "{\"name\":\"decl\",\"cron\":\"0 0 31 2 *\",\"pipeline\":\"p.lua\"}", &e) == SM_ERR_ARG);
    CHECK(strstr(e.msg, "field 3") != NULL);
    CHECK(sm_sched_declare(dsn, "{not json", &e) == SM_ERR_ARG);
    sm_sched_x(c, "DELETE FROM schedules WHERE name = 'decl'", 0, NULL, NULL);
    PQfinish(c);
}

/* The tag covers every field that decides what runs; the check refuses a bad name, a missing or wrong tag
 * and a changed script, each with its reason; the key is private. */
TEST(auth_tag_and_check) {
    sm_error e;
    char sha[65], tag[65], t2[65];
    CHECK(sm_sha256_file("p.lua", sha, NULL, &e) == 0);
    char abs[PATH_MAX];
    CHECK(realpath("p.lua", abs) != NULL);
    sm_sched_auth_fields f = {"nightly", abs, sha, "{\"b\": \"2\", \"a\": \"1\"}", "0 2 * * *", "UTC", "[]"};
    CHECK_MSG(sm_sched_auth_tag(&f, tag, &e) == 0, "%s", e.msg);
    char key[PATH_MAX + 16];
    snprintf(key, sizeof key, "%s/sched.key", sm_sched_workspace());
    struct stat st;
    CHECK(stat(key, &st) == 0 && st.st_size == 32 && (st.st_mode & 0777) == 0600);
    sm_sched_auth_fields g = f;
    g.params = "{\"a\":\"1\",\"b\":\"2\"}"; /* the same parameters, rendered otherwise */
    CHECK(sm_sched_auth_tag(&g, t2, &e) == 0 && strcmp(tag, t2) == 0);
    CHECK_MSG(sm_sched_auth_check(&f, tag, 1, &e) == 0, "%s", e.msg);
    const char *fields[] = {"name", "pipeline", "script", "params", "cron", "tz", "when_changed"};
    for (int i = 0; i < 7; i++) {
        g = f;
        const char **slot[] = {&g.name, &g.pipeline, &g.script_sha256, &g.params, &g.cron, &g.tz, &g.when_changed};
        *slot[i] = i == 3 ? "{\"a\":\"1\",\"b\":\"3\"}" : i == 6 ? "[\"/etc\"]" : i == 2 ? "0000" : "other";
        CHECK(sm_sched_auth_tag(&g, t2, &e) == 0);
        CHECK_MSG(strcmp(tag, t2) != 0, "the tag does not cover %s", fields[i]);
        CHECK(sm_sched_auth_check(&g, tag, 0, &e) != 0);
        CHECK_MSG(strstr(e.msg, "refused: ") == e.msg, "%s", e.msg);
    }
    CHECK(sm_sched_auth_check(&f, NULL, 1, &e) != 0 && strstr(e.msg, "no authentication tag"));
    g = f;
    g.name = "../../../../tmp/x";
    CHECK(sm_sched_auth_check(&g, tag, 1, &e) != 0 && strstr(e.msg, "not a valid name"));
    CHECK(!sm_sched_valid_name("..") && !sm_sched_valid_name("a/b") && !sm_sched_valid_name("a\nb") &&
          sm_sched_valid_name("nightly.v2-x_1"));
    FILE *p = fopen("p.lua", "a");
    CHECK(p && fputs("os.execute('id')\n", p) >= 0);
    if (p) fclose(p);
    CHECK(sm_sched_auth_check(&f, tag, 1, &e) != 0 && strstr(e.msg, "changed since it was registered"));
    p = fopen("p.lua", "w");
    CHECK(p && fputs("return 1\n", p) >= 0);
    if (p) fclose(p);
    CHECK(chmod(key, 0644) == 0);
    CHECK(sm_sched_auth_tag(&f, t2, &e) != 0 && strstr(e.msg, "mode 0600"));
    CHECK(chmod(key, 0600) == 0);
}

int main(void) {
    /* A private folder with a pipeline script (p.lua, which specs name relative to it) and a workspace. */
    char dir[] = "/tmp/sm-sched-spec.XXXXXX";
    if (!mkdtemp(dir) || chdir(dir) != 0) return 1;
    FILE *pf = fopen("p.lua", "w");
    if (!pf || fputs("return 1\n", pf) < 0 || fclose(pf) != 0) return 1;
    if (!getenv("SCALEMIX_DB")) setenv("SCALEMIX_HOME", "ws", 1);
    RUN(spec_defaults_and_paths);
    RUN(spec_errors);
    RUN(durations);
    RUN(when_changed_digest);
    RUN(fake_clock);
    RUN(next_times_api);
    RUN(declare_upserts_by_name);
    RUN(auth_tag_and_check);
    char rm[64];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    if (system(rm) != 0) fprintf(stderr, "could not remove %s\n", dir);
    TEST_EXIT();
}
