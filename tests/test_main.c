// test_main.c — the test runner: runs every registered test (or those whose
// name contains one of the arguments), prints one line each and the summary
// line "N passed, N failed"; exits 1 if any failed.
#include "test.h"
#include "core/finite.h"
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

typedef struct { const char *name, *file; test_fn fn; } TestCase;
static TestCase *tests;
static int n_tests, cap_tests;
static int cur_failed;
static char tmp_root[256];

void test_register(const char *name, const char *file, test_fn fn) {
    if (n_tests == cap_tests) {
        cap_tests = cap_tests ? 2 * cap_tests : 256;
        tests = realloc(tests, sizeof *tests * (size_t)cap_tests);
    }
    tests[n_tests++] = (TestCase){ name, file, fn };
}

void test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "    %s:%d: ", file, line);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    cur_failed++;
}

bool test_failed(void) { return cur_failed > 0; }

const char *test_shared_path(const char *rel) {
    static char bufs[8][4096];
    static int slot;
    char *b = bufs[slot++ & 7];
    const char *root = getenv("CAMOXPERT_SHARED");
    snprintf(b, 4096, "%s/%s", root && *root ? root : "../shared", rel);
    return b;
}

const char *test_tmpdir(void) {
    static char dir[512];
    static int k;
    if (!tmp_root[0]) {
        snprintf(tmp_root, sizeof tmp_root, "/tmp/camoxpert-test-%ld", (long)getpid());
        make_dirs(tmp_root);
    }
    snprintf(dir, sizeof dir, "%s/%d", tmp_root, k++);
    make_dirs(dir);
    return dir;
}

double test_rel_err(const Tensor *a, const Tensor *b, double floor) {
    return tensor_rel_err(a, b, floor, NULL);   // NaN (a failure) when either side is not finite
}

static int cmp_case(const void *a, const void *b) {
    const TestCase *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    return c ? c : strcmp(x->name, y->name);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    cx_threads_set(0);
    log_set_level(LOG_WARN);
    qsort(tests, (size_t)n_tests, sizeof *tests, cmp_case);
    if (argc > 1 && !strcmp(argv[1], "--list")) {
        for (int i = 0; i < n_tests; i++) printf("%s  (%s)\n", tests[i].name, tests[i].file);
        return 0;
    }
    int passed = 0, failed = 0;
    double t_all = cx_time_s();
    for (int i = 0; i < n_tests; i++) {
        bool sel = argc <= 1;
        for (int a = 1; a < argc && !sel; a++) sel = strstr(tests[i].name, argv[a]) != NULL;
        if (!sel) continue;
        cur_failed = 0;
        cx_error_clear();
        double t0 = cx_time_s();
        tests[i].fn();
        double dt = cx_time_s() - t0;
        if (cur_failed) { failed++; printf("FAIL %s (%s, %.2fs)\n", tests[i].name, tests[i].file, dt); }
        else { passed++; printf("ok   %s (%.2fs)\n", tests[i].name, dt); }
    }
    if (tmp_root[0]) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    }
    printf("total time %.1fs\n", cx_time_s() - t_all);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
