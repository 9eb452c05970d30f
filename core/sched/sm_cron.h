/* sm_cron.h - cron expressions and their next fire times in an IANA time zone.
 *
 * Syntax: five fields "minute hour day-of-month month day-of-week" (0-59, 0-23, 1-31, 1-12 or JAN-DEC,
 * 0-7 or SUN-SAT with Sunday as 0 or 7), each a comma list of "*", "N", "A-B", with an optional "/STEP"
 * ("*\/15", "10-50/10"; "N/STEP" means N to the field's maximum). Names are case-insensitive. Macros:
 * @yearly/@annually (0 0 1 1 *), @monthly (0 0 1 * *), @weekly (0 0 * * 0), @daily/@midnight (0 0 * * *),
 * @hourly (0 * * * *).
 *
 * Day rule (Vixie cron): when both day-of-month and day-of-week are restricted, a day matches if EITHER
 * matches ("0 0 13 * 5" fires on every 13th and every Friday); a field that starts with '*' ("*", "*\/2")
 * counts as unrestricted and then both must match.
 *
 * Fire times are wall-clock times in the schedule's zone, mapped to instants by the rule in sm_tz.h: a
 * time skipped by a daylight-saving jump fires at the first instant after the gap; a time that occurs
 * twice fires once, at its first occurrence. Two wall times that map to the same instant fire once. */
#ifndef SM_CRON_H
#define SM_CRON_H

#include <stdint.h>
#include "sm_tz.h"

typedef struct sm_cron {
    uint64_t minute; /* bit m: minute m */
    uint32_t hour;   /* bit h: hour h */
    uint32_t dom;    /* bit d: day d of the month (1-31) */
    uint16_t month;  /* bit m: month m (1-12) */
    uint8_t dow;     /* bit d: weekday d, 0 = Sunday */
    uint8_t dom_star, dow_star; /* the field started with '*' (see the day rule) */
} sm_cron;

/* Parses expr into out. On error SM_ERR_ARG with a message naming the field, e.g.
 * "cron '0 0 32 * *': field 3 (day of month) '32': out of range 1-31". Expressions that can never fire
 * ("0 0 30 2 *") are refused the same way. */
int sm_cron_parse(const char *expr, sm_cron *out, sm_error *err);

/* The first fire time strictly after instant `after` (UTC seconds), in zone tz (NULL = UTC).
 * SM_ERR_NOTFOUND if none within 400 years (cannot happen for a parsed expression). */
int sm_cron_next(const sm_cron *c, const sm_tz *tz, int64_t after, int64_t *next, sm_error *err);

/* Whether the naive local minute `local` (seconds, see sm_tz.h) matches the expression. */
int sm_cron_matches_local(const sm_cron *c, int64_t local);

#endif
