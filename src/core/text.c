// text.c — see text.h.
#include "text.h"
#include "error.h"
#include <string.h>

// Length of the valid UTF-8 sequence at p (1..4), or 0 when the byte starts none.
static int utf8_len(const unsigned char *p) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    int n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!n) return 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    if (n == 3 && ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0))) return 0;   // overlong, surrogates
    if (n == 4 && ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90))) return 0;   // overlong, > U+10FFFF
    return n;
}

char *text_utf8_safe(const char *s) {
    size_t n = strlen(s);
    char *out = cx_malloc(4 * n + 1), *o = out;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int k = utf8_len(p);
        if (k) { memcpy(o, p, (size_t)k); o += k; p += k; }
        else { o += sprintf(o, "\\x%02X", *p); p++; }
    }
    *o = 0;
    return out;
}

void text_csv_field(FILE *f, const char *s) {
    size_t n = strlen(s);
    // A cell starting with = + - @ (or a tab or CR) is a formula to a spreadsheet: it is
    // quoted with a leading apostrophe, so it reads as the text it is ("=cmd|..." -> "'=cmd|...").
    int formula = n && strchr("=+-@\t\r", s[0]) != NULL;
    int quote = formula || strpbrk(s, ",\"\r\n") != NULL || (n && (s[0] == ' ' || s[n - 1] == ' '));
    if (!quote) { fputs(s, f); return; }
    fputc('"', f);
    if (formula) fputc('\'', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}
