/* test_slurm.c - the Slurm command wrapper: sbatch argv, output parsers (on output captured from the test
 * cluster of tests/slurm_lib.sh, Slurm 22.05), state mapping and reasons. With --cluster (run by
 * tests/integration/test_slurm_wrapper.sh against a started cluster) it submits real jobs instead. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sm_exec_slurm.h"
#include "sm_slurm.h"
#include "../sm_test.h"

static const char *joined(char **argv) {
    static char buf[4096];
    buf[0] = 0;
    for (char **p = argv; *p; p++) {
        if (p != argv) strcat(buf, " ");
        strcat(buf, *p);
    }
    return buf;
}

TEST(sbatch_argv_maps_resources_and_options) {
    const char *extra[] = {"--qos=low", "--exclusive"};
    const char *args[] = {"/opt/scalemix", "/ws/jobs/abc"};
    sm_slurm_opts o = {.partition = "gpu", .account = "proj", .time_limit = "1:00:00", .extra = extra, .n_extra = 2};
    sm_slurm_request r = {.job_name = "sm-ablate", .cpus = 4, .mem_bytes = 1500000000, .gpus = 1, .array_size = 5,
                          .log_path = "/ws/jobs/abc/%a.log", .script = "/ws/jobs/abc/job.sh", .script_args = args,
                          .n_script_args = 2};
    char **argv;
    sm_error err = {0};
    CHECK_EQ_INT(sm_slurm_sbatch_argv(&o, &r, &argv, &err), SM_OK);
    CHECK_EQ_STR(joined(argv), "sbatch --parsable --job-name=sm-ablate --partition=gpu --account=proj --time=1:00:00 "
                               "--nodes=1 --ntasks=1 --cpus-per-task=4 --mem=1431M --gres=gpu:1 --array=0-4 "
                               "--output=/ws/jobs/abc/%a.log --error=/ws/jobs/abc/%a.log --qos=low --exclusive "
                               "/ws/jobs/abc/job.sh /opt/scalemix /ws/jobs/abc");
    sm_slurm_argv_free(argv);
    /* a single CPU job without options: nothing but what it needs */
    sm_slurm_opts none = {0};
    sm_slurm_request one = {.job_name = "sm-fit", .cpus = 1, .script = "job.sh"};
    CHECK_EQ_INT(sm_slurm_sbatch_argv(&none, &one, &argv, &err), SM_OK);
    CHECK_EQ_STR(joined(argv), "sbatch --parsable --job-name=sm-fit --nodes=1 --ntasks=1 --cpus-per-task=1 job.sh");
    char *shown = sm_slurm_argv_display(argv);
    CHECK_EQ_STR(shown, "sbatch --parsable --job-name=sm-fit --nodes=1 --ntasks=1 --cpus-per-task=1 job.sh");
    free(shown);
    sm_slurm_argv_free(argv);
}

TEST(sbatch_argv_refuses_bad_requests) {
    char **argv;
    sm_error err = {0};
    sm_slurm_opts o = {0};
    sm_slurm_request r = {.job_name = "x", .cpus = 0, .script = "job.sh"};
    CHECK_EQ_INT(sm_slurm_sbatch_argv(&o, &r, &argv, &err), SM_ERR_ARG);
    CHECK(argv == NULL);
    CHECK(strstr(err.msg, "cpus 0"));
    const char *extra[] = {""};
    sm_slurm_opts bad = {.extra = extra, .n_extra = 1};
    r.cpus = 1;
    CHECK_EQ_INT(sm_slurm_sbatch_argv(&bad, &r, &argv, &err), SM_ERR_ARG);
    CHECK(strstr(err.msg, "extra sbatch option 1 is empty"));
}

TEST(argv_display_quotes_what_a_shell_would_split) {
    char *argv[] = {"sbatch", "--job-name=a b", "it's", "--comment=", NULL};
    char *s = sm_slurm_argv_display(argv);
    CHECK_EQ_STR(s, "sbatch '--job-name=a b' 'it'\\''s' --comment=");
    free(s);
}

TEST(parse_submit) {
    char id[32];
    sm_error err = {0};
    CHECK_EQ_INT(sm_slurm_parse_submit("1\n", id, &err), SM_OK);
    CHECK_EQ_STR(id, "1");
    CHECK_EQ_INT(sm_slurm_parse_submit("4217;cluster2\n", id, &err), SM_OK);
    CHECK_EQ_STR(id, "4217");
    CHECK_EQ_INT(sm_slurm_parse_submit("", id, &err), SM_ERR_FORMAT);
    CHECK_EQ_INT(sm_slurm_parse_submit("Submitted batch job 12\n", id, &err), SM_ERR_FORMAT);
    CHECK(strstr(err.msg, "no job id"));
}

/* `squeue -h -t all -r -j 1 -O JobArrayID:|,JobID:|,State:|,Reason:|,exit_code:|,NodeList:|` on the test
 * cluster: task 2 cancelled while pending, task 0 completed, task 1 exited 3; job 4 cancelled while running. */
static const char squeue_out[] = "1_2|1|CANCELLED|Resources|0||\n"
                                 "1_0|2|COMPLETED|None|0|vm|\n"
                                 "1_1|3|FAILED|NonZeroExitCode|768|vm|\n"
                                 "4|4|CANCELLED|None|36608|vm|\n"
                                 "7_3|7|PENDING|Resources|0||\n"
                                 "8|8|RUNNING|None|0|vm|\n";

TEST(parse_squeue_states_reasons_exit_codes) {
    sm_slurm_job j[6] = {{.id = "1_0"}, {.id = "1_1"}, {.id = "1_2"}, {.id = "7_3"}, {.id = "8"}, {.id = "99"}};
    CHECK_EQ_INT(sm_slurm_parse_squeue(squeue_out, j, 6), 5);
    CHECK_EQ_INT(j[0].status, SM_SLURM_COMPLETED);
    CHECK_EQ_STR(j[0].node, "vm");
    CHECK_EQ_INT(j[1].status, SM_SLURM_FAILED);
    CHECK_EQ_INT(j[1].exit_code, 3);
    CHECK_EQ_INT(j[1].signal, 0);
    CHECK_EQ_STR(j[1].reason, "NonZeroExitCode");
    CHECK_EQ_INT(j[2].status, SM_SLURM_CANCELLED);
    CHECK_EQ_STR(j[2].node, "");
    CHECK_EQ_INT(j[3].status, SM_SLURM_PENDING);
    CHECK_EQ_STR(j[3].reason, "Resources");
    CHECK_EQ_INT(j[4].status, SM_SLURM_RUNNING);
    CHECK_EQ_INT(j[5].status, SM_SLURM_UNKNOWN);
    char why[256];
    sm_slurm_describe(&j[1], why, sizeof why);
    CHECK_EQ_STR(why, "job 1_1 on vm failed: exit code 3 (FAILED, NonZeroExitCode)");
    sm_slurm_describe(&j[2], why, sizeof why);
    CHECK_EQ_STR(why, "job 1_2 was cancelled (scancel, by this run, a user or an administrator)");
    sm_slurm_describe(&j[3], why, sizeof why);
    CHECK_EQ_STR(why, "job 7_3 is pending (Resources)");
    sm_slurm_describe(&j[4], why, sizeof why);
    CHECK_EQ_STR(why, "job 8 is running on vm");
    sm_slurm_describe(&j[5], why, sizeof why);
    CHECK(strstr(why, "no longer known to Slurm"));
}

/* `scontrol -o show job 1_1` on the test cluster (cut after WorkDir; the rest is the same shape). */
static const char scontrol_out[] =
    "JobId=3 ArrayJobId=1 ArrayTaskId=1 JobName=job.sh UserId=root(0) GroupId=root(0) MCS_label=N/A "
    "Priority=4294901759 Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) "
    "Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0 RunTime=00:00:00 TimeLimit=UNLIMITED TimeMin=N/A "
    "SubmitTime=2026-12-03T05:24:19 EligibleTime=2026-12-03T05:24:20 AccrueTime=2026-12-03T05:24:20 "
    "StartTime=2026-12-03T05:24:20 EndTime=2026-12-03T05:24:20 Deadline=N/A SuspendTime=None SecsPreSuspend=0 "
    "LastSchedEval=2026-12-03T05:24:20 Scheduler=Main Partition=test AllocNode:Sid=localhost:7361 "
    "ReqNodeList=(null) ExcNodeList=(null) NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 "
    "ReqB:S:C:T=0:0:*:* TRES=cpu=1,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* "
    "MinCPUsNode=1 MinMemoryNode=100M MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK "
    "Contiguous=0 Licenses=(null) Network=(null) Command=/tmp/sm-slurm-try.wPky/job.sh "
    "WorkDir=/tmp/sm-slurm-try.wPky\n";

TEST(parse_scontrol_record) {
    sm_slurm_job j[2] = {{.id = "1_1"}, {.id = "3"}};
    CHECK_EQ_INT(sm_slurm_parse_scontrol(scontrol_out, j, 2), 1); /* an array task is named 1_1, not 3 */
    CHECK_EQ_INT(j[0].status, SM_SLURM_FAILED);
    CHECK_EQ_STR(j[0].state, "FAILED");
    CHECK_EQ_STR(j[0].reason, "NonZeroExitCode");
    CHECK_EQ_INT(j[0].exit_code, 3);
    CHECK_EQ_STR(j[0].node, "vm");
    CHECK_EQ_INT(j[1].status, SM_SLURM_UNKNOWN);
    /* a reason holding spaces, a plain job, a node failure */
    const char rec[] = "JobId=12 JobName=x JobState=NODE_FAIL Reason=ReqNodeNotAvail, UnavailableNodes:n1 "
                       "Dependency=(null) ExitCode=0:9 NodeList=n1 BatchHost=n1\n";
    sm_slurm_job k = {.id = "12"};
    CHECK_EQ_INT(sm_slurm_parse_scontrol(rec, &k, 1), 1);
    CHECK_EQ_STR(k.reason, "ReqNodeNotAvail, UnavailableNodes:n1");
    CHECK_EQ_INT(k.signal, 9);
    CHECK_EQ_INT(k.retryable, 1);
    char why[256];
    sm_slurm_describe(&k, why, sizeof why);
    CHECK_EQ_STR(why, "job 12: node n1 failed (NODE_FAIL, ReqNodeNotAvail, UnavailableNodes:n1)");
}

/* `sacct -n -P -X -o JobID,State,ExitCode,Reason,NodeList`: Slurm's documented parsable shape (this test
 * cluster keeps no accounting, so it could not be captured here). */
TEST(parse_sacct_lines) {
    const char out[] = "21_0|COMPLETED|0:0|None|vm\n21_1|CANCELLED by 0|0:15|None|vm\n22|TIMEOUT|0:0|TimeLimit|n3\n"
                       "23|OUT_OF_MEMORY|0:125|OutOfMemory|n4\n";
    sm_slurm_job j[4] = {{.id = "21_0"}, {.id = "21_1"}, {.id = "22"}, {.id = "23"}};
    CHECK_EQ_INT(sm_slurm_parse_sacct(out, j, 4), 4);
    CHECK_EQ_INT(j[0].status, SM_SLURM_COMPLETED);
    CHECK_EQ_INT(j[1].status, SM_SLURM_CANCELLED);
    CHECK_EQ_STR(j[1].state, "CANCELLED");
    CHECK_EQ_INT(j[1].signal, 15);
    CHECK_EQ_INT(j[2].status, SM_SLURM_FAILED);
    CHECK_EQ_INT(j[2].retryable, 0);
    char why[256];
    sm_slurm_describe(&j[2], why, sizeof why);
    CHECK_EQ_STR(why, "job 22 on n3 hit its time limit (TIMEOUT; raise --slurm-time)");
    sm_slurm_describe(&j[3], why, sizeof why);
    CHECK(strstr(why, "ran out of memory"));
}

TEST(classify_every_end_state) {
    static const struct {
        const char *state;
        int status, retryable;
    } cases[] = {{"PENDING", SM_SLURM_PENDING, 0},     {"REQUEUED", SM_SLURM_PENDING, 0},
                 {"CONFIGURING", SM_SLURM_PENDING, 0}, {"COMPLETING", SM_SLURM_RUNNING, 0},
                 {"SUSPENDED", SM_SLURM_RUNNING, 0},   {"COMPLETED", SM_SLURM_COMPLETED, 0},
                 {"FAILED", SM_SLURM_FAILED, 0},       {"TIMEOUT", SM_SLURM_FAILED, 0},
                 {"OUT_OF_MEMORY", SM_SLURM_FAILED, 0}, {"NODE_FAIL", SM_SLURM_FAILED, 1},
                 {"PREEMPTED", SM_SLURM_FAILED, 1},    {"BOOT_FAIL", SM_SLURM_FAILED, 1},
                 {"CANCELLED", SM_SLURM_CANCELLED, 0}, {"CANCELLED by 1000", SM_SLURM_CANCELLED, 0},
                 {"WEIRD", SM_SLURM_UNKNOWN, 0}};
    for (size_t i = 0; i < SM_ARRAY_LEN(cases); i++) {
        sm_slurm_job j = {.id = "5"};
        sm_slurm_classify(&j, cases[i].state);
        CHECK_MSG(j.status == cases[i].status && j.retryable == cases[i].retryable, "%s -> %d/%d", cases[i].state,
                  j.status, j.retryable);
    }
    sm_slurm_job j = {.id = "5"};
    sm_slurm_classify(&j, "WEIRD");
    char why[256];
    sm_slurm_describe(&j, why, sizeof why);
    CHECK_EQ_STR(why, "job 5 is in a state this engine does not know: WEIRD");
}

TEST(run_captures_both_streams_and_status) {
    char *argv[] = {"sh", "-c", "echo out; echo err >&2; exit 4", NULL}, *out, *errout;
    int status;
    sm_error err = {0};
    CHECK_EQ_INT(sm_slurm_run(argv, &out, &errout, &status, &err), SM_OK);
    CHECK_EQ_STR(out, "out\n");
    CHECK_EQ_STR(errout, "err\n");
    CHECK_EQ_INT(status, 4);
    free(out);
    free(errout);
    char *missing[] = {"sm-no-such-command-here", NULL};
    CHECK_EQ_INT(sm_slurm_run(missing, &out, &errout, &status, &err), SM_ERR_IO);
    CHECK(strstr(err.msg, "cannot run sm-no-such-command-here"));
}

TEST(cli_takes_executor_options_and_keeps_the_rest) {
    char *argv[] = {"run", "--executor", "slurm", "p.lua", "--slurm-option=--qos=low", "--param", "x=1",
                    "--slurm-option", "--exclusive", "--slurm-mem", "4G", "--slurm-requeue", "--slurm-time=1:00:00",
                    "--slurm-partition", "gpu", "--slurm-account=proj", NULL};
    int argc = (int)SM_ARRAY_LEN(argv) - 1;
    sm_exec_cli c;
    sm_error err = {0};
    CHECK_EQ_INT(sm_exec_cli_take(argc, argv, &c, &err), 4);
    CHECK_EQ_STR(joined(argv), "run p.lua --param x=1");
    CHECK_EQ_STR(c.executor, "slurm");
    CHECK_EQ_INT(c.slurm.slurm.n_extra, 2);
    CHECK_EQ_STR(c.slurm.slurm.extra[0], "--qos=low");
    CHECK_EQ_STR(c.slurm.slurm.extra[1], "--exclusive");
    CHECK_EQ_INT(c.slurm.mem_bytes, 4ull << 30);
    CHECK_EQ_INT(c.slurm.requeue, 1);
    CHECK_EQ_STR(c.slurm.slurm.time_limit, "1:00:00");
    CHECK_EQ_STR(c.slurm.slurm.partition, "gpu");
    CHECK_EQ_STR(c.slurm.slurm.account, "proj");
    char *local[] = {"plan", "p.lua", "--executor=local", "--slurm-mem", "2048", NULL};
    CHECK_EQ_INT(sm_exec_cli_take(5, local, &c, &err), 2);
    CHECK(c.executor == NULL);
    CHECK_EQ_INT(c.slurm.mem_bytes, 2048ull << 20);
}

TEST(cli_refuses_bad_executor_options) {
    static const struct {
        const char *a, *b, *why;
    } bad[] = {{"--executor", "cloud", "--executor wants local or slurm, got 'cloud'"},
               {"--slurm-mem", "4X", "--slurm-mem wants a size"},
               {"--slurm-mem", "0", "--slurm-mem wants a size"},
               {"--slurm-option=", NULL, "--slurm-option wants an sbatch option"},
               {"--slurm-partition=", NULL, "--slurm-partition wants a value"},
               {"--slurm-time", NULL, "--slurm-time needs a value"}};
    for (size_t i = 0; i < SM_ARRAY_LEN(bad); i++) {
        char *argv[] = {"run", (char *)bad[i].a, (char *)bad[i].b, NULL};
        sm_exec_cli c;
        sm_error err = {0};
        CHECK_MSG(sm_exec_cli_take(bad[i].b ? 3 : 2, argv, &c, &err) == -1, "%s accepted", bad[i].a);
        CHECK_MSG(strstr(err.msg, bad[i].why), "%s: %s", bad[i].a, err.msg);
    }
}

/* ---------- against a running cluster (--cluster) ---------- */

static char cluster_dir[256];

/* Polls until every job has ended, at most 60 s. */
static void wait_ended(sm_slurm_job *j, size_t n) {
    sm_error err = {0};
    for (int t = 0; t < 600; t++) {
        CHECK_MSG(sm_slurm_query(j, n, &err) == SM_OK, "query: %s", err.msg);
        size_t ended = 0;
        for (size_t i = 0; i < n; i++) ended += j[i].status >= SM_SLURM_COMPLETED;
        if (ended == n) return;
        usleep(100000);
    }
    FAILF("jobs did not end within 60 s");
}

TEST(cluster_array_exit_code_and_cancel) {
    char script[300], log[300];
    snprintf(script, sizeof script, "%s/job.sh", cluster_dir);
    snprintf(log, sizeof log, "%s/%%A_%%a.log", cluster_dir);
    FILE *f = fopen(script, "w");
    CHECK(f);
    /* task 0 succeeds, task 1 exits 3, task 2 waits for its scancel */
    fputs("#!/bin/sh\ncase $SLURM_ARRAY_TASK_ID in 0) exit 0;; 1) exit 3;; *) exec sleep 300;; esac\n", f);
    fclose(f);
    sm_slurm_opts o = {0};
    sm_slurm_request r = {.job_name = "sm-test", .cpus = 1, .mem_bytes = 100 << 20, .array_size = 3, .log_path = log,
                          .script = script};
    char id[32];
    sm_error err = {0};
    CHECK_MSG(sm_slurm_submit(&o, &r, id, &err) == SM_OK, "submit: %s", err.msg);
    sm_slurm_job j[3];
    memset(j, 0, sizeof j);
    for (int i = 0; i < 3; i++) snprintf(j[i].id, sizeof j[i].id, "%.24s_%d", id, i);
    /* all three are seen; task 2 runs until cancelled */
    for (int t = 0; t < 600; t++) {
        CHECK_MSG(sm_slurm_query(j, 3, &err) == SM_OK, "query: %s", err.msg);
        if (j[2].status == SM_SLURM_RUNNING) break;
        CHECK_MSG(j[2].status == SM_SLURM_PENDING, "task 2: %s", j[2].state);
        usleep(100000);
    }
    CHECK_EQ_INT(j[2].status, SM_SLURM_RUNNING);
    const char *cancel[] = {j[2].id};
    CHECK_MSG(sm_slurm_cancel(cancel, 1, &err) == SM_OK, "cancel: %s", err.msg);
    wait_ended(j, 3);
    char why[256];
    CHECK_EQ_INT(j[0].status, SM_SLURM_COMPLETED);
    CHECK_EQ_INT(j[1].status, SM_SLURM_FAILED);
    CHECK_EQ_INT(j[1].exit_code, 3);
    sm_slurm_describe(&j[1], why, sizeof why);
    printf("  %s\n", why);
    CHECK(strstr(why, "exit code 3 (FAILED, NonZeroExitCode)"));
    CHECK_EQ_INT(j[2].status, SM_SLURM_CANCELLED);
    sm_slurm_describe(&j[2], why, sizeof why);
    printf("  %s\n", why);
    CHECK(strstr(why, "was cancelled"));
}

TEST(cluster_unknown_ids_and_refused_submissions) {
    sm_slurm_job j = {.id = "999999"};
    sm_error err = {0};
    CHECK_MSG(sm_slurm_query(&j, 1, &err) == SM_OK, "query: %s", err.msg);
    CHECK_EQ_INT(j.status, SM_SLURM_UNKNOWN);
    CHECK_EQ_INT(sm_slurm_has_accounting(&err), 0);
    sm_slurm_opts o = {.partition = "no-such-partition"};
    char script[300];
    snprintf(script, sizeof script, "%s/job.sh", cluster_dir);
    sm_slurm_request r = {.job_name = "sm-test", .cpus = 1, .script = script};
    char id[32];
    CHECK_EQ_INT(sm_slurm_submit(&o, &r, id, &err), SM_ERR_IO);
    printf("  %s\n", err.msg);
    CHECK(strstr(err.msg, "submitting sm-test to Slurm"));
    CHECK(strstr(err.msg, "invalid partition"));
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--cluster")) {
        snprintf(cluster_dir, sizeof cluster_dir, "%s", argv[2]);
        RUN(cluster_array_exit_code_and_cancel);
        RUN(cluster_unknown_ids_and_refused_submissions);
        TEST_EXIT();
    }
    RUN(sbatch_argv_maps_resources_and_options);
    RUN(sbatch_argv_refuses_bad_requests);
    RUN(argv_display_quotes_what_a_shell_would_split);
    RUN(parse_submit);
    RUN(parse_squeue_states_reasons_exit_codes);
    RUN(parse_scontrol_record);
    RUN(parse_sacct_lines);
    RUN(classify_every_end_state);
    RUN(run_captures_both_streams_and_status);
    RUN(cli_takes_executor_options_and_keeps_the_rest);
    RUN(cli_refuses_bad_executor_options);
    TEST_EXIT();
}
