/* sm_host.h - the plugin host API, implemented once for every transport. A stage's plugin talks to an
 * sm_host: what a stage can answer where it runs (output_path, scratch_dir, cancelled, threads, log_level,
 * the store half of output_commit) is computed here from the workspace; every other call becomes a host
 * call message ({"t": NAME, ...}, listed in sm_wire.h) handed to the host's send function: the engine's
 * dispatch directly (a stage on an engine thread), or a JSON line on a pipe or appended to a file (a stage
 * in a process of its own, on this machine or another). */
#ifndef SM_HOST_H
#define SM_HOST_H

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

#include "sm_plugin.h"
#include "sm_plugins.h"
#include "sm_store.h"

/* Carries one host call message (borrowed) to the engine; SM_OK or a negative code. */
typedef int (*sm_host_send_fn)(void *ctx, const json_t *msg);

struct sm_host {
    sm_workspace ws;
    char scratch[PATH_MAX];
    int scratch_lock; /* fd holding <scratch>.lock once the stage asked for its folder, else -1 */
    int threads, log_level;
    atomic_int cancel;              /* this stage run */
    const atomic_int *cancel_all;   /* the whole run (may be NULL) */
    pthread_mutex_t mu;             /* guards committed */
    json_t *committed;              /* output names committed so far: each once */
    sm_host_send_fn send;
    void *ctx;
};

/* The one host table every stage gets. */
extern const sm_host_api sm_host_table;

/* Sets h up for one stage run: the workspace (copied), its scratch folder path, granted threads, the
 * log level shown, where the run-wide cancel flag is (may be NULL) and where messages go. */
void sm_host_init(sm_host *h, const sm_workspace *ws, const char *scratch, int threads, int log_level,
                  const atomic_int *cancel_all, sm_host_send_fn send, void *ctx);
/* Releases the scratch lock (if taken) and the output names. */
void sm_host_fini(sm_host *h);
/* Runs the plugin's stage on this thread: verifies the store objects among inputs, binds the plugin's
 * logger to h, calls run(); a failure without a message gets one; a success removes the scratch folder
 * the stage took, under its lock. Returns run()'s code. */
int sm_host_run(sm_host *h, const sm_plugin *p, json_t *inputs, const char *params_text, const char *inputs_text,
                sm_error *err);

#endif
