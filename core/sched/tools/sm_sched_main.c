/* sm_sched_main.c - scalemix-sched: a test driver exposing only `schedule` and `daemon`, so the scheduler's
 * integration tests run before (and independently of) the full CLI. The real entry is `scalemix`. */
#include <stdio.h>
#include <string.h>
#include "../../sm_commands.h"

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "schedule")) return sm_cmd_schedule(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "daemon")) return sm_cmd_daemon(argc - 1, argv + 1);
    fprintf(stderr, "usage: scalemix-sched schedule|daemon ... (test driver; see scalemix schedule --help)\n");
    return 2;
}
