/* sm_tok_pretok.c - GPT-2's pre-tokenizer regex, hand-compiled to a scanner over bytes.
 * Character classes come from libutf8proc; a 64 Ki-entry table caches them for the BMP because the
 * scanner asks for every character's class. */
#include "sm_tok.h"

#include <pthread.h>
#include <utf8proc.h>

static uint8_t bmp_class[0x10000];
static pthread_once_t bmp_once = PTHREAD_ONCE_INIT;

int sm_tok_class_of(int32_t cp) {
    if (cp < 0 || cp > 0x10FFFF) return SM_TOK_CLASS_OTHER;
    /* White_Space (PropList.txt) = general categories Zs, Zl, Zp plus these control characters; the
     * property is stable, and no other character has carried it since Unicode 4.0.1. */
    if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x85) return SM_TOK_CLASS_SPACE;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_ZS: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP:
        return SM_TOK_CLASS_SPACE;
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
        return SM_TOK_CLASS_LETTER;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return SM_TOK_CLASS_NUMBER;
    default:
        return SM_TOK_CLASS_OTHER;
    }
}

static void bmp_init(void) {
    for (int32_t cp = 0; cp < 0x10000; cp++) bmp_class[cp] = (uint8_t)sm_tok_class_of(cp);
}

/* Decodes one character at p (n > 0): returns its length in bytes and its class. A byte that does not
 * start a valid, shortest-form UTF-8 sequence of a scalar value is one OTHER character of length 1. */
static inline size_t char_at(const uint8_t *p, size_t n, int *cls) {
    uint8_t c = p[0];
    if (c < 0x80) { *cls = bmp_class[c]; return 1; }
    int32_t cp;
    size_t len;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else { *cls = SM_TOK_CLASS_OTHER; return 1; }
    if (n < len) { *cls = SM_TOK_CLASS_OTHER; return 1; }
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) { *cls = SM_TOK_CLASS_OTHER; return 1; }
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
        *cls = SM_TOK_CLASS_OTHER;
        return 1;
    }
    *cls = cp < 0x10000 ? bmp_class[cp] : sm_tok_class_of(cp);
    return len;
}

/* Length of the longest run of characters of class cls at the start of p. */
static inline size_t run_of(const uint8_t *p, size_t n, int cls) {
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            if (bmp_class[p[i]] != cls) break;
            i++;
            continue;
        }
        int c;
        size_t l = char_at(p + i, n - i, &c);
        if (c != cls) break;
        i += l;
    }
    return i;
}

size_t sm_tok_pretoken_len(const uint8_t *p, size_t n) {
    pthread_once(&bmp_once, bmp_init);
    if (n == 0) return 0;
    uint8_t c = p[0];
    /* 's|'t|'re|'ve|'m|'ll|'d  (case-sensitive, tried first) */
    if (c == '\'' && n >= 2) {
        uint8_t d = p[1];
        if (d == 's' || d == 't' || d == 'm' || d == 'd') return 2;
        if (n >= 3) {
            uint8_t e = p[2];
            if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l')) return 3;
        }
    }
    /* ' ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+': an optional leading space, then a run of one class. */
    if (c == ' ' && n >= 2) {
        int cls2;
        char_at(p + 1, n - 1, &cls2);
        if (cls2 != SM_TOK_CLASS_SPACE) return 1 + run_of(p + 1, n - 1, cls2);
    }
    int cls;
    char_at(p, n, &cls);
    if (cls != SM_TOK_CLASS_SPACE) return run_of(p, n, cls);
    /* '\s+(?!\S)|\s+': a whitespace run; if a non-space follows a run of two or more characters, the
     * last one is left to start the next token (so " word" keeps its space). */
    size_t k = 0, last = 0;
    while (k < n) {
        int c2;
        size_t l = char_at(p + k, n - k, &c2);
        if (c2 != SM_TOK_CLASS_SPACE) break;
        last = k;
        k += l;
    }
    if (k == n || last == 0) return k;
    return last;
}
