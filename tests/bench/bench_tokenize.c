/* bench_tokenize.c - GPT-2 tokenizer throughput in MB/s (10^6 bytes of UTF-8 input per second), one
 * thread and several, on real text.
 *
 * usage: bench_tokenize [--threads 1,2] [--repeat N] [--vocab PATH] [FILE]
 * FILE is plain UTF-8 text (tests/bench/bench_tokenize.sh prepares it from corpus/ or from text found
 * on this machine); without FILE, /usr/share/common-licenses is used. The text is cut into chunks that
 * end at the first newline at least 64 KiB after the chunk start (the same cut the JavaScript side of
 * bench_tokenize.sh uses), and threads take chunks round-robin, each with its own encoder. It prints
 * the token count and a 32-bit FNV-1a hash of all ids in chunk order, so other tokenizers can be compared
 * for exactness on the same text, and the best of N runs per thread count: wall-clock MB/s and MB per
 * CPU-second of the process (the latter is less sensitive to other load on a shared machine).
 *
 * bench_tokenize --stage DIR [--threads 1,2] runs the whole tokenize stage (plugins/tokenize.so, through
 * a minimal in-process host) on the domain folders of DIR (e.g. corpus/) instead: reading, parsing,
 * hashing, dedup, tokenizing and writing shards; it prints MB/s of document text and checks that every
 * thread count writes identical shards. */
#include <dirent.h>
#include <dlfcn.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sm_common.h"
#include "sm_plugin.h"
#include "tok/sm_tok.h"

typedef struct {
    const sm_tok *tok;
    const char *text;
    const size_t *cuts; /* chunk i is [cuts[i], cuts[i + 1]) */
    size_t nchunks;
    int tid, nthreads;
    uint64_t ntokens, hash;
    int failed;
} worker;

static void *work(void *arg) {
    worker *w = arg;
    sm_tok_enc *e = sm_tok_enc_new(w->tok);
    sm_tok_ids ids = {0};
    sm_error err;
    if (!e) { w->failed = 1; return NULL; }
    for (size_t c = (size_t)w->tid; c < w->nchunks; c += (size_t)w->nthreads) {
        ids.n = 0;
        if (sm_tok_encode(e, w->text + w->cuts[c], w->cuts[c + 1] - w->cuts[c], 0, &ids, &err) != SM_OK) { w->failed = 1; break; }
        w->ntokens += ids.n;
    }
    sm_tok_ids_free(&ids);
    sm_tok_enc_free(e);
    return NULL;
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int append_file(const char *path, char **buf, size_t *len, size_t *cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    for (;;) {
        if (*cap - *len < 65536) {
            *cap = *cap * 2 + 65536;
            *buf = realloc(*buf, *cap);
            if (!*buf) { fclose(f); return -1; }
        }
        size_t got = fread(*buf + *len, 1, *cap - *len, f);
        if (!got) break;
        *len += got;
    }
    fclose(f);
    return 0;
}

/* ---------- the whole stage through a minimal host ---------- */
struct sm_host {
    char dir[256];
    int threads, counter, warnings;
    pthread_mutex_t mu;
    json_t *digests;
    char *result;
};
static void st_log(sm_host *h, int level, const char *fmt, ...) {
    if (level > SM_LOG_WARN) return;
    pthread_mutex_lock(&h->mu);
    h->warnings++;
    pthread_mutex_unlock(&h->mu);
    (void)fmt;
}
static void st_progress(sm_host *h, double d, double t, const char *u) { (void)h; (void)d; (void)t; (void)u; }
static int st_cancelled(sm_host *h) { (void)h; return 0; }
static int st_threads(sm_host *h) { return h->threads; }
static int st_output_path(sm_host *h, const char *name, char *out, size_t cap) {
    (void)name;
    pthread_mutex_lock(&h->mu);
    snprintf(out, cap, "%s/out.%d", h->dir, h->counter++);
    pthread_mutex_unlock(&h->mu);
    return SM_OK;
}
static int st_output_commit(sm_host *h, const char *name, const char *tmp, const char *kind, const char *meta, char digest[65]) {
    (void)kind;
    (void)meta;
    int rc = sm_sha256_file(tmp, digest, NULL, NULL);
    unlink(tmp);
    pthread_mutex_lock(&h->mu);
    json_object_set_new(h->digests, name, json_string(digest));
    pthread_mutex_unlock(&h->mu);
    return rc;
}
static const char *st_scratch(sm_host *h) { return h->dir; }
static int st_metric(sm_host *h, const char *n, int64_t s, const char *d, double v) { (void)h; (void)n; (void)s; (void)d; (void)v; return SM_OK; }
static int st_result(sm_host *h, const char *json) {
    free(h->result);
    h->result = strdup(json);
    return SM_OK;
}

static int bench_stage(const char *corpus, const char *threads_arg) {
    char so[4096];
    snprintf(so, sizeof so, "%s/plugins/tokenize.so", sm_build_dir());
    void *dl = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    sm_plugin_describe_fn fn = dl ? (sm_plugin_describe_fn)dlsym(dl, SM_PLUGIN_ENTRY) : NULL;
    const sm_plugin_desc *desc = fn ? fn() : NULL;
    if (!desc) { fprintf(stderr, "bench_tokenize: cannot load %s\n", so); return 1; }
    json_t *doms = json_object();
    DIR *d = opendir(corpus);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char p[4096];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", corpus, de->d_name);
        if (de->d_name[0] != '.' && stat(p, &st) == 0 && S_ISDIR(st.st_mode))
            json_object_set_new(doms, de->d_name, json_pack("{s:s, s:s, s:s}", "path", p, "kind", "dir", "name", de->d_name));
    }
    if (d) closedir(d);
    if (!json_object_size(doms)) { fprintf(stderr, "bench_tokenize: no domain folders in %s\n", corpus); return 1; }
    json_t *in = json_pack("{s:o}", "domains", doms);
    char *inputs = json_dumps(in, JSON_SORT_KEYS);
    json_decref(in);
    static const sm_host_api api = {
        .struct_size = sizeof(sm_host_api), .abi_major = SM_PLUGIN_ABI_MAJOR, .abi_minor = SM_PLUGIN_ABI_MINOR,
        .log = st_log, .progress = st_progress, .cancelled = st_cancelled, .threads = st_threads,
        .output_path = st_output_path, .output_commit = st_output_commit, .scratch_dir = st_scratch,
        .metric = st_metric, .result = st_result,
    };
    char *first = NULL;
    double base = 0;
    int rc = 0;
    for (const char *p = threads_arg; *p;) {
        sm_host h = {.threads = atoi(p) > 0 ? atoi(p) : 1, .digests = json_object()};
        pthread_mutex_init(&h.mu, NULL);
        snprintf(h.dir, sizeof h.dir, "/tmp/sm-bench-stage.XXXXXX");
        if (!mkdtemp(h.dir)) return 1;
        sm_error err = {0};
        double t0 = sm_monotonic(), c0 = cpu_seconds();
        int r = desc->run(&api, &h, "{\"val_fraction\": 0.02}", inputs, &err);
        double dt = sm_monotonic() - t0, dc = cpu_seconds() - c0;
        rmdir(h.dir);
        if (r != SM_OK) { fprintf(stderr, "bench_tokenize: stage failed: %s\n", err.msg); return 1; }
        json_t *res = json_loads(h.result, 0, NULL);
        const char *k;
        json_t *v;
        double bytes = 0, toks = 0, docs = 0;
        json_object_foreach(json_object_get(res, "domains"), k, v) {
            bytes += (double)json_integer_value(json_object_get(v, "bytes"));
            docs += (double)json_integer_value(json_object_get(v, "documents"));
            toks += (double)json_integer_value(json_object_get(v, "train_tokens")) + (double)json_integer_value(json_object_get(v, "val_tokens"));
        }
        json_decref(res);
        char *dig = json_dumps(h.digests, JSON_SORT_KEYS);
        double mbs = bytes / 1e6 / dt;
        if (!first) { first = dig; base = mbs; }
        printf("tokenize stage threads=%d: %.2f MB/s of text (%.0f documents, %.2f MB, %.2f M tokens in %.2f s; %.2f MB per CPU-second; %d warnings)",
               h.threads, mbs, docs, bytes / 1e6, toks / 1e6, dt, bytes / 1e6 / dc, h.warnings);
        if (dig != first) {
            printf("; %.2fx the first; shards %s", mbs / base, strcmp(dig, first) ? "DIFFER" : "identical");
            if (strcmp(dig, first)) rc = 1;
            free(dig);
        }
        printf("\n");
        json_decref(h.digests);
        free(h.result);
        pthread_mutex_destroy(&h.mu);
        p = strchr(p, ',');
        if (!p) break;
        p++;
    }
    free(first);
    free(inputs);
    return rc;
}

int main(int argc, char **argv) {
    const char *threads_arg = "1,2", *vocab = NULL, *file = NULL, *stage = NULL;
    int repeat = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads_arg = argv[++i];
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--vocab") && i + 1 < argc) vocab = argv[++i];
        else if (!strcmp(argv[i], "--stage") && i + 1 < argc) stage = argv[++i];
        else if (argv[i][0] != '-') file = argv[i];
        else { fprintf(stderr, "usage: bench_tokenize [--threads 1,2] [--repeat N] [--vocab PATH] [FILE]\n"
                            "       bench_tokenize --stage CORPUS_DIR [--threads 1,2]\n"); return 2; }
    }
    if (repeat < 1) repeat = 1;
    if (stage) return bench_stage(stage, threads_arg);
    sm_error err = {0};
    sm_tok *tok;
    if (sm_tok_load(&tok, vocab, &err) != SM_OK) { fprintf(stderr, "bench_tokenize: %s\n", err.msg); return 1; }
    char *text = NULL;
    size_t len = 0, cap = 0;
    if (file) {
        if (append_file(file, &text, &len, &cap)) { fprintf(stderr, "bench_tokenize: cannot read %s\n", file); return 1; }
    } else {
        const char *dir = "/usr/share/common-licenses";
        DIR *d = opendir(dir);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            append_file(p, &text, &len, &cap);
        }
        if (d) closedir(d);
        file = dir;
    }
    if (!len) { fprintf(stderr, "bench_tokenize: no text in %s\n", file); return 1; }
    size_t *cuts = malloc((len / 65536 + 2) * sizeof *cuts), nchunks = 0;
    cuts[0] = 0;
    while (cuts[nchunks] < len) {
        size_t p = cuts[nchunks] + 65536;
        if (p >= len) p = len;
        else {
            const char *nl = memchr(text + p, '\n', len - p);
            p = nl ? (size_t)(nl - text) + 1 : len;
        }
        cuts[++nchunks] = p;
    }
    /* exactness fingerprint: one pass, ids in chunk order */
    {
        sm_tok_enc *e = sm_tok_enc_new(tok);
        sm_tok_ids ids = {0};
        uint32_t h = 2166136261u;
        uint64_t n = 0;
        for (size_t c = 0; c < nchunks; c++) {
            ids.n = 0;
            sm_tok_encode(e, text + cuts[c], cuts[c + 1] - cuts[c], 0, &ids, &err);
            for (size_t i = 0; i < ids.n; i++) h = (h ^ ids.ids[i]) * 16777619u;
            n += ids.n;
        }
        printf("text: %s, %.2f MB in %zu chunks; %llu tokens; ids fnv1a32 %08x\n", file, len / 1e6, nchunks,
               (unsigned long long)n, h);
        sm_tok_ids_free(&ids);
        sm_tok_enc_free(e);
    }
    double base = 0;
    for (const char *p = threads_arg; *p;) {
        int nt = atoi(p);
        if (nt < 1) nt = 1;
        double best = 1e30, best_cpu = 1e30;
        uint64_t ntok = 0;
        for (int r = 0; r < repeat; r++) {
            worker *ws = calloc((size_t)nt, sizeof *ws);
            pthread_t *th = calloc((size_t)nt, sizeof *th);
            double t0 = sm_monotonic(), c0 = cpu_seconds();
            for (int i = 0; i < nt; i++) {
                ws[i] = (worker){.tok = tok, .text = text, .cuts = cuts, .nchunks = nchunks, .tid = i, .nthreads = nt};
                pthread_create(&th[i], NULL, work, &ws[i]);
            }
            ntok = 0;
            for (int i = 0; i < nt; i++) {
                pthread_join(th[i], NULL);
                ntok += ws[i].ntokens;
                if (ws[i].failed) { fprintf(stderr, "bench_tokenize: encoding failed\n"); return 1; }
            }
            double dt = sm_monotonic() - t0, dc = cpu_seconds() - c0;
            if (dt < best) best = dt;
            if (dc < best_cpu) best_cpu = dc;
            free(ws);
            free(th);
        }
        double mbs = len / 1e6 / best;
        if (nt == 1) base = mbs;
        printf("sm_tok threads=%d: %.2f MB/s (%.2f M tokens/s, %llu tokens, best of %d)", nt, mbs, ntok / 1e6 / best,
               (unsigned long long)ntok, repeat);
        if (nt > 1 && base > 0) printf("; %.2fx one thread, %.0f%% scaling efficiency", mbs / base, 100.0 * mbs / base / nt);
        printf("; %.2f MB per CPU-second\n", len / 1e6 / best_cpu);
        p = strchr(p, ',');
        if (!p) break;
        p++;
    }
    free(cuts);
    free(text);
    sm_tok_free(tok);
    return 0;
}
