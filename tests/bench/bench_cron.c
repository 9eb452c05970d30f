/* bench_cron.c - next-fire throughput: a year of @hourly (8759 fires) and of "every minute on weekdays" in
 * DST zones, a sparse expression (Feb 29 on a Monday) and cron parsing. Prints figures; asserts nothing. */
#include <stdio.h>
#include "../../core/sched/sm_cron.h"

static void bench(const char *expr, const char *zone, int64_t from, int64_t to, int reps) {
    sm_cron c;
    sm_tz *tz;
    sm_error e;
    if (sm_cron_parse(expr, &c, &e) || sm_tz_load(zone, &tz, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return;
    }
    long n = 0;
    double t0 = sm_monotonic();
    for (int r = 0; r < reps; r++)
        for (int64_t t = from, nx; sm_cron_next(&c, tz, t, &nx, NULL) == 0 && nx <= to; t = nx) n++;
    double dt = sm_monotonic() - t0;
    printf("%-28s %-20s %8ld fires/pass  %8.3f ms/pass  %7.3f us/fire\n", expr, zone, n / reps, dt * 1e3 / reps,
           dt * 1e6 / (double)(n ? n : 1));
    sm_tz_free(tz);
}

int main(void) {
    int64_t y0, y1, c0;
    sm_time_parse_iso("2026-01-01T00:00:00Z", &y0, NULL);
    sm_time_parse_iso("2027-01-01T00:00:00Z", &y1, NULL);
    sm_time_parse_iso("2226-01-01T00:00:00Z", &c0, NULL);
    bench("@hourly", "America/New_York", y0, y1, 20);
    bench("@hourly", "Australia/Lord_Howe", y0, y1, 20);
    bench("* * * * 1-5", "Europe/Berlin", y0, y1, 2);
    bench("30 2 * * *", "Europe/London", y0, y1, 200);
    bench("0 0 29 2 1", "UTC", y0, c0, 20);
    sm_cron c;
    double t0 = sm_monotonic();
    for (int i = 0; i < 200000; i++) sm_cron_parse("*/15 9-17/2 1,15,L-1 JAN-MAR,jul mon-fri", &c, NULL);
    double t1 = sm_monotonic();
    for (int i = 0; i < 200000; i++) sm_cron_parse("*/15 9-17/2 1,15 JAN-MAR,jul mon-fri", &c, NULL);
    printf("cron parse: %.3f us/expression (valid), %.3f us (invalid, with message)\n",
           (sm_monotonic() - t1) * 1e6 / 200000, (t1 - t0) * 1e6 / 200000);
    sm_tz *tz;
    t0 = sm_monotonic();
    for (int i = 0; i < 2000; i++) {
        sm_tz_load("America/New_York", &tz, NULL);
        sm_tz_free(tz);
    }
    printf("tz load (America/New_York): %.1f us\n", (sm_monotonic() - t0) * 1e6 / 2000);
    return 0;
}
