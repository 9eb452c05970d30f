/* sm_slurm.h - a thin wrapper over Slurm's own commands (sbatch, squeue, scontrol, sacct, scancel): builds
 * sbatch requests, submits jobs and job arrays, reads job states in one squeue call, maps Slurm's states,
 * reasons and exit codes to an end status with a reason text, and cancels. Commands run as argv arrays
 * (posix_spawnp, found on PATH; never a shell string) and their output is parsed. Every function is
 * blocking and keeps no global state, so it may run on a worker thread; SLURM_CONF in the environment
 * selects the cluster as for any Slurm command. */
#ifndef SM_SLURM_H
#define SM_SLURM_H

#include <stddef.h>
#include <stdint.h>
#include "sm_common.h"

/* The user's choices for every job of a run. Strings borrowed; NULL or "" when not given. */
typedef struct sm_slurm_opts {
    const char *partition;    /* --partition */
    const char *account;      /* --account */
    const char *time_limit;   /* --time, in Slurm's syntax ("30", "1:00:00", "2-00:00:00") */
    const char *const *extra; /* further sbatch options, one argv word each ("--qos=low", "--exclusive") */
    size_t n_extra;
} sm_slurm_opts;

/* One submission: a job, or an array of array_size tasks (0..array_size-1) sharing these resources. */
typedef struct sm_slurm_request {
    const char *job_name;
    int cpus;                     /* --cpus-per-task (>= 1) */
    uint64_t mem_bytes;           /* --mem, rounded up to MiB (0: the partition's default) */
    int gpus;                     /* --gres=gpu:N (0: none) */
    int array_size;               /* 0: a single job; n >= 1: --array=0-(n-1) */
    const char *log_path;         /* --output and --error (Slurm's %A/%a/%j patterns allowed) */
    const char *workdir;          /* --chdir (NULL: sbatch's own) */
    const char *script;           /* the batch script file */
    const char *const *script_args; /* its arguments */
    size_t n_script_args;
} sm_slurm_request;

/* A NULL-terminated argv: sbatch --parsable [user options] [resources] script args. Free with
 * sm_slurm_argv_free. SM_ERR_ARG when a request field is out of range or an option is empty. */
int sm_slurm_sbatch_argv(const sm_slurm_opts *o, const sm_slurm_request *r, char ***argv_out, sm_error *err);
void sm_slurm_argv_free(char **argv);
/* argv as one line for people (`scalemix plan`): words with spaces or quotes are single-quoted. */
char *sm_slurm_argv_display(char *const *argv);

/* Runs argv (argv[0] looked up on PATH) with stdin from /dev/null; captures stdout and stderr (each cut
 * at 1 MiB) and the exit status (128+signal when killed). SM_ERR_IO when it cannot be started. */
int sm_slurm_run(char *const *argv, char **out, char **errout, int *status, sm_error *err);

/* Submits r. job_id_out receives the job id ("123"; an array's tasks are "123_0".."123_N-1"). SM_ERR_IO
 * with sbatch's own message when it refuses. */
int sm_slurm_submit(const sm_slurm_opts *o, const sm_slurm_request *r, char job_id_out[32], sm_error *err);
/* Parses `sbatch --parsable` output ("123" or "123;cluster"). SM_ERR_FORMAT when it is no job id. */
int sm_slurm_parse_submit(const char *text, char job_id_out[32], sm_error *err);

/* Where a job stands. */
enum {
    SM_SLURM_UNKNOWN = 0,   /* Slurm no longer knows the job (left the queue, no accounting) */
    SM_SLURM_PENDING = 1,   /* queued, configuring, requeued, held */
    SM_SLURM_RUNNING = 2,   /* running, completing, suspended */
    SM_SLURM_COMPLETED = 3, /* ended with exit code 0 */
    SM_SLURM_FAILED = 4,    /* ended otherwise: non-zero exit, time limit, out of memory, node failure... */
    SM_SLURM_CANCELLED = 5  /* scancel (by us, a user or an administrator) */
};

typedef struct sm_slurm_job {
    char id[32];        /* as asked: "123" or "123_4" */
    int status;         /* SM_SLURM_* */
    char state[32];     /* Slurm's state word: "FAILED", "NODE_FAIL", ... ("" when unknown) */
    char reason[128];   /* Slurm's reason ("NonZeroExitCode", "TimeLimit", "None", ...) */
    int exit_code;      /* the batch script's exit code, when it ended */
    int signal;         /* the signal that ended it (0: none) */
    char node[128];     /* node list ("" before it ran) */
    int retryable;      /* 1: the job failed through no fault of its own (node failure, preemption, boot failure) */
} sm_slurm_job;

/* Fills jobs[i] for each jobs[i].id (set by the caller): one `squeue -h -t all -r -j a,b,... -O ...` call,
 * then `scontrol -o show job ID` for each id squeue did not list, then (only where the cluster keeps
 * accounting) `sacct`; what none of them knows stays SM_SLURM_UNKNOWN. SM_ERR_IO when the controller does
 * not answer (the jobs are then left as they were). */
int sm_slurm_query(sm_slurm_job *jobs, size_t n, sm_error *err);
/* Parsers behind sm_slurm_query (exposed for tests). squeue: lines of "arrayid|jobid|state|reason|
 * exit_status|nodes|" for the -O format sm_slurm_query asks for; each line that names a job in jobs fills
 * it. scontrol: the one-line `scontrol -o show job` record of one job. sacct: `sacct -n -P -X -o
 * JobID,State,ExitCode,Reason,NodeList` lines. Each returns how many jobs it filled. */
int sm_slurm_parse_squeue(const char *text, sm_slurm_job *jobs, size_t n);
int sm_slurm_parse_scontrol(const char *text, sm_slurm_job *jobs, size_t n);
int sm_slurm_parse_sacct(const char *text, sm_slurm_job *jobs, size_t n);
/* Sets status, retryable from a state word (a "CANCELLED by 0" suffix from sacct is ignored). */
void sm_slurm_classify(sm_slurm_job *j, const char *state);
/* One sentence for people on why a job ended or waits: "job 12_1 failed on vm: exit code 3
 * (NonZeroExitCode)", "job 12_2 was cancelled (scancel)", "job 14 hit its time limit (TIMEOUT)". */
void sm_slurm_describe(const sm_slurm_job *j, char *out, size_t cap);

/* 1 when the cluster keeps job accounting (sacct answers), 0 when not (`scontrol show config` says
 * AccountingStorageType=accounting_storage/none), negative when the controller does not answer. */
int sm_slurm_has_accounting(sm_error *err);

/* scancel the given job ids (tasks "123_4" or whole jobs) in one call. */
int sm_slurm_cancel(const char *const *ids, size_t n, sm_error *err);

#endif
