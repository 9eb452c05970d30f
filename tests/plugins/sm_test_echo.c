/* sm_test_echo.c - a test stage: echoes its parameters, optionally sleeps (checking cancel), fails,
 * writes an output, records metrics and a double array. Used by the engine's tests and benchmarks. */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "sm_plugin.h"

static int run(const sm_host_api *api, sm_host *h, const char *params_json, const char *inputs_json, sm_error *err) {
    json_t *p = json_loads(params_json, 0, NULL);
    json_t *in = json_loads(inputs_json, 0, NULL);
    double value = json_number_value(json_object_get(p, "value"));
    json_int_t sleep_ms = json_integer_value(json_object_get(p, "sleep_ms"));
    const char *text = json_string_value(json_object_get(p, "text"));
    int rc = SM_OK;
    char live[4200] = "";
    if (json_is_true(json_object_get(p, "use_scratch"))) {
        /* the scratch folder holds "live" with the pid of the process using it; a live one is never shared */
        const char *dir = api->scratch_dir(h);
        if (!dir) {
            rc = sm_error_set(err, SM_ERR_IO, "no scratch folder");
            goto out;
        }
        snprintf(live, sizeof live, "%s/live", dir);
        FILE *f = fopen(live, "r");
        int pid = 0;
        if (f && fscanf(f, "%d", &pid) == 1 && pid != getpid() && kill(pid, 0) == 0) {
            fclose(f);
            live[0] = 0;
            rc = sm_error_set(err, SM_ERR_INTERNAL, "scratch folder %s is live: process %d is using it", dir, pid);
            goto out;
        }
        if (f) fclose(f);
        f = fopen(live, "w");
        if (!f) {
            rc = sm_error_set(err, SM_ERR_IO, "cannot write %s", live);
            goto out;
        }
        fprintf(f, "%d\n", (int)getpid());
        fclose(f);
    }
    for (json_int_t i = 0; i < json_integer_value(json_object_get(p, "log_lines")); i++) api->log(h, SM_LOG_INFO, "line %d", (int)i);
    if (json_is_true(json_object_get(p, "lib_log"))) { /* library code's logger: this plugin's own copy of sm_log */
        sm_log(SM_LOG_DEBUG, "library debug line (level %d)", api->log_level(h));
        sm_log(SM_LOG_INFO, "library info line");
    }
    for (json_int_t t = 0; t < sleep_ms; t += 10) {
        if (api->cancelled(h)) {
            rc = SM_ERR_CANCELLED;
            goto out;
        }
        api->progress(h, (double)t, (double)sleep_ms, "ms");
        nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
    }
    if (json_is_true(json_object_get(p, "crash"))) raise(SIGSEGV); /* isolation must contain this */
    if (json_is_true(json_object_get(p, "fail"))) {
        rc = sm_error_set(err, SM_ERR_PLUGIN, "asked to fail (value %g)", value);
        goto out;
    }
    /* Inputs: sum the sizes of the files named, to prove the paths reach the plugin. */
    double in_bytes = 0;
    const char *k;
    json_t *ref;
    json_object_foreach(in, k, ref) {
        const char *path = json_string_value(json_object_get(ref, "path"));
        FILE *f = path ? fopen(path, "rb") : NULL;
        if (!f) {
            rc = sm_error_set(err, SM_ERR_IO, "cannot open input %s", k);
            goto out;
        }
        fseek(f, 0, SEEK_END);
        in_bytes += (double)ftell(f);
        fclose(f);
    }
    if (text) {
        char path[4096];
        if ((rc = api->output_path(h, "text", path, sizeof path)) != SM_OK) goto out;
        FILE *f = fopen(path, "wb");
        if (!f) {
            rc = sm_error_set(err, SM_ERR_IO, "cannot write %s", path);
            goto out;
        }
        fputs(text, f);
        fclose(f);
        char digest[65];
        if ((rc = api->output_commit(h, "text", path, "text", "{\"test\": true}", digest)) != SM_OK) {
            sm_error_set(err, rc, "commit failed");
            goto out;
        }
        if (json_is_true(json_object_get(p, "commit_twice"))) { /* the host must refuse a second "text" */
            f = fopen(path, "wb");
            if (f) fclose(f);
            rc = api->output_commit(h, "text", path, "text", NULL, digest);
            rc = sm_error_set(err, rc == SM_OK ? SM_ERR_INTERNAL : SM_ERR_ARG, "second commit of text %s",
                              rc == SM_OK ? "accepted" : "refused");
            goto out;
        }
    }
    api->metric(h, "value", 1, NULL, value);
    api->metric(h, "value", 2, "code", value * 2);
    double arr[3] = {value, value * 2, value * 3};
    api->result_f64(h, "triple", arr, 3);
    char res[256];
    snprintf(res, sizeof res, "{\"double\": %.17g, \"input_bytes\": %.17g, \"threads\": %d}", value * 2, in_bytes, api->threads(h));
    api->result(h, res);
    api->log(h, SM_LOG_DEBUG, "echoed %g", value);
out:
    if (live[0] && rc != SM_ERR_CANCELLED) remove(live);
    json_decref(p);
    json_decref(in);
    return rc;
}

static int resources(const char *params_json, const char *inputs_json, sm_resources *out, sm_error *err) {
    (void)inputs_json;
    json_t *p = json_loads(params_json, 0, NULL);
    if (!p) return sm_error_set(err, SM_ERR_ARG, "parameters are not JSON");
    out->isolate = json_is_true(json_object_get(p, "isolate"));
    out->device_memory_bytes = (uint64_t)json_integer_value(json_object_get(p, "gpu_mb")) << 20;
    out->gpu = out->device_memory_bytes > 0;
    json_decref(p);
    return SM_OK;
}

static const sm_plugin_desc desc = {
    .struct_size = sizeof(sm_plugin_desc),
    .abi_major = SM_PLUGIN_ABI_MAJOR,
    .abi_minor = SM_PLUGIN_ABI_MINOR,
    .name = "sm_test_echo",
    .version = "1.0.0",
    .cache_salt = "",
    .description = "test stage: echoes a value",
    .params_schema = "{\"value\": {\"type\": \"number\", \"required\": true, \"doc\": \"the value\"},"
                     " \"sleep_ms\": {\"type\": \"integer\", \"default\": 0},"
                     " \"fail\": {\"type\": \"boolean\", \"default\": false},"
                     " \"text\": {\"type\": \"string\", \"default\": null},"
                     " \"tags\": {\"type\": \"array\", \"default\": []},"
                     " \"isolate\": {\"type\": \"boolean\", \"default\": false, \"doc\": \"run in a child process\"},"
                     " \"use_scratch\": {\"type\": \"boolean\", \"default\": false, \"doc\": \"mark the scratch folder live while running\"},"
                     " \"crash\": {\"type\": \"boolean\", \"default\": false, \"doc\": \"die of SIGSEGV\"},"
                     " \"log_lines\": {\"type\": \"integer\", \"default\": 0, \"doc\": \"log this many info lines\"},"
                     " \"lib_log\": {\"type\": \"boolean\", \"default\": false, \"doc\": \"log a debug and an info line with sm_log\"},"
                     " \"commit_twice\": {\"type\": \"boolean\", \"default\": false, \"doc\": \"commit output text twice\"},"
                     " \"gpu_mb\": {\"type\": \"integer\", \"default\": 0, \"doc\": \"claim this much device memory\"}}",
    .resources = resources,
    .run = run,
};

const sm_plugin_desc *sm_plugin_describe(void) { return &desc; }
