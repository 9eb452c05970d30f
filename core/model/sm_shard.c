/* sm_shard.c - reading (mmap, validated) and writing llm.c token shards. */
#include "sm_shard.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int sm_shard_open(sm_shard *s, const char *path, sm_error *err) {
    memset(s, 0, sizeof *s);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sm_error_set(err, SM_ERR_IO, "cannot open shard %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return sm_error_set(err, SM_ERR_IO, "cannot stat shard %s: %s", path, strerror(e));
    }
    if (st.st_size < SM_SHARD_HEADER_BYTES) {
        close(fd);
        return sm_error_set(err, SM_ERR_FORMAT, "%s: %lld bytes is shorter than the 1024-byte shard header (truncated or not a shard)",
                            path, (long long)st.st_size);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return sm_error_set(err, SM_ERR_IO, "cannot map shard %s: %s", path, strerror(errno));
    const int32_t *h = map;
    int token_bytes;
    if (h[0] == SM_SHARD_MAGIC && h[1] == SM_SHARD_VERSION) token_bytes = 2;
    else if (h[0] == SM_SHARD_MAGIC_U32 && h[1] == SM_SHARD_VERSION_U32) token_bytes = 4;
    else {
        int32_t magic = h[0], version = h[1]; /* read before the unmap */
        munmap(map, (size_t)st.st_size);
        return sm_error_set(err, SM_ERR_FORMAT, "%s: not an llm.c token shard (magic %d version %d; want %d/%d or %d/%d)",
                            path, magic, version, SM_SHARD_MAGIC, SM_SHARD_VERSION, SM_SHARD_MAGIC_U32, SM_SHARD_VERSION_U32);
    }
    uint64_t ntok = (uint32_t)h[2];
    uint64_t want = SM_SHARD_HEADER_BYTES + ntok * (uint64_t)token_bytes;
    if ((uint64_t)st.st_size != want) {
        munmap(map, (size_t)st.st_size);
        return sm_error_set(err, SM_ERR_FORMAT, "%s: header says %llu tokens (%llu bytes) but the file has %lld bytes (truncated or corrupt)",
                            path, (unsigned long long)ntok, (unsigned long long)want, (long long)st.st_size);
    }
    s->map = map;
    s->map_bytes = (size_t)st.st_size;
    s->ntokens = ntok;
    s->token_bytes = token_bytes;
    s->tokens = (const char *)map + SM_SHARD_HEADER_BYTES;
    return SM_OK;
}

void sm_shard_close(sm_shard *s) {
    if (s->map) munmap(s->map, s->map_bytes);
    memset(s, 0, sizeof *s);
}

int sm_shard_writer_open(sm_shard_writer *w, const char *path, sm_error *err) {
    memset(w, 0, sizeof *w);
    if (strlen(path) >= sizeof w->path) return sm_error_set(err, SM_ERR_ARG, "shard path too long: %s", path);
    strcpy(w->path, path);
    w->f = fopen(path, "wbe");
    if (!w->f) return sm_error_set(err, SM_ERR_IO, "cannot create shard %s: %s", path, strerror(errno));
    static const int32_t zero[256];
    if (fwrite(zero, sizeof zero, 1, w->f) != 1) {
        int e = errno;
        sm_shard_writer_abort(w);
        return sm_error_set(err, SM_ERR_IO, "cannot write shard %s: %s", path, strerror(e));
    }
    return SM_OK;
}

int sm_shard_writer_append(sm_shard_writer *w, const uint32_t *tokens, size_t n, sm_error *err) {
    uint16_t buf[4096];
    size_t done = 0;
    while (done < n) {
        size_t k = n - done < 4096 ? n - done : 4096;
        for (size_t i = 0; i < k; i++) {
            uint32_t t = tokens[done + i];
            if (t > 0xffff) return sm_error_set(err, SM_ERR_ARG, "token %u does not fit a uint16 shard (%s)", t, w->path);
            buf[i] = (uint16_t)t; /* x86-64 is little-endian, as the format requires */
        }
        if (fwrite(buf, 2, k, w->f) != k) return sm_error_set(err, SM_ERR_IO, "cannot write shard %s: %s", w->path, strerror(errno));
        done += k;
    }
    w->ntokens += n;
    if (w->ntokens > INT32_MAX) return sm_error_set(err, SM_ERR_ARG, "shard %s exceeds %d tokens; split it", w->path, INT32_MAX);
    return SM_OK;
}

int sm_shard_writer_close(sm_shard_writer *w, sm_error *err) {
    int32_t header[256] = {SM_SHARD_MAGIC, SM_SHARD_VERSION, (int32_t)w->ntokens};
    int ok = fseek(w->f, 0, SEEK_SET) == 0 && fwrite(header, sizeof header, 1, w->f) == 1 && fflush(w->f) == 0 &&
             fsync(fileno(w->f)) == 0;
    int e = errno;
    if (fclose(w->f) != 0) ok = 0;
    w->f = NULL;
    if (!ok) {
        unlink(w->path);
        return sm_error_set(err, SM_ERR_IO, "cannot finish shard %s: %s", w->path, strerror(e));
    }
    return SM_OK;
}

void sm_shard_writer_abort(sm_shard_writer *w) {
    if (w->f) fclose(w->f);
    w->f = NULL;
    unlink(w->path);
}
