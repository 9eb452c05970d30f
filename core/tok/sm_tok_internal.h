/* sm_tok_internal.h - the vocabulary's layout, shared by the files of core/tok only. */
#ifndef SM_TOK_INTERNAL_H
#define SM_TOK_INTERNAL_H

#include "sm_tok.h"

struct sm_tok {
    uint8_t *pool;                       /* bytes of every token, back to back */
    size_t pool_cap;
    uint32_t off[SM_TOK_VOCAB_SIZE + 1]; /* token id's bytes are pool[off[id] .. off[id + 1]) */
    uint32_t byte_id[256];               /* id of each single byte */
    uint64_t *pair_key;                  /* open addressing: (a << 32 | b) -> rank; UINT64_MAX = empty */
    int32_t *pair_rank;
    uint32_t pair_mask;
    char sha256[65];
};

/* Merge rank of (a, b), or -1. Hot: one multiply and usually one probe. */
static inline int32_t sm_tok__rank(const sm_tok *t, uint32_t a, uint32_t b) {
    uint64_t key = ((uint64_t)a << 32) | b;
    uint32_t s = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 40) & t->pair_mask;
    for (;;) {
        uint64_t k = t->pair_key[s];
        if (k == key) return t->pair_rank[s];
        if (k == UINT64_MAX) return -1;
        s = (s + 1) & t->pair_mask;
    }
}

#endif
