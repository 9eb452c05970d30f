/* sm_omp_env.c - OpenMP threads sleep rather than spin while they wait, unless the user says otherwise.
 *
 * libgomp's default is to spin ~300,000 iterations at every join before sleeping. The CPU backend forks and
 * joins ~100 times per training step; on a shared machine the spinning thread holds the core its partner
 * (or another job) needs: the demo proxy on 2 threads ran 4x slower than with OMP_WAIT_POLICY=passive
 * (core/model/NOTES.md). libgomp reads its environment in a constructor, before main runs, so setting the
 * variable from inside the program is too late: the program starts itself again with it set. The child
 * sees OMP_WAIT_POLICY set, so it never re-executes (no loop). GOMP_SPINCOUNT set by the user counts as
 * the user's choice too (it overrides the policy's spin count in libgomp). */
#include "sm_omp_env.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void sm_omp_env_reexec(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) {
        fprintf(stderr, "scalemix: warning: cannot set OMP_WAIT_POLICY (%s); set OMP_WAIT_POLICY=passive yourself "
                        "or OpenMP threads spin while idle\n", strerror(errno));
        return;
    }
    execv("/proc/self/exe", argv);
    fprintf(stderr, "scalemix: warning: cannot restart with OMP_WAIT_POLICY=passive (/proc/self/exe: %s); set "
                    "OMP_WAIT_POLICY=passive yourself or OpenMP threads spin while idle\n", strerror(errno));
}
