/* main.c - the scalemix command line: dispatches to the subcommands of sm_commands.h. */
#include <stdio.h>
#include <string.h>

#include "model/sm_omp_env.h"
#include "sm_commands.h"
#include "sm_plugins.h"
#include "sm_version.h"

typedef struct command {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} command;

static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const command commands[] = {
    {"run", sm_cmd_run, "run a pipeline script"},
    {"plan", sm_cmd_plan, "dry run: which stages would be reused or run, and why"},
    {"encode", sm_cmd_encode, "GPT-2 token ids of UTF-8 text on stdin"},
    {"decode", sm_cmd_decode, "text of GPT-2 token ids on stdin"},
    {"eval", sm_cmd_eval, "mean cross-entropy of a checkpoint on a token shard"},
    {"sql", sm_cmd_sql, "psql on the lineage database (read-only role)"},
    {"history", sm_cmd_history, "recent runs"},
    {"db", sm_cmd_db, "the lineage database: status, start, stop"},
    {"schedule", sm_cmd_schedule, "recurring runs: add, list, pause, resume, remove, next, backfill"},
    {"daemon", sm_cmd_daemon, "fire scheduled runs"},
    {"verify", sm_cmd_verify, "check every object in the store; --repair sets corrupt ones aside"},
    {"serve", sm_cmd_serve, "web pages of runs, AutoScale figures, lineage, schedules, metrics"},
    {"version", cmd_version, "print the version"},
    {"help", cmd_help, "help on a command or a stage"},
    {"stage-exec", sm_cmd_stage_exec, NULL}, /* internal: an isolated stage in a child process */
};

static void usage(FILE *out) {
    fprintf(out, "scalemix %s - data mixtures at the scale you train at (AutoScale), from raw text to a trained GPT-2\n\n"
                 "usage: scalemix COMMAND [ARGS]\n\ncommands:\n", SM_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (commands[i].summary) fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`scalemix help COMMAND` or `scalemix COMMAND --help` for a command; `scalemix help STAGE` for a\n"
                 "stage's parameters (tokenize, ablate, fit, extrapolate, train, compare, plot).\n");
}

static int cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("scalemix %s (plugin ABI %d.%d)\n", SM_VERSION, SM_PLUGIN_ABI_MAJOR, SM_PLUGIN_ABI_MINOR);
    return 0;
}

static const command *find(const char *name) {
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(commands[i].name, name)) return &commands[i];
    return NULL;
}

static int cmd_help(int argc, char **argv) {
    if (argc < 2) {
        usage(stdout);
        return 0;
    }
    const command *c = find(argv[1]);
    if (c && c->fn != cmd_help) {
        char *args[] = {argv[1], "--help", NULL};
        return c->fn(2, args);
    }
    char path[4096];
    sm_error err = {0};
    sm_plugin *p;
    if (sm_plugin_find(argv[1], path, sizeof path, &err) == SM_OK && sm_plugin_load(path, &p, &err) == SM_OK) {
        sm_plugin_print_params(p, stdout);
        sm_plugin_unload(p);
        return 0;
    }
    fprintf(stderr, "scalemix help: '%s' is neither a command nor a stage (%s)\n", argv[1], err.msg);
    return 2;
}

int main(int argc, char **argv) {
    sm_omp_env_reexec(argv); /* returns unless it restarted the program with passive OpenMP waits */
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) return cmd_version(0, NULL);
    const command *c = find(argv[1]);
    if (!c) {
        fprintf(stderr, "scalemix: unknown command '%s'\n\n", argv[1]);
        usage(stderr);
        return 2;
    }
    return c->fn(argc - 1, argv + 1);
}
