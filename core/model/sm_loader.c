/* sm_loader.c - the mixture data loader. Each domain's shards are read back to back as one token stream
 * cut into windows of T+1 tokens (stride T). Common random numbers: a domain's k-th sequence is window
 * perm(k mod W) of a seeded permutation that depends only on the seed, the domain's name and its window
 * count W (wrapping around counts as epochs), and the training stream interleaves domains by sorting
 * per-sequence keys (k + jitter) / count_d, so changing one domain's quantity extends or cuts that
 * domain's sequence and leaves every other domain's sequences and their relative order untouched.
 * Validation reads a fixed stratified sample of windows spread over the whole validation stream. */
#include "sm_loader.h"
#include "sm_shard.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct lset {
    sm_shard *shards;
    size_t n;
    uint64_t *start; /* cumulative token offsets, n + 1 entries */
} lset;

typedef struct ldomain {
    char *name;
    lset train, val;
    uint64_t windows;   /* training windows of T+1 tokens available for the current T */
    uint64_t perm_a, perm_b; /* window of the k-th sequence: (perm_a * (k mod windows) + perm_b) mod windows */
    uint64_t planned;   /* sequences in the stream */
    uint64_t served;    /* sequences served up to the position */
} ldomain;

struct sm_loader {
    ldomain *d;
    size_t nd;
    int B, T, set;
    uint64_t seed;
    uint32_t *order; /* domain of each sequence slot */
    uint64_t nseq, pos; /* pos in batches */
};

static void lset_free(lset *s) {
    for (size_t i = 0; i < s->n; i++) sm_shard_close(&s->shards[i]);
    free(s->shards);
    free(s->start);
    memset(s, 0, sizeof *s);
}

static int lset_open(lset *s, const char *const *paths, size_t n, sm_error *err) {
    memset(s, 0, sizeof *s);
    s->shards = calloc(n ? n : 1, sizeof(sm_shard));
    s->start = calloc(n + 1, sizeof(uint64_t));
    if (!s->shards || !s->start) { lset_free(s); return sm_error_set(err, SM_ERR_NOMEM, "out of memory"); }
    for (size_t i = 0; i < n; i++) {
        int rc = sm_shard_open(&s->shards[i], paths[i], err);
        if (rc) { lset_free(s); return rc; }
        s->n = i + 1;
        s->start[i + 1] = s->start[i] + s->shards[i].ntokens;
    }
    return SM_OK;
}

static uint64_t lset_tokens(const lset *s) { return s->start[s->n]; }

/* Copies n tokens from offset (caller checked bounds); walks shard boundaries. */
static void lset_read(const lset *s, uint64_t off, size_t n, int32_t *out) {
    size_t k = 0;
    while (k + 1 < s->n && s->start[k + 1] <= off) k++;
    for (size_t i = 0; i < n; i++, off++) {
        while (off >= s->start[k + 1]) k++;
        out[i] = (int32_t)sm_shard_token(&s->shards[k], off - s->start[k]);
    }
}

void sm_loader_free(sm_loader *ld) {
    if (!ld) return;
    for (size_t i = 0; i < ld->nd; i++) {
        free(ld->d[i].name);
        lset_free(&ld->d[i].train);
        lset_free(&ld->d[i].val);
    }
    free(ld->d);
    free(ld->order);
    free(ld);
}

int sm_loader_open(sm_loader **out, const sm_loader_domain *domains, size_t ndomains, sm_error *err) {
    *out = NULL;
    if (ndomains == 0) return sm_error_set(err, SM_ERR_ARG, "the loader needs at least one domain");
    sm_loader *ld = calloc(1, sizeof *ld);
    if (!ld || !(ld->d = calloc(ndomains, sizeof(ldomain)))) {
        free(ld);
        return sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < ndomains; i++) {
        const sm_loader_domain *src = &domains[i];
        ldomain *d = &ld->d[i];
        ld->nd = i + 1;
        d->name = strdup(src->name ? src->name : "");
        int rc = d->name ? SM_OK : sm_error_set(err, SM_ERR_NOMEM, "out of memory");
        if (!rc) rc = lset_open(&d->train, src->train_paths, src->ntrain, err);
        if (!rc) rc = lset_open(&d->val, src->val_paths, src->nval, err);
        if (rc) {
            sm_error_wrap(err, "domain %s", src->name ? src->name : "?");
            sm_loader_free(ld);
            return rc;
        }
    }
    *out = ld;
    return SM_OK;
}

size_t sm_loader_num_domains(const sm_loader *ld) { return ld->nd; }
const char *sm_loader_domain_name(const sm_loader *ld, size_t i) { return i < ld->nd ? ld->d[i].name : NULL; }
uint64_t sm_loader_train_tokens(const sm_loader *ld, size_t i) { return i < ld->nd ? lset_tokens(&ld->d[i].train) : 0; }
uint64_t sm_loader_val_tokens(const sm_loader *ld, size_t i) { return i < ld->nd ? lset_tokens(&ld->d[i].val) : 0; }

int sm_loader_val_read(const sm_loader *ld, size_t i, uint64_t offset, size_t n, int32_t *out, sm_error *err) {
    if (i >= ld->nd) return sm_error_set(err, SM_ERR_ARG, "no domain %zu", i);
    uint64_t have = lset_tokens(&ld->d[i].val);
    if (offset > have || n > have - offset)
        return sm_error_set(err, SM_ERR_ARG, "domain %s: validation read of %zu tokens at %llu past its %llu tokens",
                            ld->d[i].name, n, (unsigned long long)offset, (unsigned long long)have);
    lset_read(&ld->d[i].val, offset, n, out);
    return SM_OK;
}

uint64_t sm_loader_val_rows(const sm_loader *ld, size_t i, int T) {
    uint64_t ntok = i < ld->nd ? lset_tokens(&ld->d[i].val) : 0;
    return T > 0 && ntok > (uint64_t)T ? (ntok - 1) / (uint64_t)T : 0;
}

int sm_loader_val_batch(const sm_loader *ld, size_t i, int T, uint64_t sample, uint64_t first, int n, int32_t *inputs,
                        int32_t *targets, sm_error *err) {
    if (i >= ld->nd) return sm_error_set(err, SM_ERR_ARG, "no domain %zu", i);
    uint64_t rows = sm_loader_val_rows(ld, i, T);
    if (sample > rows) sample = rows;
    if (n < 0 || first > sample || (uint64_t)n > sample - first)
        return sm_error_set(err, SM_ERR_ARG, "domain %s: validation rows %llu..%llu are past its sample of %llu rows of %d+1 tokens",
                            ld->d[i].name, (unsigned long long)first, (unsigned long long)first + (uint64_t)n,
                            (unsigned long long)sample, T);
    int32_t buf[T + 1];
    for (int r = 0; r < n; r++) {
        uint64_t j = first + (uint64_t)r;
        /* row j of a stratified sample: the middle window of the j-th of `sample` equal strata */
        uint64_t w = (uint64_t)floor(((double)j + 0.5) * (double)rows / (double)sample);
        lset_read(&ld->d[i].val, w * (uint64_t)T, (size_t)T + 1, buf);
        memcpy(inputs + (size_t)r * T, buf, (size_t)T * sizeof(int32_t));
        memcpy(targets + (size_t)r * T, buf + 1, (size_t)T * sizeof(int32_t));
    }
    return SM_OK;
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Unbiased integer in [0, n). */
static uint64_t rng_below(uint64_t *s, uint64_t n) {
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do r = rng_next(s); while (r >= lim);
    return r % n;
}

static uint64_t name_hash(const char *s) { /* FNV-1a */
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

static uint64_t gcd_u64(uint64_t a, uint64_t b) {
    while (b) { uint64_t t = a % b; a = b; b = t; }
    return a;
}

/* A seeded affine permutation of [0, w): a multiplier coprime with w near a seeded fraction of w (so
 * consecutive sequences land far apart, across the domain's sources) and a seeded offset. */
static void perm_init(ldomain *d, uint64_t seed) {
    d->perm_a = 1;
    d->perm_b = 0;
    if (d->windows < 2) return;
    uint64_t s = seed ^ name_hash(d->name);
    uint64_t w = d->windows;
    uint64_t a = (uint64_t)((0.3 + 0.4 * (double)(rng_next(&s) >> 11) * 0x1.0p-53) * (double)w);
    if (a == 0) a = 1;
    while (gcd_u64(a, w) != 1) a = a + 1 < w ? a + 1 : 1;
    d->perm_a = a;
    d->perm_b = rng_below(&s, w);
}

static uint64_t perm_window(const ldomain *d, uint64_t k) {
    unsigned __int128 p = (unsigned __int128)d->perm_a * (k % d->windows) + d->perm_b;
    return (uint64_t)(p % d->windows);
}

typedef struct slot {
    double key;
    uint32_t domain;
} slot;

static int cmp_slot(const void *a, const void *b) {
    const slot *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->domain < y->domain ? -1 : x->domain > y->domain;
}

int sm_loader_set_tokens(sm_loader *ld, const double *tokens, int B, int T, uint64_t seed, sm_error *err) {
    if (B < 1 || T < 1) return sm_error_set(err, SM_ERR_ARG, "batch %d x %d invalid", B, T);
    double sum = 0.0;
    for (size_t i = 0; i < ld->nd; i++) {
        if (!(tokens[i] >= 0.0) || !isfinite(tokens[i]))
            return sm_error_set(err, SM_ERR_ARG, "domain %s: token count %g must be a finite number >= 0", ld->d[i].name, tokens[i]);
        sum += tokens[i];
    }
    double nbd = floor(sum / ((double)B * T) + 0.5);
    if (nbd < 1) return sm_error_set(err, SM_ERR_ARG, "the mixture asks for %.0f tokens, less than one %d x %d batch", sum, B, T);
    if (nbd * B > 4e9) return sm_error_set(err, SM_ERR_ARG, "the mixture asks for %.0f sequences; at most 4e9 supported", nbd * B);
    uint64_t nseq = (uint64_t)nbd * (uint64_t)B;
    /* largest remainder: floors first, then the biggest fractional parts (ties to the lower index) */
    uint64_t *cnt = calloc(ld->nd, sizeof(uint64_t));
    double *frac = calloc(ld->nd, sizeof(double));
    if (!cnt || !frac) { free(cnt); free(frac); return sm_error_set(err, SM_ERR_NOMEM, "out of memory"); }
    uint64_t given = 0;
    for (size_t i = 0; i < ld->nd; i++) {
        double q = tokens[i] / sum * (double)nseq;
        cnt[i] = (uint64_t)floor(q);
        frac[i] = q - floor(q);
        given += cnt[i];
    }
    while (given < nseq) {
        size_t best = 0;
        for (size_t i = 1; i < ld->nd; i++) if (frac[i] > frac[best]) best = i;
        cnt[best]++;
        frac[best] = -1.0;
        given++;
    }
    while (given > nseq) { /* floating error only */
        size_t best = 0;
        for (size_t i = 1; i < ld->nd; i++) if (cnt[i] > cnt[best]) best = i;
        cnt[best]--;
        given--;
    }
    free(frac);
    for (size_t i = 0; i < ld->nd; i++) {
        uint64_t ntok = lset_tokens(&ld->d[i].train);
        uint64_t w = ntok > (uint64_t)T ? (ntok - 1) / (uint64_t)T : 0;
        if (cnt[i] > 0 && w == 0) {
            int rc = sm_error_set(err, SM_ERR_ARG, "domain %s: its training shards hold %llu tokens, fewer than one sequence of %d+1",
                                  ld->d[i].name, (unsigned long long)ntok, T);
            free(cnt);
            return rc;
        }
    }
    uint32_t *order = malloc(nseq * sizeof(uint32_t));
    slot *slots = malloc(nseq * sizeof(slot));
    if (!order || !slots) {
        free(order);
        free(slots);
        free(cnt);
        return sm_error_set(err, SM_ERR_NOMEM, "out of memory for %llu sequence slots", (unsigned long long)nseq);
    }
    /* domain i's k-th sequence sits at (k + u) / cnt_i with u in [0, 1) drawn from (seed, name, k) alone:
     * increasing in k, and independent of every other domain's count */
    uint64_t k = 0;
    for (size_t i = 0; i < ld->nd; i++) {
        uint64_t s = seed ^ name_hash(ld->d[i].name) ^ 0x10ade7ULL;
        for (uint64_t j = 0; j < cnt[i]; j++) {
            double u = (double)(rng_next(&s) >> 11) * 0x1.0p-53;
            slots[k].key = ((double)j + u) / (double)cnt[i];
            slots[k++].domain = (uint32_t)i;
        }
    }
    qsort(slots, nseq, sizeof *slots, cmp_slot);
    for (uint64_t j = 0; j < nseq; j++) order[j] = slots[j].domain;
    free(slots);
    free(ld->order);
    ld->order = order;
    ld->nseq = nseq;
    ld->B = B;
    ld->T = T;
    ld->seed = seed;
    ld->set = 1;
    ld->pos = 0;
    for (size_t i = 0; i < ld->nd; i++) {
        uint64_t ntok = lset_tokens(&ld->d[i].train);
        ld->d[i].windows = ntok > (uint64_t)T ? (ntok - 1) / (uint64_t)T : 0;
        perm_init(&ld->d[i], seed);
        ld->d[i].planned = cnt[i];
        ld->d[i].served = 0;
    }
    free(cnt);
    return SM_OK;
}

int sm_loader_set_weights(sm_loader *ld, const double *weights, double total_tokens, int B, int T, uint64_t seed, sm_error *err) {
    double sum = 0.0;
    for (size_t i = 0; i < ld->nd; i++) {
        if (!(weights[i] >= 0.0) || !isfinite(weights[i]))
            return sm_error_set(err, SM_ERR_ARG, "domain %s: weight %g must be a finite number >= 0", ld->d[i].name, weights[i]);
        sum += weights[i];
    }
    if (!(sum > 0.0)) return sm_error_set(err, SM_ERR_ARG, "mixture weights sum to 0");
    if (!(total_tokens > 0.0) || !isfinite(total_tokens)) return sm_error_set(err, SM_ERR_ARG, "token budget %g must be > 0", total_tokens);
    double *tok = malloc(ld->nd * sizeof(double));
    if (!tok) return sm_error_set(err, SM_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < ld->nd; i++) tok[i] = weights[i] / sum * total_tokens;
    int rc = sm_loader_set_tokens(ld, tok, B, T, seed, err);
    free(tok);
    return rc;
}

int64_t sm_loader_num_batches(const sm_loader *ld) { return ld->set ? (int64_t)(ld->nseq / (uint64_t)ld->B) : 0; }

int sm_loader_batch_shape(const sm_loader *ld, int *B, int *T, uint64_t *seed, sm_error *err) {
    if (!ld->set) return sm_error_set(err, SM_ERR_ARG, "no mixture set on the loader (call sm_loader_set_tokens or _weights)");
    if (B) *B = ld->B;
    if (T) *T = ld->T;
    if (seed) *seed = ld->seed;
    return SM_OK;
}

void sm_loader_planned(const sm_loader *ld, uint64_t *sequences) {
    for (size_t i = 0; i < ld->nd; i++) sequences[i] = ld->set ? ld->d[i].planned : 0;
}

int sm_loader_next(sm_loader *ld, int32_t *inputs, int32_t *targets, sm_error *err) {
    if (!ld->set) return sm_error_set(err, SM_ERR_ARG, "no mixture set on the loader (call sm_loader_set_tokens or _weights)");
    if (ld->pos >= ld->nseq / (uint64_t)ld->B)
        return sm_error_set(err, SM_ERR_ARG, "the training stream is exhausted after %llu batches (ask the mixture for more tokens)",
                            (unsigned long long)(ld->nseq / (uint64_t)ld->B));
    int T = ld->T;
    int32_t buf[T + 1];
    for (int r = 0; r < ld->B; r++) {
        ldomain *d = &ld->d[ld->order[ld->pos * (uint64_t)ld->B + r]];
        uint64_t w = perm_window(d, d->served);
        lset_read(&d->train, w * (uint64_t)T, (size_t)T + 1, buf);
        memcpy(inputs + (size_t)r * T, buf, (size_t)T * sizeof(int32_t));
        memcpy(targets + (size_t)r * T, buf + 1, (size_t)T * sizeof(int32_t));
        d->served++;
    }
    ld->pos++;
    return SM_OK;
}

uint64_t sm_loader_position(const sm_loader *ld) { return ld->pos; }

int sm_loader_seek(sm_loader *ld, uint64_t position, sm_error *err) {
    if (!ld->set) return sm_error_set(err, SM_ERR_ARG, "no mixture set on the loader (call sm_loader_set_tokens or _weights)");
    if (position > ld->nseq / (uint64_t)ld->B)
        return sm_error_set(err, SM_ERR_ARG, "position %llu is past the stream's %llu batches", (unsigned long long)position,
                            (unsigned long long)(ld->nseq / (uint64_t)ld->B));
    for (size_t i = 0; i < ld->nd; i++) ld->d[i].served = 0;
    uint64_t n = position * (uint64_t)ld->B;
    for (uint64_t s = 0; s < n; s++) ld->d[ld->order[s]].served++;
    ld->pos = position;
    return SM_OK;
}

void sm_loader_served(const sm_loader *ld, uint64_t *tokens, double *epochs) {
    for (size_t i = 0; i < ld->nd; i++) {
        const ldomain *d = &ld->d[i];
        if (tokens) tokens[i] = ld->set ? d->served * (uint64_t)ld->T : 0;
        if (epochs) {
            double e = (ld->set && d->windows) ? (double)d->served / (double)d->windows - 1.0 : 0.0;
            epochs[i] = e > 0.0 ? e : 0.0;
        }
    }
}
