/* sm_store.c - workspace folders, the content-addressed object store, directory digests. */
#include "sm_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int sm_mkdirs(const char *path, sm_error *err) {
    /* The common case, on a hot path (every output): the folder or its parent exists already. */
    if (mkdir(path, 0755) == 0 || errno == EEXIST) return SM_OK;
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p) return sm_error_set(err, SM_ERR_ARG, "path too long: %s", path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return sm_error_set(err, SM_ERR_IO, "cannot create folder %s: %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) return sm_error_set(err, SM_ERR_IO, "cannot create folder %s: %s", p, strerror(errno));
    return SM_OK;
}

int sm_workspace_path(const sm_workspace *ws, char *out, size_t cap, const char *fmt, ...) {
    char rel[PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof rel) return SM_ERR_ARG;
    n = snprintf(out, cap, "%s/%s", ws->root, rel);
    return n < 0 || (size_t)n >= cap ? SM_ERR_ARG : SM_OK;
}

int sm_workspace_open(sm_workspace *ws, const char *override, sm_error *err) {
    const char *root = override && *override ? override : getenv("SCALEMIX_HOME");
    if (!root || !*root) root = ".scalemix";
    char abs[PATH_MAX];
    if (root[0] == '/') snprintf(abs, sizeof abs, "%s", root);
    else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) return sm_error_set(err, SM_ERR_IO, "cannot read the current folder: %s", strerror(errno));
        if (snprintf(abs, sizeof abs, "%s/%s", cwd, root) >= (int)sizeof abs) return sm_error_set(err, SM_ERR_ARG, "workspace path too long");
    }
    snprintf(ws->root, sizeof ws->root, "%s", abs);
    static const char *subdirs[] = {"objects", "tmp", "cache", "state", "scratch", "journal"};
    for (size_t i = 0; i < SM_ARRAY_LEN(subdirs); i++) {
        char p[PATH_MAX];
        if (sm_workspace_path(ws, p, sizeof p, "%s", subdirs[i]) != SM_OK) return sm_error_set(err, SM_ERR_ARG, "workspace path too long: %s", abs);
        if (sm_mkdirs(p, err) != SM_OK)
            return sm_error_wrap(err, "workspace %s is not usable (set SCALEMIX_HOME to a writable folder)", abs);
    }
    char probe[PATH_MAX];
    sm_workspace_path(ws, probe, sizeof probe, "tmp/.write-test-%d", (int)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return sm_error_set(err, SM_ERR_IO, "workspace %s is not writable: %s (set SCALEMIX_HOME to a writable folder)", abs, strerror(errno));
    close(fd);
    unlink(probe);
    return SM_OK;
}

int sm_store_tmp_path(const sm_workspace *ws, const char *hint, char *out, size_t cap, sm_error *err) {
    char id[37], clean[48];
    sm_uuid4(id);
    size_t j = 0;
    for (const char *s = hint ? hint : "out"; *s && j < sizeof clean - 1; s++)
        clean[j++] = (*s == '/' || *s == ' ') ? '_' : *s;
    clean[j] = 0;
    if (sm_workspace_path(ws, out, cap, "tmp/%s.%s", id, clean) != SM_OK) return sm_error_set(err, SM_ERR_ARG, "temporary path too long");
    return SM_OK;
}

int sm_store_object_path(const sm_workspace *ws, const char *digest, char *out, size_t cap) {
    return sm_workspace_path(ws, out, cap, "objects/%.2s/%s", digest, digest);
}

int sm_store_has(const sm_workspace *ws, const char *digest, int64_t bytes) {
    char p[PATH_MAX];
    struct stat st;
    if (sm_store_object_path(ws, digest, p, sizeof p) != SM_OK || stat(p, &st) != 0) return 0;
    return bytes < 0 || st.st_size == bytes;
}

static int fsync_path(const char *path, int dir) {
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

int sm_store_commit(const sm_workspace *ws, const char *tmp_path, char digest[65], uint64_t *bytes,
                    char *final_path, size_t final_cap, int durable, sm_error *err) {
    uint64_t n = 0;
    if (sm_sha256_file(tmp_path, digest, &n, err) != SM_OK) return sm_error_wrap(err, "committing an output");
    char dir[PATH_MAX], dst[PATH_MAX];
    sm_workspace_path(ws, dir, sizeof dir, "objects/%.2s", digest);
    if (sm_mkdirs(dir, err) != SM_OK) return err ? err->code : SM_ERR_IO;
    sm_store_object_path(ws, digest, dst, sizeof dst);
    struct stat st;
    char have[65] = "";
    sm_error herr = {0};
    /* identical content already stored, if the stored bytes still hash to it; a rotten copy is replaced */
    if (stat(dst, &st) == 0 && (uint64_t)st.st_size == n && sm_sha256_file(dst, have, NULL, &herr) == SM_OK && !strcmp(have, digest)) {
        unlink(tmp_path);
    } else {
        if (have[0]) sm_log(SM_LOG_WARN, "store: object %s was corrupt (its bytes hash to %.12s); replaced by a fresh copy", dst, have);
        if (durable && fsync_path(tmp_path, 0) != 0)
            return sm_error_set(err, SM_ERR_IO, "cannot fsync %s: %s", tmp_path, strerror(errno));
        chmod(tmp_path, 0444);
        if (rename(tmp_path, dst) != 0) return sm_error_set(err, SM_ERR_IO, "cannot move %s to %s: %s", tmp_path, dst, strerror(errno));
        if (durable) fsync_path(dir, 1);
    }
    if (bytes) *bytes = n;
    if (final_path && snprintf(final_path, final_cap, "%s", dst) >= (int)final_cap)
        return sm_error_set(err, SM_ERR_ARG, "object path too long");
    return SM_OK;
}

int sm_store_verify(const sm_workspace *ws, const char *digest, sm_error *err) {
    char p[PATH_MAX], have[65];
    if (sm_store_object_path(ws, digest, p, sizeof p) != SM_OK) return sm_error_set(err, SM_ERR_ARG, "object path too long");
    if (access(p, F_OK) != 0) return sm_error_set(err, SM_ERR_NOTFOUND, "object %s is missing from the store", digest);
    int rc = sm_sha256_file(p, have, NULL, err);
    if (rc != SM_OK) return rc;
    if (!strcmp(have, digest)) return SM_OK;
    char dir[PATH_MAX], aside[PATH_MAX];
    sm_workspace_path(ws, dir, sizeof dir, "corrupt");
    if (sm_mkdirs(dir, err) != SM_OK) return err ? err->code : SM_ERR_IO;
    /* named by what the bytes now hash to: two different rotten copies never overwrite each other (a name by
     * the second did, when two were set aside within one second) */
    if (sm_workspace_path(ws, aside, sizeof aside, "corrupt/%s.%s", digest, have) != SM_OK || rename(p, aside) != 0)
        return sm_error_set(err, SM_ERR_FORMAT, "object %s is corrupt (its bytes hash to %.12s) and cannot be set aside: %s", p, have,
                            strerror(errno));
    return sm_error_set(err, SM_ERR_FORMAT, "object %s was corrupt (its bytes hash to %.12s); set aside as %s, and the stage that "
                        "made it runs again", digest, have, aside);
}

int sm_store_verify_inputs(const sm_workspace *ws, json_t *inputs, sm_error *err) {
    if (json_is_object(inputs)) {
        const char *d = json_string_value(json_object_get(inputs, "digest"));
        const char *path = json_string_value(json_object_get(inputs, "path"));
        char objects[PATH_MAX];
        sm_workspace_path(ws, objects, sizeof objects, "objects/");
        if (d && path) return strncmp(path, objects, strlen(objects)) ? SM_OK : sm_store_verify(ws, d, err);
        const char *k;
        json_t *v;
        json_object_foreach(inputs, k, v) {
            int rc = sm_store_verify_inputs(ws, v, err);
            if (rc != SM_OK) return rc;
        }
    } else if (json_is_array(inputs)) {
        size_t i;
        json_t *v;
        json_array_foreach(inputs, i, v) {
            int rc = sm_store_verify_inputs(ws, v, err);
            if (rc != SM_OK) return rc;
        }
    }
    return SM_OK;
}

typedef struct dir_entry {
    char *rel;
    char hex[65];
} dir_entry;

typedef struct dir_walk {
    dir_entry *v;
    size_t n, cap;
    uint64_t bytes;
    sm_error *err;
    int rc;
} dir_walk;

static int walk_dir(dir_walk *w, const char *root, const char *rel, int depth) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s%s%s", root, *rel ? "/" : "", rel);
    if (depth > 64) return sm_error_set(w->err, SM_ERR_ARG, "%s: folders nested too deep (a symlink loop?)", path);
    DIR *d = opendir(path);
    if (!d) return sm_error_set(w->err, SM_ERR_IO, "cannot read folder %s: %s", path, strerror(errno));
    struct dirent *e;
    int rc = SM_OK;
    while (rc == SM_OK && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char child_rel[PATH_MAX], child[PATH_MAX];
        if (snprintf(child_rel, sizeof child_rel, "%s%s%s", rel, *rel ? "/" : "", e->d_name) >= (int)sizeof child_rel) {
            rc = sm_error_set(w->err, SM_ERR_ARG, "path too long under %s", root);
            break;
        }
        if (snprintf(child, sizeof child, "%s/%s", root, child_rel) >= (int)sizeof child) {
            rc = sm_error_set(w->err, SM_ERR_ARG, "path too long under %s", root);
            break;
        }
        struct stat st;
        if (stat(child, &st) != 0) {
            rc = sm_error_set(w->err, SM_ERR_IO, "cannot stat %s: %s", child, strerror(errno));
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            rc = walk_dir(w, root, child_rel, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            if (w->n == w->cap) {
                w->cap = w->cap ? 2 * w->cap : 64;
                dir_entry *nv = realloc(w->v, w->cap * sizeof *nv);
                if (!nv) { rc = sm_error_set(w->err, SM_ERR_NOMEM, "out of memory listing %s", root); break; }
                w->v = nv;
            }
            dir_entry *de = &w->v[w->n];
            uint64_t b = 0;
            if ((rc = sm_sha256_file(child, de->hex, &b, w->err)) != SM_OK) break;
            de->rel = strdup(child_rel);
            w->n++;
            w->bytes += b;
        }
    }
    closedir(d);
    return rc;
}

static int cmp_entry(const void *a, const void *b) { return strcmp(((const dir_entry *)a)->rel, ((const dir_entry *)b)->rel); }

int sm_dir_digest(const char *dir, char digest[65], uint64_t *bytes, uint64_t *files, sm_error *err) {
    struct stat st;
    if (stat(dir, &st) != 0) return sm_error_set(err, SM_ERR_NOTFOUND, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return sm_error_set(err, SM_ERR_ARG, "%s is not a folder", dir);
    dir_walk w = {.err = err};
    int rc = walk_dir(&w, dir, "", 0);
    if (rc == SM_OK) {
        qsort(w.v, w.n, sizeof *w.v, cmp_entry);
        sm_sha256_ctx *c = sm_sha256_new();
        for (size_t i = 0; i < w.n; i++) {
            sm_sha256_update(c, w.v[i].rel, strlen(w.v[i].rel));
            sm_sha256_update(c, "\t", 1);
            sm_sha256_update(c, w.v[i].hex, 64);
            sm_sha256_update(c, "\n", 1);
        }
        sm_sha256_final_hex(c, digest);
        if (bytes) *bytes = w.bytes;
        if (files) *files = w.n;
    }
    for (size_t i = 0; i < w.n; i++) free(w.v[i].rel);
    free(w.v);
    return rc;
}

int sm_scratch_lock(const char *dir, void *h, int (*cancelled)(void *h), void (*waiting)(void *h, const char *lock), int *fd,
                    sm_error *err) {
    char lock[PATH_MAX + 8];
    if (snprintf(lock, sizeof lock, "%s.lock", dir) >= (int)sizeof lock) return sm_error_set(err, SM_ERR_ARG, "path too long: %s", dir);
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash) *slash = 0;
    if (slash && sm_mkdirs(parent, err) != SM_OK) return err ? err->code : SM_ERR_IO;
    int f = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0) return sm_error_set(err, SM_ERR_IO, "cannot open the scratch lock %s: %s", lock, strerror(errno));
    for (int said = 0; flock(f, LOCK_EX | LOCK_NB) != 0; said = 1) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            int e = errno;
            close(f);
            return sm_error_set(err, SM_ERR_IO, "cannot lock %s: %s", lock, strerror(e));
        }
        if (!said && waiting) waiting(h, lock);
        if (cancelled && cancelled(h)) {
            close(f);
            return sm_error_set(err, SM_ERR_CANCELLED, "cancelled while waiting for %s", lock);
        }
        nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL);
    }
    if (sm_mkdirs(dir, err) != SM_OK) {
        close(f);
        return err ? err->code : SM_ERR_IO;
    }
    *fd = f;
    return SM_OK;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st; (void)flag; (void)f;
    return remove(p);
}

int sm_remove_tree(const char *path) { return nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

int sm_write_file_atomic(const char *path, const void *data, size_t n, int durable, sm_error *err) {
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return sm_error_set(err, SM_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = n;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return sm_error_set(err, SM_ERR_IO, "cannot write %s: %s", tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if ((durable && fsync(fd) != 0) || close(fd) != 0) {
        unlink(tmp);
        return sm_error_set(err, SM_ERR_IO, "cannot flush %s: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return sm_error_set(err, SM_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
    return SM_OK;
}

int sm_read_file(const char *path, char **data, size_t *n, sm_error *err) {
    FILE *f = fopen(path, "rbe");
    if (!f) return sm_error_set(err, errno == ENOENT ? SM_ERR_NOTFOUND : SM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += r;
        if (cap - len - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) return sm_error_set(err, SM_ERR_NOMEM, "out of memory reading %s", path);
    if (bad) { free(buf); return sm_error_set(err, SM_ERR_IO, "cannot read %s", path); }
    buf[len] = 0;
    *data = buf;
    if (n) *n = len;
    return SM_OK;
}
