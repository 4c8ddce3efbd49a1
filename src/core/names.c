// names.c — see names.h.
#include "names.h"
#include <ctype.h>
#include <string.h>

static int all_digits(const char *s, size_t n) {
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i])) return 0;
    return 1;
}

// Splits name (up to its extension) at '-' into at most 8 fields: f[k] points into
// name, len[k] its length. Returns the field count, or 9 when there are more.
static int split_fields(const char *name, const char **f, size_t *len) {
    const char *end = strrchr(name, '.');
    if (!end) end = name + strlen(name);
    int k = 0;
    const char *p = name;
    while (p <= end) {
        const char *q = memchr(p, '-', (size_t)(end - p));
        if (!q) q = end;
        if (k == 8) return 9;
        f[k] = p;
        len[k] = (size_t)(q - p);
        k++;
        p = q + 1;
    }
    return k;
}

static int field_is(const char *f, size_t n, const char *s) { return strlen(s) == n && !memcmp(f, s, n); }

static void copy_field(char *dst, size_t cap, const char *f, size_t n) {
    if (n >= cap) n = cap - 1;
    memcpy(dst, f, n);
    dst[n] = 0;
}

int name_category(const char *name, char *super, size_t ns, char *sub, size_t nb) {
    const char *f[8];
    size_t len[8];
    super[0] = sub[0] = 0;
    int k = split_fields(name, f, len);
    // COD10K-CAM-1-Aquatic-3-Crab-32
    if (k == 7 && field_is(f[0], len[0], "COD10K") &&
        (field_is(f[1], len[1], "CAM") || field_is(f[1], len[1], "NonCAM")) &&
        all_digits(f[2], len[2]) && len[3] > 0 && all_digits(f[4], len[4]) && len[5] > 0 &&
        all_digits(f[6], len[6])) {
        copy_field(super, ns, f[3], len[3]);
        copy_field(sub, nb, f[5], len[5]);
        return 1;
    }
    // SYN-CAM-sand-000123
    if (k == 4 && field_is(f[0], len[0], "SYN") && field_is(f[1], len[1], "CAM") && len[2] > 0 &&
        all_digits(f[3], len[3])) {
        copy_field(super, ns, f[2], len[2]);
        return 1;
    }
    return 0;
}
