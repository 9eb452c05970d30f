/* sm_tok_bpe.c - byte-pair merging of pre-tokens, with a per-thread cache of recent words.
 *
 * Merging always applies the lowest-ranked adjacent pair, leftmost first; that equals GPT-2's "merge
 * every occurrence of the best bigram left to right", because a merge's result only ever takes part
 * in merges of higher rank. Short words use a quadratic scan over a small array (fastest in practice);
 * long ones a binary heap with lazy deletion, so a pathological megabyte-long word stays n log n.
 * Pieces longer than SM_TOK_MAX_PIECE bytes (only possible for runs of one character class with no
 * break, e.g. a megabyte of letters) are merged in SM_TOK_MAX_PIECE chunks to bound memory; this is
 * the one place where the output can differ from GPT-2's, and only at those chunk seams. */
#include "sm_tok_internal.h"

#include <stdlib.h>
#include <string.h>

#define SM_TOK_MAX_PIECE (1u << 20)
#define SHORT_WORD 96u /* above this, the heap merger */
#define CACHE_WORD 16u  /* words up to this length ... */
#define CACHE_IDS 7u    /* ... that become at most this many tokens are cached */
#define CACHE_SLOTS (1u << 15)

/* Direct-mapped cache of recent words: a slot is half a cache line and holds the word and its ids, so a
 * hit costs one memory access; a collision simply replaces the older word. */
typedef struct {
    uint64_t k0, k1; /* the word's bytes, zero-padded */
    uint8_t len, nids; /* len 0 = empty */
    uint16_t ids[CACHE_IDS];
} cache_slot;

struct sm_tok_enc {
    const sm_tok *t;
    cache_slot *slots;
    /* merge scratch, grown on demand and reused */
    uint32_t *sym, *nxt, *prv;
    int32_t *rank;
    uint64_t *heap;
    size_t scap, hcap;
};

sm_tok_enc *sm_tok_enc_new(const sm_tok *t) {
    sm_tok_enc *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->t = t;
    sm_tok__init_classes();
    e->slots = aligned_alloc(64, CACHE_SLOTS * sizeof *e->slots);
    if (!e->slots) { sm_tok_enc_free(e); return NULL; }
    memset(e->slots, 0, CACHE_SLOTS * sizeof *e->slots);
    return e;
}

void sm_tok_enc_free(sm_tok_enc *e) {
    if (!e) return;
    free(e->slots);
    free(e->sym);
    free(e->nxt);
    free(e->prv);
    free(e->rank);
    free(e->heap);
    free(e);
}

static inline uint32_t cache_index(uint64_t k0, uint64_t k1, size_t n) {
    uint64_t h = (k0 * 0x9E3779B97F4A7C15ull) ^ (k1 * 0xC2B2AE3D27D4EB4Full) ^ n;
    h ^= h >> 29;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 32;
    return (uint32_t)h & (CACHE_SLOTS - 1);
}

static int ensure_out(sm_tok_ids *out, size_t more) {
    if (out->n + more <= out->cap) return 0;
    size_t nc = out->cap ? out->cap * 2 : 1024;
    while (nc < out->n + more) nc *= 2;
    uint32_t *ni = realloc(out->ids, nc * sizeof *ni);
    if (!ni) return -1;
    out->ids = ni;
    out->cap = nc;
    return 0;
}

static int ensure_scratch(sm_tok_enc *e, size_t n) {
    if (n <= e->scap) return 0;
    size_t nc = e->scap ? e->scap : 256;
    while (nc < n) nc *= 2;
    uint32_t *a = realloc(e->sym, nc * sizeof *a);
    if (a) e->sym = a;
    uint32_t *b = realloc(e->nxt, nc * sizeof *b);
    if (b) e->nxt = b;
    uint32_t *c = realloc(e->prv, nc * sizeof *c);
    if (c) e->prv = c;
    int32_t *d = realloc(e->rank, nc * sizeof *d);
    if (d) e->rank = d;
    if (!a || !b || !c || !d) return -1;
    e->scap = nc;
    return 0;
}

/* Quadratic merge for short words: sym[0..n) in, returns the new length. */
static size_t merge_short(const sm_tok *t, uint32_t *sym, int32_t *rank, size_t n) {
    for (size_t i = 0; i + 1 < n; i++) {
        int32_t r = sm_tok__rank(t, sym[i], sym[i + 1]);
        rank[i] = r < 0 ? INT32_MAX : r;
    }
    while (n > 1) {
        int32_t best = INT32_MAX;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < n; i++)
            if (rank[i] < best) { best = rank[i]; bi = i; }
        if (best == INT32_MAX) break;
        sym[bi] = 256u + (uint32_t)best;
        memmove(sym + bi + 1, sym + bi + 2, (n - bi - 2) * sizeof *sym);
        if (bi + 2 < n) memmove(rank + bi + 1, rank + bi + 2, (n - bi - 2) * sizeof *rank);
        n--;
        if (bi > 0) {
            int32_t r = sm_tok__rank(t, sym[bi - 1], sym[bi]);
            rank[bi - 1] = r < 0 ? INT32_MAX : r;
        }
        if (bi + 1 < n) {
            int32_t r = sm_tok__rank(t, sym[bi], sym[bi + 1]);
            rank[bi] = r < 0 ? INT32_MAX : r;
        }
    }
    return n;
}

/* Min-heap of (rank << 32 | position): pops the lowest rank, leftmost first. */
static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = v;
    return top;
}

#define DEAD UINT32_MAX

/* n log n merge for long words; the result is compacted into sym[0..return). */
static long merge_long(sm_tok_enc *e, size_t n) {
    const sm_tok *t = e->t;
    uint32_t *sym = e->sym, *nxt = e->nxt, *prv = e->prv;
    size_t need = 2 * n + 16;
    if (need > e->hcap) {
        uint64_t *h = realloc(e->heap, need * sizeof *h);
        if (!h) return -1;
        e->heap = h;
        e->hcap = need;
    }
    uint64_t *heap = e->heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        nxt[i] = i + 1 < n ? (uint32_t)(i + 1) : DEAD;
        prv[i] = i ? (uint32_t)(i - 1) : DEAD;
        if (i + 1 < n) {
            int32_t r = sm_tok__rank(t, sym[i], sym[i + 1]);
            if (r >= 0) heap[hn++] = ((uint64_t)r << 32) | i;
        }
    }
    /* heapify */
    for (size_t k = hn / 2; k-- > 0;) {
        uint64_t v = heap[k];
        size_t i = k;
        for (;;) {
            size_t c = 2 * i + 1;
            if (c >= hn) break;
            if (c + 1 < hn && heap[c + 1] < heap[c]) c++;
            if (heap[c] >= v) break;
            heap[i] = heap[c];
            i = c;
        }
        heap[i] = v;
    }
    while (hn) {
        uint64_t top = heap_pop(heap, &hn);
        int32_t r = (int32_t)(top >> 32);
        uint32_t p = (uint32_t)top;
        /* Stale entries fail this test; a pair that still has rank r is that very pair, so merging it is
         * right even if the entry was pushed for an earlier state. */
        if (sym[p] == DEAD || nxt[p] == DEAD || sm_tok__rank(t, sym[p], sym[nxt[p]]) != r) continue;
        uint32_t q = nxt[p];
        sym[p] = 256u + (uint32_t)r;
        sym[q] = DEAD;
        nxt[p] = nxt[q];
        if (nxt[q] != DEAD) prv[nxt[q]] = p;
        if (hn + 2 > e->hcap) { /* cannot happen: each merge pops one and pushes at most two */
            uint64_t *h = realloc(e->heap, (e->hcap * 2) * sizeof *h);
            if (!h) return -1;
            e->heap = heap = h;
            e->hcap *= 2;
        }
        if (nxt[p] != DEAD) {
            int32_t r2 = sm_tok__rank(t, sym[p], sym[nxt[p]]);
            if (r2 >= 0) heap_push(heap, &hn, ((uint64_t)r2 << 32) | p);
        }
        if (prv[p] != DEAD) {
            int32_t r2 = sm_tok__rank(t, sym[prv[p]], sym[p]);
            if (r2 >= 0) heap_push(heap, &hn, ((uint64_t)r2 << 32) | prv[p]);
        }
    }
    size_t m = 0;
    for (uint32_t i = 0; i != DEAD; i = nxt[i]) sym[m++] = sym[i];
    return (long)m;
}

/* Appends the BPE of one pre-token. */
static int encode_piece(sm_tok_enc *e, const uint8_t *w, size_t n, sm_tok_ids *out) {
    const sm_tok *t = e->t;
    if (n == 1) {
        if (ensure_out(out, 1)) return -1;
        out->ids[out->n++] = t->byte_id[w[0]];
        return 0;
    }
    cache_slot *slot = NULL;
    uint64_t k[2] = {0, 0};
    if (n <= CACHE_WORD) {
        memcpy(k, w, n);
        slot = &e->slots[cache_index(k[0], k[1], n)];
        if (slot->len == n && slot->k0 == k[0] && slot->k1 == k[1]) {
            if (ensure_out(out, slot->nids)) return -1;
            for (unsigned i = 0; i < slot->nids; i++) out->ids[out->n + i] = slot->ids[i];
            out->n += slot->nids;
            return 0;
        }
    }
    if (ensure_scratch(e, n)) return -1;
    for (size_t i = 0; i < n; i++) e->sym[i] = t->byte_id[w[i]];
    long m = n <= SHORT_WORD ? (long)merge_short(t, e->sym, e->rank, n) : merge_long(e, n);
    if (m < 0 || ensure_out(out, (size_t)m)) return -1;
    memcpy(out->ids + out->n, e->sym, (size_t)m * sizeof *out->ids);
    out->n += (size_t)m;
    if (slot && m <= (long)CACHE_IDS) {
        slot->k0 = k[0];
        slot->k1 = k[1];
        slot->len = (uint8_t)n;
        slot->nids = (uint8_t)m;
        for (long i = 0; i < m; i++) slot->ids[i] = (uint16_t)e->sym[i];
    }
    return 0;
}

static int encode_ordinary(sm_tok_enc *e, const uint8_t *p, size_t n, sm_tok_ids *out) {
    size_t pos = 0;
    while (pos < n) {
        size_t l = sm_tok__pretoken(p + pos, n - pos);
        for (size_t done = 0; done < l;) {
            size_t k = l - done > SM_TOK_MAX_PIECE ? SM_TOK_MAX_PIECE : l - done;
            if (encode_piece(e, p + pos + done, k, out)) return -1;
            done += k;
        }
        pos += l;
    }
    return 0;
}

int sm_tok_encode(sm_tok_enc *e, const void *text, size_t n, int allow_special, sm_tok_ids *out, sm_error *err) {
    const uint8_t *p = text;
    static const char eot[] = "<|endoftext|>";
    const size_t eot_len = sizeof eot - 1;
    if (allow_special) {
        const uint8_t *s;
        while ((s = memmem(p, n, eot, eot_len)) != NULL) {
            if (encode_ordinary(e, p, (size_t)(s - p), out) || ensure_out(out, 1))
                return sm_error_set(err, SM_ERR_NOMEM, "out of memory encoding %zu bytes", n);
            out->ids[out->n++] = SM_TOK_EOT;
            n -= (size_t)(s - p) + eot_len;
            p = s + eot_len;
        }
    }
    if (encode_ordinary(e, p, n, out)) return sm_error_set(err, SM_ERR_NOMEM, "out of memory encoding %zu bytes", n);
    return SM_OK;
}
