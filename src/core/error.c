// error.c — thread-local error messages (see error.h).
#include "error.h"
#include <stdarg.h>
#include <string.h>

static _Thread_local char cx_msg[4096];

void cx_oneline(const char *s, char *out, size_t n) {
    if (!n) return;
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 1 < n; p++) {
        char esc[8] = "";
        if (*p == '\n') snprintf(esc, sizeof esc, "\\n");
        else if (*p == '\r') snprintf(esc, sizeof esc, "\\r");
        else if (*p == '\t') snprintf(esc, sizeof esc, "\\t");
        else if (*p < 0x20 || *p == 0x7F) snprintf(esc, sizeof esc, "\\x%02X", *p);
        if (!esc[0]) { out[o++] = (char)*p; continue; }
        size_t L = strlen(esc);
        if (o + L + 1 > n) break;
        memcpy(out + o, esc, L);
        o += L;
    }
    out[o] = 0;
}

void cx_voneline(char *out, size_t n, const char *fmt, va_list ap) {
    char raw[4096];   // cx_oneline never shortens: n - 1 characters of raw fill out
    vsnprintf(raw, sizeof raw, fmt, ap);
    cx_oneline(raw, out, n);
}

cx_status cx_fail(cx_status st, const char *file, int line, const char *fmt, ...) {
    char buf[3072];
    va_list ap;
    va_start(ap, fmt);
    cx_voneline(buf, sizeof buf, fmt, ap);   // a message is one line, whatever the file names in it
    va_end(ap);
    // The source location is for bug reports: it ends a message only for an internal
    // error (a bug in camoxpert), or when CAMOXPERT_DEBUG is set; a user's message names the
    // file, the value and the fix, and nothing of camoxpert's sources.
    const char *base = strrchr(file, '/');
    if (st == CX_EINTERNAL || getenv("CAMOXPERT_DEBUG"))
        snprintf(cx_msg, sizeof cx_msg, "%s [%s:%d]", buf, base ? base + 1 : file, line);
    else
        snprintf(cx_msg, sizeof cx_msg, "%s", buf);
    return st;
}

void cx_error_context(const char *fmt, ...) {
    char pre[1024], old[sizeof cx_msg];
    va_list ap;
    va_start(ap, fmt);
    cx_voneline(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, cx_msg, sizeof old);
    snprintf(cx_msg, sizeof cx_msg, "%.1000s: %.3000s", pre, old);
}

const char *cx_errmsg(void) { return cx_msg; }
void cx_error_clear(void) { cx_msg[0] = 0; }

const char *cx_status_name(cx_status st) {
    switch (st) {
    case CX_OK: return "ok";
    case CX_EIO: return "I/O error";
    case CX_EFORMAT: return "bad format";
    case CX_EARG: return "bad argument";
    case CX_ESHAPE: return "shape mismatch";
    case CX_ENOMEM: return "out of memory";
    case CX_ELIB: return "library error";
    case CX_ENOTFOUND: return "not found";
    case CX_EINTERNAL: return "internal error";
    case CX_ENUMERIC: return "non-finite value";
    }
    return "unknown error";
}

static const char *oom_hint_text;

void cx_oom_hint(const char *hint) { oom_hint_text = hint; }
const char *cx_oom_hint_get(void) { return oom_hint_text; }

void cx_oom_exit(size_t n, const char *what) {
    fprintf(stderr, "error: out of memory allocating %.1f MiB%s%s; %s\n", (double)n / (1 << 20), what ? " " : "",
            what ? what : "", oom_hint_text ? oom_hint_text : "the machine has too little free memory for this job");
    exit(3);
}

static void oom(size_t n) { cx_oom_exit(n, NULL); }

void *cx_malloc(size_t n) { void *p = malloc(n ? n : 1); if (!p) oom(n); return p; }
void *cx_calloc(size_t c, size_t s) { void *p = calloc(c ? c : 1, s ? s : 1); if (!p) oom(c * s); return p; }
void *cx_realloc(void *q, size_t n) { void *p = realloc(q, n ? n : 1); if (!p) oom(n); return p; }
char *cx_strdup(const char *s) { size_t n = strlen(s) + 1; char *p = cx_malloc(n); memcpy(p, s, n); return p; }
