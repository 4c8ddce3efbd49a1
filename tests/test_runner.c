// test_runner.c — the runner's own promises: a crashing test (a failed CX_ASSERT, a
// segmentation fault) fails alone and the run goes on; --fast leaves out TEST_SLOW tests;
// an argument ending in .c selects (or, after "-", leaves out) the tests of that file.
// The probes exist only in a child runner started with CAMOXPERT_TEST_PROBES=1, so a
// normal run neither lists nor runs them.
#include "test.h"
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static void probe_abort(void) { CX_ASSERT(0, "runner probe: a failed internal assertion"); }
static void probe_segv(void) { raise(SIGSEGV); }
static void probe_after(void) { CHECK(1 + 1 == 2); }
static void probe_slow(void) { CHECK(1); }

__attribute__((constructor)) static void register_probes(void) {
    const char *on = getenv("CAMOXPERT_TEST_PROBES");
    if (!on || strcmp(on, "1")) return;
    // sorted by name within a file: a, b crash, c must still run
    test_register("runner_probe_a_abort", __FILE__, probe_abort, 0);
    test_register("runner_probe_b_segv", __FILE__, probe_segv, 0);
    test_register("runner_probe_c_after", __FILE__, probe_after, 0);
    test_register("runner_probe_d_slow", __FILE__, probe_slow, 1);
}

// Runs this runner (argv) with the probes on; *out (malloc'd) gets its output; returns the exit status.
static int run_probes(const char *args, char **out) {
    char self[4096], cmd[8400], log[700];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return -1;
    self[n] = 0;
    snprintf(log, sizeof log, "%s/probes.log", test_tmpdir());
    snprintf(cmd, sizeof cmd, "CAMOXPERT_TEST_PROBES=1 %s %s > %s 2>&1", self, args, log);
    int ws = system(cmd);
    size_t len;
    if (io_read_file(log, (unsigned char **)out, &len)) *out = cx_strdup("");
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

TEST(runner_goes_on_after_a_test_crashes) {
    char *out;
    int rc = run_probes("runner_probe_", &out);
    CHECKF(rc == 1, "exit %d (1: some failed)", rc);
    CHECKF(strstr(out, "FAIL runner_probe_a_abort") && strstr(out, "FAIL runner_probe_b_segv"),
           "both crashing probes reported failed:\n%s", out);
    CHECKF(strstr(out, "runner probe: a failed internal assertion"), "the assertion's message is shown:\n%s", out);
    CHECKF(strstr(out, "crashed: Segmentation fault"), "the signal is named:\n%s", out);
    CHECKF(strstr(out, "ok   runner_probe_c_after") && strstr(out, "2 passed, 2 failed"),
           "the tests after the crashes ran:\n%s", out);
    free(out);
}

TEST(runner_fast_leaves_out_the_slow_tests) {
    char *out;
    int rc = run_probes("--fast runner_probe_c runner_probe_d", &out);
    CHECKF(rc == 0 && strstr(out, "1 passed, 0 failed") && strstr(out, "1 slow tests left out"),
           "exit %d:\n%s", rc, out);
    CHECKF(!strstr(out, "runner_probe_d_slow"), "the slow probe ran under --fast:\n%s", out);
    free(out);
    rc = run_probes("runner_probe_c runner_probe_d", &out);
    CHECKF(rc == 0 && strstr(out, "2 passed, 0 failed"), "without --fast both run: exit %d:\n%s", rc, out);
    free(out);
}

TEST(runner_selects_the_tests_of_a_file) {
    // the probes' file, less the crashing probes and this file's own tests (which would run the probes again)
    char *out;
    int rc = run_probes("--fast tests/test_runner.c -runner_probe_a -runner_probe_b -runner_goes -runner_fast "
                        "-runner_selects", &out);
    CHECKF(rc == 0 && strstr(out, "ok   runner_probe_c_after") && strstr(out, "1 passed, 0 failed") &&
           strstr(out, "1 slow tests left out"), "exit %d:\n%s", rc, out);
    free(out);
    rc = run_probes("runner_probe_c -test_runner.c", &out);
    CHECKF(rc == 0 && strstr(out, "0 passed, 0 failed"), "-FILE.c leaves the file's tests out: exit %d:\n%s", rc, out);
    free(out);
}
