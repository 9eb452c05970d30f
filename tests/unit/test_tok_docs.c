/* test_tok_docs.c - the streaming .txt / .jsonl readers: separators, gzip (multi-member) and zstd,
 * digests of the bytes on disk, malformed lines, NUL bytes, oversized documents, corrupt streams. */
#include <ftw.h>
#include <stdio.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "../sm_test.h"
#include "tok/sm_tok_docs.h"

static char dir[64];
static char warnings[8192];

static void on_warn(void *ctx, const char *msg) {
    (void)ctx;
    strncat(warnings, msg, sizeof warnings - strlen(warnings) - 2);
    strcat(warnings, "\n");
}

static const char *path_of(const char *name) {
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static void put(const char *name, const void *data, size_t n) {
    FILE *f = fopen(path_of(name), "wb");
    CHECK(f && fwrite(data, 1, n, f) == n);
    fclose(f);
}

/* Reads all documents, joined as "doc|doc|..." into out; returns the reader's final code. */
static int read_docs(const char *name, size_t max_doc, int fail_bad, char *out, size_t cap, int *ndocs) {
    sm_tok_docs *d;
    sm_error err = {0};
    warnings[0] = 0;
    int rc = sm_tok_docs_open(&d, path_of(name), max_doc, fail_bad, on_warn, NULL, &err);
    if (rc != SM_OK) { snprintf(out, cap, "%s", err.msg); return rc; }
    out[0] = 0;
    *ndocs = 0;
    const char *t;
    size_t n;
    while ((rc = sm_tok_docs_next(d, &t, &n, &err)) == 1) {
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%.*s", *ndocs ? "|" : "", (int)n, t);
        (*ndocs)++;
    }
    if (rc < 0) snprintf(out, cap, "%s", err.msg);
    char hex[65], want[65];
    if (rc == 0) {
        CHECK_EQ_INT(sm_tok_docs_digest(d, hex, &err), SM_OK);
        CHECK_EQ_INT(sm_sha256_file(path_of(name), want, NULL, &err), SM_OK);
        CHECK_EQ_STR(hex, want);
    }
    sm_tok_docs_close(d);
    return rc;
}

TEST(format_from_name) {
    int c = -1;
    CHECK_EQ_INT(sm_tok_docs_format("a/b.txt", &c), SM_TOK_DOCS_TXT);
    CHECK_EQ_INT(c, SM_TOK_DOCS_PLAIN);
    CHECK_EQ_INT(sm_tok_docs_format("x.jsonl.zst", &c), SM_TOK_DOCS_JSONL);
    CHECK_EQ_INT(c, SM_TOK_DOCS_ZST);
    CHECK_EQ_INT(sm_tok_docs_format("x.txt.gz", &c), SM_TOK_DOCS_TXT);
    CHECK_EQ_INT(c, SM_TOK_DOCS_GZ);
    CHECK_EQ_INT(sm_tok_docs_format("x.json", &c), 0);
    CHECK_EQ_INT(sm_tok_docs_format("x.gz", &c), 0);
}

TEST(txt_form_feed_separators) {
    char out[4096];
    int n;
    const char *s = "one\nline\n\f\ntwo\r\n\f\r\nthree\f not a separator\n\f\n\f\n\ffour";
    put("a.txt", s, strlen(s));
    CHECK_EQ_INT(read_docs("a.txt", 1 << 20, 0, out, sizeof out, &n), 0);
    CHECK_EQ_STR(out, "one\nline\n|two\r\n|three\f not a separator\n|\ffour");
    CHECK_EQ_INT(n, 4);
    put("b.txt", "whole file\n\nis one document\n", 28);
    CHECK_EQ_INT(read_docs("b.txt", 1 << 20, 0, out, sizeof out, &n), 0);
    CHECK_EQ_INT(n, 1);
    put("empty.txt", "", 0);
    CHECK_EQ_INT(read_docs("empty.txt", 1 << 20, 0, out, sizeof out, &n), 0);
    CHECK_EQ_INT(n, 0);
}

TEST(jsonl_fields_and_bad_lines) {
    char out[4096];
    int n;
    const char *s = "{\"text\": \"a\\nb\", \"meta\": {\"x\": [1, 2]}}\n"
                    "\n"
                    "[1, 2]\n"
                    "{\"text\": \"nul \\u0000 inside\"}\n"
                    "{\"text\": \"\"}\n"
                    "  {\"text\": \"caf\\u00e9\"}  \r\n"
                    "{\"text\": \"truncated\n"
                    "{\"text\": \"last, no newline\"}";
    put("a.jsonl", s, strlen(s));
    CHECK_EQ_INT(read_docs("a.jsonl", 1 << 20, 0, out, sizeof out, &n), 0);
    CHECK_EQ_STR(out, "a\nb|caf\xc3\xa9|last, no newline");
    CHECK(strstr(warnings, "a.jsonl:3: malformed JSONL line: not a JSON object") != NULL);
    CHECK(strstr(warnings, "a.jsonl:4: malformed JSONL line") != NULL);
    CHECK(strstr(warnings, "a.jsonl:7: malformed JSONL line") != NULL);
    CHECK_EQ_INT(read_docs("a.jsonl", 1 << 20, 1, out, sizeof out, &n), SM_ERR_FORMAT);
    CHECK_MSG(strstr(out, "a.jsonl:3: malformed JSONL line") != NULL, "%s", out);
}

TEST(gzip_multi_member_and_zstd) {
    char out[4096];
    int n;
    /* two gzip members back to back (as `cat a.gz b.gz` makes) */
    gzFile g = gzopen(path_of("m.jsonl.gz"), "wb");
    gzputs(g, "{\"text\": \"first\"}\n");
    gzclose(g);
    g = gzopen(path_of("m2.gz"), "wb");
    gzputs(g, "{\"text\": \"second\"}\n");
    gzclose(g);
    FILE *a = fopen(path_of("m.jsonl.gz"), "ab"), *b = fopen(path_of("m2.gz"), "rb");
    char buf[256];
    size_t k = fread(buf, 1, sizeof buf, b);
    fwrite(buf, 1, k, a);
    fclose(a);
    fclose(b);
    CHECK_EQ_INT(read_docs("m.jsonl.gz", 1 << 20, 0, out, sizeof out, &n), 0);
    CHECK_EQ_STR(out, "first|second");
    /* zstd, large enough to need several output buffers */
    size_t big = 3u << 20;
    char *src = malloc(big + 16);
    for (size_t i = 0; i < big; i++) src[i] = "abc def\n"[i % 8];
    memcpy(src + big / 2, "\f\n", 2);
    size_t cap = ZSTD_compressBound(big);
    char *z = malloc(cap);
    size_t zn = ZSTD_compress(z, cap, src, big, 1);
    CHECK(!ZSTD_isError(zn));
    put("big.txt.zst", z, zn);
    sm_tok_docs *d;
    sm_error err;
    CHECK_EQ_INT(sm_tok_docs_open(&d, path_of("big.txt.zst"), 8u << 20, 0, on_warn, NULL, &err), SM_OK);
    const char *t;
    size_t len, total = 0;
    int docs = 0;
    while (sm_tok_docs_next(d, &t, &len, &err) == 1) { total += len; docs++; }
    CHECK_EQ_INT(docs, 2);
    CHECK_EQ_INT(total, big - 2);
    CHECK_EQ_INT(sm_tok_docs_raw_bytes(d), zn);
    sm_tok_docs_close(d);
    /* truncated zstd */
    put("cut.txt.zst", z, zn / 2);
    CHECK_EQ_INT(read_docs("cut.txt.zst", 8u << 20, 0, out, sizeof out, &n), SM_ERR_FORMAT);
    CHECK_MSG(strstr(out, "cut.txt.zst") && strstr(out, "truncated"), "%s", out);
    free(src);
    free(z);
    /* garbage that claims to be gzip */
    put("bad.txt.gz", "\x1f\x8bnot really gzip data at all", 29);
    CHECK_EQ_INT(read_docs("bad.txt.gz", 1 << 20, 0, out, sizeof out, &n), SM_ERR_FORMAT);
    CHECK_MSG(strstr(out, "bad.txt.gz: corrupt gzip data") != NULL, "%s", out);
    put("plain.txt.gz", "hello", 5);
    CHECK_EQ_INT(read_docs("plain.txt.gz", 1 << 20, 0, out, sizeof out, &n), SM_ERR_FORMAT);
    CHECK_MSG(strstr(out, "not a gzip file") != NULL, "%s", out);
}

TEST(nul_bytes_and_oversized) {
    char out[4096];
    int n;
    sm_tok_docs *d;
    sm_error err;
    put("bin.txt", "PK\x03\x04\0\0binary", 12);
    CHECK_EQ_INT(sm_tok_docs_open(&d, path_of("bin.txt"), 1 << 20, 0, on_warn, NULL, &err), SM_OK);
    CHECK(sm_tok_docs_binary(d));
    sm_tok_docs_close(d);
    /* a NUL past the first 64 KiB: only that document is skipped */
    size_t sz = 70000;
    char *s = malloc(sz);
    memset(s, 'x', sz);
    memcpy(s, "first\n\f\n", 8);
    s[69000] = 0;
    memcpy(s + sz - 9, "\n\f\nlast\n", 8);
    put("late.txt", s, sz - 1);
    CHECK_EQ_INT(sm_tok_docs_open(&d, path_of("late.txt"), 1 << 20, 0, on_warn, NULL, &err), SM_OK);
    CHECK(!sm_tok_docs_binary(d));
    sm_tok_docs_close(d);
    CHECK_EQ_INT(read_docs("late.txt", 1 << 20, 0, out, sizeof out, &n), 0);
    CHECK_EQ_STR(out, "first\n|last\n");
    CHECK(strstr(warnings, "late.txt:3: document holds NUL bytes") != NULL);
    /* documents and lines over max_doc_bytes */
    const char *lt = "short\n\f\n0123456789\n0123456789\n\f\nok\n";
    put("long.txt", lt, strlen(lt));
    CHECK_EQ_INT(read_docs("long.txt", 15, 0, out, sizeof out, &n), 0);
    CHECK_EQ_STR(out, "short\n|ok\n");
    CHECK(strstr(warnings, "long.txt:3: document of 22 bytes is larger than max_doc_bytes=15; skipped") != NULL);
    const char *lj = "{\"text\": \"0123456789abcdef\"}\n{\"text\": \"ok\"}\n";
    put("long.jsonl", lj, strlen(lj));
    CHECK_EQ_INT(read_docs("long.jsonl", 20, 0, out, sizeof out, &n), 0);
    CHECK_EQ_STR(out, "ok");
    CHECK(strstr(warnings, "long.jsonl:1: line of 29 bytes is longer than max_doc_bytes=20; skipped") != NULL);
    free(s);
}

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w) { (void)s; (void)f; (void)w; return remove(p); }

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/sm-test-docs.XXXXXX");
    if (!mkdtemp(dir)) return 1;
    RUN(format_from_name);
    RUN(txt_form_feed_separators);
    RUN(jsonl_fields_and_bad_lines);
    RUN(gzip_multi_member_and_zstd);
    RUN(nul_bytes_and_oversized);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    TEST_EXIT();
}
