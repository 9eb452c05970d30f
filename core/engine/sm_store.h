/* sm_store.h - the workspace and its content-addressed artifact store.
 *
 * Layout of a workspace (./.scalemix or $SCALEMIX_HOME):
 *   objects/ab/<sha256>   artifacts, read-only, named by the sha256 of their bytes
 *   tmp/                  outputs being written (renamed into objects/ when complete)
 *   cache/<key>.json      one entry per completed stage run (its key parts, outputs, result)
 *   state/                what each pipeline's stages last ran with (for `plan` reasons)
 *   scratch/<key>/        per-stage resume state that survives a killed run
 *   corrupt/<digest>.<sha256 of the bytes>  objects whose bytes no longer match their digest, set aside (never reused)
 *   runs/<run_id>.lock    each live run's lease (flock), so that a run whose process died is marked abandoned
 *   journal/, pg/         the lineage store's journal and embedded server */
#ifndef SM_STORE_H
#define SM_STORE_H

#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include "sm_common.h"

typedef struct sm_workspace {
    char root[PATH_MAX];
} sm_workspace;

/* Resolves the workspace (override, else $SCALEMIX_HOME, else ./.scalemix), creates its folders and
 * checks that it is writable; SM_ERR_IO naming the folder and what to do otherwise. */
int sm_workspace_open(sm_workspace *ws, const char *override, sm_error *err);
/* Writes root + "/" + the formatted relative path into out; SM_ERR_ARG if it does not fit. */
int sm_workspace_path(const sm_workspace *ws, char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* A new unique path under tmp/ (the file is not created); hint is kept in the name for humans. */
int sm_store_tmp_path(const sm_workspace *ws, const char *hint, char *out, size_t cap, sm_error *err);
/* Hashes tmp_path and renames it to objects/<ab>/<digest> (read-only); durable = 1 fsyncs the file and the
 * folder first (outputs of real work), 0 skips that (small records whose loss a size check catches and a
 * re-run repairs). If an intact object with that digest exists, tmp_path is removed; a corrupt one is
 * replaced by the new copy. Fills digest, bytes, final path. */
int sm_store_commit(const sm_workspace *ws, const char *tmp_path, char digest[65], uint64_t *bytes,
                    char *final_path, size_t final_cap, int durable, sm_error *err);
/* Objects up to this size are hashed each time a cached result that names them is reused. */
#define SM_STORE_VERIFY_ON_REUSE_BYTES (64ull << 20)

/* Hashes the object with this digest: SM_OK if its bytes match; SM_ERR_NOTFOUND if absent; SM_ERR_FORMAT if
 * they do not, after moving it to corrupt/ (so that whatever names it is rebuilt), err saying so. */
int sm_store_verify(const sm_workspace *ws, const char *digest, sm_error *err);
/* Verifies every store object among a stage's inputs (a JSON object of artifact references, nested in
 * tables or lists; files outside objects/ are skipped): the first failure of sm_store_verify, else SM_OK. */
int sm_store_verify_inputs(const sm_workspace *ws, json_t *inputs, sm_error *err);

/* Path of the object with this digest (whether or not it exists). */
int sm_store_object_path(const sm_workspace *ws, const char *digest, char *out, size_t cap);
/* 1 if the object exists with the given size (bytes < 0: any size), else 0. */
int sm_store_has(const sm_workspace *ws, const char *digest, int64_t bytes);

/* Digest of a directory tree: sha256 over the sorted lines "relative/path\t<sha256 of file>\n" of every
 * regular file below dir (symlinks followed, hidden files included). Fills total bytes and file count. */
int sm_dir_digest(const char *dir, char digest[65], uint64_t *bytes, uint64_t *files, sm_error *err);

/* Takes the lock of a scratch folder (flock on "<dir>.lock", released when *fd is closed or the process
 * dies) and creates the folder, so that two runs of the same stage never share a live scratch folder. While
 * another process holds it, calls waiting(h) once and polls every 200 ms; SM_ERR_CANCELLED as soon as
 * cancelled(h) says so. */
int sm_scratch_lock(const char *dir, void *h, int (*cancelled)(void *h), void (*waiting)(void *h, const char *lock), int *fd,
                    sm_error *err);

/* mkdir -p. */
int sm_mkdirs(const char *path, sm_error *err);
/* rm -rf (used for scratch folders only). */
int sm_remove_tree(const char *path);
/* Writes data to path atomically: a temporary sibling, then rename, so readers never see a partial file
 * even if the process is killed. durable = 1 also fsyncs before the rename (survives power loss); small
 * metadata whose loss only costs a re-run (cache entries) skips that. */
int sm_write_file_atomic(const char *path, const void *data, size_t n, int durable, sm_error *err);
/* Reads a whole file (NUL-terminated, *n without the NUL); caller frees. */
int sm_read_file(const char *path, char **data, size_t *n, sm_error *err);

#endif
