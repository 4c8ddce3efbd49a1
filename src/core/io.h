// io.h — whole-file reads that never block, and atomic writes (temporary file,
// fsync, rename), so a crash never leaves a half-written file under the real name.
//
// Reads open a path only after checking, without blocking, that it is a regular
// file: a FIFO, a device or a socket given where a file is expected is an error
// naming it, not a process that waits forever in open().
//
// An atomic write's temporary file lives in the target's directory (so the rename
// cannot cross file systems) under a short unpredictable name
// (.camoxpert-<12 random characters>.tmp, whatever the target's name length),
// created exclusively: a file or a symlink planted under that name is never
// followed or reused. It is locked (flock) until renamed, so that the owner of the
// directory cleaning up leftovers passes over it (the lock rule, below). The rename
// replaces the target itself, never what a symlink at the target points to.
//
//   AtomicFile af;
//   CX_TRY(io_atomic_begin(&af, "ckpt/last.safetensors"));
//   fwrite(buf, 1, n, af.fp);
//   CX_TRY(io_atomic_commit(&af));     // or io_atomic_abort(&af) on failure
#pragma once
#include "error.h"
#include <stdio.h>
#include <stddef.h>
#include <stdbool.h>
#include <sys/types.h>

typedef struct {
    FILE *fp;
    char path[4096], tmp[4096];
    int err;   // the errno of a failed write into fp, when the writer saved it (0: ask the file system)
} AtomicFile;

cx_status io_atomic_begin(AtomicFile *af, const char *path);
cx_status io_atomic_commit(AtomicFile *af);
void io_atomic_abort(AtomicFile *af);
// A JSON document, indented, and a final newline as the whole file at path: begin,
// write, commit. CX_ENOMEM when cJSON cannot print it.
struct cJSON;
cx_status io_atomic_write_json(const char *path, const struct cJSON *doc);
// Many small files made durable together (predict's masks): io_atomic_close_unsynced
// closes a written temporary file without its fsync; io_atomic_commit_group then syncs
// the file system they are on once (syncfs), renames each to its real name and syncs
// each directory once — the guarantee of io_atomic_commit (a crash leaves the old file
// or the complete new one) at one flush per group instead of two per file. On an
// error the temporary file is removed and *af is not to be committed.
cx_status io_atomic_close_unsynced(AtomicFile *af);
// Commits n closed files; each failure is reported (stderr, naming the file),
// counted in *failed (may be NULL) and its entry's path emptied. Returns how many
// were committed.
int io_atomic_commit_group(AtomicFile *afs, int n, int *failed);
// The lock rule (docs/RELIABILITY.md): a command that fills a directory — train its
// checkpoint directory, synth its --out, predict its --out — holds an advisory lock
// (flock) on the directory itself while it writes there; a command that writes one
// file into a directory (report, eval, bench, export) holds a lock on its temporary
// file until the rename instead (io_atomic_begin does). The leftovers of killed writes
// (.camoxpert-*.tmp) are removed only by a process holding its directory alone, and
// never a temporary file whose writer still holds it: nobody's file in progress is lost.
//
//   IoDirLock l;
//   CX_TRY(io_dir_lock("runs/a", 1, &l));   // exclusive: train, synth; 0: shared, predict
//   ... write ...
//   io_dir_unlock(&l);
typedef struct {
    int fd;        // the directory, flock'ed while open (the kernel drops it if the process dies); -1: none
    int removed;   // leftovers of killed writes removed when the lock was taken
} IoDirLock;
// exclusive: the command owns the directory for its run: refused while any other holds
// it. Shared (predict): several may write into one directory at once, never beside an
// owner. Whoever gets the directory alone first removes the leftovers (l->removed).
// Busy: CX_EIO "DIR is in use by camoxpert train (pid 123), ..."; the caller adds its option.
cx_status io_dir_lock(const char *dir, int exclusive, IoDirLock *l);
void io_dir_unlock(IoDirLock *l);
// Removes the leftovers of killed atomic writes in dir (names .camoxpert-*.tmp) that no
// live writer holds; returns how many. io_dir_lock calls it for the process that holds
// the directory alone.
int io_atomic_cleanup_dir(const char *dir);

// Opens a regular file for reading without blocking on FIFOs and devices; anything
// else (a directory, a FIFO, a socket, a device) is CX_EIO naming the path and its type.
cx_status io_open_regular(const char *path, FILE **fp);
// Opens (creating it if needed) a regular file for appending; as io_open_regular, a
// FIFO or device at path is an error, not a wait; a symbolic link is never followed
// (O_NOFOLLOW): an error naming it.
cx_status io_open_append(const char *path, FILE **fp);
// errno as a message that says what it means for a write: ENOSPC "no space left on device
// (the disk is full)", EROFS "read-only file system", ...
const char *io_errstr(int err);
// Reads a whole file into a malloc'd buffer (NUL-terminated for convenience);
// refuses what is not a regular file, as io_open_regular.
cx_status io_read_file(const char *path, unsigned char **buf, size_t *size);
bool io_path_exists(const char *path);       // anything at path (a dangling symlink counts)
bool io_path_is_dir(const char *path);
bool io_path_is_regular(const char *path);   // a regular file (following symlinks)
// What a file of mode m is, for messages: "a directory", "a FIFO (named pipe)", "a
// socket", "a character device", "a block device", else "not a regular file".
const char *io_file_type_name(mode_t m);
// Which of names (NULL-terminated) are in dir: `what` gets those found, comma-separated
// ("last.safetensors, train_log.jsonl"; truncated to n bytes); returns whether any is.
// A directory that does not exist holds none.
int io_dir_holds_any(const char *dir, const char *const *names, char *what, size_t n);
cx_status io_make_dirs(const char *path);   // mkdir -p

// Test hook for crash safety: every atomic write and checkpoint step calls
// io_crash_point(name) at the moments a crash matters. When the environment sets
// CAMOXPERT_CRASH_AT=N, the N-th point reached (1-based, counting all names)
// kills the process with SIGKILL, as `kill -9` would. Unset: does nothing.
void io_crash_point(const char *name);
