/* sm_display.c - terminal live lines, plain and JSON log lines. */
#include "sm_display.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "sm_common.h"

static int mode = SM_DISPLAY_PLAIN, verbosity = 1, tty = 0, live_lines = 0;
static double last_plain_progress = 0;

void sm_display_init(int m, int v) {
    verbosity = v;
    tty = m == SM_DISPLAY_AUTO && isatty(2) && getenv("TERM") && strcmp(getenv("TERM"), "dumb");
    mode = m == SM_DISPLAY_AUTO ? SM_DISPLAY_PLAIN : m;
    sm_log_set_level(v == 0 ? SM_LOG_WARN : v == 1 ? SM_LOG_INFO : SM_LOG_DEBUG);
}

int sm_display_is_tty(void) { return tty; }
int sm_display_verbosity(void) { return verbosity; }

void sm_display_clear(void) {
    if (!tty) return;
    for (int i = 0; i < live_lines; i++) fputs("\033[1A\033[2K", stderr);
    live_lines = 0;
}

static void emit(int level, const char *stage, const char *msg) {
    static const char *names[] = {"error", "warn", "info", "debug"};
    const char *lv = names[level < 0 ? 0 : level > 3 ? 3 : level];
    char ts[40];
    sm_iso8601(sm_now(), ts);
    if (mode == SM_DISPLAY_JSON) {
        json_t *o = json_pack("{s:s, s:s, s:s}", "time", ts, "level", lv, "msg", msg);
        if (stage) json_object_set_new(o, "stage", json_string(stage));
        char *s = json_dumps(o, JSON_COMPACT);
        fprintf(stderr, "%s\n", s);
        free(s);
        json_decref(o);
    } else if (tty) {
        fprintf(stderr, "%s%s%s%s%s\n", level <= SM_LOG_WARN ? lv : "", level <= SM_LOG_WARN ? ": " : "", stage ? stage : "",
                stage ? ": " : "", msg);
    } else {
        fprintf(stderr, "%s %-5s %s%s%s\n", ts, lv, stage ? stage : "", stage ? ": " : "", msg);
    }
}

void sm_display_line(int level, const char *stage, const char *fmt, ...) {
    if (level > (verbosity == 0 ? SM_LOG_WARN : verbosity == 1 ? SM_LOG_INFO : SM_LOG_DEBUG)) return;
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int saved = live_lines;
    sm_display_clear();
    emit(level, stage, msg);
    (void)saved; /* the next sm_display_live call redraws the live area */
}

static void fmt_count(char *out, size_t cap, double v) {
    if (v >= 1e9) snprintf(out, cap, "%.2fG", v / 1e9);
    else if (v >= 1e6) snprintf(out, cap, "%.2fM", v / 1e6);
    else if (v >= 1e4) snprintf(out, cap, "%.1fk", v / 1e3);
    else snprintf(out, cap, "%.0f", v);
}

static void fmt_stage(char *out, size_t cap, const sm_display_stage *s) {
    char done[32], total[32], rate[32], eta[32] = "";
    fmt_count(done, sizeof done, s->done);
    fmt_count(total, sizeof total, s->total);
    fmt_count(rate, sizeof rate, s->rate);
    if (s->total > 0 && s->rate > 0 && s->done < s->total) {
        int secs = (int)((s->total - s->done) / s->rate);
        snprintf(eta, sizeof eta, " ETA %d:%02d", secs / 60, secs % 60);
    }
    if (s->total > 0)
        snprintf(out, cap, "%-28.28s %5.1f%% %s/%s %s%s%s%s", s->name, 100.0 * s->done / s->total, done, total, s->unit ? s->unit : "",
                 s->rate > 0 ? " " : "", s->rate > 0 ? rate : "", s->rate > 0 ? "/s" : "");
    else
        snprintf(out, cap, "%-28.28s %s %s  %.0fs", s->name, done, s->unit ? s->unit : "", s->elapsed);
    size_t l = strlen(out);
    snprintf(out + l, cap - l, "%s", eta);
}

void sm_display_live(const sm_display_stage *stages, int n) {
    if (verbosity == 0) return;
    char line[256];
    if (tty) {
        sm_display_clear();
        for (int i = 0; i < n; i++) {
            fmt_stage(line, sizeof line, &stages[i]);
            fprintf(stderr, "  %s\n", line);
        }
        live_lines = n;
        fflush(stderr);
        return;
    }
    double now = sm_monotonic();
    if (now - last_plain_progress < 10.0) return;
    last_plain_progress = now;
    for (int i = 0; i < n; i++) {
        fmt_stage(line, sizeof line, &stages[i]);
        emit(SM_LOG_INFO, NULL, line);
    }
}
