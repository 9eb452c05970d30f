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

#endif
