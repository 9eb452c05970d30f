/* test_tok.c - the GPT-2 tokenizer: shared vectors, round trips, classes, special tokens, the CLI. */
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utf8proc.h>

#include "../sm_test.h"
#include "sm_commands.h"
#include "tok/sm_tok.h"

static sm_tok *tok;
static sm_tok_enc *enc;
static char vocab_err[1100];

static int encode(const void *s, size_t n, int special, sm_tok_ids *ids) {
    ids->n = 0;
    sm_error err = {0};
    return sm_tok_encode(enc, s, n, special, ids, &err);
}

static void need_vocab(void) {
    if (!tok) FAILF("no vocabulary (a build product of `make`): %s", vocab_err);
}

static FILE *open_vectors(char *path, size_t cap) {
    const char *root = getenv("SM_ROOT");
    const char *cands[] = {"%s/../shared/testdata/gpt2_vectors.tsv", "%s/shared/testdata/gpt2_vectors.tsv"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, cap, cands[i], root ? root : ".");
        FILE *f = fopen(path, "r");
        if (f) return f;
    }
    snprintf(path, cap, "../shared/testdata/gpt2_vectors.tsv");
    return fopen(path, "r");
}

static size_t unhex(const char *h, size_t hl, uint8_t *out) {
    size_t n = 0;
    for (size_t i = 0; i + 1 < hl + 1 && i < hl; i += 2) {
        unsigned v;
        sscanf(h + i, "%2x", &v);
        out[n++] = (uint8_t)v;
    }
    return n;
}

TEST(shared_vectors_exact) {
    need_vocab();
    char path[4096];
    FILE *f = open_vectors(path, sizeof path);
    if (!f) SKIP("gpt2_vectors.tsv not found (looked in $SM_ROOT/../shared/testdata and ../shared/testdata)");
    char *line = NULL;
    size_t lcap = 0;
    int cases = 0, bad = 0;
    sm_tok_ids ids = {0};
    while (getline(&line, &lcap, f) > 0) {
        if (line[0] == '#') continue;
        char *tab1 = strchr(line, '\t');
        if (!tab1) continue;
        char *tab2 = strchr(tab1 + 1, '\t');
        CHECK(tab2 != NULL);
        size_t hl = (size_t)(tab1 - line);
        uint8_t *text = malloc(hl / 2 + 1);
        size_t n = unhex(line, hl, text);
        int special = !strncmp(tab2 + 1, "special", 7);
        CHECK_EQ_INT(encode(text, n, special, &ids), SM_OK);
        char got[65536];
        size_t gl = 0;
        got[0] = 0;
        for (size_t i = 0; i < ids.n && gl < sizeof got - 16; i++) gl += (size_t)snprintf(got + gl, sizeof got - gl, i ? " %u" : "%u", ids.ids[i]);
        *tab2 = 0;
        if (strcmp(got, tab1 + 1) != 0) {
            fprintf(stderr, "  vector %d (%.60s): got [%s] want [%s]\n", cases, line, got, tab1 + 1);
            bad++;
        }
        /* decoding gives the text back */
        char *dec = NULL;
        size_t dl = 0, dc = 0;
        sm_error err;
        CHECK_EQ_INT(sm_tok_decode(tok, ids.ids, ids.n, &dec, &dl, &dc, &err), SM_OK);
        CHECK(dl == n && (n == 0 || !memcmp(dec, text, n)));
        free(dec);
        free(text);
        cases++;
    }
    free(line);
    fclose(f);
    sm_tok_ids_free(&ids);
    printf("  %d vectors from %s, %d mismatched\n", cases, path, bad);
    CHECK(cases >= 40);
    CHECK_EQ_INT(bad, 0);
}

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint64_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void check_round_trip(const uint8_t *s, size_t n) {
    sm_tok_ids ids = {0};
    CHECK_EQ_INT(encode(s, n, 0, &ids), SM_OK);
    char *dec = NULL;
    size_t dl = 0, dc = 0;
    sm_error err;
    CHECK_EQ_INT(sm_tok_decode(tok, ids.ids, ids.n, &dec, &dl, &dc, &err), SM_OK);
    CHECK_MSG(dl == n && (n == 0 || !memcmp(dec, s, n)), "round trip of %zu bytes gave %zu bytes", n, dl);
    for (size_t i = 0; i < ids.n; i++) CHECK(ids.ids[i] < SM_TOK_EOT);
    free(dec);
    sm_tok_ids_free(&ids);
}

TEST(round_trip_random_bytes) {
    need_vocab();
    uint8_t buf[4096];
    static const uint8_t alphabet[] = " \t\n\r'sSaAzZ09.,!\xc3\xa9\xe2\x80\x83\xf0\x9f\x98\x80\xff\xc0\x80";
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = next_rand() % 300;
        int mode = iter % 3;
        for (size_t i = 0; i < n; i++)
            buf[i] = mode == 0 ? (uint8_t)next_rand() : mode == 1 ? alphabet[next_rand() % (sizeof alphabet - 1)] : (uint8_t)(next_rand() % 128);
        check_round_trip(buf, n);
    }
}

TEST(round_trip_real_text) {
    need_vocab();
    const char *files[] = {"/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/Apache-2.0", "/etc/services"};
    int done = 0;
    for (size_t i = 0; i < SM_ARRAY_LEN(files); i++) {
        FILE *f = fopen(files[i], "rb");
        if (!f) continue;
        static uint8_t buf[1 << 20];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        check_round_trip(buf, n);
        done++;
    }
    if (!done) SKIP("none of the real text files exist here");
}

/* Pieces longer than the quadratic merger's limit go through the heap merger; both must agree with
 * GPT-2 (8 x's are one token, 24223). */
TEST(long_words_heap_merger) {
    need_vocab();
    sm_tok_ids ids = {0};
    for (size_t n = 8; n <= 4096; n += 8) {
        char *s = malloc(n);
        memset(s, 'x', n);
        CHECK_EQ_INT(encode(s, n, 0, &ids), SM_OK);
        CHECK_EQ_INT(ids.n, n / 8);
        for (size_t i = 0; i < ids.n; i++) CHECK_EQ_INT(ids.ids[i], 24223);
        free(s);
    }
    /* random letters: heap and quadratic merges agree when the same word is split by spaces out of
     * the cache's reach: compare a long word to itself in isolation and embedded */
    char w[600];
    for (int iter = 0; iter < 200; iter++) {
        size_t n = 90 + next_rand() % 500;
        for (size_t i = 0; i < n; i++) w[i] = "abcdefghijklmnopqrstuvwxyzeeaaoonn"[next_rand() % 34];
        sm_tok_ids a = {0};
        CHECK_EQ_INT(encode(w, n, 0, &a), SM_OK);
        /* Reference: repeated lowest-rank-pair merging done naively here. */
        uint32_t sym[600];
        size_t m = n;
        size_t blen;
        for (size_t i = 0; i < n; i++) {
            for (uint32_t id = 0; id < 256; id++) {
                const uint8_t *b = sm_tok_token_bytes(tok, id, &blen);
                if (blen == 1 && b[0] == (uint8_t)w[i]) { sym[i] = id; break; }
            }
        }
        for (;;) {
            int32_t best = -1;
            size_t bi = 0;
            for (size_t i = 0; i + 1 < m; i++) {
                int32_t r = sm_tok_merge_rank(tok, sym[i], sym[i + 1]);
                if (r >= 0 && (best < 0 || r < best)) { best = r; bi = i; }
            }
            if (best < 0) break;
            sym[bi] = 256 + (uint32_t)best;
            memmove(sym + bi + 1, sym + bi + 2, (m - bi - 2) * sizeof *sym);
            m--;
        }
        CHECK_EQ_INT(a.n, m);
        for (size_t i = 0; i < m; i++) CHECK_EQ_INT(a.ids[i], sym[i]);
        sm_tok_ids_free(&a);
    }
    sm_tok_ids_free(&ids);
}

TEST(special_token_only_when_allowed) {
    need_vocab();
    sm_tok_ids ids = {0};
    const char *s = "a<|endoftext|>b<|endoftext|>";
    CHECK_EQ_INT(encode(s, strlen(s), 1, &ids), SM_OK);
    CHECK_EQ_INT(ids.n, 4);
    CHECK_EQ_INT(ids.ids[1], SM_TOK_EOT);
    CHECK_EQ_INT(ids.ids[3], SM_TOK_EOT);
    CHECK_EQ_INT(encode(s, strlen(s), 0, &ids), SM_OK);
    for (size_t i = 0; i < ids.n; i++) CHECK(ids.ids[i] != SM_TOK_EOT);
    sm_tok_ids_free(&ids);
}

/* \s is White_Space: U+0085 and U+00A0 are spaces, U+FEFF and U+200B are not. */
TEST(white_space_class) {
    const int32_t spaces[] = {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
    const int32_t not_spaces[] = {0x1C, 0x1F, 0x180E, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF};
    for (size_t i = 0; i < SM_ARRAY_LEN(spaces); i++) CHECK_MSG(sm_tok_class_of(spaces[i]) == SM_TOK_CLASS_SPACE, "U+%04X", spaces[i]);
    for (size_t i = 0; i < SM_ARRAY_LEN(not_spaces); i++) CHECK_MSG(sm_tok_class_of(not_spaces[i]) != SM_TOK_CLASS_SPACE, "U+%04X", not_spaces[i]);
    CHECK_EQ_INT(sm_tok_class_of(0x00E9), SM_TOK_CLASS_LETTER);
    CHECK_EQ_INT(sm_tok_class_of(0x0663), SM_TOK_CLASS_NUMBER); /* ARABIC-INDIC DIGIT THREE */
    CHECK_EQ_INT(sm_tok_class_of(0x2167), SM_TOK_CLASS_NUMBER); /* ROMAN NUMERAL EIGHT (Nl) */
    CHECK_EQ_INT(sm_tok_class_of(0x1F600), SM_TOK_CLASS_OTHER);
    /* "a\u0085b": \u0085 separates (JavaScript's \s would not) */
    CHECK_EQ_INT(sm_tok_pretoken_len((const uint8_t *)"a\xc2\x85" "b", 4), 1);
    CHECK_EQ_INT(sm_tok_pretoken_len((const uint8_t *)"\xc2\x85" "b", 3), 2);
    CHECK_EQ_INT(sm_tok_pretoken_len((const uint8_t *)"\xef\xbb\xbf!x", 5), 4); /* FEFF is "other" */
}

/* When Debian's unicode-data is installed, White_Space must match PropList.txt exactly. */
TEST(white_space_matches_proplist) {
    FILE *f = fopen("/usr/share/unicode/PropList.txt", "r");
    if (!f) SKIP("/usr/share/unicode/PropList.txt absent (Debian package unicode-data not installed)");
    static uint8_t ws[0x110000];
    char line[512];
    while (fgets(line, sizeof line, f)) {
        unsigned a, b;
        char prop[64];
        if (sscanf(line, "%x..%x ; %63s", &a, &b, prop) == 3) {}
        else if (sscanf(line, "%x ; %63s", &a, prop) == 2) b = a;
        else continue;
        if (!strcmp(prop, "White_Space")) for (unsigned c = a; c <= b; c++) ws[c] = 1;
    }
    fclose(f);
    for (int32_t c = 0; c < 0x110000; c++)
        CHECK_MSG((sm_tok_class_of(c) == SM_TOK_CLASS_SPACE) == ws[c], "U+%04X: White_Space %d", c, ws[c]);
}

/* And \p{L} / \p{N} must match the general categories of UnicodeData.txt (same package). */
TEST(letter_number_match_unicodedata) {
    FILE *f = fopen("/usr/share/unicode/UnicodeData.txt", "r");
    if (!f) SKIP("/usr/share/unicode/UnicodeData.txt absent (Debian package unicode-data not installed)");
    static char cat[0x110000];
    char line[1024];
    long first = -1;
    while (fgets(line, sizeof line, f)) {
        char *name = strchr(line, ';'), *gc = name ? strchr(name + 1, ';') : NULL;
        if (!gc) continue;
        long cp = strtol(line, NULL, 16);
        char c = gc[1];
        if (strstr(name, ", First>")) { first = cp; continue; }
        if (strstr(name, ", Last>")) { for (long k = first; k <= cp; k++) cat[k] = c; continue; }
        cat[cp] = c;
    }
    fclose(f);
    int bad = 0;
    for (int32_t c = 0; c < 0x110000; c++) {
        int want = cat[c] == 'L' ? SM_TOK_CLASS_LETTER : cat[c] == 'N' ? SM_TOK_CLASS_NUMBER : -1;
        int got = sm_tok_class_of(c);
        if (got == SM_TOK_CLASS_SPACE) continue; /* checked against PropList above */
        if ((want < 0 && got != SM_TOK_CLASS_OTHER) || (want >= 0 && got != want)) {
            if (bad++ < 5) fprintf(stderr, "  U+%04X: category %c, class %d\n", c, cat[c] ? cat[c] : '-', got);
        }
    }
    printf("  libutf8proc %s (Unicode %s)\n", utf8proc_version(), utf8proc_unicode_version());
    CHECK_EQ_INT(bad, 0);
}

TEST(bad_vocab_rejected) {
    char path[] = "/tmp/sm-tok-vocab-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char *bad = "#version: 0.2\nh e\nhe llo\n";
    CHECK(write(fd, bad, strlen(bad)) == (ssize_t)strlen(bad));
    close(fd);
    sm_tok *t = NULL;
    sm_error err = {0};
    CHECK(sm_tok_load(&t, path, &err) == SM_ERR_FORMAT);
    CHECK(strstr(err.msg, path) != NULL);
    CHECK(t == NULL);
    unlink(path);
    CHECK(sm_tok_load(&t, "/nonexistent/vocab.bpe", &err) == SM_ERR_IO);
    CHECK(strstr(err.msg, "--vocab") != NULL);
}

/* Runs cmd (sm_cmd_encode / sm_cmd_decode) in a child with the given stdin; returns its exit code. */
static int run_cmd(int (*cmd)(int, char **), int argc, char **argv, const void *in, size_t inlen, char *out, size_t outcap,
                   size_t *outlen) {
    int pin[2], pout[2];
    if (pipe(pin) || pipe(pout)) return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        close(pin[1]);
        close(pout[0]);
        int rc = cmd(argc, argv);
        fflush(stdout);
        _exit(rc);
    }
    close(pin[0]);
    close(pout[1]);
    if (inlen && write(pin[1], in, inlen) != (ssize_t)inlen) return -1;
    close(pin[1]);
    size_t n = 0;
    ssize_t r;
    while ((r = read(pout[0], out + n, outcap - 1 - n)) > 0) n += (size_t)r;
    out[n] = 0;
    close(pout[0]);
    *outlen = n;
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(cli_encode_decode) {
    need_vocab();
    static char out[1 << 16], back[1 << 16];
    size_t n, m;
    char *enc_argv[] = {"encode", NULL};
    const char *text = "hello <|endoftext|> w\xff\xfe\xc3\x28rld\n";
    CHECK_EQ_INT(run_cmd(sm_cmd_encode, 1, enc_argv, text, strlen(text), out, sizeof out, &n), 0);
    CHECK(n > 0 && out[n - 1] == '\n');
    CHECK(strstr(out, "50256") == NULL);
    char *dec_argv[] = {"decode", NULL};
    CHECK_EQ_INT(run_cmd(sm_cmd_decode, 1, dec_argv, out, n, back, sizeof back, &m), 0);
    CHECK_EQ_INT(m, strlen(text));
    CHECK(!memcmp(back, text, m));
    char *sp_argv[] = {"encode", "--allow-special", NULL};
    CHECK_EQ_INT(run_cmd(sm_cmd_encode, 2, sp_argv, "hello <|endoftext|>", 19, out, sizeof out, &n), 0);
    CHECK_EQ_STR(out, "31373 220 50256\n");
    CHECK_EQ_INT(run_cmd(sm_cmd_decode, 1, dec_argv, "31373 99999", 11, back, sizeof back, &m), 1);
    CHECK_EQ_INT(run_cmd(sm_cmd_decode, 1, dec_argv, "31373 x", 7, back, sizeof back, &m), 1);
    char *bad_argv[] = {"encode", "--bogus", NULL};
    CHECK_EQ_INT(run_cmd(sm_cmd_encode, 2, bad_argv, "", 0, out, sizeof out, &n), 2);
    char *help_argv[] = {"decode", "--help", NULL};
    CHECK_EQ_INT(run_cmd(sm_cmd_decode, 2, help_argv, "", 0, out, sizeof out, &n), 0);
    CHECK(strstr(out, "usage") != NULL);
    char *nov_argv[] = {"encode", "--vocab", "/nonexistent/v.bpe", NULL};
    CHECK_EQ_INT(run_cmd(sm_cmd_encode, 3, nov_argv, "x", 1, out, sizeof out, &n), 1);
}

int main(void) {
    sm_error err = {0};
    if (sm_tok_load(&tok, NULL, &err) != SM_OK) snprintf(vocab_err, sizeof vocab_err, "%s", err.msg);
    else if (strcmp(sm_tok_vocab_sha256(tok), SM_TOK_VOCAB_SHA256) != 0) {
        printf("FAIL: vocabulary sha256 %s is not GPT-2's\n", sm_tok_vocab_sha256(tok));
        return 1;
    }
    if (tok) enc = sm_tok_enc_new(tok);
    RUN(shared_vectors_exact);
    RUN(round_trip_random_bytes);
    RUN(round_trip_real_text);
    RUN(long_words_heap_merger);
    RUN(special_token_only_when_allowed);
    RUN(white_space_class);
    RUN(white_space_matches_proplist);
    RUN(letter_number_match_unicodedata);
    RUN(bad_vocab_rejected);
    RUN(cli_encode_decode);
    sm_tok_enc_free(enc);
    sm_tok_free(tok);
    TEST_EXIT();
}
