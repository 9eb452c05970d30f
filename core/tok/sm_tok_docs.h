/* sm_tok_docs.h - streaming document readers for the tokenize stage: .txt and .jsonl, each plain,
 * gzip (.gz) or zstd (.zst).
 *
 * .txt: documents are separated by a line holding only a form feed ("\f", optionally followed by
 * "\r"); a file without such a line is one document. A document's text is every byte between
 * separators, newlines included, separator lines excluded.
 * .jsonl: one JSON object per line; the document is its string field "text" (RedPajama, Dolma, FineWeb).
 * Blank lines are ignored. A malformed line (not JSON, not an object, no string "text", a \u0000 in
 * it) is a warning naming file:line and is skipped, or, with fail_bad_lines, an SM_ERR_FORMAT error.
 *
 * Memory is bounded by max_doc_bytes: a document (for .jsonl: a line) longer than that is skipped
 * whole with a warning naming the file and line, without ever being held in memory. A document that
 * holds a NUL byte is skipped with a warning; a file with a NUL in its first 64 KiB (after
 * decompression) is reported as binary by sm_tok_docs_binary() and should be skipped whole.
 * Compressed files are checked for their magic number; a truncated or corrupt stream is SM_ERR_FORMAT.
 * Empty documents are dropped silently. */
#ifndef SM_TOK_DOCS_H
#define SM_TOK_DOCS_H

#include <stddef.h>
#include <stdint.h>
#include "../sm_common.h"

typedef struct sm_tok_docs sm_tok_docs;
typedef void (*sm_tok_docs_warn_fn)(void *ctx, const char *msg);

enum { SM_TOK_DOCS_TXT = 1, SM_TOK_DOCS_JSONL = 2 };
enum { SM_TOK_DOCS_PLAIN = 0, SM_TOK_DOCS_GZ = 1, SM_TOK_DOCS_ZST = 2 };

/* The format of a file from its name: SM_TOK_DOCS_TXT or _JSONL (and *compression), or 0 if the name
 * has none of the supported extensions. */
int sm_tok_docs_format(const char *name, int *compression);
/* Opens path (format from its name) and reads its first 64 KiB. warn (may be NULL) receives warnings. */
int sm_tok_docs_open(sm_tok_docs **out, const char *path, size_t max_doc_bytes, int fail_bad_lines,
                     sm_tok_docs_warn_fn warn, void *warn_ctx, sm_error *err);
/* Nonzero if the file's first 64 KiB hold a NUL byte. */
int sm_tok_docs_binary(const sm_tok_docs *d);
/* The next document: 1 with *text / *len (valid until the next call), 0 at the end of the file, or a
 * negative code with err filled (I/O error, corrupt compressed stream, a bad line with fail_bad_lines). */
int sm_tok_docs_next(sm_tok_docs *d, const char **text, size_t *len, sm_error *err);
/* .jsonl only, for callers that parse lines on other threads: the next non-blank line, unparsed and
 * without surrounding blanks (*lineno its 1-based number); a line longer than max_doc_bytes is skipped
 * with a warning. 1, 0 at the end of the file, or a negative code. */
int sm_tok_docs_next_line(sm_tok_docs *d, const char **line, size_t *len, uint64_t *lineno, sm_error *err);
/* Parses one JSONL line: 1 with its "text" copied into *buf (realloc'd, *cap its size) and *len set; 0 if
 * the line is malformed, with the reason in why; -1 out of memory. Thread-safe. */
int sm_tok_jsonl_text(const char *line, size_t n, char **buf, size_t *cap, size_t *len, char *why, size_t why_cap);
/* The message for a malformed JSONL line (path:line: why), worded for on_bad_line = fail or skip; malloc'd,
 * NULL when out of memory. */
char *sm_tok_bad_line_msg(const char *path, uint64_t lineno, const char *why, int fail);
/* Bytes of the file (compressed, as on disk) read so far. */
uint64_t sm_tok_docs_raw_bytes(const sm_tok_docs *d);
/* Documents and lines skipped with a warning so far. */
uint64_t sm_tok_docs_skipped(const sm_tok_docs *d);
/* Reads the rest of the file and writes the sha256 of its bytes as on disk. */
int sm_tok_docs_digest(sm_tok_docs *d, char hex[65], sm_error *err);
void sm_tok_docs_close(sm_tok_docs *d);

#endif
