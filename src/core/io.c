// io.c — see io.h.
#define _POSIX_C_SOURCE 200809L
#include "io.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

cx_status atomic_begin(AtomicFile *af, const char *path) {
    memset(af, 0, sizeof *af);
    if (strlen(path) + 32 >= sizeof af->path)
        return CX_FAIL(CX_EARG, "path too long: %s", path);
    snprintf(af->path, sizeof af->path, "%s", path);
    snprintf(af->tmp, sizeof af->tmp, "%s.tmp.%ld", path, (long)getpid());
    af->fp = fopen(af->tmp, "wb");
    if (!af->fp)
        return CX_FAIL(CX_EIO, "cannot create %s: %s (is the directory writable?)", af->tmp, strerror(errno));
    return CX_OK;
}

cx_status atomic_commit(AtomicFile *af) {
    int bad = ferror(af->fp);
    if (fflush(af->fp) != 0) bad = 1;
    if (!bad && fsync(fileno(af->fp)) != 0) bad = 1;
    int err = errno;
    if (fclose(af->fp) != 0) bad = 1;
    af->fp = NULL;
    if (bad) {
        unlink(af->tmp);
        return CX_FAIL(CX_EIO, "writing %s failed: %s (disk full?); the previous file is unchanged",
                       af->path, strerror(err));
    }
    if (rename(af->tmp, af->path) != 0) {
        err = errno;
        unlink(af->tmp);
        return CX_FAIL(CX_EIO, "cannot rename %s to %s: %s", af->tmp, af->path, strerror(err));
    }
    // Make the rename itself durable.
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", af->path);
    int fd = open(dirname(dir), O_RDONLY);
    if (fd >= 0) { fsync(fd); close(fd); }
    return CX_OK;
}

void atomic_abort(AtomicFile *af) {
    if (af->fp) { fclose(af->fp); af->fp = NULL; unlink(af->tmp); }
}

cx_status read_file(const char *path, unsigned char **buf, size_t *size) {
    *buf = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return CX_FAIL(CX_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return CX_FAIL(CX_EIO, "%s is not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    unsigned char *b = cx_malloc(n + 1);
    size_t got = n ? fread(b, 1, n, f) : 0;
    fclose(f);
    if (got != n) { free(b); return CX_FAIL(CX_EIO, "short read on %s (%zu of %zu bytes)", path, got, n); }
    b[n] = 0;
    *buf = b;
    *size = n;
    return CX_OK;
}

bool path_exists(const char *path) { struct stat st; return stat(path, &st) == 0; }
bool path_is_dir(const char *path) { struct stat st; return stat(path, &st) == 0 && S_ISDIR(st.st_mode); }

cx_status make_dirs(const char *path) {
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; ; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST)
                return CX_FAIL(CX_EIO, "cannot create directory %s: %s", p, strerror(errno));
            *s = c;
            if (!c) break;
        }
    }
    if (!path_is_dir(path)) return CX_FAIL(CX_EIO, "%s exists and is not a directory", path);
    return CX_OK;
}
