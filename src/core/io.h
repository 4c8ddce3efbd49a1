// io.h — whole-file reads and atomic writes (temporary file, fsync, rename),
// so a crash never leaves a half-written checkpoint under the real name.
//
//   AtomicFile af;
//   CX_TRY(atomic_begin(&af, "ckpt/last.safetensors"));
//   fwrite(buf, 1, n, af.fp);
//   CX_TRY(atomic_commit(&af));     // or atomic_abort(&af) on failure
#pragma once
#include "error.h"
#include <stdio.h>
#include <stddef.h>
#include <stdbool.h>

typedef struct { FILE *fp; char path[4096]; char tmp[4096]; } AtomicFile;

cx_status atomic_begin(AtomicFile *af, const char *path);
cx_status atomic_commit(AtomicFile *af);
void atomic_abort(AtomicFile *af);

// Reads a whole file into a malloc'd buffer (NUL-terminated for convenience).
cx_status read_file(const char *path, unsigned char **buf, size_t *size);
bool path_exists(const char *path);
bool path_is_dir(const char *path);
cx_status make_dirs(const char *path);   // mkdir -p
