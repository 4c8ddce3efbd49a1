// test_hostile_ranks.c — several training processes (issue 33): the signal rule at the
// rendezvous (finding 10), the memory check of a whole machine's ranks, the launcher's
// messages.
#include "test.h"
#include "hostile.h"
#include <string.h>

// A rank waiting for the others to connect reacts to SIGTERM and Ctrl-C within a second
// and says whom it waits for, also when its output is not a terminal (it ignored both for
// up to 600 s, silently).
TEST_SLOW(hostile_a_rank_waiting_at_the_rendezvous_reacts_to_signals_and_says_whom_it_waits_for) {
    const char *ds = tiny_set("rdv_set");
    REQUIRE(ds[0]);
    char t[600], cmd[6000];
    snprintf(t, sizeof t, "%s", test_tmpdir());
    int p0 = test_free_port(), p1 = test_free_port();
    REQUIRE(p0 && p1 && p0 != p1);
    const char *opts = "--backbone edgenext_xx_small --img-size 32 --device cpu --threads 1 --num-workers 1 --progress 0";
    // Rank 0 of 3 (nobody comes) and rank 1 of 2 (no rank 0 listens), each on its own port.
    snprintf(cmd, sizeof cmd,
             "cd %s; RANK=0 WORLD_SIZE=3 MASTER_PORT=%d %s train --dataset-path %s --checkpoint-dir r0 %s > r0.out 2>&1 & "
             "a=$!; cd %s; RANK=1 WORLD_SIZE=2 MASTER_PORT=%d %s train --dataset-path %s --checkpoint-dir r1 %s > r1.out "
             "2>&1 & b=$!; for i in $(seq 300); do grep -q 'waiting for' r0.out && grep -q 'waiting for' r1.out && break; "
             "sleep 0.05; done; t0=$(date +%%s%%N); kill -TERM $a; kill -INT $b; "
             "for i in $(seq 100); do kill -0 $a 2>/dev/null || kill -0 $b 2>/dev/null || break; sleep 0.02; done; "
             "ms=$(( ($(date +%%s%%N) - t0) / 1000000 )); kill -9 $a $b 2>/dev/null; wait $a; ra=$?; wait $b; rb=$?; "
             "echo $ra $rb $ms > %s/res",
             t, p0, test_bin_path(), ds, opts, t, p1, test_bin_path(), ds, opts, t);
    REQUIRE(system(cmd) == 0);
    char p[800];
    unsigned char *res, *o0, *o1;
    size_t n;
    snprintf(p, sizeof p, "%s/res", t);
    REQUIRE_OK(io_read_file(p, &res, &n));
    snprintf(p, sizeof p, "%s/r0.out", t);
    REQUIRE_OK(io_read_file(p, &o0, &n));
    snprintf(p, sizeof p, "%s/r1.out", t);
    REQUIRE_OK(io_read_file(p, &o1, &n));
    int ra = -1, rb = -1, ms = -1;
    sscanf((char *)res, "%d %d %d", &ra, &rb, &ms);
    CHECKF(ms >= 0 && ms < 1000, "the ranks took %d ms to stop after the signals (%s)", ms, (char *)res);
    CHECKF(ra != 0 && rb != 0 && ra != 137 && rb != 137, "exit %d, %d (137: killed, it did not stop)", ra, rb);
    CHECKF(strstr((char *)o0, "rank 0: waiting for ranks 1, 2 to connect") && strstr((char *)o0, "stopped"), "rank 0: %s",
           (char *)o0);
    CHECKF(strstr((char *)o1, "rank 1: waiting for rank 0 at 127.0.0.1") && strstr((char *)o1, "stopped"), "rank 1: %s",
           (char *)o1);
    check_named_options("train", (char *)o0);
    free(res), free(o0), free(o1);
}
