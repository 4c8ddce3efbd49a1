// test_cli_data.c — exercises `camoxpert synth` and `camoxpert data` end to end
// through the program built beside this test runner (build/camoxpert), including
// their errors for bad input.
#include "test.h"
#include <string.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/wait.h>

// Runs "<dir of this runner>/camoxpert ARGS 2>&1"; returns the exit status, output in out.
static int run_cli(const char *args, char *out, size_t n) {
    char self[2048], cmd[6000];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0) return -1;
    self[k] = 0;
    *strrchr(self, '/') = 0;
    snprintf(cmd, sizeof cmd, "%s/camoxpert %s 2>&1", self, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t len = fread(out, 1, n - 1, p);
    out[len] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(cli_synth_then_data_reads_it) {
    char dir[600], args[2000], out[8192];
    snprintf(dir, sizeof dir, "%s/syn", test_tmpdir());
    snprintf(args, sizeof args, "synth --out %s --train 12 --test 6 --size 48 --seed 2 --baseline %s/base", dir, dir);
    int rc = run_cli(args, out, sizeof out);
    REQUIRE(rc != -1);
    CHECKF(rc == 0 && strstr(out, "wrote 12 train + 6 test") && strstr(out, "baseline"), "rc %d: %s", rc, out);
    snprintf(args, sizeof args, "data --dataset-path %s --val-fraction 0.25 --seed 1 --size 32 --batch-size 4 --bench 3", dir);
    rc = run_cli(args, out, sizeof out);
    CHECKF(rc == 0 && strstr(out, "COD10K-v3 train: 12 pairs") && strstr(out, "9 train, 3 validation") &&
           strstr(out, "9 images in 3 batches"), "rc %d: %s", rc, out);
    snprintf(args, sizeof args, "data --dataset-path %s --split test --subset x", dir);
    rc = run_cli(args, out, sizeof out);
    CHECKF(rc == 0 && strstr(out, "test: 6 pairs") && strstr(out, "--subset x ignored"), "rc %d: %s", rc, out);
}

TEST(cli_data_and_synth_reject_bad_input) {
    char args[2000], out[8192];
    const char *d = test_tmpdir();
    snprintf(args, sizeof args, "data --dataset-path %s", d);
    int rc = run_cli(args, out, sizeof out);
    CHECKF(rc == 1 && strstr(out, "no dataset layout recognised") && strstr(out, "GT_Object"), "rc %d: %s", rc, out);
    rc = run_cli("data --dataset-paht x", out, sizeof out);
    CHECKF(rc == 2 && strstr(out, "dataset-path"), "rc %d: %s", rc, out);
    rc = run_cli("synth --train 3", out, sizeof out);
    CHECKF(rc == 2 && strstr(out, "--out"), "rc %d: %s", rc, out);
    snprintf(args, sizeof args, "synth --out %s/s --difficulty 1.5", d);
    rc = run_cli(args, out, sizeof out);
    CHECKF(rc == 2 && strstr(out, "difficulty"), "rc %d: %s", rc, out);   // a bad option: refused before anything
}
