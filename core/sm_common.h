/* sm_common.h - error codes, error reporting and small helpers shared by every module.
 *
 * Convention: a function that can fail returns an int (0 = SM_OK, negative = one of SM_ERR_*)
 * and fills an sm_error the caller passes (may be NULL) with a message that says what failed,
 * where, and what to do about it. */
#ifndef SM_COMMON_H
#define SM_COMMON_H

#include <stddef.h>
#include <stdint.h>

enum {
    SM_OK = 0,
    SM_ERR_IO = -1,        /* a file or socket could not be read or written */
    SM_ERR_FORMAT = -2,    /* bad magic, version, size, syntax */
    SM_ERR_ARG = -3,       /* the caller passed something invalid (usage error) */
    SM_ERR_NOMEM = -4,
    SM_ERR_CANCELLED = -5, /* stopped because the user asked to */
    SM_ERR_DB = -6,        /* the database refused or is unreachable */
    SM_ERR_PLUGIN = -7,    /* a plugin could not be loaded or failed */
    SM_ERR_NOTFOUND = -8,
    SM_ERR_UNSUPPORTED = -9, /* e.g. CUDA requested where it was not built or no GPU */
    SM_ERR_INTERNAL = -10
};

typedef struct sm_error {
    int code;
    char msg[1024];
} sm_error;

/* Sets err (if non-NULL) to code and a printf-formatted message; returns code. */
int sm_error_set(sm_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefixes an existing message with a printf-formatted context ("loading x: <old>"); returns err->code. */
int sm_error_wrap(sm_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A short constant name for a code ("io", "format", ...). */
const char *sm_error_name(int code);

/* Log levels shared by the engine's logger and the plugin host API. */
enum { SM_LOG_ERROR = 0, SM_LOG_WARN = 1, SM_LOG_INFO = 2, SM_LOG_DEBUG = 3 };

/* Process-wide logger used by code that has no stage context (CLI commands, libraries).
 * Thread-safe; writes one line to stderr with a timestamp when not on a terminal, or, on a thread bound by
 * sm_log_bind, hands the line to that stage's host table. */
void sm_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sm_log_set_level(int level);
int sm_log_get_level(void);
struct sm_host_api;
struct sm_host;
/* Binds this thread's sm_log (this copy of the library: each plugin links its own) to a stage's host table:
 * lines go to api->log and the level is api->log_level's; also sets this copy's level for threads the stage
 * creates. api NULL unbinds. The host calls it through dlsym around a plugin's run(). */
void sm_log_bind(const struct sm_host_api *api, struct sm_host *h);

/* Wall-clock seconds (CLOCK_REALTIME) and monotonic seconds. */
double sm_now(void);
double sm_monotonic(void);
/* Formats t (seconds since the epoch) as ISO 8601 UTC with microseconds: 2026-11-24T19:35:32.123456Z. */
void sm_iso8601(double t, char out[40]);

/* SHA-256 (OpenSSL EVP underneath). */
typedef struct sm_sha256_ctx sm_sha256_ctx;
sm_sha256_ctx *sm_sha256_new(void);
void sm_sha256_update(sm_sha256_ctx *c, const void *data, size_t n);
/* Writes 64 lowercase hex chars plus NUL and frees the context. */
void sm_sha256_final_hex(sm_sha256_ctx *c, char hex[65]);
void sm_sha256_hex(const void *data, size_t n, char hex[65]);
/* Hashes a whole file; SM_ERR_IO with the path on failure. */
int sm_sha256_file(const char *path, char hex[65], uint64_t *bytes_out, sm_error *err);

/* HMAC-SHA256 of msg under key as 64 lowercase hex chars plus NUL (OpenSSL underneath). */
void sm_hmac_sha256_hex(const void *key, size_t klen, const void *msg, size_t mlen, char hex[65]);
/* Reads the n-byte secret at path into out, creating it on first use (random bytes, mode 0600, exclusive
 * create, so concurrent first uses agree). Refuses, with what to do, a file that is not a regular file owned
 * by this user without group or other permissions, or whose size is not n. */
int sm_secret_file(const char *path, unsigned char *out, size_t n, sm_error *err);

/* A random UUID v4 string (36 chars plus NUL) from getrandom(2). */
void sm_uuid4(char out[37]);

/* The build directory holding plugins/, lib/ and data files such as the vocabulary: $SM_BUILD when set,
 * else the directory of the running executable or the nearest of its two parents that holds the engine
 * (scalemix or libscalemix.a; test and bench binaries live below the build directory). Never NULL. */
const char *sm_build_dir(void);

#define SM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
