/* sm_sched.h - recurring runs: schedules stored in the lineage database and fired by `scalemix daemon`.
 *
 * A schedule is {name, cron, tz, pipeline, params, overlap, catchup, catchup_window, when_changed, paused}.
 * Its JSON form (for sm_sched_declare and `schedule list --json`):
 *   {"name": "nightly",                     -- 1-64 chars of [A-Za-z0-9_.-]
 *    "cron": "0 2 * * *",                   -- see sm_cron.h
 *    "tz": "Europe/Berlin",                 -- IANA zone, default "UTC"
 *    "pipeline": "pipelines/curate.lua",    -- made absolute against the current directory
 *    "params": {"budget": "1e9"},           -- passed to the run as --param k=v (values as strings)
 *    "overlap": "skip",                     -- skip | queue | cancel-old (default skip)
 *    "catchup": "latest",                   -- none | latest | all (default latest)
 *    "catchup_window": "1d",                -- seconds or N{s,m,h,d} (default 1d)
 *    "when_changed": ["data/raw"],          -- fire only if these inputs' sha256 changed
 *    "paused": false}
 *
 * Semantics (also in `scalemix schedule --help`):
 *  - Fire times follow the cron expression in the zone, with the DST rule of sm_tz.h.
 *  - One row per (schedule, nominal time) in schedule_fires: a nominal time is fired at most once, across
 *    daemons, restarts and backfills. At most one fire per schedule runs at a time (database-enforced).
 *  - overlap: when a fire is due while an earlier one is running or waiting: skip records it as skipped;
 *    queue runs it after; cancel-old interrupts the running one (SIGINT, SIGKILL after the grace period)
 *    and cancels waiting ones, then runs the new one.
 *  - catchup, for fires missed while no daemon ran (or the schedule was being decided late): none runs
 *    only a fire that is on time (within the misfire grace, default 60 s); latest runs the most recent
 *    missed fire within catchup_window; all runs every missed fire within catchup_window, oldest first.
 *    Pausing skips fires: resume continues from the resume time.
 *  - when_changed: the sha256 over the listed files/trees is taken when a fire is decided; if it equals the
 *    digest of the schedule's last successful (or still pending) fire, the fire is recorded as skipped. */
#ifndef SM_SCHED_H
#define SM_SCHED_H

#include <stdint.h>
#include "../sm_common.h"

/* Creates or updates (by name) the schedule described by spec_json (above) in the lineage database
 * (dsn NULL: the default one, see sm_db_resolve). Changing cron or tz restarts the schedule from now;
 * otherwise pending catch-up is kept, so a script may re-declare its schedule on every run. */
int sm_sched_declare(const char *dsn, const char *spec_json, sm_error *err);

/* Writes the next `count` fire times of cron expression `cron` in zone `tz` (NULL = UTC) strictly after
 * `from` into out (UTC seconds). SM_ERR_ARG for a bad expression or zone. */
int sm_sched_next_times(const char *cron, const char *tz, int64_t from, int count, int64_t *out, sm_error *err);

#endif
