/* sm_shard.h - llm.c token shards: 256 int32 header (magic 20240520, version 1, token count), then
 * uint16 tokens (little-endian). Version 7 (magic 20240801, uint32 tokens) is read too. */
#ifndef SM_SHARD_H
#define SM_SHARD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "../sm_common.h"

#define SM_SHARD_MAGIC 20240520
#define SM_SHARD_VERSION 1
#define SM_SHARD_MAGIC_U32 20240801
#define SM_SHARD_VERSION_U32 7
#define SM_SHARD_HEADER_BYTES 1024

typedef struct sm_shard {
    void *map;          /* the mmap'd file */
    size_t map_bytes;
    uint64_t ntokens;
    int token_bytes;    /* 2 or 4 */
    const void *tokens; /* ntokens tokens of token_bytes each */
} sm_shard;

/* Maps and validates a shard (magic, version, exact file size). SM_ERR_FORMAT names the file and the
 * mismatch for a foreign or truncated file. */
int sm_shard_open(sm_shard *s, const char *path, sm_error *err);
void sm_shard_close(sm_shard *s);
/* Token i of the shard (no bounds check: i < ntokens). */
static inline uint32_t sm_shard_token(const sm_shard *s, uint64_t i) {
    return s->token_bytes == 2 ? ((const uint16_t *)s->tokens)[i] : ((const uint32_t *)s->tokens)[i];
}

/* Streaming writer of a version-1 shard: tokens are appended, the header is written at close. */
typedef struct sm_shard_writer {
    FILE *f;
    uint64_t ntokens;
    char path[4096];
} sm_shard_writer;

int sm_shard_writer_open(sm_shard_writer *w, const char *path, sm_error *err);
/* Appends n tokens; each must be < 65536 (SM_ERR_ARG otherwise). */
int sm_shard_writer_append(sm_shard_writer *w, const uint32_t *tokens, size_t n, sm_error *err);
/* Writes the header, flushes and fsyncs, closes. The caller renames the file into place. */
int sm_shard_writer_close(sm_shard_writer *w, sm_error *err);
/* Closes and deletes a shard that will not be completed. */
void sm_shard_writer_abort(sm_shard_writer *w);

#endif
