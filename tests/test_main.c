// test_main.c — the test runner: runs every registered test (or those whose
// name contains one of the arguments, or whose file is an argument ending in .c:
// tests/test_checkpoint_io.c; "-NAME" leaves out the tests whose name contains NAME;
// --fast leaves out the tests marked TEST_SLOW), prints one line
// each and the summary line "N passed, N failed" (", N skipped (why)" when a test
// could not run here: no GPU, no Chromium); exits 1 if any failed. A test that
// crashes — a failed CX_ASSERT (abort), a segmentation fault — is reported as
// failed with the signal, and the run goes on with the next test.
#include "test.h"
#include "train/dist.h"
#include "core/finite.h"
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct { const char *name, *file; test_fn fn; int slow; } TestCase;
static TestCase *tests;
static int n_tests, cap_tests;
static int cur_failed, cur_skipped;
static char tmp_root[256], skip_why[512];

void test_register(const char *name, const char *file, test_fn fn, int slow) {
    if (n_tests == cap_tests) {
        cap_tests = cap_tests ? 2 * cap_tests : 256;
        tests = realloc(tests, sizeof *tests * (size_t)cap_tests);
    }
    tests[n_tests++] = (TestCase){ name, file, fn, slow };
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

const char *test_name_at(int i) { return i >= 0 && i < n_tests ? tests[i].name : NULL; }
const char *test_file_at(int i) { return i >= 0 && i < n_tests ? tests[i].file : NULL; }

void test_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(skip_why, sizeof skip_why, fmt, ap);
    va_end(ap);
    cur_skipped = 1;
}

static char no_gpu_why[256];

const char *test_no_gpu(void) { return no_gpu_why; }

OpCtx *test_cuda(void) {
    static OpCtx ctx;
    static Arena scratch;
    static int state;   // 0 unknown, 1 open, -1 none
    if (state == 0) {
        char why[200] = "";
        if (ops_cuda_device_count(why, sizeof why) > 0 && ops_cuda_open(&ctx, 0) == CX_OK) {
            arena_init_on(&scratch, "GPU test scratch", 16 << 20, DEV_CUDA);
            ctx.scratch = &scratch;
            state = 1;
        } else {
            snprintf(no_gpu_why, sizeof no_gpu_why, "no GPU: %s", why[0] ? why : cx_errmsg());
            state = -1;
        }
    }
    return state > 0 ? &ctx : NULL;
}

// The program beside this runner, or $CAMOXPERT_TEST_BIN (to show a rule failing on another build).
const char *test_bin_path(void) {
    static char path[4096];
    const char *env = getenv("CAMOXPERT_TEST_BIN");
    if (env && *env) return env;
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 16);
    if (n <= 0) return "build/camoxpert";
    path[n] = 0;
    strcpy(strrchr(path, '/') + 1, "camoxpert");
    return path;
}

int test_run_bin_args(char **out, int timeout_s, const char *args) {
    static char *buf;
    static char log[600];
    if (!log[0]) snprintf(log, sizeof log, "%s/run_bin.log", test_tmpdir());
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "timeout -s KILL %d %s %s > %s 2>&1 < /dev/null", timeout_s, test_bin_path(), args, log);
    int st = system(cmd);
    free(buf);
    buf = NULL;
    size_t n;
    if (io_read_file(log, (unsigned char **)&buf, &n)) buf = cx_strdup("");
    if (out) *out = buf;
    if (WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) == 137)) return 124;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int test_run_bin(char **out, const char *fmt, ...) {
    char args[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return test_run_bin_args(out, 600, args);
}

int test_free_port(void) { return dist_free_port(); }

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
        io_make_dirs(tmp_root);
    }
    snprintf(dir, sizeof dir, "%s/%d", tmp_root, k++);
    io_make_dirs(dir);
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

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

int test_child_main(int argc, char **argv);   // test_cuda.c: a rank of the NCCL tests

// A crash inside a test returns here (siglongjmp from the handler) instead of ending
// the run. The process may be left in a bad state (a lock held, memory leaked); the
// tests after it usually still run, and the crashed one is reported either way.
static sigjmp_buf crash_jmp;
static volatile sig_atomic_t in_test, crash_sig;

static void on_crash(int sig) {
    if (!in_test) {   // outside a test (the runner itself): the default action
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    crash_sig = sig;
    in_test = 0;
    siglongjmp(crash_jmp, 1);
}

static void catch_crashes(void) {
    static const int sigs[] = { SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL };
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction sa = { 0 };
        sa.sa_handler = on_crash;
        sa.sa_flags = SA_NODEFER | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
    // a stack overflow needs its own stack to report on
    static char alt[1 << 16];
    stack_t ss = { .ss_sp = alt, .ss_size = sizeof alt };
    sigaltstack(&ss, NULL);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    // a process a test started with fork + exec (CUDA does not survive a plain fork)
    if (argc > 1 && !strcmp(argv[1], "--child")) return test_child_main(argc - 2, argv + 2);
    cx_threads_set(0);
    log_set_level(LOG_WARN);
    qsort(tests, (size_t)n_tests, sizeof *tests, cmp_case);
    if (argc > 1 && !strcmp(argv[1], "--list")) {
        for (int i = 0; i < n_tests; i++) printf("%s  (%s)\n", tests[i].name, tests[i].file);
        return 0;
    }
    int passed = 0, failed = 0, skipped = 0, left_slow = 0;
    bool fast = false;
    for (int a = 1; a < argc; a++) fast |= !strcmp(argv[a], "--fast");
    catch_crashes();
    double t_all = cx_time_s();
    for (int i = 0; i < n_tests; i++) {
        // arguments select tests whose name contains them, or whose file ends with one
        // that ends in ".c"; "-NAME" (or "-FILE.c") leaves such tests out
        bool any_inc = false, sel = false, excl = false;
        for (int a = 1; a < argc; a++) {
            if (!strcmp(argv[a], "--fast")) continue;
            const char *arg = argv[a][0] == '-' ? argv[a] + 1 : argv[a];
            bool hit = ends_with(arg, ".c") ? ends_with(tests[i].file, arg) : strstr(tests[i].name, arg) != NULL;
            if (argv[a][0] == '-') excl |= hit;
            else { any_inc = true; sel |= hit; }
        }
        if ((any_inc && !sel) || excl) continue;
        if (fast && tests[i].slow) { left_slow++; continue; }
        cur_failed = cur_skipped = 0;
        cx_error_clear();
        double t0 = cx_time_s();
        if (sigsetjmp(crash_jmp, 1) == 0) {
            in_test = 1;
            tests[i].fn();
            in_test = 0;
        } else {
            fflush(stderr);
            printf("    crashed: %s (the run goes on; the state this test left may be bad)\n", strsignal(crash_sig));
            cur_failed++;
        }
        double dt = cx_time_s() - t0;
        if (cur_failed) { failed++; printf("FAIL %s (%s, %.2fs)\n", tests[i].name, tests[i].file, dt); }
        else if (cur_skipped) { skipped++; printf("skip %s (%.2fs): skipped: %s\n", tests[i].name, dt, skip_why); }
        else { passed++; printf("ok   %s (%.2fs)\n", tests[i].name, dt); }
    }
    if (tmp_root[0]) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    }
    printf("total time %.1fs\n", cx_time_s() - t_all);
    if (left_slow) printf("%d slow tests left out (--fast; make test runs them)\n", left_slow);
    if (skipped) printf("%d passed, %d failed, %d skipped (%s)\n", passed, failed, skipped,
                        no_gpu_why[0] ? no_gpu_why : "see the skip lines");
    else printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
