/* test_engine_core.c - the artifact store, cache keys and explanations, the plugin loader and parameter checks. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../sm_test.h"
#include "sm_cache.h"
#include "sm_plugins.h"
#include "sm_store.h"

static char tmpdir[256];

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static sm_plugin *load_test_plugin(const char *name, sm_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/plugins/%s.so", sm_build_dir(), name);
    sm_plugin *p = NULL;
    if (sm_plugin_load(path, &p, err) != SM_OK) return NULL;
    return p;
}

TEST(store_commit_is_content_addressed) {
    sm_workspace ws;
    sm_error err = {0};
    char root[300];
    snprintf(root, sizeof root, "%s/ws", tmpdir);
    CHECK_EQ_INT(sm_workspace_open(&ws, root, &err), SM_OK);
    char tmp[4096], digest[65], final[4096];
    uint64_t bytes;
    CHECK_EQ_INT(sm_store_tmp_path(&ws, "x", tmp, sizeof tmp, &err), SM_OK);
    write_text(tmp, "hello");
    CHECK_EQ_INT(sm_store_commit(&ws, tmp, digest, &bytes, final, sizeof final, 1, &err), SM_OK);
    CHECK_EQ_STR(digest, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    CHECK_EQ_INT(bytes, 5);
    CHECK(access(tmp, F_OK) != 0); /* renamed, not copied */
    CHECK(sm_store_has(&ws, digest, 5));
    CHECK(!sm_store_has(&ws, digest, 6));
    /* The same content again: the temporary file is dropped, the object stays. */
    sm_store_tmp_path(&ws, "y", tmp, sizeof tmp, &err);
    write_text(tmp, "hello");
    CHECK_EQ_INT(sm_store_commit(&ws, tmp, digest, &bytes, NULL, 0, 0, &err), SM_OK);
    CHECK(access(tmp, F_OK) != 0);
    struct stat st;
    CHECK(stat(final, &st) == 0 && (st.st_mode & 0222) == 0); /* objects are read-only */
}

TEST(workspace_unwritable_is_a_clear_error) {
    if (geteuid() == 0) SKIP("running as root: permissions do not restrict root");
    char ro[300];
    snprintf(ro, sizeof ro, "%s/ro", tmpdir);
    mkdir(ro, 0555);
    char root[320];
    snprintf(root, sizeof root, "%s/ws", ro);
    sm_workspace ws;
    sm_error err = {0};
    CHECK(sm_workspace_open(&ws, root, &err) != SM_OK);
    CHECK(strstr(err.msg, "SCALEMIX_HOME") != NULL);
}

TEST(workspace_path_is_a_file) {
    char f[300];
    snprintf(f, sizeof f, "%s/afile", tmpdir);
    write_text(f, "x");
    sm_workspace ws;
    sm_error err = {0};
    CHECK(sm_workspace_open(&ws, f, &err) != SM_OK);
    CHECK(strstr(err.msg, "not usable") != NULL);
}

TEST(dir_digest_depends_on_names_and_contents_only) {
    char d[300], p[400];
    snprintf(d, sizeof d, "%s/tree", tmpdir);
    mkdir(d, 0755);
    snprintf(p, sizeof p, "%s/a.txt", d);
    write_text(p, "one");
    snprintf(p, sizeof p, "%s/sub", d);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/sub/b.txt", d);
    write_text(p, "two");
    char h1[65], h2[65], h3[65];
    uint64_t bytes, files;
    sm_error err = {0};
    CHECK_EQ_INT(sm_dir_digest(d, h1, &bytes, &files, &err), SM_OK);
    CHECK_EQ_INT(files, 2);
    CHECK_EQ_INT(bytes, 6);
    CHECK_EQ_INT(sm_dir_digest(d, h2, NULL, NULL, &err), SM_OK);
    CHECK_EQ_STR(h1, h2);
    write_text(p, "tw0");
    CHECK_EQ_INT(sm_dir_digest(d, h3, NULL, NULL, &err), SM_OK);
    CHECK(strcmp(h1, h3) != 0);
    CHECK(sm_dir_digest("/nonexistent/folder", h3, NULL, NULL, &err) == SM_ERR_NOTFOUND);
}

TEST(loader_accepts_a_plugin_and_refuses_another_abi) {
    sm_error err = {0};
    sm_plugin *p = load_test_plugin("sm_test_echo", &err);
    CHECK_MSG(p != NULL, "%s", err.msg);
    CHECK_EQ_STR(p->name, "sm_test_echo");
    CHECK_EQ_INT(strlen(p->sha256), 64);
    sm_plugin_unload(p);
    p = load_test_plugin("sm_test_badabi", &err);
    CHECK(p == NULL);
    CHECK_EQ_INT(err.code, SM_ERR_PLUGIN);
    char host_abi[32];
    snprintf(host_abi, sizeof host_abi, "ABI %d.%d", SM_PLUGIN_ABI_MAJOR, SM_PLUGIN_ABI_MINOR);
    CHECK_MSG(strstr(err.msg, "ABI 2.0") && strstr(err.msg, host_abi), "message names both versions: %s", err.msg);
    char path[4096];
    snprintf(path, sizeof path, "%s/ws/not-a-plugin.so", tmpdir);
    write_text(path, "garbage");
    sm_plugin *q = NULL;
    CHECK(sm_plugin_load(path, &q, &err) == SM_ERR_PLUGIN && q == NULL);
    CHECK(strstr(err.msg, "cannot load plugin") != NULL);
}

TEST(params_are_checked_and_completed) {
    sm_error err = {0};
    sm_plugin *p = load_test_plugin("sm_test_echo", &err);
    CHECK_MSG(p != NULL, "%s", err.msg);
    json_t *canon = NULL;
    json_t *in = json_loads("{\"value\": 2, \"sleep_ms\": 5.0, \"tags\": {}}", 0, NULL);
    CHECK_EQ_INT(sm_plugin_check_params(p, in, &canon, &err), SM_OK);
    char *s = sm_json_canonical(canon);
    CHECK_EQ_STR(s, "{\"commit_twice\":false,\"crash\":false,\"fail\":false,\"gpu_mb\":0,\"isolate\":false,\"lib_log\":false,\"log_lines\":0,\"sleep_ms\":5,\"tags\":[],\"text\":null,\"use_scratch\":false,\"value\":2}");
    free(s);
    json_decref(canon);
    json_decref(in);
    in = json_loads("{\"value\": \"x\"}", 0, NULL);
    CHECK_EQ_INT(sm_plugin_check_params(p, in, &canon, &err), SM_ERR_ARG);
    CHECK(strstr(err.msg, "'value' must be a number") != NULL);
    json_decref(in);
    in = json_loads("{\"value\": 1, \"bogus\": 1}", 0, NULL);
    CHECK_EQ_INT(sm_plugin_check_params(p, in, &canon, &err), SM_ERR_ARG);
    CHECK(strstr(err.msg, "unknown parameter 'bogus'") != NULL);
    json_decref(in);
    in = json_loads("{\"sleep_ms\": 1.5, \"value\": 1}", 0, NULL);
    CHECK_EQ_INT(sm_plugin_check_params(p, in, &canon, &err), SM_ERR_ARG);
    json_decref(in);
    in = json_loads("{}", 0, NULL);
    CHECK_EQ_INT(sm_plugin_check_params(p, in, &canon, &err), SM_ERR_ARG);
    CHECK(strstr(err.msg, "missing required parameter 'value'") != NULL);
    json_decref(in);
    sm_plugin_unload(p);
}

TEST(cache_key_covers_params_inputs_and_plugin) {
    sm_error err = {0};
    sm_plugin *p = load_test_plugin("sm_test_echo", &err);
    CHECK_MSG(p != NULL, "%s", err.msg);
    json_t *pa = json_loads("{\"value\": 1}", 0, NULL), *pb = json_loads("{\"value\": 2}", 0, NULL);
    json_t *ia = json_loads("{\"x\": {\"digest\": \"aa\", \"path\": \"/one\"}}", 0, NULL);
    json_t *ia2 = json_loads("{\"x\": {\"digest\": \"aa\", \"path\": \"/elsewhere\"}}", 0, NULL);
    json_t *ib = json_loads("{\"x\": {\"digest\": \"bb\", \"path\": \"/one\"}}", 0, NULL);
    json_t *k1 = sm_cache_parts(p, pa, ia), *k2 = sm_cache_parts(p, pa, ia2), *k3 = sm_cache_parts(p, pb, ia),
           *k4 = sm_cache_parts(p, pa, ib);
    char a[65], b[65], c[65], d[65];
    sm_cache_key(k1, a);
    sm_cache_key(k2, b);
    sm_cache_key(k3, c);
    sm_cache_key(k4, d);
    CHECK_EQ_STR(a, b); /* the same content at another path is the same input */
    CHECK(strcmp(a, c) != 0);
    CHECK(strcmp(a, d) != 0);
    char *why = sm_cache_explain(k1, k3);
    CHECK_EQ_STR(why, "parameter 'value' changed (1 -> 2)");
    free(why);
    why = sm_cache_explain(k1, k4);
    CHECK_EQ_STR(why, "input 'x' changed");
    free(why);
    why = sm_cache_explain(NULL, k4);
    CHECK_EQ_STR(why, "no previous run of this stage");
    free(why);
    json_object_set_new(k2, "plugin_sha256", json_string("0000000000000000000000000000000000000000000000000000000000000000"));
    why = sm_cache_explain(k2, k1);
    CHECK(strstr(why, "plugin binary changed") == why);
    free(why);
    json_decref(k1); json_decref(k2); json_decref(k3); json_decref(k4);
    json_decref(pa); json_decref(pb); json_decref(ia); json_decref(ia2); json_decref(ib);
    sm_plugin_unload(p);
}

TEST(cache_entry_needs_its_outputs) {
    sm_workspace ws;
    sm_error err = {0};
    char root[300];
    snprintf(root, sizeof root, "%s/ws", tmpdir);
    CHECK_EQ_INT(sm_workspace_open(&ws, root, &err), SM_OK);
    char tmp[4096], digest[65];
    uint64_t bytes;
    sm_store_tmp_path(&ws, "o", tmp, sizeof tmp, &err);
    write_text(tmp, "payload");
    CHECK_EQ_INT(sm_store_commit(&ws, tmp, digest, &bytes, NULL, 0, 0, &err), SM_OK);
    json_t *entry = json_pack("{s:{s:{s:s, s:I}}, s:{}}", "outputs", "o", "digest", digest, "bytes", (json_int_t)bytes, "result");
    CHECK_EQ_INT(sm_cache_store(&ws, "k1", entry, &err), SM_OK);
    json_t *hit = sm_cache_lookup(&ws, "k1", NULL);
    CHECK(hit != NULL);
    json_decref(hit);
    char obj[4096];
    sm_store_object_path(&ws, digest, obj, sizeof obj);
    CHECK(unlink(obj) == 0);
    const char *why = NULL;
    CHECK(sm_cache_lookup(&ws, "k1", &why) == NULL);
    CHECK(why && strstr(why, "missing"));
    CHECK(sm_cache_lookup(&ws, "never", NULL) == NULL);
    json_decref(entry);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sm-test-core-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(store_commit_is_content_addressed);
    RUN(workspace_unwritable_is_a_clear_error);
    RUN(workspace_path_is_a_file);
    RUN(dir_digest_depends_on_names_and_contents_only);
    RUN(loader_accepts_a_plugin_and_refuses_another_abi);
    RUN(params_are_checked_and_completed);
    RUN(cache_key_covers_params_inputs_and_plugin);
    RUN(cache_entry_needs_its_outputs);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "chmod -R u+w %s && rm -rf %s", tmpdir, tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    TEST_EXIT();
}
