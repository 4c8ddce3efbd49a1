// error.h — status codes and error messages for camoxpert.
// Every function that can fail on user input or an external library returns a
// cx_status and leaves a message (what failed, where, and what to do) in a
// thread-local buffer. Nothing aborts on user input; CX_ASSERT is for programmer
// errors only (shapes the model code itself chose).
//
//   cx_status st = st_open(&f, path);
//   if (st) { fprintf(stderr, "error: %s\n", cx_errmsg()); return 1; }
#pragma once
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef enum {
    CX_OK = 0,
    CX_EIO,        // a file could not be opened, read or written
    CX_EFORMAT,    // a file's contents are malformed
    CX_EARG,       // a bad command-line option or argument
    CX_ESHAPE,     // tensor shapes or names disagree (checkpoints, fixtures)
    CX_ENOMEM,     // an allocation failed
    CX_ELIB,       // an external library reported an error
    CX_ENOTFOUND,  // a named thing (tensor, file, key) does not exist
    CX_EINTERNAL,  // a bug in camoxpert
    CX_ENUMERIC,   // a non-finite loss or gradient
} cx_status;

// Records a message and returns st, so `return CX_FAIL(CX_EIO, "...")` reads well. The
// source location ("[io.c:35]") is appended only to CX_EINTERNAL (a bug), or to every
// message when the environment sets CAMOXPERT_DEBUG.
cx_status cx_fail(cx_status st, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define CX_FAIL(st, ...) cx_fail((st), __FILE__, __LINE__, __VA_ARGS__)

// Prepends context ("loading weights from x.safetensors: ") to the current message.
void cx_error_context(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

const char *cx_errmsg(void);           // the last message of this thread ("" if none)
const char *cx_status_name(cx_status);  // "I/O error", "bad format", ...
void cx_error_clear(void);

// Propagate a failure unchanged.
#define CX_TRY(expr) do { cx_status cx_try_st_ = (expr); if (cx_try_st_ != CX_OK) return cx_try_st_; } while (0)

// Internal invariant: prints file, line and message, then aborts. Not for user input.
#define CX_ASSERT(cond, ...) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: internal error: assertion `%s` failed: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); abort(); } } while (0)

// s as one line of text into out (n bytes, truncated): every control character — a
// newline or a carriage return in a file name, an escape sequence — becomes \n, \r, \t
// or \xHH, so a name cannot split a message or drive the terminal. Messages (cx_fail,
// cx_error_context) and warnings (core/log.c) pass through it.
void cx_oneline(const char *s, char *out, size_t n);
// vsnprintf then cx_oneline: the message of fmt and ap as one line into out (n bytes,
// truncated; n up to 4096).
void cx_voneline(char *out, size_t n, const char *fmt, va_list ap);

// Allocation helpers that abort with a clear message when memory runs out
// (an out-of-memory condition is not recoverable in the middle of a step).
// What the out-of-memory message suggests, set by each command for its own options
// ("reduce --batch-size or --img-size"); NULL: no option is named.
void cx_oom_hint(const char *hint);
const char *cx_oom_hint_get(void);   // the hint set (NULL: none); the GPU arenas' message uses it too
// Prints "error: out of memory allocating N MiB <what>; <hint>" and exits with status 3.
void cx_oom_exit(size_t bytes, const char *what) __attribute__((noreturn));
void *cx_malloc(size_t n);
void *cx_calloc(size_t count, size_t size);
void *cx_realloc(void *p, size_t n);
char *cx_strdup(const char *s);
