/* sm_tok_internal.h - the vocabulary's layout, shared by the files of core/tok only. */
#ifndef SM_TOK_INTERNAL_H
#define SM_TOK_INTERNAL_H

#include "sm_tok.h"

/* One cache line holds 8 entries: a lookup costs one miss. */
typedef struct sm_tok_pair {
    uint32_t key;
    int32_t rank;
} sm_tok_pair;

static inline uint32_t sm_tok__pair_slot(uint32_t key, uint32_t mask) {
    return (uint32_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> 40) & mask;
}

struct sm_tok {
    uint8_t *pool;                       /* bytes of every token, back to back */
    size_t pool_cap;
    uint32_t off[SM_TOK_VOCAB_SIZE + 1]; /* token id's bytes are pool[off[id] .. off[id + 1]) */
    uint32_t byte_id[256];               /* id of each single byte */
    sm_tok_pair *pairs;                  /* open addressing on (a << 16 | b); key UINT32_MAX = empty */
    uint32_t pair_mask;
    char sha256[65];
};

/* Merge rank of (a, b), or -1. Hot: one multiply and usually one probe. */
static inline int32_t sm_tok__rank(const sm_tok *t, uint32_t a, uint32_t b) {
    uint32_t key = (a << 16) | b; /* ids are < 65536 */
    uint32_t s = sm_tok__pair_slot(key, t->pair_mask);
    for (;;) {
        const sm_tok_pair *e = &t->pairs[s];
        if (e->key == key) return e->rank;
        if (e->key == UINT32_MAX) return -1;
        s = (s + 1) & t->pair_mask;
    }
}

/* BMP class table (filled by sm_tok__init_classes, which sm_tok_load and sm_tok_enc_new call). */
extern uint8_t sm_tok__bmp_class[0x10000];
void sm_tok__init_classes(void);

/* GPT-2's pre-tokenizer regex, hand-compiled:
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
/* Decodes one character at p (n > 0): returns its length in bytes and its class. A byte that does not
 * start a valid, shortest-form UTF-8 sequence of a scalar value is one OTHER character of length 1. */
static inline size_t sm_tok__char_at(const uint8_t *p, size_t n, int *cls) {
    uint8_t c = p[0];
    if (c < 0x80) { *cls = sm_tok__bmp_class[c]; return 1; }
    int32_t cp;
    size_t len;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else { *cls = SM_TOK_CLASS_OTHER; return 1; }
    if (n < len) { *cls = SM_TOK_CLASS_OTHER; return 1; }
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) { *cls = SM_TOK_CLASS_OTHER; return 1; }
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
        *cls = SM_TOK_CLASS_OTHER;
        return 1;
    }
    *cls = cp < 0x10000 ? sm_tok__bmp_class[cp] : sm_tok_class_of(cp);
    return len;
}

/* Length of the longest run of characters of class cls at the start of p. */
static inline size_t sm_tok__run_of(const uint8_t *p, size_t n, int cls) {
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            if (sm_tok__bmp_class[p[i]] != cls) break;
            i++;
            continue;
        }
        int c;
        size_t l = sm_tok__char_at(p + i, n - i, &c);
        if (c != cls) break;
        i += l;
    }
    return i;
}

static inline size_t sm_tok__pretoken(const uint8_t *p, size_t n) {
    if (n == 0) return 0;
    uint8_t c = p[0];
    /* 's|'t|'re|'ve|'m|'ll|'d  (case-sensitive, tried first) */
    if (c == '\'' && n >= 2) {
        uint8_t d = p[1];
        if (d == 's' || d == 't' || d == 'm' || d == 'd') return 2;
        if (n >= 3) {
            uint8_t e = p[2];
            if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l')) return 3;
        }
    }
    /* ' ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+': an optional leading space, then a run of one class. */
    if (c == ' ' && n >= 2) {
        int cls2;
        sm_tok__char_at(p + 1, n - 1, &cls2);
        if (cls2 != SM_TOK_CLASS_SPACE) return 1 + sm_tok__run_of(p + 1, n - 1, cls2);
    }
    int cls;
    sm_tok__char_at(p, n, &cls);
    if (cls != SM_TOK_CLASS_SPACE) return sm_tok__run_of(p, n, cls);
    /* '\s+(?!\S)|\s+': a whitespace run; if a non-space follows a run of two or more characters, the
     * last one is left to start the next token (so " word" keeps its space). */
    size_t k = 0, last = 0;
    while (k < n) {
        int c2;
        size_t l = sm_tok__char_at(p + k, n - k, &c2);
        if (c2 != SM_TOK_CLASS_SPACE) break;
        last = k;
        k += l;
    }
    if (k == n || last == 0) return k;
    return last;
}

#endif
