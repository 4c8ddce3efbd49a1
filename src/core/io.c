// io.c — see io.h.
#define _POSIX_C_SOURCE 200809L
#include "io.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

const char *io_file_type_name(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO (named pipe)";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    return "not a regular file";
}

// fd, a regular file opened O_NONBLOCK (a FIFO does not block that open), as a
// blocking stream in mode; on failure fd is closed: "cannot VERB PATH: why".
static cx_status stream_of(int fd, const char *mode, const char *verb, const char *path, FILE **fp) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *fp = fdopen(fd, mode);
    if (*fp) return CX_OK;
    int e = errno;
    close(fd);
    return CX_FAIL(CX_EIO, "cannot %s %s: %s", verb, path, strerror(e));
}

cx_status io_open_regular(const char *path, FILE **fp) {
    *fp = NULL;
    // O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting
    // for a writer; the type is checked on the open descriptor (no race with a
    // stat before the open), and only a regular file is read.
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return CX_FAIL(CX_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return CX_FAIL(CX_EIO, "cannot read %s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return CX_FAIL(CX_EIO, "%s is %s, not a file; give a regular file", path, io_file_type_name(sb.st_mode));
    }
    return stream_of(fd, "rb", "read", path, fp);
}

cx_status io_open_append(const char *path, FILE **fp) {
    *fp = NULL;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0666);
    if (fd < 0 && errno == ELOOP)
        return CX_FAIL(CX_EIO, "%s is a symbolic link; camoxpert never appends through one (it would write into the "
                       "link's target): put the file itself there, or remove the link", path);
    if (fd < 0) return CX_FAIL(CX_EIO, "cannot open %s for appending: %s", path, strerror(errno));
    struct stat sb = { 0 };
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return CX_FAIL(CX_EIO, "%s is %s, not a file; remove it or choose another path", path,
                       io_file_type_name(sb.st_mode));
    }
    return stream_of(fd, "a", "write", path, fp);
}

// 12 characters of [a-z0-9] from the kernel's random source.
static void random_name(char out[13]) {
    static const char al[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char r[12];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t k = getrandom(r + got, sizeof r - got, 0);
        if (k > 0) got += (size_t)k;
        else if (errno != EINTR) break;
    }
    if (got < sizeof r) {   // no getrandom (very old kernels): time and pid, still exclusive below
        unsigned long long x = (unsigned long long)getpid() * 0x9E3779B97F4A7C15ull ^ (unsigned long long)clock();
        for (size_t i = got; i < sizeof r; i++) { r[i] = (unsigned char)x; x = x * 6364136223846793005ull + 1; }
    }
    for (int i = 0; i < 12; i++) out[i] = al[r[i] % 36];
    out[12] = 0;
}

cx_status io_atomic_begin(AtomicFile *af, const char *path) {
    memset(af, 0, sizeof *af);
    if (strlen(path) + 32 >= sizeof af->path)
        return CX_FAIL(CX_EARG, "path too long: %s", path);
    snprintf(af->path, sizeof af->path, "%s", path);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    const char *d = dirname(dir);
    for (int attempt = 0; attempt < 100; attempt++) {
        char r[13];
        random_name(r);
        snprintf(af->tmp, sizeof af->tmp, "%s/.camoxpert-%s.tmp", d, r);
        int fd = open(af->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0666);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0) {
            int err = errno;
            return CX_FAIL(CX_EIO, "cannot create a temporary file in %s for %s: %s%s", d, path, io_errstr(err),
                           err == ENOENT || err == EACCES ? " (does the directory exist and is it writable?)" : "");
        }
        // The temporary file is locked while it is written and until its rename: the owner
        // of the directory cleaning up leftovers (io_dir_lock) passes over it. Taken by such
        // a cleaner in the instant since its creation (or already removed by one): another name.
        // (A file system without flock, ENOLCK: written unlocked, as before the lock rule.)
        struct stat sb;
        int taken = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
        if (taken || fstat(fd, &sb) != 0 || sb.st_nlink == 0) {
            close(fd);
            continue;
        }
        af->fp = fdopen(fd, "wb");
        if (!af->fp) {
            close(fd);
            unlink(af->tmp);
            return CX_FAIL(CX_EIO, "cannot write %s: %s", af->tmp, strerror(errno));
        }
        return CX_OK;
    }
    return CX_FAIL(CX_EIO, "cannot create a temporary file in %s for %s: every name tried exists", d, path);
}

const char *io_errstr(int err) {
    static _Thread_local char b[160];
    if (err == ENOSPC) return "no space left on device (the disk is full)";
    if (err == EDQUOT) return "disk quota exceeded";
    if (err == EROFS) return "read-only file system";
    if (err == EIO) return "input/output error (a failing disk?)";
    snprintf(b, sizeof b, "%s", strerror(err));
    return b;
}

// The errno of a failed write on fd when stdio lost it (ferror): a full file system is
// ENOSPC, not the EIO that would say the disk is failing.
static int lost_write_errno(int fd, int err) {
    struct statvfs v;
    if ((err == 0 || err == EIO) && fd >= 0 && fstatvfs(fd, &v) == 0 && v.f_bavail == 0) return ENOSPC;
    return err ? err : EIO;
}

// Flushes (and with sync, fsyncs) the temporary file; with close, closes it too (which
// drops its lock). On an error removes it and closes it.
static cx_status atomic_flush(AtomicFile *af, int sync, int close_it) {
    int bad = ferror(af->fp);
    int err = bad ? lost_write_errno(fileno(af->fp), af->err) : 0;
    if (fflush(af->fp) != 0) { bad = 1; err = lost_write_errno(fileno(af->fp), errno); }
    if (sync && !bad && fsync(fileno(af->fp)) != 0) { bad = 1; err = errno; }
    if ((bad || close_it) && fclose(af->fp) != 0 && !bad) { bad = 1; err = errno; }
    if (bad || close_it) af->fp = NULL;
    if (bad) {
        unlink(af->tmp);
        return CX_FAIL(CX_EIO, "writing %s failed: %s; the previous file is unchanged", af->path, io_errstr(err));
    }
    return CX_OK;
}

cx_status io_atomic_commit(AtomicFile *af) {
    CX_TRY(atomic_flush(af, 1, 0));
    io_crash_point("atomic: written, before the rename");
    int rc = rename(af->tmp, af->path), err = errno;
    fclose(af->fp);   // flushed and synced: the close only drops the lock, now that the name is the real one
    af->fp = NULL;
    if (rc != 0) {
        unlink(af->tmp);
        return CX_FAIL(CX_EIO, "cannot rename %s to %s: %s", af->tmp, af->path, strerror(err));
    }
    // Make the rename itself durable.
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", af->path);
    int fd = open(dirname(dir), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) { fsync(fd); close(fd); }
    io_crash_point("atomic: renamed");
    return CX_OK;
}

cx_status io_atomic_write_json(const char *path, const cJSON *doc) {
    char *s = cJSON_Print(doc);
    if (!s) return CX_FAIL(CX_ENOMEM, "out of memory printing the JSON for %s", path);
    AtomicFile af;
    cx_status st = io_atomic_begin(&af, path);
    if (!st) {
        fputs(s, af.fp);
        fputc('\n', af.fp);
        st = io_atomic_commit(&af);
    }
    cJSON_free(s);
    return st;
}

cx_status io_atomic_close_unsynced(AtomicFile *af) { return atomic_flush(af, 0, 1); }

int io_atomic_commit_group(AtomicFile *afs, int n, int *failed) {
    if (n <= 0) return 0;
    // One flush of the data of every temporary file (they share the first one's file
    // system, as an --out directory does; fsync each file when syncfs is refused).
    int fd = open(afs[0].tmp, O_RDONLY | O_CLOEXEC);
    int synced = fd >= 0 && syncfs(fd) == 0;
    if (fd >= 0) close(fd);
    for (int i = 0; i < n && !synced; i++) {
        int f = open(afs[i].tmp, O_RDONLY | O_CLOEXEC);
        if (f >= 0) { fsync(f); close(f); }
    }
    io_crash_point("atomic group: written, before the renames");
    int ok = 0;
    char last_dir[4096] = "";
    for (int i = 0; i < n; i++) {
        if (rename(afs[i].tmp, afs[i].path) != 0) {
            int err = errno;
            unlink(afs[i].tmp);
            fprintf(stderr, "error: cannot rename %s to %s: %s\n", afs[i].tmp, afs[i].path, strerror(err));
            if (failed) (*failed)++;
            afs[i].path[0] = 0;
            continue;
        }
        ok++;
    }
    for (int i = 0; i < n; i++) {   // each directory once (consecutive files share one)
        if (!afs[i].path[0]) continue;
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", afs[i].path);
        const char *d = dirname(dir);
        if (!strcmp(d, last_dir)) continue;
        snprintf(last_dir, sizeof last_dir, "%s", d);
        int dfd = open(d, O_RDONLY | O_CLOEXEC);
        if (dfd >= 0) { fsync(dfd); close(dfd); }
    }
    io_crash_point("atomic group: renamed");
    return ok;
}

void io_atomic_abort(AtomicFile *af) {
    if (af->fp) { unlink(af->tmp); fclose(af->fp); af->fp = NULL; }
}

int io_atomic_cleanup_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t L = strlen(e->d_name);
        if (strncmp(e->d_name, ".camoxpert-", 11) || L < 15 || strcmp(e->d_name + L - 4, ".tmp")) continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) != 0 || S_ISDIR(sb.st_mode)) continue;
        // A file a live writer holds (its lock) is being written: left alone. A planted
        // symlink or FIFO is opened without following or blocking, and removed.
        int fd = S_ISREG(sb.st_mode) ? open(p, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) : -1;
        if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {   // held (or no flock here: left alone too)
            close(fd);
            continue;
        }
        if (unlink(p) == 0) n++;
        if (fd >= 0) close(fd);
    }
    closedir(d);
    return n;
}

// The process holding a flock on the file open at fd, from /proc/locks: its pid (0 when
// none is found) and, in who, "camoxpert train" (the program and its command) or the program.
static long lock_holder(int fd, char *who, size_t n) {
    snprintf(who, n, "another process");
    struct stat sb;
    if (fstat(fd, &sb) != 0) return 0;
    FILE *f = fopen("/proc/locks", "r");
    if (!f) return 0;
    char line[256];
    long pid = 0;
    while (!pid && fgets(line, sizeof line, f)) {
        char kind[16];
        long p;
        unsigned ma, mi;
        unsigned long ino;
        // "1: FLOCK  ADVISORY  WRITE 1234 08:02:5678 0 EOF" (waiters carry "->" and are skipped)
        if (strstr(line, "->")) continue;
        if (sscanf(line, "%*d: %15s %*s %*s %ld %x:%x:%lu", kind, &p, &ma, &mi, &ino) == 5 && !strcmp(kind, "FLOCK") &&
            ino == (unsigned long)sb.st_ino && ma == major(sb.st_dev) && mi == minor(sb.st_dev) && p != getpid())
            pid = p;
    }
    fclose(f);
    if (!pid) return 0;
    char path[64], cl[512];
    snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
    FILE *c = fopen(path, "r");
    size_t k = c ? fread(cl, 1, sizeof cl - 1, c) : 0;
    if (c) fclose(c);
    cl[k] = 0;
    if (k) {
        const char *prog = strrchr(cl, '/') ? strrchr(cl, '/') + 1 : cl, *arg = cl + strlen(cl) + 1;
        if (arg < cl + k && !strncmp(prog, "camoxpert", 9)) snprintf(who, n, "camoxpert %.40s", arg);
        else snprintf(who, n, "%.60s", prog);
    }
    return pid;
}

cx_status io_dir_lock(const char *dir, int exclusive, IoDirLock *l) {
    l->fd = -1, l->removed = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return CX_FAIL(CX_EIO, "cannot open the directory %s: %s", dir, strerror(errno));
    // Leftovers are removed only by a process that holds the directory alone; a shared
    // holder (predict) then keeps a shared lock, which other predicts can share.
    int alone = flock(fd, LOCK_EX | LOCK_NB) == 0;
    if (!alone && errno != EWOULDBLOCK) {   // a file system without flock (ENOLCK): no lock, and no cleanup
        l->fd = fd;
        return CX_OK;
    }
    if (alone) {
        l->removed = io_atomic_cleanup_dir(dir);
        // To shared (not atomic: an owner taking the directory in that instant wins, below).
        if (exclusive || flock(fd, LOCK_SH | LOCK_NB) == 0) {
            l->fd = fd;
            return CX_OK;
        }
    }
    // Held by someone: a shared holder may join other shared holders (waiting out another
    // predict's moment of cleaning up, a second at most).
    for (int i = 0; !exclusive && i < 20; i++) {
        if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
            l->fd = fd;
            return CX_OK;
        }
        struct timespec t = { 0, 50 * 1000 * 1000 };
        nanosleep(&t, NULL);
    }
    char who[128];
    long pid = lock_holder(fd, who, sizeof who);
    close(fd);
    char p[32] = "";
    if (pid) snprintf(p, sizeof p, " (pid %ld)", pid);
    return CX_FAIL(CX_EIO, "%s is in use by %s%s, which writes there now; wait for it to end", dir, who, p);
}

void io_dir_unlock(IoDirLock *l) {
    if (l->fd >= 0) close(l->fd);   // drops the lock
    l->fd = -1;
}

cx_status io_read_file(const char *path, unsigned char **buf, size_t *size) {
    *buf = NULL;
    *size = 0;
    FILE *f;
    CX_TRY(io_open_regular(path, &f));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        fclose(f);
        return CX_FAIL(CX_EIO, "cannot read %s: %s", path, strerror(errno));
    }
    size_t n = (size_t)sb.st_size;
    unsigned char *b = cx_malloc(n + 1);
    size_t got = n ? fread(b, 1, n, f) : 0;
    fclose(f);
    if (got != n) { free(b); return CX_FAIL(CX_EIO, "short read on %s (%zu of %zu bytes)", path, got, n); }
    b[n] = 0;
    *buf = b;
    *size = n;
    return CX_OK;
}

bool io_path_exists(const char *path) { struct stat sb; return lstat(path, &sb) == 0; }
bool io_path_is_dir(const char *path) { struct stat sb; return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode); }
bool io_path_is_regular(const char *path) { struct stat sb; return stat(path, &sb) == 0 && S_ISREG(sb.st_mode); }

int io_dir_holds_any(const char *dir, const char *const *names, char *what, size_t n) {
    int found = 0;
    size_t len = 0;
    if (n) what[0] = 0;
    for (int i = 0; names[i]; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (!io_path_exists(p)) continue;
        if (len < n) len += (size_t)snprintf(what + len, n - len, "%s%s", found ? ", " : "", names[i]);
        found = 1;
    }
    return found;
}

cx_status io_make_dirs(const char *path) {
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
    if (!io_path_is_dir(path)) return CX_FAIL(CX_EIO, "%s exists and is not a directory", path);
    return CX_OK;
}

void io_crash_point(const char *name) {
    static int init, target, count;
    if (!init) {
        const char *e = getenv("CAMOXPERT_CRASH_AT");
        target = e ? atoi(e) : 0;
        init = 1;
    }
    (void)name;
    if (target > 0 && ++count == target) raise(SIGKILL);
}
