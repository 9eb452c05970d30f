/* sm_tz.h - IANA time zones read from the system tz database (TZif files under /usr/share/zoneinfo, or
 * $TZDIR), UTC offsets at an instant, the mapping of a local wall time to an instant, and ISO 8601 times.
 *
 * The zone is read by this module itself (no TZ environment switching), so every function here is
 * thread-safe once a zone is loaded. Times are int64 seconds since the Unix epoch (UTC); a "local"
 * time is the wall clock expressed the same way, as if that wall clock were UTC ("naive" seconds).
 *
 * Documented rule for wall times that do not map to exactly one instant (sm_tz_local_to_utc):
 *  - a wall time skipped by a forward jump (daylight saving starts) maps to the first instant after the
 *    gap, i.e. the transition instant itself (02:30 on a US spring-forward day -> 03:00 EDT);
 *  - a wall time that occurs twice (daylight saving ends) maps to its first occurrence (the earlier
 *    instant, still on the old offset). */
#ifndef SM_TZ_H
#define SM_TZ_H

#include <stdint.h>
#include "../sm_common.h"

typedef struct sm_tz sm_tz;

/* Loads zone `name` ("UTC", "Europe/Berlin", ...) from the tz database; SM_ERR_ARG for a name that is
 * not a zone (unknown, absolute, or containing ".."), SM_ERR_FORMAT for a corrupt file. */
int sm_tz_load(const char *name, sm_tz **out, sm_error *err);
void sm_tz_free(sm_tz *tz);
/* The zone's name as given to sm_tz_load. */
const char *sm_tz_name(const sm_tz *tz);
/* Seconds east of UTC in effect at instant t (e.g. -18000 for New York in winter). */
int32_t sm_tz_offset(const sm_tz *tz, int64_t t);
/* Whether daylight saving time is in effect at t (the TZif isdst flag). */
int sm_tz_isdst(const sm_tz *tz, int64_t t);
/* Maps the naive local time `local` to an instant by the documented rule above. */
int64_t sm_tz_local_to_utc(const sm_tz *tz, int64_t local);

/* Days since 1970-01-01 of a proleptic Gregorian date, and back (valid for any int32 year). */
int64_t sm_days_from_civil(int64_t y, unsigned m, unsigned d);
void sm_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);
/* 28..31. */
unsigned sm_days_in_month(int64_t y, unsigned m);
/* 0 = Sunday .. 6 = Saturday. */
unsigned sm_weekday_from_days(int64_t days);

/* Parses "YYYY-MM-DD", "YYYY-MM-DDTHH:MM", "...:SS", optional fraction (dropped) and optional "Z" or
 * "+HH:MM"/"-HH:MM" (no zone = UTC); a space may replace 'T'. SM_ERR_ARG naming the text on failure. */
int sm_time_parse_iso(const char *s, int64_t *t, sm_error *err);
/* Formats t as "YYYY-MM-DDTHH:MM:SSZ". */
void sm_time_format_utc(int64_t t, char out[32]);

#endif
