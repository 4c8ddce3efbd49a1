// launch.c — the built-in local launcher (`camoxpert train --gpus N`, `--procs N`):
// starts N copies of this program as ranks 0..N-1 with the environment torchrun
// would give them (train/dist.h reads it), and supervises them:
//  * Ctrl-C / SIGTERM to the launcher is passed to every rank once (they stop
//    together at the next step, rank 0 checkpoints); a second one is passed on too
//    (the ranks then stop at once). The ranks have their own process group, so a
//    terminal's Ctrl-C reaches them only through the launcher, once.
//  * A rank that exits with an error or is killed makes the launcher stop the others
//    (SIGTERM, then SIGKILL after LAUNCH_GRACE_S) and exit non-zero naming the rank.
//  * If the launcher itself dies, the ranks get SIGTERM (PR_SET_PDEATHSIG).
#include "cli.h"
#include "train/dist.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LAUNCH_GRACE_S 20   // seconds the other ranks get to stop after one failed

static volatile sig_atomic_t pending_sig;   // a signal to pass on to the ranks

static void on_launcher_signal(int sig) { pending_sig = sig; }

int launch_free_port(void) { return dist_free_port(); }

static void describe(int status, char *buf, size_t n) {
    if (WIFEXITED(status)) snprintf(buf, n, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) snprintf(buf, n, "was killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else snprintf(buf, n, "ended (status %d)", status);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int launch_ranks(const char *what, int nprocs, int port, int argc, char **argv) {
    if (port <= 0) port = launch_free_port();
    if (port <= 0) {
        fprintf(stderr, "error: camoxpert %s: no free TCP port for the rendezvous; pass --master-port\n", what);
        return 1;
    }
    // argv[0] is the command name ("train"); the ranks run "camoxpert train ..." unchanged.
    char **args = cx_calloc((size_t)argc + 2, sizeof *args);
    args[0] = "camoxpert";
    for (int i = 0; i < argc; i++) args[i + 1] = argv[i];
    printf("launching %d ranks on this machine (rendezvous 127.0.0.1:%d); rank 0 prints, the others report errors\n",
           nprocs, port);
    fflush(stdout);
    struct sigaction sa = { .sa_handler = on_launcher_signal }, old_int, old_term;
    sigemptyset(&sa.sa_mask);   // no SA_RESTART: waitpid returns on a signal
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    pid_t *pid = cx_calloc((size_t)nprocs, sizeof *pid);
    int *status = cx_calloc((size_t)nprocs, sizeof *status);
    const pid_t me = getpid();
    int alive = 0, failed = -1, rc = 0;
    for (int r = 0; r < nprocs; r++) {
        pid[r] = fork();
        if (pid[r] < 0) {
            fprintf(stderr, "error: camoxpert %s: fork for rank %d: %s\n", what, r, strerror(errno));
            failed = r;
            break;
        }
        if (pid[r] == 0) {
            setpgid(0, 0);                       // the terminal's Ctrl-C comes through the launcher only
            prctl(PR_SET_PDEATHSIG, SIGTERM);    // the launcher gone: stop
            if (getppid() != me) _exit(1);       // it went before prctl took effect
            signal(SIGINT, SIG_DFL);
            signal(SIGTERM, SIG_DFL);
            char v[32];
            snprintf(v, sizeof v, "%d", r);
            setenv("RANK", v, 1);
            setenv("LOCAL_RANK", v, 1);
            snprintf(v, sizeof v, "%d", nprocs);
            setenv("WORLD_SIZE", v, 1);
            setenv("LOCAL_WORLD_SIZE", v, 1);
            setenv("GROUP_RANK", "0", 1);
            setenv("MASTER_ADDR", "127.0.0.1", 1);
            snprintf(v, sizeof v, "%d", port);
            setenv("MASTER_PORT", v, 1);
            setenv("CAMOXPERT_LAUNCHED", "1", 1);
            execv("/proc/self/exe", args);
            fprintf(stderr, "error: camoxpert %s: rank %d: cannot start /proc/self/exe: %s\n", what, r, strerror(errno));
            _exit(127);
        }
        alive++;
    }
    double kill_at = 0;   // after a failure: when the survivors get SIGKILL
    if (failed >= 0) {
        for (int r = 0; r < nprocs; r++) if (pid[r] > 0) kill(pid[r], SIGTERM);
        kill_at = now_s() + LAUNCH_GRACE_S;
    }
    while (alive > 0) {
        if (pending_sig) {
            int sig = pending_sig;
            pending_sig = 0;
            for (int r = 0; r < nprocs; r++) if (pid[r] > 0) kill(pid[r], sig);
        }
        if (kill_at > 0 && now_s() >= kill_at) {
            for (int r = 0; r < nprocs; r++) if (pid[r] > 0) kill(pid[r], SIGKILL);
            kill_at = 0;
        }
        int wstatus = 0;
        pid_t p = waitpid(-1, &wstatus, WNOHANG);
        if (p == 0 || (p < 0 && errno == EINTR)) {
            struct timespec t = { 0, 50 * 1000 * 1000 };
            nanosleep(&t, NULL);
            continue;
        }
        if (p < 0) break;   // no children left
        int r = 0;
        while (r < nprocs && pid[r] != p) r++;
        if (r == nprocs) continue;
        pid[r] = -1, status[r] = wstatus, alive--;
        // 130: stopped by Ctrl-C with its checkpoint (the ranks stop together): not a failure
        int ok = WIFEXITED(wstatus) && (WEXITSTATUS(wstatus) == 0 || WEXITSTATUS(wstatus) == 130);
        if (!ok && failed < 0) {
            failed = r;
            // The cause may have ended a moment earlier: a rank killed with SIGKILL makes the
            // others fail at their next exchange, and one of them may be reaped first. Before
            // anyone is signalled, collect what ended in the next 0.3 s and blame a rank killed
            // by a signal over one that merely saw it go.
            for (double until = now_s() + 0.3; alive > 0 && now_s() < until && !WIFSIGNALED(status[failed]);) {
                int wstatus2 = 0;
                pid_t p2 = waitpid(-1, &wstatus2, WNOHANG);
                if (p2 <= 0) {
                    struct timespec t = { 0, 20 * 1000 * 1000 };
                    nanosleep(&t, NULL);
                    continue;
                }
                int q = 0;
                while (q < nprocs && pid[q] != p2) q++;
                if (q == nprocs) continue;
                pid[q] = -1, status[q] = wstatus2, alive--;
                if (WIFSIGNALED(wstatus2)) failed = q, p = p2;
            }
            r = failed;
            char how[128];
            describe(status[failed], how, sizeof how);
            if (alive > 0) {
                fprintf(stderr, "camoxpert %s: rank %d (pid %d) %s; stopping the other %d rank%s\n", what, r, (int)p, how,
                        alive, alive > 1 ? "s" : "");
                for (int q = 0; q < nprocs; q++) if (pid[q] > 0) kill(pid[q], SIGTERM);
                kill_at = now_s() + LAUNCH_GRACE_S;
            }
        }
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (failed >= 0) {
        char how[128];
        describe(status[failed], how, sizeof how);
        fprintf(stderr, "error: camoxpert %s: rank %d %s%s; all %d ranks stopped; the last checkpoint written stays good\n",
                what, failed, how, WIFEXITED(status[failed]) ? " (its own messages above say why)" : "", nprocs);
        rc = WIFEXITED(status[failed]) && WEXITSTATUS(status[failed]) ? WEXITSTATUS(status[failed]) : 1;
        if (rc == 130) rc = 1;
    } else {
        rc = WIFEXITED(status[0]) ? WEXITSTATUS(status[0]) : 1;   // rank 0's: 0 done, 130 stopped
    }
    free(pid);
    free(status);
    free(args);
    return rc;
}
