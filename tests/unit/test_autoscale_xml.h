/* test_autoscale_xml.h - a minimal XML well-formedness check for the SVG tests: balanced tags, quoted
 * attributes, only the five predefined entities, one root element. Returns NULL when well-formed, else
 * a static message. */
#ifndef TEST_AUTOSCALE_XML_H
#define TEST_AUTOSCALE_XML_H

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static inline const char *xml_check(const char *s, const char *want_root) {
    static char msg[256];
    char stack[64][64];
    int depth = 0, roots = 0;
    const char *p = s;
    if (strncmp(p, "<?xml", 5) == 0) {
        p = strstr(p, "?>");
        if (!p) return "unterminated XML declaration";
        p += 2;
    }
    while (*p) {
        if (*p == '&') {
            static const char *ents[] = {"&lt;", "&gt;", "&amp;", "&quot;", "&apos;"};
            int ok = 0;
            for (int i = 0; i < 5; i++) if (!strncmp(p, ents[i], strlen(ents[i]))) ok = 1;
            if (!ok) { snprintf(msg, sizeof msg, "bad entity at offset %ld", (long)(p - s)); return msg; }
            p++;
            continue;
        }
        if (*p != '<') {
            if (depth == 0 && !isspace((unsigned char)*p)) return "text outside the root element";
            p++;
            continue;
        }
        int closing = p[1] == '/';
        const char *q = p + 1 + closing;
        char name[64];
        int n = 0;
        while (*q && (isalnum((unsigned char)*q) || *q == ':' || *q == '-' || *q == '_') && n < 63) name[n++] = *q++;
        name[n] = 0;
        if (!n) { snprintf(msg, sizeof msg, "bad tag at offset %ld", (long)(p - s)); return msg; }
        /* attributes: name="value" with no '<' in values */
        int selfclose = 0;
        while (*q && *q != '>') {
            if (*q == '"') {
                const char *e = strchr(q + 1, '"');
                if (!e) return "unterminated attribute value";
                for (const char *c = q + 1; c < e; c++) if (*c == '<') return "'<' inside an attribute value";
                q = e + 1;
                continue;
            }
            if (*q == '/' && q[1] == '>') selfclose = 1;
            q++;
        }
        if (!*q) return "unterminated tag";
        if (closing) {
            if (depth == 0 || strcmp(stack[depth - 1], name)) {
                snprintf(msg, sizeof msg, "</%s> does not close <%s>", name, depth ? stack[depth - 1] : "(nothing)");
                return msg;
            }
            depth--;
        } else {
            if (depth == 0) {
                roots++;
                if (want_root && strcmp(name, want_root)) { snprintf(msg, sizeof msg, "root is <%s>", name); return msg; }
            }
            if (!selfclose) {
                if (depth == 64) return "too deep";
                snprintf(stack[depth++], 64, "%s", name);
            }
        }
        p = q + 1;
    }
    if (depth) { snprintf(msg, sizeof msg, "<%s> never closed", stack[depth - 1]); return msg; }
    if (roots != 1) return "not exactly one root element";
    return NULL;
}

static inline int count_substr(const char *s, const char *sub) {
    int n = 0;
    for (const char *p = strstr(s, sub); p; p = strstr(p + 1, sub)) n++;
    return n;
}

#endif
