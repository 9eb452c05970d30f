/* sm_stage_exec.c - `scalemix stage-exec`: runs one stage in this process, for an engine that gave the run a
 * process of its own (isolation: a CUDA context per stage) or sent it to another machine. The run is the
 * self-contained spec sm_run_spec writes: {plugin_path, plugin_sha256, params, inputs, workspace, scratch,
 * threads, log_level}. The plugin gets the one host table (sm_host.c); its host calls go out as JSON lines
 * (sm_wire.h), ending with {"t":"done","rc":RC,"msg":S}:
 *   stage-exec                         spec on stdin, lines on the stdout pipe (the engine's child)
 *   stage-exec --spec FILE --out FILE  spec from a file, lines appended to the out file (a batch job on any
 *                                      node that shares the workspace; the engine tails the file)
 * The plugin's own stdout is sent to stderr so that it cannot corrupt the pipe. SIGINT or SIGTERM sets the
 * cancel flag the plugin polls. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sm_cache.h"
#include "sm_commands.h"
#include "sm_host.h"
#include "sm_plugins.h"
#include "sm_wire.h"

static atomic_int cancel_flag;
static void on_cancel(int sig) {
    (void)sig;
    atomic_store(&cancel_flag, 1);
}

typedef struct line_out {
    int fd;
    pthread_mutex_t mu;
} line_out;

static int send_line(void *ctx, const json_t *msg) {
    line_out *o = ctx;
    return sm_wire_write(o->fd, &o->mu, msg);
}

static const char usage[] = "usage: scalemix stage-exec [--spec FILE --out FILE]\n"
                            "internal: runs one stage from its spec (stdin, or FILE) and reports its host calls as JSON lines\n"
                            "(stdout, or appended to the out FILE)\n";

int sm_cmd_stage_exec(int argc, char **argv) {
    const char *spec_path = NULL, *out_path = NULL;
    if (argc == 5 && !strcmp(argv[1], "--spec") && !strcmp(argv[3], "--out")) {
        spec_path = argv[2];
        out_path = argv[4];
    } else if (argc != 1) {
        fputs(usage, stderr);
        return 2;
    }
    line_out out = {.fd = -1};
    pthread_mutex_init(&out.mu, NULL);
    if (out_path) {
        out.fd = open(out_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (out.fd < 0) {
            fprintf(stderr, "scalemix stage-exec: cannot open the out file %s: %s\n", out_path, strerror(errno));
            return 1;
        }
    } else if ((out.fd = dup(1)) < 0) {
        return 1;
    }
    if (dup2(2, 1) < 0) return 1;
    signal(SIGINT, on_cancel);
    signal(SIGTERM, on_cancel);
    json_error_t je;
    json_t *spec = spec_path ? json_load_file(spec_path, 0, &je) : json_loadf(stdin, 0, &je);
    sm_error err = {0};
    int rc = SM_OK;
    sm_plugin *p = NULL;
    char *params = NULL, *inputs = NULL;
    const char *path = json_string_value(json_object_get(spec, "plugin_path"));
    const char *sha = json_string_value(json_object_get(spec, "plugin_sha256"));
    const char *ws_root = json_string_value(json_object_get(spec, "workspace"));
    const char *scratch = json_string_value(json_object_get(spec, "scratch"));
    int threads = (int)json_integer_value(json_object_get(spec, "threads"));
    json_t *level = json_object_get(spec, "log_level");
    sm_workspace ws;
    sm_host h;
    int have_host = 0;
    if (!spec || !path || !sha || !ws_root || !scratch || threads < 1 || !json_is_integer(level)) {
        rc = sm_error_set(&err, SM_ERR_ARG, "stage-exec: invalid stage spec in %s (%s)", spec_path ? spec_path : "stdin",
                          spec ? "missing fields" : je.text);
    } else if ((rc = sm_workspace_open(&ws, ws_root, &err)) == SM_OK && (rc = sm_plugin_load(path, &p, &err)) == SM_OK) {
        if (strcmp(p->sha256, sha))
            rc = sm_error_set(&err, SM_ERR_PLUGIN, "plugin %s changed on disk after the engine loaded it; run again", path);
    }
    if (rc == SM_OK) {
        sm_log_set_level((int)json_integer_value(level));
        sm_host_init(&h, &ws, scratch, threads, (int)json_integer_value(level), &cancel_flag, send_line, &out);
        have_host = 1;
        params = sm_json_canonical(json_object_get(spec, "params"));
        inputs = sm_json_canonical(json_object_get(spec, "inputs"));
        rc = sm_host_run(&h, p, json_object_get(spec, "inputs"), params, inputs, &err);
    }
    json_t *done = json_pack("{s:s, s:i, s:s}", "t", "done", "rc", rc, "msg", rc == SM_OK ? "" : err.msg);
    int sent = done ? sm_wire_write(out.fd, &out.mu, done) : SM_ERR_ARG;
    json_decref(done);
    if (out_path && sent == SM_OK && fdatasync(out.fd) != 0) sent = SM_ERR_IO; /* the status line reaches the file system */
    if (have_host) sm_host_fini(&h);
    close(out.fd);
    free(params);
    free(inputs);
    sm_plugin_unload(p);
    json_decref(spec);
    return sent == SM_OK ? 0 : 1;
}
