/* sm_exec_slurm.h - the "slurm" executor: each stage run becomes a Slurm batch job that runs
 * `scalemix stage-exec --spec FILE --out FILE` on a node sharing the workspace (see core/engine/README.md,
 * "Running on Slurm" in README.md). Runs of one plugin with the same resources that are handed over within
 * one loop turn go as one job array. */
#ifndef SM_EXEC_SLURM_H
#define SM_EXEC_SLURM_H

#include "sm_engine.h"
#include "sm_executor.h"
#include "sm_slurm.h"

/* How many stage runs a run submits at once when the Slurm executor is its default and --parallel is not
 * given (the local default, the number of CPU cores, would cut the 2m+1 runs of a budget into pieces). */
#define SM_EXEC_SLURM_PARALLEL 64

typedef struct sm_exec_slurm_opts {
    sm_slurm_opts slurm; /* partition, account, time limit, extra sbatch options (copied) */
    uint64_t mem_bytes;  /* --mem of every job (0: the partition's default) */
    int requeue;         /* 1: a job that ended through no fault of its stage (node failure, preemption, a
                          * killed process) without the stage's final status is submitted once more */
} sm_exec_slurm_opts;

/* Creates the executor (runs no Slurm command yet). */
int sm_exec_slurm_create(sm_executor **out, const sm_exec_slurm_opts *o, sm_error *err);

/* The options of `scalemix run|plan` that choose where stages run (core/sm_cli_exec.c). */
typedef struct sm_exec_cli {
    const char *executor; /* --executor: "local" (NULL) or "slurm" */
    sm_exec_slurm_opts slurm;
    const char *extra[64]; /* --slurm-option values, behind slurm.slurm.extra */
} sm_exec_cli;
#define SM_EXEC_CLI_USAGE                                                                                          \
    "  --executor local|slurm  where stages run by default (a script's sm.config{executor=...} and a stage's\n"    \
    "                        {executor=...} option choose too): here, or as Slurm batch jobs\n"                     \
    "  --slurm-partition P, --slurm-account A, --slurm-time LIMIT, --slurm-mem SIZE (K/M/G/T; no unit: MiB)\n"     \
    "                        sbatch's --partition, --account, --time and --mem for every job\n"                    \
    "  --slurm-option OPT    one more sbatch option, as one word (repeatable): --slurm-option=--qos=low\n"         \
    "  --slurm-requeue       submit once more a job that ended without its stage's final status (node\n"           \
    "                        failure, preemption, a killed process)\n"
/* Takes the options above (--opt VALUE or --opt=VALUE) out of argv[1..argc), keeping the order of the
 * rest, and returns the new argc; -1 with err filled on a bad value (a usage error). */
int sm_exec_cli_take(int argc, char **argv, sm_exec_cli *c, sm_error *err);
/* Adds the Slurm executor, with the options taken, to e (always: scripts may name it). */
int sm_exec_cli_add(sm_engine *e, const sm_exec_cli *c, sm_error *err);

#endif
