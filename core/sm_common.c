/* sm_common.c - errors, logging, clocks, hashing, ids. */
#include "sm_common.h"
#include "sm_plugin.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int sm_error_set(sm_error *err, int code, const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

int sm_error_wrap(sm_error *err, const char *fmt, ...) {
    if (!err) return SM_ERR_INTERNAL;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    char joined[sizeof prefix + sizeof old + 2];
    snprintf(joined, sizeof joined, "%s: %s", prefix, old);
    snprintf(err->msg, sizeof err->msg, "%.*s", (int)sizeof err->msg - 1, joined);
    return err->code;
}

const char *sm_error_name(int code) {
    switch (code) {
    case SM_OK: return "ok";
    case SM_ERR_IO: return "io";
    case SM_ERR_FORMAT: return "format";
    case SM_ERR_ARG: return "usage";
    case SM_ERR_NOMEM: return "memory";
    case SM_ERR_CANCELLED: return "cancelled";
    case SM_ERR_DB: return "database";
    case SM_ERR_PLUGIN: return "plugin";
    case SM_ERR_NOTFOUND: return "not found";
    case SM_ERR_UNSUPPORTED: return "unsupported";
    default: return "internal";
    }
}

static int log_level = SM_LOG_INFO;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

void sm_log_set_level(int level) { log_level = level; }
int sm_log_get_level(void) { return log_level; }

static _Thread_local const sm_host_api *bound_api;
static _Thread_local sm_host *bound_host;

void sm_log_bind(const sm_host_api *api, sm_host *h) {
    bound_api = api;
    bound_host = api ? h : NULL;
    if (api) log_level = api->log_level(h);
}

void sm_log(int level, const char *fmt, ...) {
    if (bound_api) {
        if (level > bound_api->log_level(bound_host)) return;
        char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        int n = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (n >= 0) bound_api->log(bound_host, level, "%s", msg);
        free(msg);
        return;
    }
    if (level > log_level) return;
    static const char *names[] = {"error", "warn", "info", "debug"};
    char ts[40];
    sm_iso8601(sm_now(), ts);
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&log_mu);
    if (!isatty(2)) fprintf(stderr, "%s ", ts);
    fprintf(stderr, "%s: ", names[level < 0 ? 0 : level > 3 ? 3 : level]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    pthread_mutex_unlock(&log_mu);
    va_end(ap);
}

double sm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double sm_monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void sm_iso8601(double t, char out[40]) {
    time_t s = (time_t)t;
    long us = (long)((t - (double)s) * 1e6);
    if (us < 0) us = 0;
    if (us > 999999) us = 999999;
    struct tm tm;
    gmtime_r(&s, &tm);
    char buf[96]; /* wide enough for any int fields, so the compiler sees no truncation */
    snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, us);
    snprintf(out, 40, "%.39s", buf);
}

struct sm_sha256_ctx {
    EVP_MD_CTX *md;
};

sm_sha256_ctx *sm_sha256_new(void) {
    sm_sha256_ctx *c = malloc(sizeof *c);
    if (!c) return NULL;
    c->md = EVP_MD_CTX_new();
    if (!c->md || EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c->md);
        free(c);
        return NULL;
    }
    return c;
}

void sm_sha256_update(sm_sha256_ctx *c, const void *data, size_t n) { EVP_DigestUpdate(c->md, data, n); }

void sm_sha256_final_hex(sm_sha256_ctx *c, char hex[65]) {
    unsigned char d[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(c->md, d, &n);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    EVP_MD_CTX_free(c->md);
    free(c);
}

void sm_sha256_hex(const void *data, size_t n, char hex[65]) {
    sm_sha256_ctx *c = sm_sha256_new();
    sm_sha256_update(c, data, n);
    sm_sha256_final_hex(c, hex);
}

int sm_sha256_file(const char *path, char hex[65], uint64_t *bytes_out, sm_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sm_error_set(err, SM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    sm_sha256_ctx *c = sm_sha256_new();
    if (!c) {
        close(fd);
        return sm_error_set(err, SM_ERR_NOMEM, "out of memory hashing %s", path);
    }
    static const size_t bufsz = 1 << 20;
    unsigned char *buf = malloc(bufsz);
    uint64_t total = 0;
    ssize_t r;
    while (buf && (r = read(fd, buf, bufsz)) != 0) {
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(buf);
            close(fd);
            sm_sha256_final_hex(c, hex);
            return sm_error_set(err, SM_ERR_IO, "cannot read %s: %s", path, strerror(e));
        }
        sm_sha256_update(c, buf, (size_t)r);
        total += (uint64_t)r;
    }
    int oom = buf == NULL;
    free(buf);
    close(fd);
    sm_sha256_final_hex(c, hex);
    if (oom) return sm_error_set(err, SM_ERR_NOMEM, "out of memory hashing %s", path);
    if (bytes_out) *bytes_out = total;
    return SM_OK;
}

void sm_hmac_sha256_hex(const void *key, size_t klen, const void *msg, size_t mlen, char hex[65]) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key, (int)klen, msg, mlen, mac, &len);
    for (unsigned int i = 0; i < len && i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    hex[64] = 0;
    OPENSSL_cleanse(mac, sizeof mac);
}

static int secret_read(int fd, const char *path, unsigned char *out, size_t n, sm_error *err) {
    struct stat st;
    if (fstat(fd, &st) != 0) return sm_error_set(err, SM_ERR_IO, "secret %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
        return sm_error_set(err, SM_ERR_IO, "secret %s must be a file owned by uid %u with mode 0600 (it is uid %u, "
                            "mode %04o): fix it (chown/chmod 600) or remove it to make a new one", path,
                            (unsigned)geteuid(), (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, out + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    if (got != n || (size_t)st.st_size != n)
        return sm_error_set(err, SM_ERR_IO, "secret %s: expected %zu bytes, found %lld: remove it to make a new one",
                            path, n, (long long)st.st_size);
    return SM_OK;
}

int sm_secret_file(const char *path, unsigned char *out, size_t n, sm_error *err) {
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            int rc = secret_read(fd, path, out, n, err);
            close(fd);
            return rc;
        }
        if (errno != ENOENT) return sm_error_set(err, SM_ERR_IO, "secret %s: %s", path, strerror(errno));
        /* Written in full under a private name, then linked into place: a reader never sees half a secret. */
        char tmp[PATH_MAX + 32];
        snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) return sm_error_set(err, SM_ERR_IO, "creating secret %s: %s", tmp, strerror(errno));
        size_t got = 0;
        while (got < n) {
            ssize_t r = getrandom(out + got, n - got, 0);
            if (r > 0) got += (size_t)r;
        }
        int ok = write(fd, out, n) == (ssize_t)n && fsync(fd) == 0;
        ok = close(fd) == 0 && ok;
        int linked = ok && link(tmp, path) == 0;
        int lerr = errno;
        unlink(tmp);
        if (linked) return SM_OK;
        if (!ok || lerr != EEXIST) return sm_error_set(err, SM_ERR_IO, "creating secret %s: %s", path, strerror(lerr));
        /* another process created it first: read theirs */
    }
    return sm_error_set(err, SM_ERR_IO, "secret %s: created and removed concurrently; retry", path);
}

void sm_uuid4(char out[37]) {
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t r = getrandom(b + got, sizeof b - got, 0);
        if (r > 0) got += (size_t)r;
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
             b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static char build_dir[PATH_MAX];
static pthread_once_t build_dir_once = PTHREAD_ONCE_INIT;

/* A build directory holds the engine binary and its library (the source tree's plugins/ must not match). */
static int is_build_dir(const char *dir) {
    char p[PATH_MAX + 16];
    struct stat st;
    snprintf(p, sizeof p, "%s/libscalemix.a", dir);
    if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) return 1;
    snprintf(p, sizeof p, "%s/scalemix", dir);
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static void find_build_dir(void) {
    const char *env = getenv("SM_BUILD");
    if (env && *env) {
        snprintf(build_dir, sizeof build_dir, "%s", env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        snprintf(build_dir, sizeof build_dir, "build");
        return;
    }
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    snprintf(build_dir, sizeof build_dir, "%s", exe);
    for (int up = 0; up < 2 && !is_build_dir(exe); up++) {
        slash = strrchr(exe, '/');
        if (!slash || slash == exe) break;
        *slash = 0;
        if (is_build_dir(exe)) snprintf(build_dir, sizeof build_dir, "%s", exe);
    }
}

const char *sm_build_dir(void) {
    pthread_once(&build_dir_once, find_build_dir);
    return build_dir;
}
