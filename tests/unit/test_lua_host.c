/* test_lua_host.c - the Lua host runs exactly the bytes whose digest the run recorded (issue 14, item 1): a
 * script changed between the moment its digest was taken and the moment it is loaded is refused unrun. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../sm_test.h"
#include "sm_engine.h"
#include "sm_lua.h"

static char tmpdir[256], script[300], marker[300];

static void write_script(const char *extra) {
    FILE *f = fopen(script, "w");
    fprintf(f, "local sm = require \"scalemix\"\nio.open(\"%s\", \"w\"):close()\n%s", marker, extra);
    fclose(f);
}

/* Runs the script in a run whose recorded digest is sha; returns sm_lua_run's code. */
static int run_with_digest(const char *sha, sm_error *err) {
    char ws[320];
    snprintf(ws, sizeof ws, "%s/ws", tmpdir);
    json_t *params = json_object();
    sm_engine_opts o = {.workspace = ws, .script_path = script, .script_sha256 = sha, .params = params};
    sm_engine *e;
    if (sm_engine_create(&e, &o, err) != SM_OK) FAILF("engine: %s", err->msg);
    int rc = sm_lua_run(e, script, sha, params, NULL, err);
    sm_engine_finish(e, rc == SM_OK ? SM_STAGE_SUCCEEDED : SM_STAGE_FAILED, err->msg);
    sm_engine_free(e);
    json_decref(params);
    return rc;
}

TEST(script_changed_after_its_digest_is_refused_unrun) {
    write_script("");
    char before[65], after[65];
    sm_error err = {0};
    CHECK(sm_sha256_file(script, before, NULL, &err) == SM_OK);
    write_script("os.execute('true')\n"); /* changed after the digest was taken, before the load */
    CHECK(sm_sha256_file(script, after, NULL, &err) == SM_OK);
    CHECK(strcmp(before, after) != 0);
    CHECK_EQ_INT(run_with_digest(before, &err), SM_ERR_PLUGIN);
    CHECK_MSG(strstr(err.msg, "refused: script") && strstr(err.msg, "changed while the run started") &&
                  strstr(err.msg, after) && strstr(err.msg, before),
              "message: %s", err.msg);
    CHECK_MSG(access(marker, F_OK) != 0, "the changed script ran");
}

TEST(script_whose_bytes_match_runs) {
    write_script("");
    char sha[65];
    sm_error err = {0};
    CHECK(sm_sha256_file(script, sha, NULL, &err) == SM_OK);
    unlink(marker);
    CHECK_MSG(run_with_digest(sha, &err) == SM_OK, "run: %s", err.msg);
    CHECK_MSG(access(marker, F_OK) == 0, "the script did not run");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sm-lua-host-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    snprintf(script, sizeof script, "%s/p.lua", tmpdir);
    snprintf(marker, sizeof marker, "%s/ran", tmpdir);
    RUN(script_changed_after_its_digest_is_refused_unrun);
    RUN(script_whose_bytes_match_runs);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    TEST_EXIT();
}
