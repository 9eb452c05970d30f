/* sm_wire.c - host call messages as JSON lines (see sm_wire.h). */
#include "sm_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int sm_wire_write(int fd, pthread_mutex_t *mu, const json_t *msg) {
    char *s = json_dumps(msg, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!s) return SM_ERR_NOMEM;
    size_t n = strlen(s);
    char *line = realloc(s, n + 1);
    if (!line) {
        free(s);
        return SM_ERR_NOMEM;
    }
    line[n] = '\n'; /* one write per line: appends from several threads or processes never interleave */
    if (mu) pthread_mutex_lock(mu);
    const char *p = line;
    size_t left = n + 1;
    int rc = SM_OK;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            rc = SM_ERR_IO;
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    if (mu) pthread_mutex_unlock(mu);
    free(line);
    return rc;
}

size_t sm_wire_lines(const char *buf, size_t len, void (*fn)(void *ctx, const json_t *msg), void *ctx) {
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != '\n') continue;
        json_t *m = json_loadb(buf + start, i - start, 0, NULL);
        if (json_is_object(m)) fn(ctx, m);
        json_decref(m);
        start = i + 1;
    }
    return start;
}

int sm_wire_tail(const char *path, uint64_t *offset, void (*fn)(void *ctx, const json_t *msg), void *ctx,
                 sm_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sm_error_set(err, errno == ENOENT ? SM_ERR_NOTFOUND : SM_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    int rc = buf ? SM_OK : SM_ERR_NOMEM;
    uint64_t at = *offset;
    while (rc == SM_OK) {
        if (len == cap) { /* one line longer than the buffer: grow it */
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = SM_ERR_NOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = pread(fd, buf + len, cap - len, (off_t)(at + len));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = sm_error_set(err, SM_ERR_IO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (n == 0) break;
        len += (size_t)n;
        size_t used = sm_wire_lines(buf, len, fn, ctx);
        at += used;
        memmove(buf, buf + used, len - used);
        len -= used;
    }
    *offset = at;
    free(buf);
    close(fd);
    return rc == SM_ERR_NOMEM ? sm_error_set(err, rc, "out of memory reading %s", path) : rc;
}
