// test_hostile_messages.c — messages that said the wrong thing, and the friction a
// newcomer met (issue 33, Low and newcomer items): each message below is checked for
// what it should say.
#include "test.h"
#include "hostile.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const small = "--backbone edgenext_xx_small --img-size 32 --batch-size 4 --threads 1 --num-workers 1 "
                                 "--progress 0";

TEST(hostile_messages_say_what_is_wrong) {
    const char *ds = tiny_set("msg_set");
    REQUIRE(ds[0]);
    char t[600], *o;
    snprintf(t, sizeof t, "%s", test_tmpdir());
    // --top-k 0 and --stage1-epochs -1 are out of range, not "more than" anything.
    int rc = run_bin(&o, "train --dataset-path %s --checkpoint-dir %s/a %s --use-sparse-moe --top-k 0", ds, t, small);
    CHECKF(rc == 2 && strstr(o, "--top-k 0: must be from 1") && !strstr(o, "more than"), "exit %d: %s", rc, o);
    rc = run_bin(&o, "train --dataset-path %s --checkpoint-dir %s/a %s --stage1-epochs -1", ds, t, small);
    CHECKF(rc == 2 && strstr(o, "--stage1-epochs -1: must be from 0") && !strstr(o, "more than"), "exit %d: %s", rc, o);
    // bench --mode dense with the sparse model's options: refused, not ignored.
    rc = run_bin(&o, "bench --mode dense --routing spatial --backbone edgenext_xx_small --img-size 32 --steps 1");
    CHECKF(rc == 2 && strstr(o, "--mode dense"), "exit %d: %s", rc, o);
    // A run without validation: no "best.safetensors" in the summary, "1 epoch" not "1 epochs".
    rc = run_bin(&o, "train --dataset-path %s --checkpoint-dir %s/noval %s --epochs 1 --stage1-epochs 1 --val-fraction 0",
                 ds, t, small);
    CHECKF(rc == 0 && strstr(o, "done: 1 epoch,") && strstr(o, "no validation") && !strstr(o, "best.safetensors"),
           "exit %d: %s", rc, o);
    // A resume with no epoch left says so; a value taken from the checkpoint is said to be its.
    rc = run_bin(&o, "train --resume-from %s/noval/last.safetensors --threads 1 --num-workers 1 --progress 0", t);
    CHECKF(rc == 0 && strstr(o, "nothing is left to train"), "exit %d: %s", rc, o);
    rc = run_bin(&o, "train --resume-from %s/noval/last.safetensors --stage1-epochs 3 --threads 1", t);
    CHECKF(rc == 2 && strstr(o, "--epochs is ") && strstr(o, "from its training options"), "exit %d: %s", rc, o);
    // A busy port under --procs names --master-port, not MASTER_PORT.
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
    socklen_t al = sizeof a;
    REQUIRE(fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) && !listen(fd, 4) &&
            !getsockname(fd, (struct sockaddr *)&a, &al));
    rc = run_bin(&o, "train --dataset-path %s --checkpoint-dir %s/p %s --procs 2 --master-port %d --epochs 1 "
                 "--stage1-epochs 1", ds, t, small, ntohs(a.sin_port));
    close(fd);
    CHECKF(rc != 0 && strstr(o, "in use") && strstr(o, "--master-port") && !strstr(o, "set MASTER_PORT"), "exit %d: %s",
           rc, o);
}

// An error in the middle of an epoch starts a line of its own, not the progress bar's.
TEST(hostile_an_error_is_not_appended_to_the_progress_bar) {
    const char *ds = tiny_set("bar_set");
    REQUIRE(ds[0]);
    char t[600], cmd[6000], p[800];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "%s train --dataset-path %s --checkpoint-dir %s/ck --backbone edgenext_xx_small --img-size 32 --batch-size 1 "
             "--epochs 20 --stage1-epochs 1 --val-fraction 0 --threads 1 --num-workers 1 --progress 1 > %s/bar.out 2>&1 & "
             "pid=$!; for i in $(seq 600); do grep -q '\"step\":3,' %s/ck/train_log.jsonl 2>/dev/null && break; sleep 0.02; "
             "done; rm -f %s/Train/Image/*; wait $pid; exit $?", test_bin_path(), ds, t, t, t, ds);
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    snprintf(p, sizeof p, "%s/bar.out", t);
    unsigned char *b;
    size_t n;
    REQUIRE_OK(io_read_file(p, &b, &n));
    const char *e = strstr((char *)b, "error:");
    CHECKF(e && (e == (char *)b || e[-1] == '\n'), "the error shares a line: %s", (char *)b);
    free(b);
}

// CAMOXPERT_MEMORY_LIMIT_MB that is not a number is an error in every command; the
// machine's memory is shared by the ranks on it (8 ranks passed a 2 GB limit using 4 GB).
TEST(hostile_the_memory_budget_is_checked_and_shared_by_the_ranks_of_a_machine) {
    const char *ck = tiny_checkpoint();
    const char *ds = tiny_set("mem_set");
    REQUIRE(ck && ds[0]);
    char t[600], *o;
    snprintf(t, sizeof t, "%s", test_tmpdir());
    static const char *const bad[] = { "abc", "-5", "1e400", "12MB" };
    for (int i = 0; i < 4; i++) {
        setenv("CAMOXPERT_MEMORY_LIMIT_MB", bad[i], 1);
        int rc = run_bin(&o, "predict --weights %s --input %s/Test/Image --out %s/m --threads 1", ck, ds, t);
        CHECKF(rc == 2 && strstr(o, "CAMOXPERT_MEMORY_LIMIT_MB") && strstr(o, bad[i]), "%s: exit %d: %s", bad[i], rc, o);
        rc = run_bin(&o, "train --dataset-path %s --checkpoint-dir %s/c %s", ds, t, small);
        CHECKF(rc == 2 && strstr(o, "CAMOXPERT_MEMORY_LIMIT_MB"), "train, %s: exit %d: %s", bad[i], rc, o);
    }
    // 700 MiB for the machine: one predict fits; as one of 4 ranks on it, 175 MiB does not.
    setenv("CAMOXPERT_MEMORY_LIMIT_MB", "700", 1);
    int rc = run_bin(&o, "predict --weights %s --input %s/Test/Image --out %s/m1 --threads 1", ck, ds, t);
    CHECKF(rc == 0, "alone: exit %d: %s", rc, o);
    setenv("LOCAL_WORLD_SIZE", "4", 1);
    rc = run_bin(&o, "predict --weights %s --input %s/Test/Image --out %s/m2 --threads 1", ck, ds, t);
    CHECKF(rc == 2 && strstr(o, "shared by the 4 ranks"), "one of 4 ranks: exit %d: %s", rc, o);
    unsetenv("LOCAL_WORLD_SIZE");
    unsetenv("CAMOXPERT_MEMORY_LIMIT_MB");
}

// A file name with a newline cannot split a warning or an error into lines that look like
// others (they are escaped: \n).
TEST(hostile_file_names_with_newlines_stay_on_one_line) {
    const char *ck = tiny_checkpoint();
    REQUIRE(ck);
    char t[600], in[700], p[900], *o;
    snprintf(t, sizeof t, "%s", test_tmpdir());
    snprintf(in, sizeof in, "%s/in", t);
    REQUIRE_OK(io_make_dirs(in));
    snprintf(p, sizeof p, "%s/bad\nerror: forged line.jpg", in);
    FILE *f = fopen(p, "w");
    REQUIRE(f);
    fputs("not a jpeg", f);
    fclose(f);
    int rc = run_bin(&o, "predict --weights %s --input %s --out %s/m --threads 1", ck, in, t);
    CHECKF(rc != 0 && strstr(o, "bad\\nerror: forged line.jpg") && !strstr(o, "\nerror: forged"), "exit %d: %s", rc, o);
}

// Newcomer friction: hidden photos are said to be left out; the run's dataset path is kept
// absolute, so a resume from another directory finds it, and --dataset-path moves it; the
// progress shows the run's ETA; eval over predict's folder does not warn per side file.
TEST_SLOW(hostile_newcomer_friction) {
    const char *ds = tiny_set("new_set");
    const char *ck = tiny_checkpoint();
    REQUIRE(ds[0] && ck);
    char t[600], cmd[6000], *o;
    snprintf(t, sizeof t, "%s", test_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p %s/in && cp %s/Test/Image/* %s/in/ && cp %s/in/$(ls %s/in | head -1) %s/in/.hidden.jpg",
             t, ds, t, t, t, t);
    REQUIRE(system(cmd) == 0);
    int rc = run_bin(&o, "predict --weights %s --input %s/in --out %s/m --threads 1 --overlay --routing", ck, t, t);
    CHECKF(rc == 0 && strstr(o, "1 hidden file") && strstr(o, "wrote 2 masks"), "exit %d: %s", rc, o);
    // eval on that folder: a note for the side files, no warning per file
    rc = run_bin(&o, "eval --pred %s/m --gt %s/Test/GT_Object --threads 1", t, ds);
    CHECKF(rc == 0 && !strstr(o, "warning") && strstr(o, "side file"), "eval: exit %d: %s", rc, o);
    // a run started with a relative --dataset-path, resumed from elsewhere
    char *slash = strrchr(ds, '/');
    REQUIRE(slash);
    char dsdir[700];
    snprintf(dsdir, sizeof dsdir, "%.*s", (int)(slash - ds), ds);
    snprintf(cmd, sizeof cmd, "cd %s && %s train --dataset-path new_set --checkpoint-dir %s/run %s --epochs 1 "
             "--stage1-epochs 1 --val-fraction 0.25 > %s/first.out 2>&1", dsdir, test_bin_path(), t, small, t);
    REQUIRE(system(cmd) == 0);
    rc = run_bin(&o, "train --resume-from %s/run/last.safetensors --epochs 2 --threads 1 --num-workers 1 --progress 0", t);
    CHECKF(rc == 0 && strstr(o, "epoch 2/2"), "resume from another directory: exit %d: %s", rc, o);
    snprintf(cmd, sizeof cmd, "mv %s %s/moved_set", ds, t);
    REQUIRE(system(cmd) == 0);
    rc = run_bin(&o, "train --resume-from %s/run/last.safetensors --epochs 3 --dataset-path %s/moved_set --threads 1 "
                 "--num-workers 1 --progress 0", t, t);
    CHECKF(rc == 0 && strstr(o, "epoch 3/3"), "--dataset-path on resume: exit %d: %s", rc, o);
    // the run's ETA beside the epoch's
    rc = run_bin(&o, "train --dataset-path %s/moved_set --checkpoint-dir %s/eta --backbone edgenext_xx_small --img-size 32 "
                 "--batch-size 1 --epochs 2 --stage1-epochs 1 --val-fraction 0 --threads 1 --num-workers 1 --progress 0",
                 t, t);
    CHECKF(rc == 0 && strstr(o, ", run "), "no run ETA: %s", o);
}

// scripts/deps.sh waits for another package manager's lock, saying who holds it, instead
// of failing at once (DEPS_LOCKS stands in for dpkg's and apt's lock files).
TEST_SLOW(hostile_deps_waits_for_the_package_managers_lock) {
    char t[600], cmd[5000], p[800];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    if (!io_path_is_regular("scripts/deps.sh")) {
        test_skip("run from the repository root (scripts/deps.sh)");
        return;
    }
    snprintf(cmd, sizeof cmd, "touch %s/lock && (flock %s/lock sleep 2 &) && sleep 0.3 && t0=$(date +%%s%%N) && "
             "DEPS_LOCKS=%s/lock DEPS_LOCK_REPORT_S=1 bash scripts/deps.sh --wait-locks > %s/deps.out 2>&1; rc=$?; "
             "echo \"$rc $(( ($(date +%%s%%N) - t0) / 1000000 ))\" >> %s/deps.out", t, t, t, t, t);
    REQUIRE(system(cmd) == 0);
    snprintf(p, sizeof p, "%s/deps.out", t);
    unsigned char *b;
    size_t n;
    REQUIRE_OK(io_read_file(p, &b, &n));
    const char *last = strrchr((char *)b, '\n');
    while (last && last > (char *)b && last[-1] != '\n') last--;
    int rc = -1, ms = -1;
    if (last) sscanf(last + (*last == '\n'), "%d %d", &rc, &ms);
    CHECKF(rc == 0 && ms >= 1200 && strstr((char *)b, "waiting for another package manager") && strstr((char *)b, "pid "),
           "exit %d after %d ms: %s", rc, ms, (char *)b);
    free(b);
}
