/* sm_tok_cli.c - `scalemix encode` and `scalemix decode`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sm_commands.h"
#include "sm_tok.h"

static int read_all(FILE *f, char **buf, size_t *len) {
    size_t cap = 1 << 16;
    *len = 0;
    *buf = malloc(cap);
    if (!*buf) return -1;
    for (;;) {
        if (*len == cap) {
            char *nb = realloc(*buf, cap * 2);
            if (!nb) return -1;
            *buf = nb;
            cap *= 2;
        }
        size_t got = fread(*buf + *len, 1, cap - *len, f);
        *len += got;
        if (got == 0) return ferror(f) ? -1 : 0;
    }
}

/* Parses [--vocab PATH] [--allow-special when allowed]; returns -1 on --help, -2 on a usage error. */
static int parse_args(int argc, char **argv, int allow_special_ok, const char **vocab, int *allow_special) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return -1;
        if (!strcmp(argv[i], "--vocab") && i + 1 < argc) *vocab = argv[++i];
        else if (!strncmp(argv[i], "--vocab=", 8)) *vocab = argv[i] + 8;
        else if (allow_special_ok && !strcmp(argv[i], "--allow-special")) *allow_special = 1;
        else {
            fprintf(stderr, "%s: unknown or incomplete argument '%s' (see --help)\n", argv[0], argv[i]);
            return -2;
        }
    }
    return 0;
}

int sm_cmd_encode(int argc, char **argv) {
    const char *vocab = NULL;
    int allow_special = 0;
    int a = parse_args(argc, argv, 1, &vocab, &allow_special);
    if (a == -1) {
        printf("usage: scalemix encode [--vocab PATH] [--allow-special]\n"
               "Reads text on stdin and prints its GPT-2 token ids, space-separated, then a newline.\n"
               "Bytes that are not valid UTF-8 are encoded byte-level. '<|endoftext|>' is ordinary text\n"
               "unless --allow-special makes it token 50256.\n"
               "  --vocab PATH   GPT-2 vocab.bpe (default: $SCALEMIX_VOCAB, else <build>/vocab/vocab.bpe)\n");
        return 0;
    }
    if (a < 0) return 2;
    sm_error err = {0};
    sm_tok *t;
    if (sm_tok_load(&t, vocab, &err) != SM_OK) {
        fprintf(stderr, "encode: %s\n", err.msg);
        return 1;
    }
    char *text;
    size_t n;
    if (read_all(stdin, &text, &n)) {
        fprintf(stderr, "encode: cannot read stdin: %s\n", strerror(errno));
        free(text);
        sm_tok_free(t);
        return 1;
    }
    sm_tok_enc *e = sm_tok_enc_new(t);
    sm_tok_ids ids = {0};
    int rc = 1;
    if (!e) fprintf(stderr, "encode: out of memory\n");
    else if (sm_tok_encode(e, text, n, allow_special, &ids, &err) != SM_OK) fprintf(stderr, "encode: %s\n", err.msg);
    else {
        for (size_t i = 0; i < ids.n; i++) printf(i ? " %u" : "%u", ids.ids[i]);
        printf("\n");
        rc = fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
        if (rc) fprintf(stderr, "encode: cannot write stdout: %s\n", strerror(errno));
    }
    sm_tok_ids_free(&ids);
    sm_tok_enc_free(e);
    free(text);
    sm_tok_free(t);
    return rc;
}

int sm_cmd_decode(int argc, char **argv) {
    const char *vocab = NULL;
    int unused = 0;
    int a = parse_args(argc, argv, 0, &vocab, &unused);
    if (a == -1) {
        printf("usage: scalemix decode [--vocab PATH]\n"
               "Reads GPT-2 token ids (decimal, separated by white space) on stdin and writes their bytes\n"
               "to stdout exactly, with no added newline.\n"
               "  --vocab PATH   GPT-2 vocab.bpe (default: $SCALEMIX_VOCAB, else <build>/vocab/vocab.bpe)\n");
        return 0;
    }
    if (a < 0) return 2;
    sm_error err = {0};
    sm_tok *t;
    if (sm_tok_load(&t, vocab, &err) != SM_OK) {
        fprintf(stderr, "decode: %s\n", err.msg);
        return 1;
    }
    char *text;
    size_t n;
    int rc = 1;
    sm_tok_ids ids = {0};
    char *out = NULL;
    size_t olen = 0, ocap = 0;
    if (read_all(stdin, &text, &n)) {
        fprintf(stderr, "decode: cannot read stdin: %s\n", strerror(errno));
        goto done;
    }
    for (size_t i = 0; i < n;) {
        while (i < n && (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r')) i++;
        if (i == n) break;
        uint64_t v = 0;
        size_t start = i;
        while (i < n && text[i] >= '0' && text[i] <= '9' && v <= SM_TOK_VOCAB_SIZE) v = v * 10 + (uint64_t)(text[i++] - '0');
        if (i == start || (i < n && !(text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r'))) {
            fprintf(stderr, "decode: byte %zu of stdin: expected a decimal token id\n", start);
            goto done;
        }
        if (v >= SM_TOK_VOCAB_SIZE) {
            fprintf(stderr, "decode: token %.*s at byte %zu is not a GPT-2 id (0..%u)\n", (int)(i - start), text + start, start,
                    SM_TOK_VOCAB_SIZE - 1);
            goto done;
        }
        if (ids.n == ids.cap) {
            size_t nc = ids.cap ? ids.cap * 2 : 1024;
            uint32_t *ni = realloc(ids.ids, nc * sizeof *ni);
            if (!ni) { fprintf(stderr, "decode: out of memory\n"); goto done; }
            ids.ids = ni;
            ids.cap = nc;
        }
        ids.ids[ids.n++] = (uint32_t)v;
    }
    if (sm_tok_decode(t, ids.ids, ids.n, &out, &olen, &ocap, &err) != SM_OK) {
        fprintf(stderr, "decode: %s\n", err.msg);
        goto done;
    }
    if ((olen && fwrite(out, 1, olen, stdout) != olen) || fflush(stdout) != 0) {
        fprintf(stderr, "decode: cannot write stdout: %s\n", strerror(errno));
        goto done;
    }
    rc = 0;
done:
    free(out);
    free(text);
    sm_tok_ids_free(&ids);
    sm_tok_free(t);
    return rc;
}
