/* sm_plugin.h - the stage plugin ABI. A plugin is a shared object exporting one function,
 * sm_plugin_describe, that returns a const descriptor. The host passes every call a table of host
 * functions (sm_host_api) that only ever grows: new members go at the end and bump ABI minor.
 *
 * The host refuses a plugin whose abi_major differs from SM_PLUGIN_ABI_MAJOR or whose abi_minor is
 * newer than the host's SM_PLUGIN_ABI_MINOR.
 *
 * Threading: run() is called on a worker thread of the engine, or, when resources() asks for isolate = 1,
 * on the main thread of a process of its own (`scalemix stage-exec`, see core/engine/README.md). Every host
 * function is thread-safe and may be called from any thread the plugin creates (e.g. OpenMP workers),
 * until run() returns.
 *
 * Logging: a plugin built with the scalemix library carries its own copy of sm_log; the host binds that
 * copy (its exported sm_log_bind) to the stage's host table around run(), so library code logs through
 * log() at the level log_level() gives, and --quiet/--verbose reach it. */
#ifndef SM_PLUGIN_H
#define SM_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include "sm_common.h"

#define SM_PLUGIN_ABI_MAJOR 1
#define SM_PLUGIN_ABI_MINOR 2
#define SM_PLUGIN_ENTRY "sm_plugin_describe"

typedef struct sm_host sm_host; /* opaque: one per stage run */

/* What a stage run needs before it may start; the engine admits runs against these. */
typedef struct sm_resources {
    uint32_t struct_size;
    int threads;                  /* CPU threads it will keep busy (>= 1) */
    int gpu;                      /* 1 if it runs on a GPU */
    uint64_t device_memory_bytes; /* GPU memory it will allocate, when gpu = 1 */
    int isolate;                  /* 1: run in a process of its own, not a thread: every stage that will
                                   * create a CUDA context asks for it (train and ablate on device cuda) */
    /* ABI 1.2: host memory the run will use at most, process included (0: unknown); a remote executor
     * asks its scheduler for it (Slurm's --mem). Write it only when struct_size covers it. */
    uint64_t host_memory_bytes;
} sm_resources;

typedef struct sm_host_api {
    uint32_t struct_size;
    uint16_t abi_major, abi_minor;

    /* One log line attributed to this stage. level is SM_LOG_*. */
    void (*log)(sm_host *h, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
    /* Progress: done out of total (total <= 0: unknown) in unit ("tokens", "steps", "files"). */
    void (*progress)(sm_host *h, double done, double total, const char *unit);
    /* Nonzero once the user asked to cancel: stop soon, clean up, return SM_ERR_CANCELLED. */
    int (*cancelled)(sm_host *h);
    /* Threads this stage was granted (OpenMP teams, tokenizer workers). */
    int (*threads)(sm_host *h);

    /* A fresh temporary file path inside the workspace for output `name` (on the same file system as
     * the store, so commit is a rename). Returns SM_OK or a negative code. */
    int (*output_path)(sm_host *h, const char *name, char *path_out, size_t path_cap);
    /* Hashes the file at tmp_path, renames it into the store and records it as this stage's output
     * `name` of `kind` with meta (a JSON object or NULL). digest_out receives the sha256 hex. */
    int (*output_commit)(sm_host *h, const char *name, const char *tmp_path, const char *kind,
                         const char *meta_json, char digest_out[65]);
    /* A directory that survives a killed run of this very stage (same cache key), for checkpoints and
     * resume files; removed by the host after the stage succeeds. */
    const char *(*scratch_dir)(sm_host *h);

    /* A metric point (domain may be NULL). Never blocks on the database. */
    int (*metric)(sm_host *h, const char *name, int64_t step, const char *domain, double value);
    /* The stage's result: a JSON object, handed to the Lua script and stored in the cache entry. */
    int (*result)(sm_host *h, const char *json_object);
    /* A named array of doubles in the result, readable from Lua through the FFI without copying. */
    int (*result_f64)(sm_host *h, const char *name, const double *values, size_t n);
    /* A mixture for the lineage: weights and token counts per domain at a budget. */
    int (*mixture)(sm_host *h, const char *method, double budget_tokens, size_t n,
                   const char *const *domains, const double *weights, const double *tokens);
    /* A fitted power law (y = (x + a)^-b + c) for the lineage. */
    int (*fit)(sm_host *h, const char *domain, double a, double b, double c, double rmse);

    /* ABI 1.1: the level (SM_LOG_*) up to which log() lines are shown: --quiet/--verbose of the run. */
    int (*log_level)(sm_host *h);
} sm_host_api;

typedef struct sm_plugin_desc {
    uint32_t struct_size;
    uint16_t abi_major, abi_minor;
    const char *name;        /* the stage name scripts use: "tokenize", "ablate", ... */
    const char *version;     /* semantic version of the plugin's behaviour */
    const char *cache_salt;  /* bump to invalidate cached results without a version change */
    const char *description; /* one line for `scalemix help` */
    /* JSON object: {"param": {"type": "number|integer|string|boolean|array|object",
     *                         "default": ..., "required": true, "doc": "..."}, ...}
     * The host rejects unknown parameters and wrong types before run(), and fills defaults, so run()
     * receives canonical parameters (sorted keys, every parameter present). */
    const char *params_schema;
    /* Optional (may be NULL): the resources a run with these parameters needs. SM_ERR_ARG says that the
     * parameters can never run (a usage error: the stage call is refused, in plan too, where it may be called
     * with inputs_json "{}" to check the parameters alone). */
    int (*resources)(const char *params_json, const char *inputs_json, sm_resources *out, sm_error *err);
    /* The stage. inputs_json is an object whose values are artifact references
     * {"digest": "...", "path": "/abs/path", "kind": "...", "name": "..."} or arrays/objects of them.
     * Returns SM_OK, SM_ERR_CANCELLED, or another negative code with err filled. */
    int (*run)(const sm_host_api *api, sm_host *h, const char *params_json, const char *inputs_json,
               sm_error *err);
} sm_plugin_desc;

typedef const sm_plugin_desc *(*sm_plugin_describe_fn)(void);

#endif
