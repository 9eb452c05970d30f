/* sm_loader.c - the mixture data loader. Each domain's shards are read back to back as one token stream;
 * the training stream is a seeded shuffle of per-domain sequence slots whose counts follow the mixture
 * exactly, and each domain's k-th sequence is its k-th window of T+1 tokens (stride T), wrapping around
 * (counted as epochs) when a domain has fewer windows than the mixture asks for. */
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
    if (!order) { free(cnt); return sm_error_set(err, SM_ERR_NOMEM, "out of memory for %llu sequence slots", (unsigned long long)nseq); }
    uint64_t k = 0;
    for (size_t i = 0; i < ld->nd; i++)
        for (uint64_t j = 0; j < cnt[i]; j++) order[k++] = (uint32_t)i;
    uint64_t s = seed ^ 0x10ade7ULL;
    for (uint64_t i = nseq - 1; i > 0; i--) {
        uint64_t j = rng_below(&s, i + 1);
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
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
        uint64_t w = d->served % d->windows;
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
