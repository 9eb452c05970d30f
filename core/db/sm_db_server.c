/* sm_db_server.c - choosing the database and running the embedded PostgreSQL server of a workspace.
 *
 * Layout: <ws>/pg/lock (flock serializing start/stop across processes), <ws>/pg/auth (the credentials,
 * sm_db_auth.c), <ws>/pg/data (the cluster,
 * owned by the server user), <ws>/pg/log/postgres.log, and the socket directory (<ws>/pg/run, or
 * /tmp/scalemix-<hash> when the workspace path is too long for a Unix socket). The server listens on
 * that socket only (listen_addresses = ''); the directory is 0700 and owned by the server user, so only
 * that user and root can reach it, and every role logs in with its password (SCRAM, sm_db_auth.c).
 *
 * Run as root, the server runs as an unprivileged user, which must reach the cluster. When it cannot reach
 * <ws>/pg (a workspace in root's private home), the cluster (data/, log/, run/) lives in CLUSTERS_DIR/<16
 * hex of sha256(ws)> instead, 0700 and the server user's, while <ws>/pg keeps the lock and the credentials;
 * the workspace's own permissions are never changed. */
#include "db/sm_db_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG_PORT "5432"
#define CLUSTERS_DIR "/var/lib/scalemix"
/* sun_path is 108 bytes; the server puts "/.s.PGSQL.5432" (14) plus a NUL after the directory. */
#define SOCK_DIR_MAX (107 - 14)

int sm_db_workspace(char *out, size_t n, sm_error *err) {
    const char *home = getenv("SCALEMIX_HOME");
    char buf[PATH_MAX];
    if (home && *home) snprintf(buf, sizeof buf, "%s", home);
    else snprintf(buf, sizeof buf, ".scalemix");
    if (buf[0] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) return sm_error_set(err, SM_ERR_IO, "workspace: getcwd: %s", strerror(errno));
        char abs[PATH_MAX * 2];
        snprintf(abs, sizeof abs, "%s/%s", cwd, buf);
        if (strlen(abs) >= sizeof buf) return sm_error_set(err, SM_ERR_ARG, "workspace path too long");
        snprintf(buf, sizeof buf, "%s", abs);
    }
    if (strlen(buf) >= n) return sm_error_set(err, SM_ERR_ARG, "workspace path too long: %s", buf);
    snprintf(out, n, "%s", buf);
    return SM_OK;
}

void sm_db_conninfo_add(char *buf, size_t n, const char *key, const char *value) {
    size_t len = strlen(buf);
    if (len && len + 1 < n) buf[len++] = ' ';
    len += (size_t)snprintf(buf + len, len < n ? n - len : 0, "%s='", key);
    for (const char *p = value; *p && len + 3 < n; p++) {
        if (*p == '\'' || *p == '\\') buf[len++] = '\\';
        buf[len++] = *p;
    }
    if (len + 2 <= n) { buf[len++] = '\''; buf[len] = 0; }
}

void sm_db_dsn_redact(const char *dsn, char *out, size_t n) {
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &msg);
    if (!opts) {
        snprintf(out, n, "(unparsable connection string)");
        PQfreemem(msg);
        return;
    }
    out[0] = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val) continue;
        if (!strcmp(o->keyword, "password")) sm_db_conninfo_add(out, n, o->keyword, "********");
        else sm_db_conninfo_add(out, n, o->keyword, o->val);
    }
    if (!out[0]) snprintf(out, n, "(libpq environment defaults)");
    PQconninfoFree(opts);
}

PGconn *sm_db_connect(const char *dsn, const char *app, int timeout_s, sm_error *err) {
    char tmo[16];
    snprintf(tmo, sizeof tmo, "%d", timeout_s);
    const char *keys[] = {"dbname", "application_name", "connect_timeout", NULL};
    const char *vals[] = {dsn, app, tmo, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        char safe[1024];
        sm_db_dsn_redact(dsn, safe, sizeof safe);
        const char *m = c ? PQerrorMessage(c) : "out of memory";
        size_t ml = strlen(m);
        while (ml && (m[ml - 1] == '\n' || m[ml - 1] == ' ')) ml--;
        sm_error_set(err, SM_ERR_DB, "cannot connect to the lineage database (%s): %.*s; check that the server "
                     "runs (scalemix db status) or pass --db none", safe, (int)ml, m);
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* ---- the server user ---- */

typedef struct pg_user {
    uid_t uid;
    gid_t gid;
    char name[64];
    int drop; /* 1: we are root and run server programs as uid/gid */
} pg_user;

static int run_checked(char *const argv[], sm_error *err) {
    pid_t pid = fork();
    if (pid < 0) return sm_error_set(err, SM_ERR_IO, "fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open("/dev/null", O_RDWR);
        if (fd >= 0) { dup2(fd, 0); dup2(fd, 1); }
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return sm_error_set(err, SM_ERR_IO, "%s failed (status %d)", argv[0], WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return SM_OK;
}

static int pg_user_get(pg_user *u, sm_error *err) {
    memset(u, 0, sizeof *u);
    if (geteuid() != 0) {
        u->uid = geteuid();
        u->gid = getegid();
        struct passwd *pw = getpwuid(u->uid);
        snprintf(u->name, sizeof u->name, "%s", pw ? pw->pw_name : "self");
        return SM_OK;
    }
    /* PostgreSQL refuses to run as root: use Debian's postgres user, or create a system user. */
    const char *names[] = {"postgres", "scalemix-pg"};
    for (int attempt = 0; attempt < 2; attempt++) {
        for (size_t i = 0; i < SM_ARRAY_LEN(names); i++) {
            struct passwd *pw = getpwnam(names[i]);
            if (pw) {
                u->uid = pw->pw_uid;
                u->gid = pw->pw_gid;
                snprintf(u->name, sizeof u->name, "%s", pw->pw_name);
                u->drop = 1;
                return SM_OK;
            }
        }
        if (attempt == 0) {
            char *argv[] = {"useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                            "scalemix-pg", NULL};
            if (run_checked(argv, err) != SM_OK)
                return sm_error_wrap(err, "creating the system user scalemix-pg to run the embedded PostgreSQL "
                                     "(it refuses to run as root)");
        }
    }
    return sm_error_set(err, SM_ERR_INTERNAL, "no user to run PostgreSQL as");
}

/* Runs argv as the server user with stdout/stderr appended to logpath (or /dev/null); waits. */
static int run_as(const pg_user *u, char *const argv[], const char *logpath, int *status, sm_error *err) {
    pid_t pid = fork();
    if (pid < 0) return sm_error_set(err, SM_ERR_IO, "fork: %s", strerror(errno));
    if (pid == 0) {
        if (u->drop) {
            if (setgroups(0, NULL) != 0 || setgid(u->gid) != 0 || setuid(u->uid) != 0) _exit(126);
        }
        int in = open("/dev/null", O_RDONLY);
        int out = logpath ? open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600) : -1;
        if (out < 0) out = open("/dev/null", O_WRONLY);
        if (in >= 0) dup2(in, 0);
        if (out >= 0) { dup2(out, 1); dup2(out, 2); }
        /* The server outlives us: it must not hold our pipes or sockets open. */
        for (int fd = 3; fd < 1024; fd++) close(fd);
        if (chdir("/") != 0) _exit(126);
        unsetenv("PGDATA");
        setenv("LC_ALL", "C", 1);
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) return sm_error_set(err, SM_ERR_IO, "waitpid: %s", strerror(errno));
    }
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return SM_OK;
}

/* ---- paths ---- */

/* The server's bin folder: $SCALEMIX_PG_BINDIR, else Debian's for major version want when installed (an
 * existing cluster needs its own major), else the newest installed. want 0: the newest. */
static int find_bindir(int want, char *out, size_t n, sm_error *err) {
    const char *env = getenv("SCALEMIX_PG_BINDIR");
    if (env && *env) {
        snprintf(out, n, "%s", env);
        return SM_OK;
    }
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/postgres", 0, NULL, &g) == 0 && g.gl_pathc > 0) {
        const char *best = g.gl_pathv[g.gl_pathc - 1];
        int best_v = -1;
        for (size_t i = 0; i < g.gl_pathc; i++) {
            int v = atoi(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"));
            if (v == want || v > best_v) { best_v = v; best = g.gl_pathv[i]; }
            if (v == want) break;
        }
        snprintf(out, n, "%.*s", (int)(strlen(best) - strlen("/postgres")), best);
        globfree(&g);
        return SM_OK;
    }
    globfree(&g);
    return sm_error_set(err, SM_ERR_NOTFOUND, "no PostgreSQL server found under /usr/lib/postgresql/*/bin: "
                        "install Debian's postgresql package (make deps), set SCALEMIX_PG_BINDIR, or pass "
                        "--db DSN for an existing server");
}

/* The cluster's folder outside the workspace (used for root when the server user cannot reach <ws>/pg). */
static void cluster_outside_dir(const char *workspace, char *out, size_t n) {
    char hex[65];
    sm_sha256_hex(workspace, strlen(workspace), hex);
    snprintf(out, n, CLUSTERS_DIR "/%.16s", hex);
}

static int has_cluster(const char *root) {
    char v[PATH_MAX + 32];
    snprintf(v, sizeof v, "%s/data/PG_VERSION", root);
    return access(v, F_OK) == 0;
}

/* Where the cluster of workspace is: <ws>/pg, unless only the outside folder holds one (or outside is set:
 * the caller decided to create it there). */
static void cluster_dir(const char *workspace, int outside, char *out, size_t n) {
    char in[PATH_MAX + 8], alt[PATH_MAX];
    snprintf(in, sizeof in, "%s/pg", workspace);
    cluster_outside_dir(workspace, alt, sizeof alt);
    if (outside || (!has_cluster(in) && has_cluster(alt))) snprintf(out, n, "%s", alt);
    else snprintf(out, n, "%s", in);
}

static int socket_dir_in(const char *workspace, const char *cluster, char *out, size_t n, sm_error *err) {
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/run", cluster);
    if (strlen(p) <= SOCK_DIR_MAX) {
        if (strlen(p) >= n) return sm_error_set(err, SM_ERR_ARG, "socket dir buffer too small");
        snprintf(out, n, "%s", p);
        return SM_OK;
    }
    char hex[65];
    sm_sha256_hex(workspace, strlen(workspace), hex);
    snprintf(out, n, "/tmp/scalemix-%.16s", hex);
    return SM_OK;
}

int sm_db_socket_dir(const char *workspace, char *out, size_t n, sm_error *err) {
    char cluster[PATH_MAX + 8];
    cluster_dir(workspace, 0, cluster, sizeof cluster);
    return socket_dir_in(workspace, cluster, out, n, err);
}

/* The DSN of role user on the embedded server: its password comes from the role's passfile (sm_db_auth.c). */
static void embedded_dsn(const char *workspace, const char *sockdir, const char *user, const char *db, char *out,
                         size_t n) {
    char passfile[PATH_MAX + 48];
    sm_db_auth_passfile(workspace, user, passfile, sizeof passfile);
    out[0] = 0;
    sm_db_conninfo_add(out, n, "host", sockdir);
    sm_db_conninfo_add(out, n, "port", PG_PORT);
    sm_db_conninfo_add(out, n, "dbname", db);
    sm_db_conninfo_add(out, n, "user", user);
    sm_db_conninfo_add(out, n, "passfile", passfile);
}

/* mkdir -p for the workspace itself (owned by the caller). */
static int mkdirs(const char *path, mode_t mode, sm_error *err) {
    char tmp[PATH_MAX];
    if (strlen(path) >= sizeof tmp) return sm_error_set(err, SM_ERR_ARG, "path too long: %.200s", path);
    memcpy(tmp, path, strlen(path) + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return sm_error_set(err, SM_ERR_IO, "mkdir %s: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST) return sm_error_set(err, SM_ERR_IO, "mkdir %s: %s", tmp, strerror(errno));
    return SM_OK;
}

/* A directory owned by the server user with the given mode; refuses a symlink or someone else's dir
 * (the /tmp fallback could be planted by another user). */
static int owned_dir(const char *path, const pg_user *u, mode_t mode, sm_error *err) {
    if (mkdir(path, mode) != 0 && errno != EEXIST) return sm_error_set(err, SM_ERR_IO, "mkdir %s: %s", path, strerror(errno));
    struct stat st;
    if (lstat(path, &st) != 0) return sm_error_set(err, SM_ERR_IO, "stat %s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return sm_error_set(err, SM_ERR_IO, "%s is not a directory", path);
    if (st.st_uid != u->uid) {
        if (geteuid() != 0 || (st.st_uid != 0 && strncmp(path, "/tmp/", 5) == 0))
            return sm_error_set(err, SM_ERR_IO, "%s belongs to uid %u, not to the server user %s: remove it",
                                path, (unsigned)st.st_uid, u->name);
        if (chown(path, u->uid, u->gid) != 0) return sm_error_set(err, SM_ERR_IO, "chown %s: %s", path, strerror(errno));
    }
    if ((st.st_mode & 07777) != mode && chmod(path, mode) != 0)
        return sm_error_set(err, SM_ERR_IO, "chmod %s: %s", path, strerror(errno));
    return SM_OK;
}

static int write_file_as(const char *path, const char *text, const pg_user *u, sm_error *err) {
    FILE *f = fopen(path, "w");
    if (!f) return sm_error_set(err, SM_ERR_IO, "writing %s: %s", path, strerror(errno));
    int ok = fputs(text, f) >= 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok) return sm_error_set(err, SM_ERR_IO, "writing %s: %s", path, strerror(errno));
    if (geteuid() == 0 && chown(path, u->uid, u->gid) != 0) return sm_error_set(err, SM_ERR_IO, "chown %s: %s", path, strerror(errno));
    return SM_OK;
}

/* The setting as a postgresql.conf string literal. */
static void conf_quote(char *out, size_t n, const char *v) {
    size_t len = 0;
    out[len++] = '\'';
    for (; *v && len + 4 < n; v++) {
        if (*v == '\'' || *v == '\\') out[len++] = *v;
        out[len++] = *v;
    }
    out[len++] = '\'';
    out[len] = 0;
}

typedef struct server_paths {
    char ws[PATH_MAX], pg[PATH_MAX + 8], cluster[PATH_MAX + 8], data[PATH_MAX + 16], log[PATH_MAX + 32];
    char sock[PATH_MAX + 16], bindir[PATH_MAX];
} server_paths;

/* outside: put the cluster outside the workspace (see the top of this file) even if none exists yet. */
static int paths_get(const char *workspace, server_paths *p, int need_bin, int outside, sm_error *err) {
    memset(p, 0, sizeof *p);
    if (strlen(workspace) >= sizeof p->ws) return sm_error_set(err, SM_ERR_ARG, "workspace path too long");
    snprintf(p->ws, sizeof p->ws, "%s", workspace);
    snprintf(p->pg, sizeof p->pg, "%s/pg", workspace);
    cluster_dir(workspace, outside, p->cluster, sizeof p->cluster);
    snprintf(p->data, sizeof p->data, "%s/data", p->cluster);
    snprintf(p->log, sizeof p->log, "%s/log/postgres.log", p->cluster);
    int rc = socket_dir_in(workspace, p->cluster, p->sock, sizeof p->sock, err);
    if (rc || !need_bin) return rc;
    /* An existing cluster needs the server of its major version, which may not be the newest installed. */
    char verfile[PATH_MAX + 32];
    snprintf(verfile, sizeof verfile, "%s/PG_VERSION", p->data);
    int major = 0;
    FILE *f = fopen(verfile, "r");
    if (f) {
        if (fscanf(f, "%d", &major) != 1 || major < 0) major = 0;
        fclose(f);
    }
    return find_bindir(major, p->bindir, sizeof p->bindir, err);
}

static int lock_pg(const server_paths *p, sm_error *err) {
    char lp[PATH_MAX + 16];
    snprintf(lp, sizeof lp, "%s/lock", p->pg);
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return sm_error_set(err, SM_ERR_IO, "opening %s: %s", lp, strerror(errno));
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) { close(fd); return sm_error_set(err, SM_ERR_IO, "locking %s: %s", lp, strerror(errno)); }
    }
    return fd;
}

static int server_answers(const server_paths *p) {
    char dsn[PATH_MAX * 2 + 160];
    embedded_dsn(p->ws, p->sock, SM_DB_ADMIN, "postgres", dsn, sizeof dsn);
    return PQping(dsn) == PQPING_OK;
}

static int exec_admin(PGconn *c, const char *sql, sm_error *err) {
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) sm_error_set(err, SM_ERR_DB, "embedded server setup: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    return ok ? SM_OK : SM_ERR_DB;
}

static int pg_reload(const server_paths *p, const pg_user *u, sm_error *err) {
    char pgctl[PATH_MAX + 16];
    snprintf(pgctl, sizeof pgctl, "%s/pg_ctl", p->bindir);
    char *argv[] = {pgctl, "-D", (char *)p->data, "reload", NULL};
    int st = 0;
    int rc = run_as(u, argv, NULL, &st, err);
    if (!rc && st != 0) rc = sm_error_set(err, SM_ERR_DB, "pg_ctl reload failed (exit %d); see %s", st, p->log);
    return rc;
}

static int hba_is(const server_paths *p, const char *text) {
    char path[PATH_MAX + 32], buf[1024];
    snprintf(path, sizeof path, "%s/pg_hba.conf", p->data);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = 0;
    return strcmp(buf, text) == 0;
}

/* Writes pg_hba.conf (setup or final, see sm_db_auth_hba) and has the running server read it. */
static int hba_apply(const server_paths *p, const pg_user *u, int setup, sm_error *err) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/pg_hba.conf", p->data);
    int rc = write_file_as(path, sm_db_auth_hba(setup), u, err);
    return rc ? rc : pg_reload(p, u, err);
}

/* Connects as the admin role; with wait_s, retries meanwhile (a reload takes effect a moment later). */
static PGconn *admin_connect(const server_paths *p, const char *db, int wait_s, sm_error *err) {
    char dsn[PATH_MAX * 2 + 160];
    embedded_dsn(p->ws, p->sock, SM_DB_ADMIN, db, dsn, sizeof dsn);
    double until = sm_monotonic() + wait_s;
    for (;;) {
        PGconn *c = sm_db_connect(dsn, "scalemix-setup", 10, err);
        if (c || sm_monotonic() > until) return c;
        usleep(20000);
    }
}

/* 1 once the server refuses the admin role without a password (the final pg_hba.conf is in effect). */
static int trust_gone(const server_paths *p, int wait_s) {
    char dsn[PATH_MAX * 2 + 160] = "";
    sm_db_conninfo_add(dsn, sizeof dsn, "host", p->sock);
    sm_db_conninfo_add(dsn, sizeof dsn, "port", PG_PORT);
    sm_db_conninfo_add(dsn, sizeof dsn, "dbname", "postgres");
    sm_db_conninfo_add(dsn, sizeof dsn, "user", SM_DB_ADMIN);
    sm_db_conninfo_add(dsn, sizeof dsn, "passfile", "/nonexistent/no-passfile"); /* none, silently */
    double until = sm_monotonic() + wait_s;
    for (;;) {
        PGconn *c = PQconnectdb(dsn);
        int refused = PQstatus(c) != CONNECTION_OK;
        PQfinish(c);
        if (refused) return 1;
        if (sm_monotonic() > until) return 0;
        usleep(20000);
    }
}

/* Creates the writer and read-only roles and the database on first start, and makes every role log in
 * with its password: a new cluster (initdb's trust), one made by an older scalemix (trust), or one whose
 * credentials no longer match (a removed <ws>/pg/auth) goes through setup: a pg_hba.conf that lets only the
 * admin in without a password, the passwords set, then the final pg_hba.conf. The names are constants. */
static int bootstrap(const server_paths *p, const pg_user *u, sm_error *err) {
    PGconn *c = NULL;
    int rc = SM_OK, setup = 1;
    if (hba_is(p, sm_db_auth_hba(0))) {
        sm_error cerr = {0};
        c = admin_connect(p, "postgres", 0, &cerr);
        setup = !c;
        if (setup)
            sm_log(SM_LOG_WARN, "db: the embedded server refused its credentials (%s); setting them again", cerr.msg);
    } else if (!hba_is(p, sm_db_auth_hba(1))) {
        sm_log(SM_LOG_INFO, "db: the embedded server (data %s) now requires a password of every role; the "
               "credentials are in %s/auth", p->data, p->pg);
    }
    if (setup) {
        rc = hba_apply(p, u, 1, err);
        if (!rc) c = admin_connect(p, "postgres", 5, err);
        if (rc || !c) return rc ? rc : SM_ERR_DB;
    }
    PGresult *r = PQexecParams(c, "SELECT 1 FROM pg_database WHERE datname = $1", 1, NULL,
                               (const char *[]){SM_DB_NAME}, NULL, NULL, 0);
    int have_db = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    PQclear(r);
    if (!have_db) {
        const char *steps[] = {
            "SET client_min_messages = warning",
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'scalemix') THEN "
            "CREATE ROLE scalemix LOGIN; END IF; "
            "IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'scalemix_ro') THEN "
            "CREATE ROLE scalemix_ro LOGIN; END IF; END $$",
            "ALTER ROLE scalemix_ro SET default_transaction_read_only = on",
            "CREATE DATABASE scalemix OWNER scalemix",
        };
        for (size_t i = 0; i < SM_ARRAY_LEN(steps) && rc == SM_OK; i++) rc = exec_admin(c, steps[i], err);
        if (!rc) {
            PGconn *d = admin_connect(p, SM_DB_NAME, 0, err);
            const char *db_steps[] = {
                "REVOKE ALL ON DATABASE scalemix FROM PUBLIC",
                "GRANT CONNECT ON DATABASE scalemix TO scalemix, scalemix_ro",
                "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
                "GRANT USAGE ON SCHEMA public TO scalemix_ro",
                "ALTER DEFAULT PRIVILEGES FOR ROLE scalemix IN SCHEMA public GRANT SELECT ON TABLES TO scalemix_ro",
            };
            if (!d) rc = SM_ERR_DB;
            for (size_t i = 0; i < SM_ARRAY_LEN(db_steps) && rc == SM_OK; i++) rc = exec_admin(d, db_steps[i], err);
            PQfinish(d);
        }
    }
    if (!rc && setup) rc = sm_db_auth_set_passwords(c, p->ws, err);
    PQfinish(c);
    if (!rc && setup) rc = hba_apply(p, u, 0, err);
    if (!rc && setup && !trust_gone(p, 5))
        rc = sm_error_set(err, SM_ERR_DB, "the embedded server still lets %s in without a password after reloading "
                          "%s/pg_hba.conf; see %s", SM_DB_ADMIN, p->data, p->log);
    return rc;
}

static void log_tail_hint(const char *log, char *out, size_t n) {
    FILE *f = fopen(log, "r");
    out[0] = 0;
    if (!f) return;
    char line[512], last[3][512] = {{0}};
    while (fgets(line, sizeof line, f)) {
        memmove(last[0], last[1], sizeof last[0] * 2);
        snprintf(last[2], sizeof last[2], "%s", line);
    }
    fclose(f);
    snprintf(out, n, "%s%s%s", last[0], last[1], last[2]);
    for (char *q = out; *q; q++) if (*q == '\n') *q = ' ';
}

/* 1 if the server user can traverse every directory down to path. */
static int user_reaches(const pg_user *u, const char *path) {
    pid_t pid = fork();
    if (pid == 0) {
        if (setgroups(0, NULL) != 0 || setgid(u->gid) != 0 || setuid(u->uid) != 0) _exit(2);
        _exit(access(path, X_OK) == 0 ? 0 : 1);
    }
    int st = 0;
    return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* CLUSTERS_DIR: root's, 0711 (the server users traverse it, nobody lists it). */
static int clusters_dir(sm_error *err) {
    if (mkdir(CLUSTERS_DIR, 0711) != 0 && errno != EEXIST)
        return sm_error_set(err, SM_ERR_IO, "mkdir %s: %s", CLUSTERS_DIR, strerror(errno));
    struct stat st;
    if (lstat(CLUSTERS_DIR, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0)
        return sm_error_set(err, SM_ERR_IO, "%s must be a directory owned by root: fix or remove it", CLUSTERS_DIR);
    if ((st.st_mode & 07777) != 0711 && chmod(CLUSTERS_DIR, 0711) != 0)
        return sm_error_set(err, SM_ERR_IO, "chmod %s: %s", CLUSTERS_DIR, strerror(errno));
    return SM_OK;
}

int sm_db_server_start(const char *workspace, char **dsn_out, sm_error *err) {
    server_paths p;
    pg_user u;
    int rc = paths_get(workspace, &p, 1, 0, err);
    if (!rc) rc = pg_user_get(&u, err);
    if (!rc) rc = mkdirs(p.pg, 0755, err);
    if (rc) return rc;
    int inside = strcmp(p.cluster, p.pg) == 0;
    if (u.drop && inside && !user_reaches(&u, p.pg)) {
        if (has_cluster(p.cluster))
            return sm_error_set(err, SM_ERR_IO, "the embedded PostgreSQL runs as user %s, who cannot reach its cluster "
                                "in %s: make its parent directories traversable (chmod o+x), or pass --db DSN",
                                u.name, p.pg);
        /* A private workspace (root's home): the cluster goes where the server user reaches it, and only it. */
        rc = paths_get(workspace, &p, 1, 1, err);
        if (!rc) rc = clusters_dir(err);
        if (!rc) rc = owned_dir(p.cluster, &u, 0700, err);
        if (rc) return rc;
        sm_log(SM_LOG_INFO, "db: user %s cannot reach %s; the embedded cluster of this workspace lives in %s",
               u.name, p.pg, p.cluster);
    }
    int lockfd = lock_pg(&p, err);
    if (lockfd < 0) return lockfd;

    rc = sm_db_auth_prepare(p.ws, err);
    if (rc) {
        close(lockfd);
        return rc;
    }
    char logdir[PATH_MAX + 16], pgver[PATH_MAX + 32], hint[1600];
    snprintf(logdir, sizeof logdir, "%s/log", p.cluster);
    snprintf(pgver, sizeof pgver, "%s/PG_VERSION", p.data);
    rc = owned_dir(logdir, &u, 0700, err);
    if (!rc && access(pgver, F_OK) != 0) {
        DIR *d = opendir(p.data);
        if (d) {
            struct dirent *de;
            int entries = 0;
            while ((de = readdir(d))) if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) entries++;
            closedir(d);
            if (entries) {
                rc = sm_error_set(err, SM_ERR_IO, "%s exists without PG_VERSION (an interrupted initdb?): remove "
                                  "it and retry", p.data);
            }
        }
        if (!rc) rc = owned_dir(p.data, &u, 0700, err);
        if (!rc) {
            char initdb[PATH_MAX + 16];
            snprintf(initdb, sizeof initdb, "%s/initdb", p.bindir);
            char *argv[] = {initdb, "-D", p.data, "-U", SM_DB_ADMIN, "-A", "trust", "-E", "UTF8",
                            "--locale=C", "--no-instructions", NULL};
            int st = 0;
            sm_log(SM_LOG_INFO, "db: creating the embedded PostgreSQL cluster in %s (as user %s)", p.data, u.name);
            rc = run_as(&u, argv, p.log, &st, err);
            if (!rc && st != 0) {
                log_tail_hint(p.log, hint, sizeof hint);
                rc = sm_error_set(err, SM_ERR_DB, "initdb failed (exit %d); see %s: %s", st, p.log, hint);
            }
            if (!rc) {
                char conf[PATH_MAX + 32];
                snprintf(conf, sizeof conf, "%s/postgresql.conf", p.data);
                FILE *f = fopen(conf, "a");
                if (!f || fputs("\n# scalemix: settings rewritten at every start\n"
                                "include_if_exists = 'scalemix.conf'\n", f) < 0)
                    rc = sm_error_set(err, SM_ERR_IO, "appending to %s", conf);
                if (f) fclose(f);
            }
        }
    }
    if (!rc && !server_answers(&p)) {
        char deflt[PATH_MAX + 16];
        snprintf(deflt, sizeof deflt, "%s/run", p.cluster);
        if (strcmp(p.sock, deflt) != 0)
            sm_log(SM_LOG_INFO, "db: workspace path too long for a Unix socket; the embedded server's socket is "
                   "in %s", p.sock);
        rc = owned_dir(p.sock, &u, 0700, err);
        char quoted[PATH_MAX * 2 + 8], text[PATH_MAX * 2 + 512], conf[PATH_MAX + 32];
        conf_quote(quoted, sizeof quoted, p.sock);
        snprintf(text, sizeof text,
                 "# Written by scalemix at every start of the embedded server.\n"
                 "listen_addresses = ''\n"
                 "port = " PG_PORT "\n"
                 "unix_socket_directories = %s\n"
                 "max_connections = 40\n"
                 "logging_collector = off\n", quoted);
        snprintf(conf, sizeof conf, "%s/scalemix.conf", p.data);
        if (!rc) rc = write_file_as(conf, text, &u, err);
        if (!rc) {
            char pgctl[PATH_MAX + 16];
            snprintf(pgctl, sizeof pgctl, "%s/pg_ctl", p.bindir);
            char *argv[] = {pgctl, "-D", p.data, "-l", p.log, "-w", "-t", "60", "start", NULL};
            int st = 0;
            sm_log(SM_LOG_INFO, "db: starting the embedded PostgreSQL (socket %s)", p.sock);
            rc = run_as(&u, argv, NULL, &st, err);
            if (!rc && st != 0) {
                log_tail_hint(p.log, hint, sizeof hint);
                rc = sm_error_set(err, SM_ERR_DB, "pg_ctl start failed (exit %d); see %s: %s", st, p.log, hint);
            }
        }
    }
    if (!rc) rc = bootstrap(&p, &u, err);
    close(lockfd);
    if (rc) return rc;
    char dsn[PATH_MAX * 2 + 160];
    embedded_dsn(p.ws, p.sock, SM_DB_WRITER, SM_DB_NAME, dsn, sizeof dsn);
    *dsn_out = strdup(dsn);
    return *dsn_out ? SM_OK : sm_error_set(err, SM_ERR_NOMEM, "out of memory");
}

int sm_db_server_stop(const char *workspace, sm_error *err) {
    server_paths p;
    pg_user u;
    int rc = paths_get(workspace, &p, 1, 0, err);
    if (!rc) rc = pg_user_get(&u, err);
    if (rc) return rc;
    char pid[PATH_MAX + 32];
    snprintf(pid, sizeof pid, "%s/postmaster.pid", p.data);
    if (access(p.pg, F_OK) != 0 || access(pid, F_OK) != 0) return SM_OK;
    int lockfd = lock_pg(&p, err);
    if (lockfd < 0) return lockfd;
    char pgctl[PATH_MAX + 16];
    snprintf(pgctl, sizeof pgctl, "%s/pg_ctl", p.bindir);
    char *argv[] = {pgctl, "-D", p.data, "-m", "fast", "-w", "-t", "60", "stop", NULL};
    int st = 0;
    rc = run_as(&u, argv, NULL, &st, err);
    close(lockfd);
    if (!rc && st != 0 && access(pid, F_OK) == 0)
        return sm_error_set(err, SM_ERR_DB, "pg_ctl stop failed (exit %d); see %s", st, p.log);
    return rc;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

int sm_db_server_remove(const char *workspace, char *removed, size_t n, sm_error *err) {
    removed[0] = 0;
    int rc = sm_db_server_stop(workspace, err);
    if (rc) return rc;
    server_paths p;
    if ((rc = paths_get(workspace, &p, 0, 0, err))) return rc;
    int lockfd = lock_pg(&p, err);
    if (lockfd < 0) return lockfd;
    if (server_answers(&p)) {
        close(lockfd);
        return sm_error_set(err, SM_ERR_DB, "the embedded server at %s still answers after the stop: not removed", p.sock);
    }
    /* only paths derived from this workspace: its pg/ parts, its own folder under CLUSTERS_DIR, its socket */
    char outside[PATH_MAX], sock[PATH_MAX + 16], paths[6][PATH_MAX + 16];
    cluster_outside_dir(workspace, outside, sizeof outside);
    const char *parts[] = {"data", "log", "run", "auth"};
    for (int i = 0; i < 4; i++) snprintf(paths[i], sizeof paths[i], "%s/%s", p.pg, parts[i]);
    snprintf(paths[4], sizeof paths[4], "%s", outside);
    snprintf(sock, sizeof sock, "%s", p.sock);
    snprintf(paths[5], sizeof paths[5], "%s", strncmp(sock, "/tmp/scalemix-", 14) ? "" : sock);
    for (int i = 0; i < 6 && !rc; i++) {
        struct stat st;
        if (!paths[i][0] || lstat(paths[i], &st) != 0) continue;
        if (nftw(paths[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
            rc = sm_error_set(err, SM_ERR_IO, "removing %s: %s", paths[i], strerror(errno));
        else snprintf(removed + strlen(removed), n - strlen(removed), "%s%s", removed[0] ? " " : "", paths[i]);
    }
    close(lockfd);
    return rc;
}

int sm_db_server_status(const char *workspace, int *running, char *info, size_t n, sm_error *err) {
    server_paths p;
    int rc = paths_get(workspace, &p, 0, 0, err);
    if (rc) return rc;
    char pgver[PATH_MAX + 32];
    snprintf(pgver, sizeof pgver, "%s/PG_VERSION", p.data);
    *running = server_answers(&p);
    if (access(pgver, F_OK) != 0) snprintf(info, n, "no embedded server in %s (it is created on first use)", p.pg);
    else if (*running) snprintf(info, n, "running: data %s, socket %s, log %s", p.data, p.sock, p.log);
    else snprintf(info, n, "stopped: data %s (scalemix db start)", p.data);
    return SM_OK;
}

static int env_set(const char *name) {
    const char *v = getenv(name);
    return v && *v;
}

int sm_db_pick(const char *workspace, const char *cli_dsn, char **dsn_out, sm_error *err) {
    *dsn_out = NULL;
    const char *given = cli_dsn && *cli_dsn ? cli_dsn : getenv("SCALEMIX_DB");
    if (given && *given) {
        if (!strcmp(given, "none")) return SM_OK;
        char *msg = NULL;
        PQconninfoOption *o = PQconninfoParse(given, &msg);
        if (!o) {
            /* libpq's message quotes no part of the string, so it cannot leak a password. */
            sm_error_set(err, SM_ERR_ARG, "--db/SCALEMIX_DB: not a libpq connection string: %s", msg ? msg : "?");
            PQfreemem(msg);
            return SM_ERR_ARG;
        }
        PQconninfoFree(o);
        *dsn_out = strdup(given);
    } else if (env_set("PGHOST") || env_set("PGDATABASE") || env_set("PGSERVICE") || env_set("PGHOSTADDR")) {
        *dsn_out = strdup(""); /* libpq reads the PG* environment */
    } else {
        return sm_db_server_start(workspace, dsn_out, err);
    }
    return *dsn_out ? SM_OK : sm_error_set(err, SM_ERR_NOMEM, "out of memory");
}

int sm_db_resolve(const char *workspace, const char *cli_dsn, char **dsn_out, sm_error *err) {
    int rc = sm_db_pick(workspace, cli_dsn, dsn_out, err);
    if (rc || !*dsn_out) return rc;
    rc = sm_db_migrate(*dsn_out, NULL, err);
    if (rc) {
        free(*dsn_out);
        *dsn_out = NULL;
    }
    return rc;
}

int sm_db_ro_dsn(const char *dsn, char **ro_out, sm_error *err) {
    const char *env = getenv("SCALEMIX_DB_RO");
    if (env && *env) {
        *ro_out = strdup(env);
        return *ro_out ? SM_OK : sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    }
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &msg);
    if (!opts) {
        sm_error_set(err, SM_ERR_ARG, "not a libpq connection string: %s", msg ? msg : "?");
        PQfreemem(msg);
        return SM_ERR_ARG;
    }
    char buf[4096] = "";
    static const char wpass[] = "/" SM_DB_WRITER ".pgpass";
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val || !strcmp(o->keyword, "user") || !strcmp(o->keyword, "password")) continue;
        size_t l = strlen(o->val);
        if (!strcmp(o->keyword, "passfile") && l > strlen(wpass) && !strcmp(o->val + l - strlen(wpass), wpass)) {
            /* the writer's passfile: the reader's is beside it (sm_db_auth.c); the writer's password never goes */
            char ro[PATH_MAX + 48];
            snprintf(ro, sizeof ro, "%.*s/" SM_DB_READER ".pgpass", (int)(l - strlen(wpass)), o->val);
            sm_db_conninfo_add(buf, sizeof buf, o->keyword, ro);
            continue;
        }
        sm_db_conninfo_add(buf, sizeof buf, o->keyword, o->val);
    }
    PQconninfoFree(opts);
    sm_db_conninfo_add(buf, sizeof buf, "user", SM_DB_READER);
    *ro_out = strdup(buf);
    return *ro_out ? SM_OK : sm_error_set(err, SM_ERR_NOMEM, "out of memory");
}
