/* sm_events.h - the one interface through which the engine reports lineage.
 *
 * Every run, stage run, artifact, edge, metric, mixture and fit is an event: a JSON object
 * (jansson) with "type", "run_id", "seq" (per run, strictly increasing from 1) and
 * "event_id" = "<run_id>/<seq>" (the idempotency key: a store writes each event_id at most once).
 * Times are ISO 8601 UTC strings. Shapes (fields beyond the common ones):
 *
 *  run_start   pipeline, script_path, script_sha256, params{}, trigger ("manual"|"schedule"|"backfill"),
 *              nominal_time|null, schedule|null, parent_run_id|null, started_at, host
 *  run_state   state ("running"|"cancelling"|...), at
 *  run_end     status ("succeeded"|"failed"|"cancelled"), finished_at, error|null
 *  stage_start stage_run_id, stage, plugin, plugin_version, plugin_sha256, cache_key, params{},
 *              reused (bool), attempt, started_at, reason (why it runs: the text `scalemix plan` prints for
 *              it; "cached result of stage run <id8>" when reused), resources {threads, gpu (0|1),
 *              device_memory_bytes, isolate (0|1), executor ("local"|"slurm"|...)} | null when reused
 *  stage_state stage_run_id, state ("submitted"|"pending"|"running"), executor, job_id|null, reason|null,
 *              at (from executors that run stages elsewhere)
 *  stage_log   stage_run_id, level ("error"|"warn"|"info"|"debug"), message, at: one per line the stage
 *              logs through the host API (info and up; debug with --verbose), at most 2,000 per stage run, then one
 *              "warn" line (before stage_end) saying how many more were dropped
 *  stage_end   stage_run_id, status ("succeeded"|"failed"|"cancelled"|"reused"), finished_at, error|null,
 *              result{}|null
 *  artifact    artifact_id (sha256), kind, name, path, bytes, produced_by (stage_run_id|null), meta{}, created_at
 *  io          stage_run_id, artifact_id, direction ("in"|"out"), name
 *  metric      stage_run_id, name, step, domain|null, value, recorded_at
 *  mixture     stage_run_id, method, budget_tokens, entries [{domain, weight, tokens}]
 *  fit         stage_run_id, domain, a, b, c, rmse
 *
 * Sinks are called on the loop thread only; the engine marshals events from worker threads. */
#ifndef SM_EVENTS_H
#define SM_EVENTS_H

#include <jansson.h>

typedef struct sm_sink sm_sink;
struct sm_sink {
    /* Takes a new reference to ev if it keeps it; must not block (queue and return). */
    void (*emit)(sm_sink *self, json_t *ev);
    /* Requests that everything queued be written (or journaled). done(arg) is called on the loop
     * when that has happened; the sink may call it synchronously. */
    void (*flush)(sm_sink *self, void (*done)(void *arg), void *arg);
    /* Releases the sink; called after a final flush completed. */
    void (*close)(sm_sink *self);
};

#endif
