/* sm_tok.h - exact GPT-2 byte-level BPE (the tokenizer of OpenAI's GPT-2 and tiktoken's "gpt2").
 *
 * A vocabulary (sm_tok) is built from GPT-2's merge list vocab.bpe alone: ids 0..255 are single bytes
 * in bytes_to_unicode order, merge line i makes id 256 + i, and 50256 is <|endoftext|>. It is
 * immutable once loaded and may be shared by any number of threads. Encoding needs a per-thread
 * sm_tok_enc (word cache and scratch buffers), so steady-state encoding allocates nothing per token.
 *
 * Pre-tokenizer: GPT-2's regex
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * with \p{L} and \p{N} from libutf8proc's general categories and \s = Unicode White_Space
 * (categories Zs, Zl, Zp plus the control characters PropList.txt lists: U+0009..U+000D, U+0085).
 * Bytes that are not valid UTF-8 are each treated as one character of the "other" class
 * ([^\s\p{L}\p{N}]) and encoded byte-level, so every byte string round-trips exactly. */
#ifndef SM_TOK_H
#define SM_TOK_H

#include <stddef.h>
#include <stdint.h>
#include "../sm_common.h"

#define SM_TOK_EOT 50256u       /* <|endoftext|> */
#define SM_TOK_VOCAB_SIZE 50257u
#define SM_TOK_VOCAB_SHA256 "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"

typedef struct sm_tok sm_tok;
typedef struct sm_tok_enc sm_tok_enc;

/* A growable array of token ids; zero-initialise, append with the encoder, free with sm_tok_ids_free. */
typedef struct sm_tok_ids {
    uint32_t *ids;
    size_t n, cap;
} sm_tok_ids;

/* The default vocabulary path: $SCALEMIX_VOCAB when set and non-empty, else sm_build_dir()/vocab/vocab.bpe. */
const char *sm_tok_default_vocab(char *buf, size_t cap);
/* Loads vocab.bpe from path (NULL or "" = the default). SM_ERR_IO / SM_ERR_FORMAT name the file and the
 * bad line; a file whose sha256 differs from GPT-2's is accepted only if it parses (a warning is logged). */
int sm_tok_load(sm_tok **out, const char *path, sm_error *err);
void sm_tok_free(sm_tok *t);
/* sha256 (hex) of the vocab.bpe file this vocabulary was loaded from. */
const char *sm_tok_vocab_sha256(const sm_tok *t);
/* The bytes of token id (NULL if id >= SM_TOK_VOCAB_SIZE); *len receives their count. */
const uint8_t *sm_tok_token_bytes(const sm_tok *t, uint32_t id, size_t *len);
/* Merge rank of the pair (a, b), or -1 if GPT-2 never merges it. */
int32_t sm_tok_merge_rank(const sm_tok *t, uint32_t a, uint32_t b);

/* A per-thread encoder over t (t must outlive it). NULL when out of memory. */
sm_tok_enc *sm_tok_enc_new(const sm_tok *t);
void sm_tok_enc_free(sm_tok_enc *e);
/* Appends the ids of text[0..n) to out. allow_special: "<|endoftext|>" becomes 50256 instead of
 * ordinary text. Any byte string is accepted. SM_ERR_NOMEM is the only failure. */
int sm_tok_encode(sm_tok_enc *e, const void *text, size_t n, int allow_special, sm_tok_ids *out, sm_error *err);
/* Appends the bytes of ids to *buf (realloc'd; *len and *cap track it). SM_ERR_ARG names an id that
 * is not in the vocabulary. */
int sm_tok_decode(const sm_tok *t, const uint32_t *ids, size_t n, char **buf, size_t *len, size_t *cap,
                  sm_error *err);
/* Frees the array and zeroes it. */
void sm_tok_ids_free(sm_tok_ids *ids);

/* Pre-tokenizer: the length in bytes of the GPT-2 pre-token starting at text[0] (n > 0). Exposed for
 * tests and for callers that split text at pre-token boundaries. */
size_t sm_tok_pretoken_len(const uint8_t *text, size_t n);
/* Character classes used by the pre-tokenizer. */
enum { SM_TOK_CLASS_OTHER = 0, SM_TOK_CLASS_LETTER = 1, SM_TOK_CLASS_NUMBER = 2, SM_TOK_CLASS_SPACE = 3 };
/* Class of code point cp (White_Space wins; not a code point -> OTHER). */
int sm_tok_class_of(int32_t cp);

#endif
