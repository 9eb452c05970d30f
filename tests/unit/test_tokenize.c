/* test_tokenize.c - the tokenize stage plugin, run through a small fake host that writes outputs into a
 * temporary directory: formats, dedup, split stability across thread counts and file layouts, bad
 * inputs, bounded memory on a 100 MB line, cancellation. */
#include <dlfcn.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <jansson.h>
#include <zlib.h>
#include <zstd.h>

#include "../sm_test.h"
#include "model/sm_shard.h"
#include "sm_plugin.h"
#include "tok/sm_tok.h"

static const sm_plugin_desc *desc;
static sm_tok *tok;
static char root[256];

/* ---------- fake host ---------- */
struct sm_host {
    char dir[512];
    int threads, cancel_after, progress_calls, counter;
    pthread_mutex_t mu;
    char *log;
    size_t log_len;
    json_t *outputs; /* name -> {path, kind, digest} */
    char *result;
};

static void h_log(sm_host *h, int level, const char *fmt, ...) {
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&h->mu);
    size_t n = strlen(line);
    h->log = realloc(h->log, h->log_len + n + 16);
    h->log_len += (size_t)sprintf(h->log + h->log_len, "%d %s\n", level, line);
    pthread_mutex_unlock(&h->mu);
}
static void h_progress(sm_host *h, double done, double total, const char *unit) {
    (void)done; (void)total; (void)unit;
    pthread_mutex_lock(&h->mu);
    h->progress_calls++;
    pthread_mutex_unlock(&h->mu);
}
static int h_cancelled(sm_host *h) {
    pthread_mutex_lock(&h->mu);
    int c = h->cancel_after >= 0 && h->progress_calls >= h->cancel_after;
    pthread_mutex_unlock(&h->mu);
    return c;
}
static int h_threads(sm_host *h) { return h->threads; }
static int h_output_path(sm_host *h, const char *name, char *out, size_t cap) {
    (void)name;
    pthread_mutex_lock(&h->mu);
    snprintf(out, cap, "%s/tmp.%d", h->dir, h->counter++);
    pthread_mutex_unlock(&h->mu);
    return SM_OK;
}
static int h_output_commit(sm_host *h, const char *name, const char *tmp, const char *kind, const char *meta, char digest[65]) {
    if (meta) {
        json_t *m = json_loads(meta, 0, NULL);
        if (!json_is_object(m)) return SM_ERR_ARG;
        json_decref(m);
    }
    char final[1024], clean[256];
    snprintf(clean, sizeof clean, "%s", name);
    for (char *p = clean; *p; p++) if (*p == '/') *p = '_';
    snprintf(final, sizeof final, "%s/out.%s", h->dir, clean);
    if (sm_sha256_file(tmp, digest, NULL, NULL) != SM_OK) return SM_ERR_IO;
    if (rename(tmp, final) != 0) return SM_ERR_IO;
    pthread_mutex_lock(&h->mu);
    int dup = json_object_get(h->outputs, name) != NULL;
    if (!dup) json_object_set_new(h->outputs, name, json_pack("{s:s, s:s, s:s}", "path", final, "kind", kind, "digest", digest));
    pthread_mutex_unlock(&h->mu);
    return dup ? SM_ERR_ARG : SM_OK;
}
static const char *h_scratch(sm_host *h) { return h->dir; }
static int h_metric(sm_host *h, const char *n, int64_t s, const char *d, double v) { (void)h; (void)n; (void)s; (void)d; (void)v; return SM_OK; }
static int h_result(sm_host *h, const char *json) {
    free(h->result);
    h->result = strdup(json);
    return SM_OK;
}

static const sm_host_api api = {
    .struct_size = sizeof(sm_host_api), .abi_major = SM_PLUGIN_ABI_MAJOR, .abi_minor = SM_PLUGIN_ABI_MINOR,
    .log = h_log, .progress = h_progress, .cancelled = h_cancelled, .threads = h_threads,
    .output_path = h_output_path, .output_commit = h_output_commit, .scratch_dir = h_scratch,
    .metric = h_metric, .result = h_result,
};

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w) { (void)s; (void)f; (void)w; return remove(p); }

static void host_free(sm_host *h) {
    nftw(h->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(h->log);
    free(h->result);
    json_decref(h->outputs);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

/* Runs the stage; returns its code, the host (caller frees) in *out. */
static int run_stage(int threads, const char *params, const char *inputs, sm_host **out, sm_error *err) {
    sm_host *h = calloc(1, sizeof *h);
    snprintf(h->dir, sizeof h->dir, "%s/host.XXXXXX", root);
    if (!mkdtemp(h->dir)) return -100;
    h->threads = threads;
    h->cancel_after = -1;
    h->outputs = json_object();
    pthread_mutex_init(&h->mu, NULL);
    *out = h;
    memset(err, 0, sizeof *err);
    return desc->run(&api, h, params, inputs, err);
}

/* ---------- fixtures ---------- */

static void write_file(const char *path, const void *data, size_t n) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    for (char *p = dir + 1; *p; p++) if (*p == '/') { *p = 0; mkdir(dir, 0755); *p = '/'; }
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static void write_gz(const char *path, const char *s) {
    write_file(path, "", 0);
    gzFile g = gzopen(path, "wb");
    CHECK(g != NULL);
    CHECK(gzwrite(g, s, (unsigned)strlen(s)) == (int)strlen(s));
    gzclose(g);
}

static void write_zst(const char *path, const char *s) {
    size_t cap = ZSTD_compressBound(strlen(s));
    char *buf = malloc(cap);
    size_t n = ZSTD_compress(buf, cap, s, strlen(s), 3);
    CHECK(!ZSTD_isError(n));
    write_file(path, buf, n);
    free(buf);
}

static char *inputs_for(const char *const *domains, size_t n) {
    json_t *d = json_object();
    for (size_t i = 0; i < n; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", root, domains[i]);
        json_object_set_new(d, strrchr(domains[i], '/') ? strrchr(domains[i], '/') + 1 : domains[i],
                            json_pack("{s:s, s:s, s:s, s:s}", "digest", "0", "path", p, "kind", "dir", "name", domains[i]));
    }
    json_t *o = json_pack("{s:o}", "domains", d);
    char *s = json_dumps(o, JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

/* Decodes every document of a shard into a JSON array of strings (in order). */
static json_t *shard_docs(sm_host *h, const char *name) {
    json_t *o = json_object_get(h->outputs, name);
    CHECK_MSG(o != NULL, "no output %s", name);
    sm_shard s;
    sm_error err;
    CHECK_EQ_INT(sm_shard_open(&s, json_string_value(json_object_get(o, "path")), &err), SM_OK);
    json_t *docs = json_array();
    uint32_t *ids = malloc((s.ntokens + 1) * sizeof *ids);
    for (uint64_t i = 0; i < s.ntokens; i++) ids[i] = sm_shard_token(&s, i);
    CHECK(s.ntokens == 0 || ids[0] == SM_TOK_EOT);
    for (uint64_t i = 0; i < s.ntokens;) {
        uint64_t k = i + 1;
        while (k < s.ntokens && ids[k] != SM_TOK_EOT) k++;
        char *buf = NULL;
        size_t len = 0, cap = 0;
        CHECK_EQ_INT(sm_tok_decode(tok, ids + i + 1, k - i - 1, &buf, &len, &cap, &err), SM_OK);
        json_array_append_new(docs, json_stringn(buf ? buf : "", len));
        free(buf);
        i = k;
    }
    free(ids);
    sm_shard_close(&s);
    return docs;
}

static json_int_t res_int(sm_host *h, const char *dom, const char *key) {
    json_t *r = json_loads(h->result, 0, NULL);
    CHECK(r != NULL);
    json_t *v = json_object_get(json_object_get(json_object_get(r, "domains"), dom), key);
    CHECK_MSG(json_is_integer(v), "result domains.%s.%s missing", dom, key);
    json_int_t x = json_integer_value(v);
    json_decref(r);
    return x;
}

static int has_doc(json_t *a, const char *s) {
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) if (!strcmp(json_string_value(v), s)) return 1;
    return 0;
}

TEST(formats_dedup_and_outputs) {
    char p[512];
    snprintf(p, sizeof p, "%s/f/web/a.txt", root);
    const char *a = "First doc.\nline two\n\f\nSecond doc <|endoftext|> here\n\f\nThird doc\n";
    write_file(p, a, strlen(a));
    snprintf(p, sizeof p, "%s/f/web/sub/b.jsonl", root);
    const char *b = "{\"text\": \"json doc one\", \"id\": 1}\n{not json\n\n{\"text\": \"Third doc\\n\"}\n{\"id\": 5}\n{\"text\": \"caf\\u00e9 \\ud83d\\ude00\"}\n";
    write_file(p, b, strlen(b));
    snprintf(p, sizeof p, "%s/f/web/c.jsonl.gz", root);
    write_gz(p, "{\"text\": \"gz doc\"}\n{\"text\": \"gz doc two\"}\n");
    snprintf(p, sizeof p, "%s/f/web/d.txt.zst", root);
    write_zst(p, "zstd doc one\n\f\nzstd doc two\n");
    snprintf(p, sizeof p, "%s/f/web/bin.txt", root);
    write_file(p, "abc\0def", 7);
    snprintf(p, sizeof p, "%s/f/web/notes.md", root);
    write_file(p, "ignored", 7);
    snprintf(p, sizeof p, "%s/f/code/x.txt", root);
    write_file(p, "int main(void) { return 0; }\n", 29);
    snprintf(p, sizeof p, "%s/f/code/y.txt", root);
    write_file(p, "print('hi')\n", 12);
    const char *doms[] = {"f/web", "f/code"};
    char *inputs = inputs_for(doms, 2);
    sm_host *h;
    sm_error err;
    int rc = run_stage(2, "{\"val_fraction\": 0.0}", inputs, &h, &err);
    CHECK_MSG(rc == SM_OK, "run: %s", err.msg);
    /* web: 3 (a.txt) + 2 (b.jsonl, whose third is a duplicate of "Third doc\n") + 2 + 2 = 9 kept */
    CHECK_EQ_INT(res_int(h, "web", "documents"), 9);
    CHECK_EQ_INT(res_int(h, "web", "duplicates"), 1);
    CHECK_EQ_INT(res_int(h, "code", "documents"), 2);
    CHECK_EQ_INT(res_int(h, "web", "val_tokens"), 0);
    CHECK(strstr(h->log, "b.jsonl:2: malformed JSONL line") != NULL);
    CHECK(strstr(h->log, "b.jsonl:5: malformed JSONL line: no string field") != NULL);
    CHECK(strstr(h->log, "bin.txt: skipped (binary") != NULL);
    CHECK(strstr(h->result, "\"skipped_files\":[\"bin.txt\",\"notes.md\"]") != NULL);
    CHECK(strstr(h->result, sm_tok_vocab_sha256(tok)) != NULL);
    json_t *docs = shard_docs(h, "train/web/0000");
    CHECK_EQ_INT(json_array_size(docs), 9);
    /* file order: a.txt, c.jsonl.gz, d.txt.zst, sub/b.jsonl (sorted relative paths) */
    CHECK_EQ_STR(json_string_value(json_array_get(docs, 0)), "First doc.\nline two\n");
    CHECK_EQ_STR(json_string_value(json_array_get(docs, 1)), "Second doc <|endoftext|> here\n");
    CHECK_EQ_STR(json_string_value(json_array_get(docs, 3)), "gz doc");
    CHECK_EQ_STR(json_string_value(json_array_get(docs, 7)), "json doc one");
    CHECK(has_doc(docs, "caf\xc3\xa9 \xf0\x9f\x98\x80"));
    CHECK(has_doc(docs, "zstd doc two\n"));
    json_decref(docs);
    /* special text stays text: one 50256 per document */
    json_t *o = json_object_get(h->outputs, "train/web/0000");
    sm_shard s;
    CHECK_EQ_INT(sm_shard_open(&s, json_string_value(json_object_get(o, "path")), &err), SM_OK);
    int eots = 0;
    for (uint64_t i = 0; i < s.ntokens; i++) eots += sm_shard_token(&s, i) == SM_TOK_EOT;
    CHECK_EQ_INT(eots, 9);
    CHECK_EQ_INT(s.ntokens, res_int(h, "web", "train_tokens"));
    sm_shard_close(&s);
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(h->outputs, "train/web/0000"), "kind")), "shard");
    CHECK(json_object_get(h->outputs, "val/web/0000") != NULL); /* empty, but present */
    json_t *man = json_load_file(json_string_value(json_object_get(json_object_get(h->outputs, "manifest"), "path")), 0, NULL);
    CHECK(man != NULL);
    CHECK_EQ_STR(json_string_value(json_object_get(man, "vocab_sha256")), SM_TOK_VOCAB_SHA256);
    json_t *files = json_object_get(json_object_get(json_object_get(man, "domains"), "web"), "files");
    CHECK_EQ_INT(json_object_size(files), 6);
    char want[65];
    snprintf(p, sizeof p, "%s/f/web/c.jsonl.gz", root);
    CHECK_EQ_INT(sm_sha256_file(p, want, NULL, &err), SM_OK);
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(files, "c.jsonl.gz"), "sha256")), want);
    json_decref(man);
    host_free(h);
    /* allow_special: the <|endoftext|> inside the text becomes a token */
    rc = run_stage(1, "{\"val_fraction\": 0.0, \"allow_special\": true}", inputs, &h, &err);
    CHECK_MSG(rc == SM_OK, "run: %s", err.msg);
    o = json_object_get(h->outputs, "train/web/0000");
    CHECK_EQ_INT(sm_shard_open(&s, json_string_value(json_object_get(o, "path")), &err), SM_OK);
    eots = 0;
    for (uint64_t i = 0; i < s.ntokens; i++) eots += sm_shard_token(&s, i) == SM_TOK_EOT;
    CHECK_EQ_INT(eots, 10);
    sm_shard_close(&s);
    host_free(h);
    free(inputs);
}

/* A corpus of n documents, written into nfiles files in either order. */
static void make_corpus(const char *dir, int ndocs, int nfiles, int reverse) {
    char p[512];
    FILE **f = calloc((size_t)nfiles, sizeof *f);
    for (int i = 0; i < nfiles; i++) {
        snprintf(p, sizeof p, "%s/%s/part%02d.jsonl", root, dir, i);
        write_file(p, "", 0);
        f[i] = fopen(p, "w");
    }
    for (int d = 0; d < ndocs; d++) {
        int k = reverse ? ndocs - 1 - d : d;
        fprintf(f[(k * 7) % nfiles], "{\"text\": \"Document %d: the quick brown fox %d jumps over %x lazy dogs. %s\"}\n", k, k * k, k,
                k % 3 ? "More words here." : "");
        if (k % 50 == 0) fprintf(f[(k * 3) % nfiles], "{\"text\": \"Document %d: the quick brown fox %d jumps over %x lazy dogs. %s\"}\n", k,
                                 k * k, k, k % 3 ? "More words here." : "");
    }
    for (int i = 0; i < nfiles; i++) fclose(f[i]);
    free(f);
}

TEST(deterministic_and_stable_split) {
    make_corpus("s1/dom", 30000, 5, 0);
    make_corpus("s2/dom", 30000, 3, 1);
    const char *d1[] = {"s1/dom"}, *d2[] = {"s2/dom"};
    char *in1 = inputs_for(d1, 1), *in2 = inputs_for(d2, 1);
    sm_host *h1, *h2, *h3;
    sm_error err;
    CHECK_MSG(run_stage(1, "{\"val_fraction\": 0.1}", in1, &h1, &err) == SM_OK, "%s", err.msg);
    CHECK_MSG(run_stage(2, "{\"val_fraction\": 0.1}", in1, &h2, &err) == SM_OK, "%s", err.msg);
    CHECK_MSG(run_stage(2, "{\"val_fraction\": 0.1}", in2, &h3, &err) == SM_OK, "%s", err.msg);
    const char *names[] = {"train/dom/0000", "val/dom/0000", "manifest"};
    for (int i = 0; i < 3; i++)
        CHECK_MSG(!strcmp(json_string_value(json_object_get(json_object_get(h1->outputs, names[i]), "digest")),
                          json_string_value(json_object_get(json_object_get(h2->outputs, names[i]), "digest"))),
                  "%s differs between 1 and 2 threads", names[i]);
    CHECK_EQ_STR(h1->result, h2->result);
    CHECK_EQ_INT(res_int(h1, "dom", "documents"), 30000);
    CHECK_EQ_INT(res_int(h1, "dom", "duplicates"), 600);
    CHECK_EQ_INT(res_int(h3, "dom", "duplicates"), 600);
    /* same documents in another file layout and order: the same validation set */
    json_t *v1 = shard_docs(h1, "val/dom/0000"), *v3 = shard_docs(h3, "val/dom/0000");
    size_t nv = json_array_size(v1);
    CHECK_MSG(nv > 2400 && nv < 3600, "val documents %zu for val_fraction 0.1 of 30000", nv);
    CHECK_EQ_INT(json_array_size(v3), nv);
    json_t *set = json_object();
    size_t i;
    json_t *v;
    json_array_foreach(v1, i, v) json_object_set(set, json_string_value(v), json_true());
    json_array_foreach(v3, i, v) CHECK(json_object_get(set, json_string_value(v)) != NULL);
    json_decref(set);
    json_decref(v1);
    json_decref(v3);
    CHECK_EQ_INT(res_int(h1, "dom", "val_tokens"), res_int(h3, "dom", "val_tokens"));
    CHECK_EQ_INT(res_int(h1, "dom", "train_tokens"), res_int(h3, "dom", "train_tokens"));
    host_free(h1);
    host_free(h2);
    host_free(h3);
    free(in1);
    free(in2);
}

TEST(bad_inputs) {
    char p[512];
    sm_host *h;
    sm_error err;
    /* malformed line with on_bad_line = fail */
    snprintf(p, sizeof p, "%s/b1/dom/x.jsonl", root);
    write_file(p, "{\"text\": \"ok\"}\n{\"text\": 5}\n", 27);
    const char *d1[] = {"b1/dom"};
    char *in = inputs_for(d1, 1);
    CHECK_EQ_INT(run_stage(2, "{\"on_bad_line\": \"fail\"}", in, &h, &err), SM_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "x.jsonl:2") != NULL, "%s", err.msg);
    CHECK(json_object_size(h->outputs) == 0);
    host_free(h);
    free(in);
    /* a domain with only a binary file: error naming the domain */
    snprintf(p, sizeof p, "%s/b2/good/x.txt", root);
    write_file(p, "fine\n", 5);
    snprintf(p, sizeof p, "%s/b2/empty/x.txt", root);
    write_file(p, "\x7f" "ELF\0\0\0", 7);
    const char *d2[] = {"b2/good", "b2/empty"};
    in = inputs_for(d2, 2);
    CHECK(run_stage(2, "{}", in, &h, &err) != SM_OK);
    CHECK_MSG(strstr(err.msg, "domain empty has no documents") != NULL, "%s", err.msg);
    host_free(h);
    free(in);
    /* a domain directory without any text file */
    snprintf(p, sizeof p, "%s/b3/none/readme.md", root);
    write_file(p, "x", 1);
    const char *d3[] = {"b3/none"};
    in = inputs_for(d3, 1);
    CHECK(run_stage(1, "{}", in, &h, &err) != SM_OK);
    CHECK_MSG(strstr(err.msg, "domain none has no documents") != NULL, "%s", err.msg);
    host_free(h);
    free(in);
    /* truncated gzip and a .zst that is not zstd */
    snprintf(p, sizeof p, "%s/b4/dom/t.jsonl.gz", root);
    write_gz(p, "{\"text\": \"a fairly long document that compresses into more than a few bytes, a fairly long document\"}\n");
    FILE *f = fopen(p, "r+b");
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fclose(f);
    CHECK(truncate(p, sz - 12) == 0);
    const char *d4[] = {"b4/dom"};
    in = inputs_for(d4, 1);
    CHECK_EQ_INT(run_stage(1, "{}", in, &h, &err), SM_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "t.jsonl.gz") && strstr(err.msg, "truncated"), "%s", err.msg);
    host_free(h);
    free(in);
    snprintf(p, sizeof p, "%s/b5/dom/z.txt.zst", root);
    write_file(p, "plain text\n", 11);
    const char *d5[] = {"b5/dom"};
    in = inputs_for(d5, 1);
    CHECK_EQ_INT(run_stage(1, "{}", in, &h, &err), SM_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "z.txt.zst: not a zstd file") != NULL, "%s", err.msg);
    host_free(h);
    CHECK_EQ_INT(run_stage(1, "{\"on_bad_line\": \"maybe\"}", in, &h, &err), SM_ERR_ARG);
    host_free(h);
    CHECK_EQ_INT(run_stage(1, "{\"val_fraction\": 1.5}", in, &h, &err), SM_ERR_ARG);
    host_free(h);
    free(in);
}

static long current_rss_kb(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* A 100 MB single line (JSONL) and a 100 MB document (.txt) are skipped without being held in memory. */
TEST(huge_line_bounded_memory) {
    char p[512];
    const size_t big = 100u << 20;
    char *chunk = malloc(1 << 20);
    memset(chunk, 'a', 1 << 20);
    for (size_t i = 0; i < (1 << 20); i += 7) chunk[i] = ' ';
    snprintf(p, sizeof p, "%s/h/dom/big.jsonl", root);
    const char *head = "{\"text\": \"small one\"}\n{\"text\": \"";
    write_file(p, head, strlen(head));
    FILE *f = fopen(p, "ab");
    for (size_t i = 0; i < big; i += 1 << 20) fwrite(chunk, 1, 1 << 20, f);
    fputs("\"}\n{\"text\": \"small two\"}\n", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/h/dom/big.txt", root);
    write_file(p, "", 0);
    f = fopen(p, "ab");
    fputs("small three\n\f\n", f);
    for (size_t i = 0; i < big; i += 1 << 20) fwrite(chunk, 1, 1 << 20, f);
    fputs("\n\f\nsmall four\n", f);
    fclose(f);
    free(chunk);
    const char *d[] = {"h/dom"};
    char *in = inputs_for(d, 1);
    sm_host *h = NULL;
    sm_error err;
    /* measured in a child: its peak RSS minus what it inherited */
    long before = current_rss_kb();
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int rc = run_stage(2, "{\"max_doc_bytes\": 1048576}", in, &h, &err);
        if (rc != SM_OK) { fprintf(stderr, "  run: %s\n", err.msg); _exit(1); }
        json_t *r = json_loads(h->result, 0, NULL);
        json_int_t docs = json_integer_value(json_object_get(json_object_get(json_object_get(r, "domains"), "dom"), "documents"));
        if (docs != 4) { fprintf(stderr, "  documents %lld != 4; log:\n%s", (long long)docs, h->log); _exit(2); }
        if (!strstr(h->log, "big.jsonl:2: line of 104857613 bytes is longer than max_doc_bytes=1048576; skipped") ||
            !strstr(h->log, "big.txt:3: document of 104857601 bytes is larger than max_doc_bytes=1048576; skipped")) {
            fprintf(stderr, "  warnings missing; log:\n%s", h->log);
            _exit(3);
        }
        host_free(h);
        _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (status %d)", st);
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    long grew_mb = (ru.ru_maxrss - before) / 1024;
    printf("  peak RSS grew by %ld MB reading two 100 MB documents with max_doc_bytes = 1 MiB\n", grew_mb);
    CHECK(grew_mb < 48);
    free(in);
    snprintf(p, sizeof p, "%s/h", root);
    nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

TEST(cancellation) {
    const char *d[] = {"s1/dom"};
    char *in = inputs_for(d, 1);
    sm_host *h = calloc(1, sizeof *h);
    snprintf(h->dir, sizeof h->dir, "%s/host.XXXXXX", root);
    CHECK(mkdtemp(h->dir) != NULL);
    h->threads = 2;
    h->cancel_after = 1;
    h->outputs = json_object();
    pthread_mutex_init(&h->mu, NULL);
    sm_error err = {0};
    CHECK_EQ_INT(desc->run(&api, h, "{}", in, &err), SM_ERR_CANCELLED);
    CHECK(json_object_size(h->outputs) == 0);
    host_free(h);
    free(in);
}

TEST(descriptor) {
    CHECK_EQ_STR(desc->name, "tokenize");
    CHECK_EQ_INT(desc->abi_major, SM_PLUGIN_ABI_MAJOR);
    json_t *s = json_loads(desc->params_schema, 0, NULL);
    CHECK(json_is_object(s));
    const char *keys[] = {"val_fraction", "allow_special", "on_bad_line", "max_doc_bytes", "vocab"};
    for (size_t i = 0; i < 5; i++) CHECK(json_object_get(json_object_get(s, keys[i]), "type") != NULL);
    json_decref(s);
}

int main(void) {
    char so[4096];
    snprintf(so, sizeof so, "%s/plugins/tokenize.so", sm_build_dir());
    void *dl = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!dl) { printf("FAIL: cannot load %s: %s\n", so, dlerror()); return 1; }
    sm_plugin_describe_fn fn = (sm_plugin_describe_fn)dlsym(dl, SM_PLUGIN_ENTRY);
    if (!fn || !(desc = fn())) { printf("FAIL: %s has no %s\n", so, SM_PLUGIN_ENTRY); return 1; }
    sm_error err;
    if (sm_tok_load(&tok, NULL, &err) != SM_OK) { printf("FAIL: %s\n", err.msg); return 1; }
    snprintf(root, sizeof root, "/tmp/sm-test-tokenize.XXXXXX");
    if (!mkdtemp(root)) return 1;
    RUN(descriptor);
    RUN(formats_dedup_and_outputs);
    RUN(deterministic_and_stable_split);
    RUN(bad_inputs);
    RUN(huge_line_bounded_memory);
    RUN(cancellation);
    nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    sm_tok_free(tok);
    TEST_EXIT();
}
