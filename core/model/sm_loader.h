/* sm_loader.h - the mixture data loader: one set of training shards and one set of validation shards
 * per domain; draws B x T (+1) training sequences according to a mixture, deterministically from a seed.
 * Owner: the model module. */
#ifndef SM_LOADER_H
#define SM_LOADER_H

#include <stddef.h>
#include <stdint.h>
#include "../sm_common.h"

typedef struct sm_loader sm_loader;

typedef struct sm_loader_domain {
    const char *name;
    const char *const *train_paths; size_t ntrain;
    const char *const *val_paths;   size_t nval;
} sm_loader_domain;

/* Opens every shard (validated). */
int sm_loader_open(sm_loader **out, const sm_loader_domain *domains, size_t ndomains, sm_error *err);
void sm_loader_free(sm_loader *ld);
size_t sm_loader_num_domains(const sm_loader *ld);
const char *sm_loader_domain_name(const sm_loader *ld, size_t i);
uint64_t sm_loader_train_tokens(const sm_loader *ld, size_t i); /* tokens available for training */

/* Sets the mixture for the next training stream: tokens[i] tokens of domain i in total over the run
 * (the stream is then round(sum(tokens)/(B*T)) batches; each domain gets its share of those B*batches
 * sequences, rounded by largest remainder so the total is exact). Common random numbers: domain i's k-th
 * sequence is a window chosen by a seeded permutation of its windows that depends on (seed, name, T)
 * only, and domains are interleaved by seeded per-sequence keys that no other domain's count changes, so
 * a run with more or fewer tokens of one domain extends or cuts that domain's sequence and keeps the
 * others' sequences and relative order. Resets the position to 0 and the served counts.
 * sm_loader_set_weights does the same from weights and a total token budget. */
int sm_loader_set_tokens(sm_loader *ld, const double *tokens, int B, int T, uint64_t seed, sm_error *err);
int sm_loader_set_weights(sm_loader *ld, const double *weights, double total_tokens, int B, int T, uint64_t seed, sm_error *err);
/* Total optimizer-free number of B x T batches in the stream set above. */
int64_t sm_loader_num_batches(const sm_loader *ld);
/* Fills inputs/targets (B*T each) with the next batch of the stream. */
int sm_loader_next(sm_loader *ld, int32_t *inputs, int32_t *targets, sm_error *err);
/* Stream position, for resume files. */
uint64_t sm_loader_position(const sm_loader *ld);
int sm_loader_seek(sm_loader *ld, uint64_t position, sm_error *err);
/* The B, T and seed of the mixture set last; SM_ERR_ARG when none is set. */
int sm_loader_batch_shape(const sm_loader *ld, int *B, int *T, uint64_t *seed, sm_error *err);
/* Sequences per domain in the stream set last (ndomains entries). */
void sm_loader_planned(const sm_loader *ld, uint64_t *sequences);
/* Tokens in domain i's validation shards, read back to back as one stream. */
uint64_t sm_loader_val_tokens(const sm_loader *ld, size_t i);
/* Copies n validation tokens of domain i starting at offset; SM_ERR_ARG past the end. */
int sm_loader_val_read(const sm_loader *ld, size_t i, uint64_t offset, size_t n, int32_t *out, sm_error *err);
/* Validation windows of T+1 tokens (stride T) in domain i's validation shards. */
uint64_t sm_loader_val_rows(const sm_loader *ld, size_t i, int T);
/* Fills n rows (inputs/targets, n*T each) with rows first..first+n-1 of domain i's fixed validation sample
 * of `sample` rows (all rows when it has fewer): a stratified sample spread over the whole validation
 * stream, the same for every run with the same T and sample size. SM_ERR_ARG past the sample's end. */
int sm_loader_val_batch(const sm_loader *ld, size_t i, int T, uint64_t sample, uint64_t first, int n, int32_t *inputs,
                        int32_t *targets, sm_error *err);
/* Tokens served so far per domain, and epochs (times a domain's data had to repeat; 0 = no repeat).
 * Training sequences are windows of T+1 tokens (stride T) over a domain's shards read back to back, in
 * the permuted order above; when a domain's windows run out it starts over in the same order, and
 * epochs[i] = max(0, windows served / windows available - 1) (fractional). Either array may be NULL. */
void sm_loader_served(const sm_loader *ld, uint64_t *tokens, double *epochs);

#endif
