/* sm_omp_env.h - how OpenMP threads wait between parallel regions, chosen for the user. */
#ifndef SM_OMP_ENV_H
#define SM_OMP_ENV_H

/* When neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set, re-executes the program (same pid, same argv)
 * with OMP_WAIT_POLICY=passive; returns only when it did not (the user's values stand, or exec failed,
 * which it reports on stderr). Call first thing in main, before any thread is started. */
void sm_omp_env_reexec(char **argv);

#endif
