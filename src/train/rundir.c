// rundir.c — see rundir.h.
#include "train/rundir.h"
#include "train/checkpoint.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

cx_status rundir_open(RunDir *r, const char *dir) {
    memset(r, 0, sizeof *r);
    r->lock_fd = -1;
    if (strlen(dir) + 64 >= sizeof r->dir) return CX_FAIL(CX_EARG, "--checkpoint-dir %s: path too long", dir);
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    CX_TRY(io_make_dirs(dir));
    // The directory's own lock (core/io.h, the lock rule), held for the run: a second
    // train, a predict or a synth into it is refused while this one writes there.
    IoDirLock l;
    cx_status st = io_dir_lock(dir, 1, &l);
    if (st) {
        cx_error_context("--checkpoint-dir %s", dir);
        return st;
    }
    r->lock_fd = l.fd;
    r->removed = l.removed;
    return CX_OK;
}

cx_status rundir_check_free(const char *dir) {
    if (!io_path_is_dir(dir)) return CX_OK;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return CX_OK;   // rundir_open says why, later
    int busy = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;   // (no flock here: nothing to say)
    close(fd);
    if (!busy) return CX_OK;
    IoDirLock l;
    cx_status st = io_dir_lock(dir, 1, &l);   // the holder, named
    if (!st) io_dir_unlock(&l);   // it ended meanwhile
    else cx_error_context("--checkpoint-dir %s", dir);
    return st;
}

void rundir_close(RunDir *r) {
    if (r->lock_fd >= 0) close(r->lock_fd);   // releases the lock
    r->lock_fd = -1;
}

int rundir_has_run(const char *dir, char *what, size_t n) {
    static const char *const names[] = { "last.safetensors", "best.safetensors", NULL };
    return io_dir_holds_any(dir, names, what, n);
}

static cx_status remove_if_there(const char *dir, const char *name) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (unlink(p) != 0 && errno != ENOENT) return CX_FAIL(CX_EIO, "cannot remove %s: %s", p, strerror(errno));
    return CX_OK;
}

cx_status rundir_clear(RunDir *r) {
    CX_TRY(remove_if_there(r->dir, "last.safetensors"));
    CX_TRY(remove_if_there(r->dir, "best.safetensors"));
    CX_TRY(remove_if_there(r->dir, "train_log.jsonl"));
    CX_TRY(remove_if_there(r->dir, ".camoxpert.lock"));   // the lock file of versions before the lock rule
    checkpoint_tidy(r->dir, "last", 0, 1);   // every state: no weights name one now
    io_atomic_cleanup_dir(r->dir);
    return CX_OK;
}

int rundir_tidy(RunDir *r, uint64_t keep) {
    // The pre-token state file is kept only when last.safetensors names no token-named state.
    char w[4200], sp[4300];
    snprintf(w, sizeof w, "%s/last.safetensors", r->dir);
    checkpoint_state_path(w, keep, sp, sizeof sp);
    int legacy = keep && io_path_exists(sp);
    return checkpoint_tidy(r->dir, "last", keep, legacy) + io_atomic_cleanup_dir(r->dir);
}

cx_status rundir_truncate_log(RunDir *r, int64_t bytes) {
    char p[4200];
    snprintf(p, sizeof p, "%s/train_log.jsonl", r->dir);
    struct stat sb;
    if (bytes < 0 || lstat(p, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size <= bytes) return CX_OK;
    if (truncate(p, bytes) != 0) return CX_FAIL(CX_EIO, "cannot cut %s back to %lld bytes: %s", p, (long long)bytes, strerror(errno));
    return CX_OK;
}

int rundir_same(const char *a, const char *b) {
    struct stat x, y;
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

void rundir_dirname(const char *path, char *out, size_t n) {
    const char *s = strrchr(path, '/');
    if (!s) snprintf(out, n, ".");
    else if (s == path) snprintf(out, n, "/");
    else snprintf(out, n, "%.*s", (int)(s - path), path);
}
