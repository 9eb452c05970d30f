/* sm_display.h - what a run shows a person: on a terminal, permanent lines above one live line per
 * running stage (progress, rate, ETA); in a pipe, plain timestamped lines; with --log json, one JSON
 * object per line. Loop thread only. */
#ifndef SM_DISPLAY_H
#define SM_DISPLAY_H

enum { SM_DISPLAY_AUTO = 0, SM_DISPLAY_PLAIN = 1, SM_DISPLAY_JSON = 2 };

typedef struct sm_display_stage {
    const char *name;
    double done, total; /* total <= 0: unknown */
    const char *unit;
    double rate;        /* units per second, 0 if unknown */
    double elapsed;
} sm_display_stage;

/* mode: SM_DISPLAY_*; verbosity: 0 quiet (errors and the final summary), 1 normal, 2 verbose. */
void sm_display_init(int mode, int verbosity);
int sm_display_is_tty(void);
int sm_display_verbosity(void);
/* A permanent line at level (SM_LOG_*) from stage (may be NULL). */
void sm_display_line(int level, const char *stage, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Replaces the live area (terminal mode) with these stages; in plain mode prints a progress line per
 * stage at most every 10 s. */
void sm_display_live(const sm_display_stage *stages, int n);
/* Removes the live area (before exit). */
void sm_display_clear(void);

#endif
