/* tokenize.c - the "tokenize" stage: raw text per domain in, GPT-2 token shards (llm.c format) per
 * domain out, with the counts the mixture arithmetic needs.
 *
 * Inputs: {"domains": {"<domain>": ref | [ref, ...]}}, each ref {"path": ...} a directory (walked
 * recursively; files taken in byte order of their relative paths) or a single file.
 * Files: .txt / .jsonl, each optionally .gz or .zst (see core/tok/sm_tok_docs.h for the conventions):
 *   - .txt: documents are separated by a line holding only a form feed ("\f"); a file without such a
 *     line is one document (so "one file per document" needs no separator).
 *   - .jsonl: the string field "text" of each line; a malformed line is a warning naming file:line
 *     and skipped, or fails the stage with on_bad_line = "fail".
 *   - a file with a NUL byte in its first 64 KiB is binary: skipped whole, with a warning, and listed
 *     in skipped_files; files with other extensions and hidden files (".name") are listed there too.
 *   - a document (a .jsonl line) larger than max_doc_bytes is skipped with a warning, never buffered,
 *     so a 100 MB single line costs no more memory than max_doc_bytes.
 * Per domain: exact duplicate documents (same sha256 of the text) are dropped, the first occurrence in
 * file order kept; a document goes to validation iff the first 8 bytes of its sha256, read as a
 * fraction of 2^64, are below val_fraction, so the split depends on the text alone. Every document is
 * written as 50256 followed by its tokens; token counts include that delimiter.
 * Outputs: "train/<domain>/NNNN" and "val/<domain>/NNNN" shards (a new shard before one would pass
 * 100M tokens; both sides always have shard 0000, possibly empty) and "manifest" (JSON).
 * Threads: one reader (this thread) decompresses files and cuts them into 1 MiB batches of documents
 * (.txt) or raw lines (.jsonl); api->threads(h) workers parse JSON, hash and tokenize batches; batches
 * are written strictly in reading order, so the output is byte-identical for any thread count, and with
 * on_bad_line = "fail" the error names the first malformed line in file order. */
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/sm_shard.h"
#include "sm_plugin.h"
#include "tok/sm_tok.h"
#include "tok/sm_tok_docs.h"

#define STAGE "tokenize"
#define SHARD_MAX_TOKENS 100000000ull
#define BATCH_BYTES (1u << 20)
#define INFLIGHT_BYTES (256ull << 20)

static const char schema[] =
    "{\"val_fraction\": {\"type\": \"number\", \"default\": 0.02,"
    "   \"doc\": \"fraction of documents (by hash of their text) that go to the validation shards\"},"
    " \"allow_special\": {\"type\": \"boolean\", \"default\": false,"
    "   \"doc\": \"encode <|endoftext|> in the text as token 50256 instead of as ordinary text\"},"
    " \"on_bad_line\": {\"type\": \"string\", \"default\": \"skip\","
    "   \"doc\": \"a malformed JSONL line: skip (with a warning naming file:line) or fail\"},"
    " \"max_doc_bytes\": {\"type\": \"integer\", \"default\": 67108864,"
    "   \"doc\": \"documents (JSONL lines) larger than this are skipped with a warning\"},"
    " \"vocab\": {\"type\": \"string\", \"default\": \"\","
    "   \"doc\": \"GPT-2 vocab.bpe; empty: $SCALEMIX_VOCAB or the build's vocab/vocab.bpe\"}}";

typedef struct file_ent {
    char *path, *rel;
    uint64_t size;
} file_ent;

typedef struct shard_out {
    sm_shard_writer w;
    int open, index;
    char name[512];
    json_t *list; /* [{name, digest, tokens}] */
} shard_out;

typedef struct domain {
    char *name;
    file_ent *files;
    size_t nfiles, fcap;
    uint64_t documents, bytes, duplicates, skipped_docs, tokens[2];
    json_t *skipped_files, *file_digests;
    shard_out out[2]; /* 0 train, 1 val */
    uint8_t (*seen)[16]; /* dedup set: first 16 bytes of sha256; all-zero = empty */
    size_t seen_n, seen_cap;
} domain;

typedef struct batch {
    uint64_t seq;
    int dom;
    char *text;
    size_t len, cap;
    size_t *doc_off; /* ndocs + 1 offsets into text */
    size_t ndocs, doc_cap;
    /* per document: a raw JSONL line (parsed by the worker) or text; where it came from */
    struct doc_meta {
        const char *path;
        uint64_t line;
        size_t text_len; /* bytes of text tokenized (the JSONL "text" field, not the line) */
        uint8_t is_json;
    } *meta;
    uint64_t bad_lines;
    char *fail_msg; /* on_bad_line = fail: the first malformed line, raised when the batch is written */
    sm_tok_ids ids;
    size_t *tok_off; /* ndocs + 1 offsets into ids */
    uint8_t (*hash)[32];
    int done;
    struct batch *next_todo, *next_flight;
} batch;

typedef struct job {
    const sm_host_api *api;
    sm_host *h;
    const sm_tok *tok;
    double val_fraction;
    int allow_special, fail_bad_lines, nthreads;
    size_t max_doc;
    domain *doms;
    size_t ndoms;
    /* pipeline state, under mu */
    pthread_mutex_t mu, wmu;
    pthread_cond_t cv_todo, cv_space;
    batch *todo_head, *todo_tail;     /* waiting for a worker */
    batch *flight_head, *flight_tail; /* every batch not yet written, in seq order */
    size_t inflight, inflight_bytes;
    int reader_done, stop;
    uint64_t next_seq;
    /* first error wins */
    int rc;
    sm_error err;
} job;

static void fail_job(job *j, int rc, const sm_error *e) {
    pthread_mutex_lock(&j->mu);
    if (j->rc == SM_OK) {
        j->rc = rc;
        if (e) j->err = *e;
    }
    j->stop = 1;
    pthread_cond_broadcast(&j->cv_todo);
    pthread_cond_broadcast(&j->cv_space);
    pthread_mutex_unlock(&j->mu);
}

static void batch_free(batch *b) {
    if (!b) return;
    free(b->text);
    free(b->doc_off);
    free(b->meta);
    free(b->fail_msg);
    sm_tok_ids_free(&b->ids);
    free(b->tok_off);
    free(b->hash);
    free(b);
}

/* ---------- dedup set ---------- */

static int seen_insert(domain *d, const uint8_t hash[32]) {
    uint8_t key[16];
    memcpy(key, hash, 16);
    static const uint8_t zero[16];
    if (!memcmp(key, zero, 16)) key[15] = 1; /* keep all-zero as the empty mark */
    if ((d->seen_n + 1) * 2 > d->seen_cap) {
        size_t nc = d->seen_cap ? d->seen_cap * 2 : 1024;
        uint8_t(*ns)[16] = calloc(nc, 16);
        if (!ns) return -1;
        for (size_t i = 0; i < d->seen_cap; i++) {
            if (!memcmp(d->seen[i], zero, 16)) continue;
            uint64_t h;
            memcpy(&h, d->seen[i], 8);
            size_t s = h & (nc - 1);
            while (memcmp(ns[s], zero, 16)) s = (s + 1) & (nc - 1);
            memcpy(ns[s], d->seen[i], 16);
        }
        free(d->seen);
        d->seen = ns;
        d->seen_cap = nc;
    }
    uint64_t h;
    memcpy(&h, key, 8);
    size_t s = h & (d->seen_cap - 1);
    while (memcmp(d->seen[s], zero, 16)) {
        if (!memcmp(d->seen[s], key, 16)) return 0;
        s = (s + 1) & (d->seen_cap - 1);
    }
    memcpy(d->seen[s], key, 16);
    d->seen_n++;
    return 1;
}

/* ---------- writing (in seq order, under wmu) ---------- */

static int shard_start(job *j, domain *d, int side, sm_error *err) {
    shard_out *o = &d->out[side];
    char path[4096];
    snprintf(o->name, sizeof o->name, "%s/%s/%04d", side ? "val" : "train", d->name, o->index);
    int rc = j->api->output_path(j->h, o->name, path, sizeof path);
    if (rc != SM_OK) return sm_error_set(err, rc, STAGE ": no output path for %s (%s)", o->name, sm_error_name(rc));
    if ((rc = sm_shard_writer_open(&o->w, path, err)) != SM_OK) return rc;
    o->open = 1;
    return SM_OK;
}

static int shard_finish(job *j, domain *d, int side, sm_error *err) {
    shard_out *o = &d->out[side];
    uint64_t ntok = o->w.ntokens;
    char path[4096];
    snprintf(path, sizeof path, "%s", o->w.path);
    o->open = 0;
    int rc = sm_shard_writer_close(&o->w, err);
    if (rc != SM_OK) return rc;
    char meta[1024], digest[65];
    snprintf(meta, sizeof meta, "{\"domain\": \"%s\", \"split\": \"%s\", \"tokens\": %llu, \"index\": %d}", d->name,
             side ? "val" : "train", (unsigned long long)ntok, o->index);
    rc = j->api->output_commit(j->h, o->name, path, "shard", meta, digest);
    if (rc != SM_OK) {
        unlink(path);
        return sm_error_set(err, rc, STAGE ": committing %s failed (%s)", o->name, sm_error_name(rc));
    }
    json_array_append_new(o->list, json_pack("{s:s, s:s, s:I}", "name", o->name, "digest", digest, "tokens", (json_int_t)ntok));
    o->index++;
    return SM_OK;
}

static int write_batch(job *j, batch *b, sm_error *err) {
    domain *d = &j->doms[b->dom];
    d->skipped_docs += b->bad_lines;
    for (size_t i = 0; i < b->ndocs; i++) {
        if (b->tok_off[i + 1] == b->tok_off[i]) continue; /* skipped: a tokenized document starts with EOT */
        int fresh = seen_insert(d, b->hash[i]);
        if (fresh < 0) return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory in the duplicate set of %s", d->name);
        if (!fresh) { d->duplicates++; continue; }
        uint64_t u = 0;
        for (int k = 0; k < 8; k++) u = (u << 8) | b->hash[i][k];
        int side = (double)(u >> 11) * (1.0 / 9007199254740992.0) < j->val_fraction;
        size_t n = b->tok_off[i + 1] - b->tok_off[i];
        shard_out *o = &d->out[side];
        int rc;
        if (o->open && o->w.ntokens > 0 && o->w.ntokens + n > SHARD_MAX_TOKENS && (rc = shard_finish(j, d, side, err))) return rc;
        if (!o->open && (rc = shard_start(j, d, side, err))) return rc;
        if ((rc = sm_shard_writer_append(&o->w, b->ids.ids + b->tok_off[i], n, err))) return rc;
        d->tokens[side] += n;
        d->documents++;
        d->bytes += b->meta[i].text_len;
    }
    if (b->fail_msg) return sm_error_set(err, SM_ERR_FORMAT, "%s", b->fail_msg);
    return SM_OK;
}

/* Writes every finished batch at the head of the flight list. Any thread may call it. */
static void drain(job *j) {
    pthread_mutex_lock(&j->wmu);
    for (;;) {
        pthread_mutex_lock(&j->mu);
        batch *b = j->flight_head;
        int ok = b && b->done && !j->stop;
        if (ok) {
            j->flight_head = b->next_flight;
            if (!j->flight_head) j->flight_tail = NULL;
        }
        pthread_mutex_unlock(&j->mu);
        if (!ok) break;
        sm_error e = {0};
        int rc = write_batch(j, b, &e);
        pthread_mutex_lock(&j->mu);
        j->inflight--;
        j->inflight_bytes -= b->len;
        pthread_cond_broadcast(&j->cv_space);
        pthread_mutex_unlock(&j->mu);
        batch_free(b);
        if (rc != SM_OK) { fail_job(j, rc, &e); break; }
    }
    pthread_mutex_unlock(&j->wmu);
}

/* ---------- workers ---------- */

static inline int hexval(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

typedef struct worker_buf {
    char *text;
    size_t cap;
} worker_buf;

static int tokenize_batch(job *j, sm_tok_enc *enc, worker_buf *wb, batch *b, sm_error *err) {
    b->tok_off = malloc((b->ndocs + 1) * sizeof *b->tok_off);
    b->hash = malloc((b->ndocs ? b->ndocs : 1) * sizeof *b->hash);
    if (!b->tok_off || !b->hash) return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
    for (size_t i = 0; i < b->ndocs; i++) {
        const char *t = b->text + b->doc_off[i];
        size_t n = b->doc_off[i + 1] - b->doc_off[i];
        b->tok_off[i] = b->ids.n;
        const struct doc_meta *dm = &b->meta[i];
        if (dm->is_json && !b->fail_msg) {
            char why[256];
            size_t tl = 0;
            int r = sm_tok_jsonl_text(t, n, &wb->text, &wb->cap, &tl, why, sizeof why);
            if (r < 0) return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory parsing %s", dm->path);
            if (r == 0) {
                b->bad_lines++;
                char *msg = sm_tok_bad_line_msg(dm->path, dm->line, why, j->fail_bad_lines);
                if (!msg) return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
                if (j->fail_bad_lines) b->fail_msg = msg;
                else {
                    j->api->log(j->h, SM_LOG_WARN, "%s", msg);
                    free(msg);
                }
                continue;
            }
            t = wb->text;
            n = tl;
        } else if (dm->is_json) continue; /* after a fatal bad line nothing more is written */
        if (n == 0) continue;
        if (memchr(t, 0, n)) continue; /* JSON cannot carry NUL without \u0000, which is refused; text checked by the reader */
        b->meta[i].text_len = n;
        char hex[65];
        sm_sha256_hex(t, n, hex);
        for (int k = 0; k < 32; k++) b->hash[i][k] = (uint8_t)(hexval(hex[2 * k]) << 4 | hexval(hex[2 * k + 1]));
        if (b->ids.n == b->ids.cap) {
            size_t nc = b->ids.cap ? b->ids.cap * 2 : 4096;
            uint32_t *ni = realloc(b->ids.ids, nc * sizeof *ni);
            if (!ni) return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
            b->ids.ids = ni;
            b->ids.cap = nc;
        }
        b->ids.ids[b->ids.n++] = SM_TOK_EOT;
        int rc = sm_tok_encode(enc, t, n, j->allow_special, &b->ids, err);
        if (rc != SM_OK) return rc;
    }
    b->tok_off[b->ndocs] = b->ids.n;
    return SM_OK;
}

static void *worker_main(void *arg) {
    job *j = arg;
    sm_tok_enc *enc = sm_tok_enc_new(j->tok);
    worker_buf wb = {0};
    if (!enc) {
        sm_error e;
        sm_error_set(&e, SM_ERR_NOMEM, STAGE ": out of memory creating an encoder");
        fail_job(j, SM_ERR_NOMEM, &e);
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&j->mu);
        while (!j->todo_head && !j->reader_done && !j->stop) pthread_cond_wait(&j->cv_todo, &j->mu);
        batch *b = j->stop ? NULL : j->todo_head;
        if (b) {
            j->todo_head = b->next_todo;
            if (!j->todo_head) j->todo_tail = NULL;
        }
        pthread_mutex_unlock(&j->mu);
        if (!b) break;
        sm_error e = {0};
        int rc = tokenize_batch(j, enc, &wb, b, &e);
        if (rc != SM_OK) { fail_job(j, rc, &e); break; }
        pthread_mutex_lock(&j->mu);
        b->done = 1;
        pthread_mutex_unlock(&j->mu);
        drain(j);
    }
    sm_tok_enc_free(enc);
    free(wb.text);
    return NULL;
}

/* ---------- reader ---------- */

static int submit(job *j, batch *b) {
    pthread_mutex_lock(&j->mu);
    while (!j->stop && (j->inflight >= (size_t)(2 * j->nthreads + 2) || (j->inflight > 0 && j->inflight_bytes + b->len > INFLIGHT_BYTES)))
        pthread_cond_wait(&j->cv_space, &j->mu);
    if (j->stop) {
        pthread_mutex_unlock(&j->mu);
        batch_free(b);
        return -1;
    }
    b->seq = j->next_seq++;
    j->inflight++;
    j->inflight_bytes += b->len;
    if (j->todo_tail) j->todo_tail->next_todo = b;
    else j->todo_head = b;
    j->todo_tail = b;
    if (j->flight_tail) j->flight_tail->next_flight = b;
    else j->flight_head = b;
    j->flight_tail = b;
    pthread_cond_signal(&j->cv_todo);
    pthread_mutex_unlock(&j->mu);
    return 0;
}

static int batch_add(batch *b, const char *text, size_t n, int is_json, const char *path, uint64_t line) {
    if (b->ndocs + 2 > b->doc_cap) {
        size_t nc = b->doc_cap ? b->doc_cap * 2 : 256;
        size_t *no = realloc(b->doc_off, nc * sizeof *no);
        if (no) b->doc_off = no;
        struct doc_meta *nm = realloc(b->meta, nc * sizeof *nm);
        if (nm) b->meta = nm;
        if (!no || !nm) return -1;
        b->doc_cap = nc;
    }
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap : BATCH_BYTES;
        while (nc < b->len + n) nc *= 2;
        char *nt = realloc(b->text, nc);
        if (!nt) return -1;
        b->text = nt;
        b->cap = nc;
    }
    if (b->ndocs == 0) b->doc_off[0] = 0;
    memcpy(b->text + b->len, text, n);
    b->len += n;
    b->meta[b->ndocs] = (struct doc_meta){.path = path, .line = line, .is_json = (uint8_t)is_json};
    b->doc_off[++b->ndocs] = b->len;
    return 0;
}

typedef struct warn_ctx {
    job *j;
} warn_ctx;

static void on_warn(void *ctx, const char *msg) {
    warn_ctx *w = ctx;
    w->j->api->log(w->j->h, SM_LOG_WARN, "%s", msg);
}

static int skip_file(job *j, domain *d, const file_ent *f, const char *why) {
    j->api->log(j->h, SM_LOG_WARN, "%s: skipped (%s)", f->path, why);
    json_array_append_new(d->skipped_files, json_string(f->rel));
    return SM_OK;
}

/* Reads every file of the job; returns SM_OK or an error (filled in j->err by the caller). */
static int read_all(job *j, sm_error *err) {
    uint64_t total = 0, done = 0;
    for (size_t di = 0; di < j->ndoms; di++)
        for (size_t fi = 0; fi < j->doms[di].nfiles; fi++) total += j->doms[di].files[fi].size;
    warn_ctx wc = {j};
    for (size_t di = 0; di < j->ndoms; di++) {
        domain *d = &j->doms[di];
        batch *b = NULL;
        for (size_t fi = 0; fi < d->nfiles; fi++) {
            file_ent *f = &d->files[fi];
            if (j->api->cancelled(j->h)) { batch_free(b); return sm_error_set(err, SM_ERR_CANCELLED, STAGE ": cancelled"); }
            if (!sm_tok_docs_format(f->rel, NULL)) {
                char hex[65];
                int rc = sm_sha256_file(f->path, hex, NULL, err);
                if (rc != SM_OK) { batch_free(b); return rc; }
                json_object_set_new(d->file_digests, f->rel, json_pack("{s:s, s:I}", "sha256", hex, "bytes", (json_int_t)f->size));
                skip_file(j, d, f, "not .txt/.jsonl[.gz|.zst]");
                done += f->size;
                continue;
            }
            sm_tok_docs *r;
            int rc = sm_tok_docs_open(&r, f->path, j->max_doc, j->fail_bad_lines, on_warn, &wc, err);
            if (rc != SM_OK) { batch_free(b); return rc; }
            if (sm_tok_docs_binary(r)) skip_file(j, d, f, "binary: NUL bytes in its first 64 KiB");
            else {
                const char *text;
                size_t n;
                uint64_t line = 0;
                /* JSONL lines are parsed by the workers (JSON decoding costs about as much as tokenizing) */
                int is_json = sm_tok_docs_format(f->rel, NULL) == SM_TOK_DOCS_JSONL;
                while ((rc = is_json ? sm_tok_docs_next_line(r, &text, &n, &line, err) : sm_tok_docs_next(r, &text, &n, err)) == 1) {
                    if (b && b->len > 0 && b->len + n > BATCH_BYTES) {
                        if (submit(j, b)) { sm_tok_docs_close(r); return SM_OK; }
                        b = NULL;
                        j->api->progress(j->h, (double)(done + sm_tok_docs_raw_bytes(r)), (double)total, "bytes");
                        if (j->api->cancelled(j->h)) {
                            sm_tok_docs_close(r);
                            return sm_error_set(err, SM_ERR_CANCELLED, STAGE ": cancelled");
                        }
                    }
                    if (!b && !(b = calloc(1, sizeof *b))) rc = SM_ERR_NOMEM;
                    else {
                        b->dom = (int)di;
                        if (batch_add(b, text, n, is_json, f->path, line)) rc = SM_ERR_NOMEM;
                    }
                    if (rc == SM_ERR_NOMEM) {
                        sm_tok_docs_close(r);
                        batch_free(b);
                        return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory reading %s", f->path);
                    }
                }
                if (rc < 0) { sm_tok_docs_close(r); batch_free(b); return rc; }
                d->skipped_docs += sm_tok_docs_skipped(r);
            }
            char hex[65];
            rc = sm_tok_docs_digest(r, hex, err);
            done += sm_tok_docs_raw_bytes(r);
            sm_tok_docs_close(r);
            if (rc != SM_OK) { batch_free(b); return rc; }
            json_object_set_new(d->file_digests, f->rel, json_pack("{s:s, s:I}", "sha256", hex, "bytes", (json_int_t)f->size));
            j->api->progress(j->h, (double)done, (double)total, "bytes");
        }
        if (b && submit(j, b)) return SM_OK;
    }
    return SM_OK;
}

/* ---------- inputs ---------- */

static int add_file(domain *d, const char *path, const char *rel, uint64_t size) {
    if (d->nfiles == d->fcap) {
        size_t nc = d->fcap ? d->fcap * 2 : 16;
        file_ent *nf = realloc(d->files, nc * sizeof *nf);
        if (!nf) return -1;
        d->files = nf;
        d->fcap = nc;
    }
    d->files[d->nfiles].path = strdup(path);
    d->files[d->nfiles].rel = strdup(rel);
    d->files[d->nfiles].size = size;
    if (!d->files[d->nfiles].path || !d->files[d->nfiles].rel) return -1;
    d->nfiles++;
    return 0;
}

static int walk(domain *d, const char *dir, const char *rel, int depth, sm_error *err) {
    if (depth > 64) return sm_error_set(err, SM_ERR_ARG, STAGE ": %s: directories nested deeper than 64 (a symlink loop?)", dir);
    DIR *dh = opendir(dir);
    if (!dh) return sm_error_set(err, SM_ERR_IO, STAGE ": cannot read directory %s of domain %s", dir, d->name);
    struct dirent *de;
    int rc = SM_OK;
    while ((de = readdir(dh))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char path[4096], r[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= sizeof path ||
            (size_t)snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "", de->d_name) >= sizeof r) {
            rc = sm_error_set(err, SM_ERR_ARG, STAGE ": path too long under %s", dir);
            break;
        }
        struct stat st;
        if (stat(path, &st) != 0) { rc = sm_error_set(err, SM_ERR_IO, STAGE ": cannot stat %s", path); break; }
        if (S_ISDIR(st.st_mode)) {
            if (de->d_name[0] == '.') continue;
            if ((rc = walk(d, path, r, depth + 1, err))) break;
        } else if (S_ISREG(st.st_mode)) {
            if (add_file(d, path, r, (uint64_t)st.st_size)) { rc = sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory"); break; }
        }
    }
    closedir(dh);
    return rc;
}

static int cmp_file(const void *a, const void *b) { return strcmp(((const file_ent *)a)->rel, ((const file_ent *)b)->rel); }

static int valid_domain_name(const char *s) {
    if (!*s || *s == '.' || strlen(s) > 200) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' || *s == '.')) return 0;
    return 1;
}

static int add_ref(domain *d, json_t *ref, sm_error *err) {
    const char *path = json_string_value(json_object_get(ref, "path"));
    if (!path) return sm_error_set(err, SM_ERR_ARG, STAGE ": input of domain %s has no \"path\"", d->name);
    struct stat st;
    if (stat(path, &st) != 0) return sm_error_set(err, SM_ERR_IO, STAGE ": input %s of domain %s does not exist", path, d->name);
    if (S_ISDIR(st.st_mode)) return walk(d, path, "", 0, err);
    const char *base = strrchr(path, '/');
    if (add_file(d, path, base ? base + 1 : path, (uint64_t)st.st_size)) return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
    return SM_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static int load_inputs(job *j, const char *inputs_json, sm_error *err) {
    json_error_t je;
    json_t *in = json_loads(inputs_json ? inputs_json : "", 0, &je);
    json_t *doms = json_object_get(in, "domains");
    int rc = SM_OK;
    if (!json_is_object(doms) || json_object_size(doms) == 0) {
        json_decref(in);
        return sm_error_set(err, SM_ERR_ARG, STAGE ": inputs need {\"domains\": {\"<domain>\": <directory artifact>, ...}} with at least one domain");
    }
    size_t n = json_object_size(doms);
    j->doms = calloc(n, sizeof *j->doms);
    const char **names = calloc(n, sizeof *names);
    if (!j->doms || !names) {
        free(names);
        json_decref(in);
        return sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory");
    }
    /* domains in name order, so the output does not depend on how the script built the table */
    const char *key;
    json_t *val;
    size_t k = 0;
    json_object_foreach(doms, key, val) names[k++] = key;
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && rc == SM_OK; i++) {
        domain *d = &j->doms[i];
        j->ndoms++;
        d->name = strdup(names[i]);
        d->skipped_files = json_array();
        d->file_digests = json_object();
        d->out[0].list = json_array();
        d->out[1].list = json_array();
        if (!d->name) { rc = sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory"); break; }
        if (!valid_domain_name(d->name)) {
            /* quoted as JSON, so that a newline or a control character in a folder's name shows as such */
            json_t *js = json_string(d->name); /* NULL for invalid UTF-8: then the name as it is */
            char *q = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
            json_decref(js);
            rc = sm_error_set(err, SM_ERR_ARG, STAGE ": domain name %s%s%s must be letters, digits, '_', '-' or '.' (it names output files)",
                              q ? "" : "\"", q ? q : d->name, q ? "" : "\"");
            free(q);
            break;
        }
        json_t *v = json_object_get(doms, names[i]);
        if (json_is_array(v)) {
            size_t ai;
            json_t *ref;
            json_array_foreach(v, ai, ref) if ((rc = add_ref(d, ref, err))) break;
        } else if (json_is_object(v)) rc = add_ref(d, v, err);
        else rc = sm_error_set(err, SM_ERR_ARG, STAGE ": input of domain %s is not an artifact reference or a list of them", d->name);
        if (rc) break;
        qsort(d->files, d->nfiles, sizeof *d->files, cmp_file);
        size_t usable = 0;
        for (size_t fi = 0; fi < d->nfiles; fi++) usable += sm_tok_docs_format(d->files[fi].rel, NULL) != 0;
        if (!usable) rc = sm_error_set(err, SM_ERR_ARG, STAGE ": domain %s has no documents: no .txt/.jsonl (.gz/.zst) file under its input", d->name);
    }
    free(names);
    json_decref(in);
    return rc;
}

static void job_free(job *j) {
    for (size_t i = 0; i < j->ndoms; i++) {
        domain *d = &j->doms[i];
        for (size_t f = 0; f < d->nfiles; f++) {
            free(d->files[f].path);
            free(d->files[f].rel);
        }
        for (int s = 0; s < 2; s++) {
            if (d->out[s].open) sm_shard_writer_abort(&d->out[s].w);
            json_decref(d->out[s].list);
        }
        free(d->files);
        free(d->name);
        free(d->seen);
        json_decref(d->skipped_files);
        json_decref(d->file_digests);
    }
    free(j->doms);
    for (batch *b = j->flight_head, *nb; b; b = nb) {
        nb = b->next_flight;
        batch_free(b);
    }
}

/* ---------- params, results ---------- */

static int parse_params(job *j, const char *params_json, const char **vocab, json_t **params, sm_error *err) {
    json_error_t je;
    json_t *p = json_loads(params_json && *params_json ? params_json : "{}", 0, &je);
    if (!json_is_object(p)) {
        json_decref(p);
        return sm_error_set(err, SM_ERR_ARG, STAGE ": parameters are not a JSON object (%s)", je.text);
    }
    *params = p;
    json_t *v;
    j->val_fraction = 0.02;
    if ((v = json_object_get(p, "val_fraction"))) {
        if (!json_is_number(v)) return sm_error_set(err, SM_ERR_ARG, STAGE ": val_fraction must be a number");
        j->val_fraction = json_number_value(v);
    }
    if (!(j->val_fraction >= 0 && j->val_fraction < 1))
        return sm_error_set(err, SM_ERR_ARG, STAGE ": val_fraction = %g must be in [0, 1)", j->val_fraction);
    if ((v = json_object_get(p, "allow_special"))) {
        if (!json_is_boolean(v)) return sm_error_set(err, SM_ERR_ARG, STAGE ": allow_special must be a boolean");
        j->allow_special = json_is_true(v);
    }
    const char *bad = "skip";
    if ((v = json_object_get(p, "on_bad_line")) && !(bad = json_string_value(v)))
        return sm_error_set(err, SM_ERR_ARG, STAGE ": on_bad_line must be a string");
    if (strcmp(bad, "skip") && strcmp(bad, "fail"))
        return sm_error_set(err, SM_ERR_ARG, STAGE ": on_bad_line = \"%s\" must be \"skip\" or \"fail\"", bad);
    j->fail_bad_lines = !strcmp(bad, "fail");
    json_int_t mdb = 64 << 20;
    if ((v = json_object_get(p, "max_doc_bytes"))) {
        if (!json_is_integer(v)) return sm_error_set(err, SM_ERR_ARG, STAGE ": max_doc_bytes must be an integer");
        mdb = json_integer_value(v);
    }
    if (mdb < 1 || mdb > ((json_int_t)1 << 31))
        return sm_error_set(err, SM_ERR_ARG, STAGE ": max_doc_bytes = %lld must be between 1 and 2^31", (long long)mdb);
    j->max_doc = (size_t)mdb;
    *vocab = "";
    if ((v = json_object_get(p, "vocab")) && !(*vocab = json_string_value(v)))
        return sm_error_set(err, SM_ERR_ARG, STAGE ": vocab must be a string");
    return SM_OK;
}

static json_t *domain_summary(const domain *d, int full) {
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:O}", "documents", (json_int_t)d->documents, "bytes", (json_int_t)d->bytes,
                          "train_tokens", (json_int_t)d->tokens[0], "val_tokens", (json_int_t)d->tokens[1], "duplicates",
                          (json_int_t)d->duplicates, "skipped_files", d->skipped_files);
    if (full) {
        json_object_set_new(o, "skipped_documents", json_integer((json_int_t)d->skipped_docs));
        json_object_set(o, "files", d->file_digests);
        json_object_set_new(o, "shards", json_pack("{s:O, s:O}", "train", d->out[0].list, "val", d->out[1].list));
    }
    return o;
}

static int write_manifest(job *j, json_t *params, sm_error *err) {
    json_t *doms = json_object();
    for (size_t i = 0; i < j->ndoms; i++) json_object_set_new(doms, j->doms[i].name, domain_summary(&j->doms[i], 1));
    json_t *m = json_pack("{s:s, s:s, s:O, s:s, s:o}", "stage", STAGE, "vocab_sha256", sm_tok_vocab_sha256(j->tok), "params",
                          params, "token_counts", "include one 50256 per document", "domains", doms);
    char path[4096], digest[65];
    int rc = j->api->output_path(j->h, "manifest", path, sizeof path);
    if (rc == SM_OK && json_dump_file(m, path, JSON_INDENT(1) | JSON_SORT_KEYS) != 0)
        rc = sm_error_set(err, SM_ERR_IO, STAGE ": cannot write the manifest to %s", path);
    else if (rc != SM_OK) rc = sm_error_set(err, rc, STAGE ": no output path for the manifest");
    json_decref(m);
    if (rc == SM_OK && (rc = j->api->output_commit(j->h, "manifest", path, "manifest", NULL, digest)) != SM_OK) {
        unlink(path);
        rc = sm_error_set(err, rc, STAGE ": committing the manifest failed (%s)", sm_error_name(rc));
    }
    return rc;
}

static int publish_result(job *j, sm_error *err) {
    json_t *doms = json_object();
    for (size_t i = 0; i < j->ndoms; i++) json_object_set_new(doms, j->doms[i].name, domain_summary(&j->doms[i], 0));
    json_t *r = json_pack("{s:o, s:s}", "domains", doms, "vocab_sha256", sm_tok_vocab_sha256(j->tok));
    char *s = json_dumps(r, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(r);
    int rc = s ? j->api->result(j->h, s) : SM_ERR_NOMEM;
    free(s);
    if (rc != SM_OK) return sm_error_set(err, rc, STAGE ": recording the result failed (%s)", sm_error_name(rc));
    for (size_t i = 0; i < j->ndoms; i++) {
        const domain *d = &j->doms[i];
        j->api->metric(j->h, "train_tokens", 0, d->name, (double)d->tokens[0]);
        j->api->metric(j->h, "val_tokens", 0, d->name, (double)d->tokens[1]);
    }
    return SM_OK;
}

/* ---------- the stage ---------- */

static int run(const sm_host_api *api, sm_host *h, const char *params_json, const char *inputs_json, sm_error *err) {
    job j;
    memset(&j, 0, sizeof j);
    j.api = api;
    j.h = h;
    const char *vocab;
    json_t *params = NULL;
    sm_tok *tok = NULL;
    pthread_t *th = NULL;
    int nth = 0;
    int rc = parse_params(&j, params_json, &vocab, &params, err);
    if (rc == SM_OK) rc = load_inputs(&j, inputs_json, err);
    if (rc == SM_OK && (rc = sm_tok_load(&tok, vocab, err)) != SM_OK) sm_error_wrap(err, STAGE);
    if (rc != SM_OK) goto out;
    j.tok = tok;
    j.nthreads = api->threads(h);
    if (j.nthreads < 1) j.nthreads = 1;
    pthread_mutex_init(&j.mu, NULL);
    pthread_mutex_init(&j.wmu, NULL);
    pthread_cond_init(&j.cv_todo, NULL);
    pthread_cond_init(&j.cv_space, NULL);
    th = calloc((size_t)j.nthreads, sizeof *th);
    if (!th) { rc = sm_error_set(err, SM_ERR_NOMEM, STAGE ": out of memory"); goto out_sync; }
    for (; nth < j.nthreads; nth++)
        if (pthread_create(&th[nth], NULL, worker_main, &j) != 0) break;
    if (nth == 0) { rc = sm_error_set(err, SM_ERR_INTERNAL, STAGE ": cannot start worker threads"); goto out_sync; }
    sm_error rerr = {0};
    int rrc = read_all(&j, &rerr);
    if (rrc != SM_OK) fail_job(&j, rrc, &rerr);
    pthread_mutex_lock(&j.mu);
    j.reader_done = 1;
    pthread_cond_broadcast(&j.cv_todo);
    pthread_mutex_unlock(&j.mu);
    for (int i = 0; i < nth; i++) pthread_join(th[i], NULL);
    drain(&j);
    if (j.rc == SM_OK && api->cancelled(h)) {
        j.rc = SM_ERR_CANCELLED;
        sm_error_set(&j.err, SM_ERR_CANCELLED, STAGE ": cancelled");
    }
    if (j.rc == SM_OK && j.flight_head) {
        j.rc = SM_ERR_INTERNAL;
        sm_error_set(&j.err, SM_ERR_INTERNAL, STAGE ": batches left unwritten");
    }
    if ((rc = j.rc) != SM_OK) {
        if (err) *err = j.err;
        goto out_sync;
    }
    for (size_t i = 0; i < j.ndoms && rc == SM_OK; i++) {
        domain *d = &j.doms[i];
        if (d->documents == 0) {
            rc = sm_error_set(err, SM_ERR_ARG, STAGE ": domain %s has no documents (%zu file(s), %zu skipped, %llu duplicate(s))", d->name,
                              d->nfiles, json_array_size(d->skipped_files), (unsigned long long)d->duplicates);
            break;
        }
        for (int s = 0; s < 2 && rc == SM_OK; s++) {
            if (!d->out[s].open && d->out[s].index == 0) rc = shard_start(&j, d, s, err);
            if (rc == SM_OK && d->out[s].open) rc = shard_finish(&j, d, s, err);
        }
    }
    if (rc == SM_OK) rc = write_manifest(&j, params, err);
    if (rc == SM_OK) rc = publish_result(&j, err);
out_sync:
    pthread_mutex_destroy(&j.mu);
    pthread_mutex_destroy(&j.wmu);
    pthread_cond_destroy(&j.cv_todo);
    pthread_cond_destroy(&j.cv_space);
out:
    free(th);
    job_free(&j);
    sm_tok_free(tok);
    json_decref(params);
    return rc;
}

static int resources(const char *params_json, const char *inputs_json, sm_resources *out, sm_error *err) {
    (void)params_json;
    (void)inputs_json;
    (void)err;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    out->threads = n > 0 ? (int)n : 1;
    out->gpu = 0;
    return SM_OK;
}

static const sm_plugin_desc desc = {
    .struct_size = sizeof(sm_plugin_desc),
    .abi_major = SM_PLUGIN_ABI_MAJOR,
    .abi_minor = SM_PLUGIN_ABI_MINOR,
    .name = STAGE,
    .version = "1.0.0",
    .cache_salt = "1",
    .description = "GPT-2 tokenize text domains (.txt/.jsonl, gz/zst) into deduplicated train/val llm.c shards",
    .params_schema = schema,
    .resources = resources,
    .run = run,
};

const sm_plugin_desc *sm_plugin_describe(void) { return &desc; }
