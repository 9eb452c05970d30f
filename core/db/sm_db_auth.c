/* sm_db_auth.c - the embedded server's credentials: every role logs in with a password (SCRAM), so that
 * the read-only role of `scalemix sql` is a boundary, not a convention.
 *
 * <workspace>/pg/auth (0700, the workspace owner's) holds server.key (32 random bytes, 0600, made on first
 * use) and one libpq passfile per role, <role>.pgpass (0600), whose password is HMAC-SHA256(server.key,
 * role) in hex. The embedded DSNs name their role's passfile (passfile=...), so no password is ever in a
 * DSN, an environment variable or a command line, and the server's OS user (which owns the cluster but not
 * the workspace) cannot read them. */
#include "db/sm_db_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const roles[] = {SM_DB_ADMIN, SM_DB_WRITER, SM_DB_READER};

void sm_db_auth_passfile(const char *workspace, const char *role, char *out, size_t n) {
    snprintf(out, n, "%s/pg/auth/%s.pgpass", workspace, role);
}

static int password(const char *workspace, const char *role, char pw[65], sm_error *err) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/pg/auth/server.key", workspace);
    unsigned char key[32];
    if (sm_secret_file(path, key, sizeof key, err)) return sm_error_wrap(err, "the embedded server's credentials");
    sm_hmac_sha256_hex(key, sizeof key, role, strlen(role), pw);
    memset(key, 0, sizeof key);
    return SM_OK;
}

/* Writes path with text (mode 0600) unless it holds exactly that already: a private name, then rename. */
static int write_private(const char *path, const char *text, sm_error *err) {
    char cur[256];
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t got = read(fd, cur, sizeof cur - 1);
        struct stat st;
        int same = got >= 0 && (size_t)got == strlen(text) && !memcmp(cur, text, (size_t)got) && fstat(fd, &st) == 0 &&
                   st.st_uid == geteuid() && (st.st_mode & 077) == 0;
        close(fd);
        if (same) return SM_OK;
    }
    char tmp[PATH_MAX + 48];
    int tl = snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
    if (tl < 0 || (size_t)tl >= sizeof tmp) return sm_error_set(err, SM_ERR_ARG, "path too long: %.200s", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return sm_error_set(err, SM_ERR_IO, "writing %s: %s", tmp, strerror(errno));
    size_t len = strlen(text);
    int ok = write(fd, text, len) == (ssize_t)len;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return sm_error_set(err, SM_ERR_IO, "writing %s: %s", path, strerror(e));
    }
    return SM_OK;
}

int sm_db_auth_prepare(const char *workspace, sm_error *err) {
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/pg/auth", workspace);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return sm_error_set(err, SM_ERR_IO, "creating %s: %s", dir, strerror(errno));
    struct stat st;
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid())
        return sm_error_set(err, SM_ERR_IO, "%s must be a directory owned by uid %u: fix or remove it", dir,
                            (unsigned)geteuid());
    if ((st.st_mode & 077) && chmod(dir, 0700) != 0) return sm_error_set(err, SM_ERR_IO, "chmod %s: %s", dir, strerror(errno));
    for (size_t i = 0; i < SM_ARRAY_LEN(roles); i++) {
        char pw[65], path[PATH_MAX + 48], line[160];
        if (password(workspace, roles[i], pw, err)) return err ? err->code : SM_ERR_IO;
        sm_db_auth_passfile(workspace, roles[i], path, sizeof path);
        snprintf(line, sizeof line, "*:*:*:%s:%s\n", roles[i], pw);
        int rc = write_private(path, line, err);
        memset(pw, 0, sizeof pw);
        memset(line, 0, sizeof line);
        if (rc) return rc;
    }
    return SM_OK;
}

const char *sm_db_auth_hba(int setup) {
    /* Setup: the admin role without a password, over the socket only (its directory is 0700, the server
     * user's: only that user and root reach it), while the passwords are set. */
    return setup ? "# Written by scalemix while it sets the roles' passwords (see core/db/sm_db_auth.c).\n"
                   "local all " SM_DB_ADMIN " trust\n"
                   "local all all scram-sha-256\n"
                 : "# Written by scalemix: every role logs in with its password (SCRAM); Unix socket only.\n"
                   "local all all scram-sha-256\n";
}

int sm_db_auth_set_passwords(PGconn *admin, const char *workspace, sm_error *err) {
    PGresult *r = PQexec(admin, "SET password_encryption = 'scram-sha-256'");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    for (size_t i = 0; ok && i < SM_ARRAY_LEN(roles); i++) {
        char pw[65];
        if (password(workspace, roles[i], pw, err)) return err ? err->code : SM_ERR_IO;
        /* The verifier is computed here: the password itself never reaches the server or its log. */
        char *verifier = PQencryptPasswordConn(admin, pw, roles[i], "scram-sha-256");
        memset(pw, 0, sizeof pw);
        char *lit = verifier ? PQescapeLiteral(admin, verifier, strlen(verifier)) : NULL;
        PQfreemem(verifier);
        if (!lit) return sm_error_set(err, SM_ERR_DB, "embedded server setup: hashing a password: %s", PQerrorMessage(admin));
        char sql[512]; /* ALTER ROLE takes no parameters: the role is a constant and the verifier a quoted literal */
        snprintf(sql, sizeof sql, "ALTER ROLE %s PASSWORD %s", roles[i], lit);
        PQfreemem(lit);
        r = PQexec(admin, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    if (!ok) return sm_error_set(err, SM_ERR_DB, "embedded server setup: setting the roles' passwords: %s", PQerrorMessage(admin));
    return SM_OK;
}
