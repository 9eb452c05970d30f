/* test_engine_host.c - the host API implemented once (sm_host.c) and its transports: the wire codec's file
 * tail, the host table's own answers, an executor added from outside (batches, the file transport, job
 * records and re-attach), and GPU stages asking for a process of their own. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../sm_test.h"
#include "sm_display.h"
#include "sm_engine.h"
#include "sm_host.h"
#include "sm_wire.h"

static char tmpdir[256];

static void write_text(const char *path, const char *text, const char *mode) {
    FILE *f = fopen(path, mode);
    fputs(text, f);
    fclose(f);
}

typedef struct seen {
    json_t *msgs;
} seen;
static void collect(void *ctx, const json_t *m) { json_array_append(((seen *)ctx)->msgs, (json_t *)m); }
static int collect_send(void *ctx, const json_t *m) {
    collect(ctx, m);
    return SM_OK;
}

TEST(wire_tail_reads_each_complete_line_once) {
    char path[300];
    snprintf(path, sizeof path, "%s/out.jsonl", tmpdir);
    seen s = {json_array()};
    uint64_t off = 0;
    sm_error err = {0};
    CHECK_EQ_INT(sm_wire_tail(path, &off, collect, &s, &err), SM_ERR_NOTFOUND);
    write_text(path, "{\"t\":\"log\",\"level\":2,\"msg\":\"a\"}\n{\"t\":\"metric\",\"na", "w");
    CHECK_EQ_INT(sm_wire_tail(path, &off, collect, &s, &err), SM_OK);
    CHECK_EQ_INT(json_array_size(s.msgs), 1);
    CHECK_EQ_INT(off, 32); /* the partial second line waits */
    CHECK_EQ_INT(sm_wire_tail(path, &off, collect, &s, &err), SM_OK);
    CHECK_EQ_INT(json_array_size(s.msgs), 1);
    write_text(path, "me\":\"loss\",\"step\":1,\"domain\":null,\"value\":0.5}\n{\"t\":\"done\",\"rc\":0,\"msg\":\"\"}\n", "a");
    CHECK_EQ_INT(sm_wire_tail(path, &off, collect, &s, &err), SM_OK);
    CHECK_EQ_INT(json_array_size(s.msgs), 3);
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(s.msgs, 1), "name")), "loss");
    /* an engine started again reads the same file from 0: the same messages, in order */
    seen again = {json_array()};
    uint64_t off2 = 0;
    CHECK_EQ_INT(sm_wire_tail(path, &off2, collect, &again, &err), SM_OK);
    CHECK_EQ_INT(off2, off);
    CHECK(json_equal(again.msgs, s.msgs));
    json_decref(s.msgs);
    json_decref(again.msgs);
}

TEST(host_table_answers_locally_and_sends_the_rest) {
    sm_workspace ws;
    sm_error err = {0};
    char root[300], scratch[400];
    snprintf(root, sizeof root, "%s/ws", tmpdir);
    CHECK_EQ_INT(sm_workspace_open(&ws, root, &err), SM_OK);
    snprintf(scratch, sizeof scratch, "%s/scratch/k", root);
    seen s = {json_array()};
    sm_host h;
    atomic_int all = 0;
    sm_host_init(&h, &ws, scratch, 3, SM_LOG_WARN, &all, collect_send, &s);
    const sm_host_api *api = &sm_host_table;
    CHECK_EQ_INT(api->abi_minor, SM_PLUGIN_ABI_MINOR);
    CHECK_EQ_INT(api->threads(&h), 3);
    CHECK_EQ_INT(api->log_level(&h), SM_LOG_WARN);
    CHECK(!api->cancelled(&h));
    atomic_store(&all, 1);
    CHECK(api->cancelled(&h));
    char tmp[4096], digest[65];
    CHECK_EQ_INT(api->output_path(&h, "x", tmp, sizeof tmp), SM_OK);
    write_text(tmp, "data", "w");
    CHECK_EQ_INT(api->output_commit(&h, "x", tmp, "text", NULL, digest), SM_OK); /* meta NULL: {} */
    api->output_path(&h, "x", tmp, sizeof tmp);
    write_text(tmp, "again", "w");
    CHECK_EQ_INT(api->output_commit(&h, "x", tmp, "text", NULL, digest), SM_ERR_ARG);
    CHECK_EQ_INT(api->output_commit(&h, "y", tmp, "text", "[1]", digest), SM_ERR_ARG);
    CHECK_EQ_INT(api->metric(&h, "loss", 1, NULL, 0.0 / 0.0), SM_ERR_ARG); /* NaN has no JSON form */
    CHECK_EQ_INT(api->result(&h, "{\"a\":1}"), SM_OK);
    /* sent: output x; the error lines of the refused commits; the result */
    size_t n = json_array_size(s.msgs);
    CHECK_EQ_INT(n, 4);
    json_t *out = json_array_get(s.msgs, 0);
    CHECK_EQ_STR(json_string_value(json_object_get(out, "t")), "output");
    CHECK(json_is_object(json_object_get(out, "meta")) && json_object_size(json_object_get(out, "meta")) == 0);
    CHECK(strstr(json_string_value(json_object_get(json_array_get(s.msgs, 1), "msg")), "committed twice") != NULL);
    CHECK(strstr(json_string_value(json_object_get(json_array_get(s.msgs, 2), "msg")), "not a JSON object") != NULL);
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(s.msgs, 3), "t")), "result");
    sm_host_fini(&h);
    json_decref(s.msgs);
}

/* ---- an executor added from outside: runs stages through the file transport, in batches ---- */
typedef struct job {
    sm_stage_run *r;
    char out[4096];
    uv_timer_t t;
} job;
static int starts, started_runs, reattached, max_batch;
static char saved_record[8192], saved_record_path[4096];

static void job_closed(uv_handle_t *hd) { free(hd->data); }
static void job_poll(uv_timer_t *t) {
    job *j = t->data;
    uint64_t off = 0;
    sm_error err = {0};
    sm_wire_tail(j->out, &off, sm_run_deliver, j->r, &err);
    int rc = SM_ERR_PLUGIN;
    const char *msg = "no status line";
    sm_run_outcome(j->r, &rc, &msg);
    sm_run_end(j->r, rc, msg);
    uv_close((uv_handle_t *)&j->t, job_closed);
}
static void job_watch(sm_stage_run *r, const char *out) {
    job *j = calloc(1, sizeof *j);
    j->r = r;
    snprintf(j->out, sizeof j->out, "%s", out);
    uv_timer_init(sm_run_loop(r), &j->t);
    j->t.data = j;
    uv_timer_start(&j->t, job_poll, 0, 0);
}
static int fj_start(sm_executor *x, sm_stage_run *const *runs, size_t n, sm_error *err) {
    (void)x;
    starts++;
    if ((int)n > max_batch) max_batch = (int)n;
    for (size_t i = 0; i < n; i++) {
        char spec[4096], out[4096], cmd[9000], jid[32];
        if (sm_run_write_spec(runs[i], spec, out, sizeof spec, err) != SM_OK) return err->code;
        snprintf(jid, sizeof jid, "7_%zu", i);
        if (sm_run_record_job(runs[i], jid, out, NULL, err) != SM_OK) return err->code;
        sm_workspace_path(sm_run_workspace(runs[i]), saved_record_path, sizeof saved_record_path, "exec/%s.job.json",
                          sm_run_key(runs[i]));
        FILE *f = fopen(saved_record_path, "r");
        size_t got = f ? fread(saved_record, 1, sizeof saved_record - 1, f) : 0;
        saved_record[got] = 0;
        if (f) fclose(f);
        sm_run_state(runs[i], "submitted", jid, NULL);
        snprintf(cmd, sizeof cmd, "%s/scalemix stage-exec --spec '%s' --out '%s' 2>/dev/null", sm_build_dir(), spec, out);
        if (system(cmd) != 0) return sm_error_set(err, SM_ERR_IO, "%s failed", cmd);
        started_runs++;
        job_watch(runs[i], out);
    }
    return SM_OK;
}
static void fj_cancel(sm_executor *x, sm_stage_run *r) {
    (void)x;
    (void)r;
}
static int fj_reattach(sm_executor *x, sm_stage_run *r, const json_t *record, sm_error *err) {
    (void)x;
    (void)err;
    reattached++;
    job_watch(r, json_string_value(json_object_get(record, "out")));
    return SM_OK;
}
static void fj_free(sm_executor *x) { free(x); }
static sm_executor *filejob(void) {
    sm_executor *x = calloc(1, sizeof *x);
    *x = (sm_executor){.name = "filejob", .remote = 1, .batch = 8, .start = fj_start, .cancel = fj_cancel,
                       .reattach = fj_reattach, .free = fj_free};
    return x;
}

static sm_engine *engine(const char *events) {
    char ws[300];
    snprintf(ws, sizeof ws, "%s/ws", tmpdir);
    sm_engine_opts o = {.workspace = ws, .events_path = events, .script_path = "x.lua", .parallel = 8, .executor = "filejob"};
    sm_engine *e = NULL;
    sm_error err = {0};
    if (sm_engine_create(&e, &o, &err) != SM_OK) return NULL;
    if (sm_engine_add_executor(e, filejob(), &err) != SM_OK) return NULL;
    return e;
}

TEST(an_added_executor_gets_batches_and_reattaches) {
    char events[300];
    snprintf(events, sizeof events, "%s/events.jsonl", tmpdir);
    sm_engine *e = engine(events);
    CHECK(e != NULL);
    sm_error err = {0};
    int hs[3];
    for (int i = 0; i < 3; i++) {
        char params[64];
        snprintf(params, sizeof params, "{\"value\": %d, \"sleep_ms\": 0, \"text\": \"t%d\"}", i + 10, i);
        hs[i] = sm_engine_submit(e, "sm_test_echo", NULL, params, "{}", NULL, &err);
        CHECK_MSG(hs[i] > 0, "%s", err.msg);
    }
    CHECK_EQ_INT(sm_engine_submit(e, "sm_test_echo", NULL, "{}", "{}", "nowhere", &err), SM_ERR_ARG);
    CHECK(strstr(err.msg, "unknown executor 'nowhere'") && strstr(err.msg, "filejob"));
    CHECK_EQ_INT(starts, 0); /* nothing starts before the script waits */
    int done = 0;
    while (sm_engine_wait(e) > 0) done++;
    CHECK_EQ_INT(done, 3);
    CHECK_EQ_INT(starts, 1);
    CHECK_EQ_INT(max_batch, 3);
    for (int i = 0; i < 3; i++) CHECK_EQ_INT(sm_engine_stage_status(e, hs[i]), SM_STAGE_SUCCEEDED);
    CHECK(strstr(sm_engine_stage_result(e, hs[2]), "\"double\":24") != NULL);
    CHECK(strstr(sm_engine_stage_outputs(e, hs[1]), "\"text\"") != NULL);
    CHECK_MSG(access(saved_record_path, F_OK) != 0, "the job record %s is removed when the run ends", saved_record_path);
    /* a failing stage whose job an earlier engine recorded: the next engine re-attaches instead of starting */
    int h = sm_engine_submit(e, "sm_test_echo", NULL, "{\"value\": 1, \"fail\": true, \"sleep_ms\": 0}", "{}", NULL, &err);
    CHECK(h > 0);
    CHECK_EQ_INT(sm_engine_wait(e), h);
    CHECK_EQ_INT(sm_engine_stage_status(e, h), SM_STAGE_FAILED);
    sm_engine_finish(e, SM_STAGE_FAILED, "x");
    sm_engine_free(e);
    write_text(saved_record_path, saved_record, "w"); /* as if the engine had been killed while the job ran */
    int starts_before = starts;
    e = engine(NULL);
    h = sm_engine_submit(e, "sm_test_echo", NULL, "{\"value\": 1, \"fail\": true, \"sleep_ms\": 0}", "{}", NULL, &err);
    CHECK_EQ_INT(sm_engine_wait(e), h);
    CHECK_EQ_INT(reattached, 1);
    CHECK_EQ_INT(starts, starts_before);
    CHECK_EQ_INT(sm_engine_stage_status(e, h), SM_STAGE_FAILED);
    CHECK(strstr(sm_engine_stage_error(e, h), "asked to fail") != NULL);
    sm_engine_finish(e, SM_STAGE_FAILED, "x");
    sm_engine_free(e);
    /* the events name the external job */
    char *text = NULL;
    size_t n = 0;
    CHECK_EQ_INT(sm_read_file(events, &text, &n, &err), SM_OK);
    CHECK(strstr(text, "\"type\":\"stage_state\"") && strstr(text, "\"job_id\":\"7_2\"") && strstr(text, "\"executor\":\"filejob\""));
    free(text);
}

/* train and ablate on device cuda run in a process of their own (one CUDA context per stage process) */
TEST(gpu_training_stages_ask_for_isolation) {
    const char *plugins[] = {"train", "ablate"};
    for (int i = 0; i < 2; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/plugins/%s.so", sm_build_dir(), plugins[i]);
        void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        CHECK_MSG(dl != NULL, "%s", dlerror());
        const sm_plugin_desc *d = ((sm_plugin_describe_fn)dlsym(dl, SM_PLUGIN_ENTRY))();
        sm_resources res = {.struct_size = sizeof res, .threads = 1};
        sm_error err = {0};
        CHECK_EQ_INT(d->resources("{\"device\": \"cpu\", \"threads\": 2}", "{}", &res, &err), SM_OK);
        CHECK_EQ_INT(res.isolate, 0);
        CHECK_EQ_INT(res.gpu, 0);
        /* host memory for a scheduler's request: the default shape's model plus the process headroom */
        CHECK_MSG(res.host_memory_bytes > (256ull << 20) && res.host_memory_bytes < (4ull << 30), "%s asks for %llu bytes",
                  plugins[i], (unsigned long long)res.host_memory_bytes);
        res = (sm_resources){.struct_size = offsetof(sm_resources, host_memory_bytes), .threads = 1};
        CHECK_EQ_INT(d->resources("{\"device\": \"cpu\"}", "{}", &res, &err), SM_OK); /* a host of ABI 1.1 */
        res = (sm_resources){.struct_size = sizeof res, .threads = 1};
        int rc = d->resources("{\"device\": \"cuda\", \"threads\": 1}", "{}", &res, &err);
        if (rc != SM_OK) SKIP("the CUDA backend cannot plan memory here: %.150s", err.msg);
        CHECK_EQ_INT(res.gpu, 1);
        CHECK_EQ_INT(res.isolate, 1);
    }
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sm-test-host-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    char plugins[4200];
    snprintf(plugins, sizeof plugins, "%s/tests/plugins", sm_build_dir());
    setenv("SCALEMIX_PLUGIN_PATH", plugins, 1);
    sm_display_init(SM_DISPLAY_PLAIN, 0);
    RUN(wire_tail_reads_each_complete_line_once);
    RUN(host_table_answers_locally_and_sends_the_rest);
    RUN(an_added_executor_gets_batches_and_reattaches);
    RUN(gpu_training_stages_ask_for_isolation);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "chmod -R u+w %s; rm -rf %s", tmpdir, tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    TEST_EXIT();
}
