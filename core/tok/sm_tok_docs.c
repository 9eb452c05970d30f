/* sm_tok_docs.c - streaming .txt / .jsonl readers over plain, gzip and zstd files. Raw bytes are
 * read once: they feed the file's sha256 and the decompressor together. */
#include "sm_tok_docs.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#define RAW_CAP (256u << 10)
#define DEC_CAP (256u << 10)
#define SNIFF_BYTES 65536u

struct sm_tok_docs {
    char path[4096];
    int fmt, comp, fd, fail_bad, binary, raw_eof, in_member, ended;
    size_t max_doc;
    sm_tok_docs_warn_fn warn;
    void *warn_ctx;
    sm_sha256_ctx *sha;
    uint64_t raw_total, lineno, skipped;
    uint8_t *raw, *dec;
    size_t raw_pos, raw_len, dec_pos, dec_len;
    z_stream z;
    int z_init;
    ZSTD_DStream *zs;
    char *line, *doc;
    size_t line_len, line_cap, doc_len, doc_cap;
};

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int sm_tok_docs_format(const char *name, int *compression) {
    static const struct { const char *ext; int fmt, comp; } exts[] = {
        {".txt", SM_TOK_DOCS_TXT, SM_TOK_DOCS_PLAIN},   {".jsonl", SM_TOK_DOCS_JSONL, SM_TOK_DOCS_PLAIN},
        {".txt.gz", SM_TOK_DOCS_TXT, SM_TOK_DOCS_GZ},   {".jsonl.gz", SM_TOK_DOCS_JSONL, SM_TOK_DOCS_GZ},
        {".txt.zst", SM_TOK_DOCS_TXT, SM_TOK_DOCS_ZST}, {".jsonl.zst", SM_TOK_DOCS_JSONL, SM_TOK_DOCS_ZST},
    };
    for (size_t i = 0; i < SM_ARRAY_LEN(exts); i++)
        if (ends_with(name, exts[i].ext)) {
            if (compression) *compression = exts[i].comp;
            return exts[i].fmt;
        }
    return 0;
}

static void warnf(sm_tok_docs *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warnf(sm_tok_docs *d, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    d->skipped++;
    if (d->warn) d->warn(d->warn_ctx, msg);
}

static ssize_t read_raw(sm_tok_docs *d, void *buf, size_t cap, sm_error *err) {
    ssize_t n;
    do n = read(d->fd, buf, cap);
    while (n < 0 && errno == EINTR);
    if (n < 0) return sm_error_set(err, SM_ERR_IO, "cannot read %s: %s", d->path, strerror(errno));
    if (n == 0) d->raw_eof = 1;
    if (n > 0 && d->sha) sm_sha256_update(d->sha, buf, (size_t)n);
    d->raw_total += (uint64_t)n;
    return n;
}

/* Appends decompressed bytes to dec; returns how many (> 0), 0 at the end of the file, or an error. */
static long dec_fill(sm_tok_docs *d, sm_error *err) {
    if (d->dec_pos > 0) {
        memmove(d->dec, d->dec + d->dec_pos, d->dec_len - d->dec_pos);
        d->dec_len -= d->dec_pos;
        d->dec_pos = 0;
    }
    size_t room = DEC_CAP - d->dec_len;
    if (!room) return sm_error_set(err, SM_ERR_INTERNAL, "%s: decode buffer full", d->path);
    if (d->comp == SM_TOK_DOCS_PLAIN) {
        if (d->raw_eof) return 0;
        ssize_t n = read_raw(d, d->dec + d->dec_len, room, err);
        if (n > 0) d->dec_len += (size_t)n;
        return n;
    }
    for (;;) {
        if (d->raw_pos == d->raw_len) {
            d->raw_pos = d->raw_len = 0;
            if (!d->raw_eof) {
                ssize_t n = read_raw(d, d->raw, RAW_CAP, err);
                if (n < 0) return n;
                d->raw_len = (size_t)n;
            }
            if (d->raw_len == 0) {
                if (d->in_member)
                    return sm_error_set(err, SM_ERR_FORMAT, "%s: the %s stream ends early (truncated file?)", d->path,
                                        d->comp == SM_TOK_DOCS_GZ ? "gzip" : "zstd");
                return 0;
            }
        }
        size_t produced;
        if (d->comp == SM_TOK_DOCS_GZ) {
            if (!d->in_member) {
                inflateReset(&d->z); /* a new gzip member (files may concatenate several) */
                d->in_member = 1;
            }
            d->z.next_in = d->raw + d->raw_pos;
            d->z.avail_in = (uInt)(d->raw_len - d->raw_pos);
            d->z.next_out = d->dec + d->dec_len;
            d->z.avail_out = (uInt)room;
            int zr = inflate(&d->z, Z_NO_FLUSH);
            d->raw_pos = d->raw_len - d->z.avail_in;
            produced = room - d->z.avail_out;
            if (zr == Z_STREAM_END) d->in_member = 0;
            else if (zr != Z_OK && zr != Z_BUF_ERROR)
                return sm_error_set(err, SM_ERR_FORMAT, "%s: corrupt gzip data (%s)", d->path, d->z.msg ? d->z.msg : "inflate failed");
        } else {
            ZSTD_inBuffer in = {d->raw, d->raw_len, d->raw_pos};
            ZSTD_outBuffer out = {d->dec + d->dec_len, room, 0};
            size_t zr = ZSTD_decompressStream(d->zs, &out, &in);
            if (ZSTD_isError(zr)) return sm_error_set(err, SM_ERR_FORMAT, "%s: corrupt zstd data (%s)", d->path, ZSTD_getErrorName(zr));
            d->raw_pos = in.pos;
            produced = out.pos;
            d->in_member = zr != 0;
        }
        d->dec_len += produced;
        if (produced) return (long)produced;
    }
}

int sm_tok_docs_open(sm_tok_docs **out, const char *path, size_t max_doc_bytes, int fail_bad_lines, sm_tok_docs_warn_fn warn,
                     void *warn_ctx, sm_error *err) {
    *out = NULL;
    int comp = 0, fmt = sm_tok_docs_format(path, &comp);
    if (!fmt) return sm_error_set(err, SM_ERR_ARG, "%s: not a .txt or .jsonl file (optionally .gz or .zst)", path);
    if (strlen(path) >= 4096) return sm_error_set(err, SM_ERR_ARG, "path too long: %.200s...", path);
    sm_tok_docs *d = calloc(1, sizeof *d);
    if (!d) return sm_error_set(err, SM_ERR_NOMEM, "out of memory opening %s", path);
    strcpy(d->path, path);
    d->fmt = fmt;
    d->comp = comp;
    d->fail_bad = fail_bad_lines;
    d->max_doc = max_doc_bytes ? max_doc_bytes : 1;
    d->warn = warn;
    d->warn_ctx = warn_ctx;
    d->fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = SM_OK;
    if (d->fd < 0) {
        rc = sm_error_set(err, SM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
        free(d);
        return rc;
    }
    d->sha = sm_sha256_new();
    d->raw = malloc(RAW_CAP);
    d->dec = malloc(DEC_CAP);
    if (!d->sha || !d->raw || !d->dec) { rc = sm_error_set(err, SM_ERR_NOMEM, "out of memory opening %s", path); goto fail; }
    if (comp != SM_TOK_DOCS_PLAIN) {
        ssize_t n = read_raw(d, d->raw, RAW_CAP, err);
        if (n < 0) { rc = (int)n; goto fail; }
        d->raw_len = (size_t)n;
        static const uint8_t gz_magic[2] = {0x1f, 0x8b}, zst_magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
        if (comp == SM_TOK_DOCS_GZ && (n < 2 || memcmp(d->raw, gz_magic, 2))) {
            rc = sm_error_set(err, SM_ERR_FORMAT, "%s: not a gzip file (bad magic number); rename or recompress it", path);
            goto fail;
        }
        if (comp == SM_TOK_DOCS_ZST && (n < 4 || memcmp(d->raw, zst_magic, 4))) {
            rc = sm_error_set(err, SM_ERR_FORMAT, "%s: not a zstd file (bad magic number); rename or recompress it", path);
            goto fail;
        }
        if (comp == SM_TOK_DOCS_GZ) {
            if (inflateInit2(&d->z, 15 + 16) != Z_OK) { rc = sm_error_set(err, SM_ERR_NOMEM, "zlib init failed for %s", path); goto fail; }
            d->z_init = 1;
        } else {
            d->zs = ZSTD_createDStream();
            if (!d->zs || ZSTD_isError(ZSTD_initDStream(d->zs))) { rc = sm_error_set(err, SM_ERR_NOMEM, "zstd init failed for %s", path); goto fail; }
        }
    }
    while (d->dec_len < SNIFF_BYTES) {
        long r = dec_fill(d, err);
        if (r < 0) { rc = (int)r; goto fail; }
        if (r == 0) break;
    }
    d->binary = memchr(d->dec, 0, d->dec_len < SNIFF_BYTES ? d->dec_len : SNIFF_BYTES) != NULL;
    *out = d;
    return SM_OK;
fail:
    sm_tok_docs_close(d);
    return rc;
}

int sm_tok_docs_binary(const sm_tok_docs *d) { return d->binary; }
uint64_t sm_tok_docs_raw_bytes(const sm_tok_docs *d) { return d->raw_total; }
uint64_t sm_tok_docs_skipped(const sm_tok_docs *d) { return d->skipped; }

static int grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 4096;
    while (nc < need) nc *= 2;
    char *nb = realloc(*buf, nc);
    if (!nb) return -1;
    *buf = nb;
    *cap = nc;
    return 0;
}

/* Appends the next line ('\n' included) to *buf, unless that would take *len past limit: then the
 * line is consumed without being stored, *len is restored and *over set. Returns 1, 0 at the end of the
 * file, or an error. *total gets the line's full length. */
static int read_line(sm_tok_docs *d, char **buf, size_t *len, size_t *cap, size_t limit, int *over, uint64_t *total, sm_error *err) {
    size_t start = *len;
    *over = 0;
    *total = 0;
    for (;;) {
        if (d->dec_pos == d->dec_len) {
            long r = dec_fill(d, err);
            if (r < 0) return (int)r;
            if (r == 0) break;
        }
        const uint8_t *p = d->dec + d->dec_pos;
        size_t avail = d->dec_len - d->dec_pos;
        const uint8_t *nl = memchr(p, '\n', avail);
        size_t take = nl ? (size_t)(nl - p) + 1 : avail;
        if (!*over && *len + take > limit) {
            *over = 1;
            *len = start;
        }
        if (!*over) {
            if (grow(buf, cap, *len + take + 1)) return sm_error_set(err, SM_ERR_NOMEM, "out of memory reading %s", d->path);
            memcpy(*buf + *len, p, take);
            *len += take;
        }
        *total += take;
        d->dec_pos += take;
        if (nl) break;
    }
    if (*total == 0) return 0;
    d->lineno++;
    return 1;
}

static int next_txt(sm_tok_docs *d, const char **text, size_t *len, sm_error *err) {
    while (!d->ended) {
        int doc_over = 0;
        uint64_t first_line = d->lineno + 1, doc_bytes = 0;
        d->doc_len = 0;
        for (;;) {
            size_t start = d->doc_len;
            int over;
            uint64_t total;
            int r = read_line(d, &d->doc, &d->doc_len, &d->doc_cap, d->max_doc, &over, &total, err);
            if (r < 0) return r;
            if (r == 0) { d->ended = 1; break; }
            doc_bytes += total;
            if (over) { doc_over = 1; d->doc_len = 0; continue; }
            const char *l = d->doc + start;
            size_t ll = d->doc_len - start;
            if ((ll == 1 && l[0] == '\f') || (ll == 2 && l[0] == '\f' && (l[1] == '\n' || l[1] == '\r')) ||
                (ll == 3 && !memcmp(l, "\f\r\n", 3))) {
                d->doc_len = start;
                doc_bytes -= total;
                break;
            }
            if (doc_over) d->doc_len = 0;
        }
        if (doc_over) {
            warnf(d, "%s:%llu: document of %llu bytes is larger than max_doc_bytes=%zu; skipped", d->path,
                  (unsigned long long)first_line, (unsigned long long)doc_bytes, d->max_doc);
            continue;
        }
        if (d->doc_len == 0) continue;
        if (memchr(d->doc, 0, d->doc_len)) {
            warnf(d, "%s:%llu: document holds NUL bytes (binary data?); skipped", d->path, (unsigned long long)first_line);
            continue;
        }
        *text = d->doc;
        *len = d->doc_len;
        return 1;
    }
    return 0;
}

char *sm_tok_bad_line_msg(const char *path, uint64_t lineno, const char *why, int fail) {
    char *msg = NULL;
    if (asprintf(&msg, "%s:%llu: malformed JSONL line: %s%s", path, (unsigned long long)lineno, why,
                 fail ? " (on_bad_line=\"fail\"; use \"skip\" to skip such lines)" : "; skipped") < 0)
        return NULL;
    return msg;
}

static int bad_line(sm_tok_docs *d, const char *why, sm_error *err) {
    char *msg = sm_tok_bad_line_msg(d->path, d->lineno, why, d->fail_bad);
    int rc = SM_OK;
    if (!msg) rc = sm_error_set(err, SM_ERR_NOMEM, "out of memory reporting a malformed line of %s", d->path);
    else if (d->fail_bad) rc = sm_error_set(err, SM_ERR_FORMAT, "%s", msg);
    else warnf(d, "%s", msg);
    free(msg);
    return rc;
}

int sm_tok_docs_next_line(sm_tok_docs *d, const char **line, size_t *len, uint64_t *lineno, sm_error *err) {
    for (;;) {
        int over;
        uint64_t total;
        d->line_len = 0;
        int r = read_line(d, &d->line, &d->line_len, &d->line_cap, d->max_doc, &over, &total, err);
        if (r <= 0) return r;
        if (over) {
            warnf(d, "%s:%llu: line of %llu bytes is longer than max_doc_bytes=%zu; skipped", d->path,
                  (unsigned long long)d->lineno, (unsigned long long)total, d->max_doc);
            continue;
        }
        size_t n = d->line_len;
        while (n && (d->line[n - 1] == '\n' || d->line[n - 1] == '\r' || d->line[n - 1] == ' ' || d->line[n - 1] == '\t')) n--;
        size_t s = 0;
        while (s < n && (d->line[s] == ' ' || d->line[s] == '\t')) s++;
        if (s == n) continue;
        *line = d->line + s;
        *len = n - s;
        *lineno = d->lineno;
        return 1;
    }
}

int sm_tok_jsonl_text(const char *line, size_t n, char **buf, size_t *cap, size_t *len, char *why, size_t why_cap) {
    json_error_t je;
    json_t *j = json_loadb(line, n, 0, &je);
    json_t *t = j ? json_object_get(j, "text") : NULL;
    int rc = 1;
    if (!j) snprintf(why, why_cap, "%s at column %d", je.text, je.column);
    else if (!json_is_object(j)) snprintf(why, why_cap, "not a JSON object");
    else if (!t || !json_is_string(t)) snprintf(why, why_cap, "no string field \"text\"");
    else {
        size_t tl = json_string_length(t);
        if (grow(buf, cap, tl + 1)) rc = -1;
        else {
            memcpy(*buf, json_string_value(t), tl);
            *len = tl;
            rc = 1;
        }
        json_decref(j);
        return rc;
    }
    json_decref(j);
    return 0;
}

static int next_jsonl(sm_tok_docs *d, const char **text, size_t *len, sm_error *err) {
    for (;;) {
        const char *line;
        size_t n;
        uint64_t lineno;
        int r = sm_tok_docs_next_line(d, &line, &n, &lineno, err);
        if (r <= 0) return r;
        char why[256];
        size_t tl = 0;
        r = sm_tok_jsonl_text(line, n, &d->doc, &d->doc_cap, &tl, why, sizeof why);
        if (r < 0) return sm_error_set(err, SM_ERR_NOMEM, "out of memory reading %s", d->path);
        if (r == 0) {
            int rc = bad_line(d, why, err);
            if (rc) return rc;
            continue;
        }
        if (!tl) continue;
        *text = d->doc;
        *len = tl;
        return 1;
    }
}

int sm_tok_docs_next(sm_tok_docs *d, const char **text, size_t *len, sm_error *err) {
    return d->fmt == SM_TOK_DOCS_TXT ? next_txt(d, text, len, err) : next_jsonl(d, text, len, err);
}

int sm_tok_docs_digest(sm_tok_docs *d, char hex[65], sm_error *err) {
    if (!d->sha) return sm_error_set(err, SM_ERR_INTERNAL, "%s: digest already taken", d->path);
    while (!d->raw_eof) {
        ssize_t n = read_raw(d, d->raw ? d->raw : d->dec, RAW_CAP, err);
        if (n < 0) return (int)n;
    }
    sm_sha256_final_hex(d->sha, hex);
    d->sha = NULL;
    return SM_OK;
}

void sm_tok_docs_close(sm_tok_docs *d) {
    if (!d) return;
    if (d->fd >= 0) close(d->fd);
    if (d->sha) {
        char tmp[65];
        sm_sha256_final_hex(d->sha, tmp);
    }
    if (d->z_init) inflateEnd(&d->z);
    if (d->zs) ZSTD_freeDStream(d->zs);
    free(d->raw);
    free(d->dec);
    free(d->line);
    free(d->doc);
    free(d);
}
