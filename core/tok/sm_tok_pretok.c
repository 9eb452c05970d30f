/* sm_tok_pretok.c - character classes for GPT-2's pre-tokenizer (the scanner itself is inline in
 * sm_tok_internal.h, so the encoder's loop can inline it). Classes come from libutf8proc; a 64 Ki-entry
 * table caches them for the BMP because the scanner asks for every character's class. */
#include "sm_tok_internal.h"

#include <pthread.h>
#include <utf8proc.h>

uint8_t sm_tok__bmp_class[0x10000];
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
    for (int32_t cp = 0; cp < 0x10000; cp++) sm_tok__bmp_class[cp] = (uint8_t)sm_tok_class_of(cp);
}

void sm_tok__init_classes(void) { pthread_once(&bmp_once, bmp_init); }

size_t sm_tok_pretoken_len(const uint8_t *p, size_t n) {
    sm_tok__init_classes();
    return sm_tok__pretoken(p, n);
}
