/* sm_db_runs.c - the liveness lease of a run: a run holds an flock on <ws>/runs/<run_id>.lock while its
 * process lives (the kernel drops it when the process dies, SIGKILL included); a run the database still
 * calls running or cancelling whose lease is free is marked abandoned. */
#include "db/sm_db_internal.h"
#include "sm_store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int sm_run_lease_take(const char *workspace, const char *run_id, int *fd, sm_error *err) {
    char dir[PATH_MAX], path[PATH_MAX + 64];
    if (snprintf(dir, sizeof dir, "%s/runs", workspace) >= (int)sizeof dir) return sm_error_set(err, SM_ERR_ARG, "workspace path too long");
    if (sm_mkdirs(dir, err) != SM_OK) return err ? err->code : SM_ERR_IO;
    snprintf(path, sizeof path, "%s/%s.lock", dir, run_id);
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0 || flock(f, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (f >= 0) close(f);
        return sm_error_set(err, SM_ERR_IO, "cannot take the run's lease %s: %s", path, strerror(e));
    }
    *fd = f;
    return SM_OK;
}

void sm_run_lease_release(const char *workspace, const char *run_id, int fd) {
    if (fd < 0) return;
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/runs/%s.lock", workspace, run_id);
    unlink(path); /* before the lock goes: a checker never takes a lease whose run just ended normally */
    close(fd);
}

/* 1 when the run's lease file exists and nobody holds it (its process is gone). */
static int lease_lapsed(const char *workspace, const char *run_id) {
    char path[PATH_MAX + 64];
    if (strspn(run_id, "0123456789abcdef-") != strlen(run_id)) return 0;
    snprintf(path, sizeof path, "%s/runs/%s.lock", workspace, run_id);
    int f = open(path, O_RDWR | O_CLOEXEC);
    if (f < 0) return 0; /* no lease here: a run of another workspace, or one that ended */
    int lapsed = flock(f, LOCK_EX | LOCK_NB) == 0;
    if (lapsed) unlink(path);
    close(f);
    return lapsed;
}

int sm_db_mark_abandoned(const char *workspace, const char *dsn, int *marked, sm_error *err) {
    *marked = 0;
    PGconn *c = sm_db_connect(dsn, "scalemix-lease", 10, err);
    if (!c) return err ? err->code : SM_ERR_DB;
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    const char *hv[] = {host};
    PGresult *r = PQexecParams(c, "SELECT run_id FROM runs WHERE status IN ('running', 'cancelling') AND host = $1", 1, NULL, hv,
                               NULL, NULL, 0);
    int rc = SM_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = sm_error_set(err, SM_ERR_DB, "listing running runs: %s", PQerrorMessage(c));
    } else {
        for (int i = 0; i < PQntuples(r) && rc == SM_OK; i++) {
            const char *id = PQgetvalue(r, i, 0);
            if (!lease_lapsed(workspace, id)) continue;
            const char *v[] = {id};
            PGresult *u = PQexecParams(c,
                                       "UPDATE runs SET status = 'abandoned', finished_at = coalesce(finished_at, now()),"
                                       " error = coalesce(error, 'its process ended without recording an end (killed or crashed)')"
                                       " WHERE run_id = $1 AND status IN ('running', 'cancelling')",
                                       1, NULL, v, NULL, NULL, 0);
            if (PQresultStatus(u) != PGRES_COMMAND_OK) rc = sm_error_set(err, SM_ERR_DB, "marking run %s abandoned: %s", id, PQerrorMessage(c));
            else *marked += atoi(PQcmdTuples(u));
            PQclear(u);
        }
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}
