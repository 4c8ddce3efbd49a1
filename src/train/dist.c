// dist.c — the launchers' environment and the TCP rendezvous (dist.h).
// IPv4. Every socket operation waits through poll() with the store's timeout,
// so nothing blocks forever; a closed connection (a rank that exited or was
// killed: the kernel closes its sockets) is reported at once with its rank.
#include "dist.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DIST_MAGIC 0x43584450u   // "CXDP"

// ---- the environment ---------------------------------------------------------------------------
// An integer variable: *out, 1 when set and well formed, 0 when unset; an error otherwise.
static cx_status env_int(const char *name, int lo, int *out, int *set) {
    const char *v = getenv(name);
    *set = 0;
    if (!v || !*v) return CX_OK;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || x < lo || x > 1000000)
        return CX_FAIL(CX_EARG, "environment: %s=%s is not an integer >= %d; fix or unset it", name, v, lo);
    *out = (int)x;
    *set = 1;
    return CX_OK;
}

// The first host of a Slurm node list: "gpu[03-04,07]" -> "gpu03", "a,b" -> "a".
static void slurm_first_host(const char *list, char *out, size_t n) {
    size_t i = 0, o = 0;
    while (list[i] && list[i] != ',' && list[i] != '[' && o + 1 < n) out[o++] = list[i++];
    if (list[i] == '[') {
        i++;
        while (list[i] && list[i] != '-' && list[i] != ',' && list[i] != ']' && o + 1 < n) out[o++] = list[i++];
    }
    out[o] = 0;
}

cx_status dist_env_read(DistEnv *e) {
    memset(e, 0, sizeof *e);
    e->world = 1, e->local_world = 1, e->source = "single";
    struct { const char *src, *rank, *world, *lrank, *lworld, *node; } kinds[3] = {
        { "torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK" },
        { "openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
          "OMPI_COMM_WORLD_LOCAL_SIZE", "OMPI_COMM_WORLD_NODE_RANK" },
        { "slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE", "SLURM_NODEID" },
    };
    for (int k = 0; k < 3; k++) {
        int rank, world, set_r, set_w;
        CX_TRY(env_int(kinds[k].rank, 0, &rank, &set_r));
        CX_TRY(env_int(kinds[k].world, 1, &world, &set_w));
        if (!set_r && !set_w) continue;
        if (!set_r || !set_w)
            return CX_FAIL(CX_EARG, "environment: %s is set but %s is not; a %s launch sets both", set_r ? kinds[k].rank :
                           kinds[k].world, set_r ? kinds[k].world : kinds[k].rank, kinds[k].src);
        if (rank >= world)
            return CX_FAIL(CX_EARG, "environment: %s=%d is not below %s=%d", kinds[k].rank, rank, kinds[k].world, world);
        e->rank = rank, e->world = world, e->source = kinds[k].src;
        int v, set;
        e->local_rank = rank, e->local_world = world;
        CX_TRY(env_int(kinds[k].lrank, 0, &v, &set));
        if (set) e->local_rank = v;
        CX_TRY(env_int(kinds[k].lworld, 1, &v, &set));
        if (set) e->local_world = v;
        CX_TRY(env_int(kinds[k].node, 0, &v, &set));
        if (set) e->node_rank = v;
        else e->node_rank = e->local_world ? rank / e->local_world : 0;
        if (e->local_rank >= e->local_world)
            return CX_FAIL(CX_EARG, "environment: %s=%d is not below %s=%d", kinds[k].lrank, e->local_rank,
                           kinds[k].lworld, e->local_world);
        break;
    }
    const char *addr = getenv("MASTER_ADDR");
    if (addr && *addr) {
        snprintf(e->master_addr, sizeof e->master_addr, "%s", addr);
    } else if (!strcmp(e->source, "slurm") && getenv("SLURM_JOB_NODELIST")) {
        slurm_first_host(getenv("SLURM_JOB_NODELIST"), e->master_addr, sizeof e->master_addr);
    } else if (e->world > 1 && e->local_world < e->world) {
        return CX_FAIL(CX_EARG, "environment: %d ranks over several machines (%s) but MASTER_ADDR is not set; set it to "
                       "rank 0's address (and MASTER_PORT to a free port)", e->world, e->source);
    } else {
        snprintf(e->master_addr, sizeof e->master_addr, "127.0.0.1");
    }
    int port, set;
    CX_TRY(env_int("MASTER_PORT", 1, &port, &set));
    if (set && port > 65535) return CX_FAIL(CX_EARG, "environment: MASTER_PORT=%d is not a TCP port (1-65535)", port);
    e->master_port = set ? port : 29500;
    // torchrun's agent holds a TCPStore of its own on MASTER_PORT and tells its workers
    // so (TORCHELASTIC_USE_AGENT_STORE=True): the ranks' rendezvous then takes the next
    // port on the same host.
    const char *agent = getenv("TORCHELASTIC_USE_AGENT_STORE");
    if (agent && !strcasecmp(agent, "true")) {
        if (e->master_port == 65535)
            return CX_FAIL(CX_EARG, "environment: torchrun holds MASTER_PORT=65535 and camoxpert's rendezvous needs the "
                           "next port; choose a lower --master_port");
        e->master_port++;
    }
    return CX_OK;
}

// ---- sockets -----------------------------------------------------------------------------------
static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Sends or receives exactly n bytes within timeout seconds; `who` names the peer.
static cx_status xfer(int fd, void *buf, size_t n, int sending, double timeout, int me, int who) {
    char *p = buf;
    double end = now_s() + timeout;
    while (n > 0) {
        double left = end - now_s();
        struct pollfd pf = { .fd = fd, .events = sending ? POLLOUT : POLLIN };
        int r = left > 0 ? poll(&pf, 1, (int)(left * 1000) + 1) : 0;
        if (r < 0 && errno == EINTR) continue;
        if (r == 0)
            return CX_FAIL(CX_EIO, "rank %d: rank %d %s nothing for %.0f s (is it stuck? the timeout is the "
                           "rendezvous timeout)", me, who, sending ? "accepted" : "sent", timeout);
        ssize_t k = sending ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0)
            return CX_FAIL(CX_EIO, "rank %d: rank %d closed its connection (it stopped or was killed; its own output "
                           "says why)", me, who);
        p += k, n -= (size_t)k;
    }
    return CX_OK;
}

// The rendezvous's watch: 1 (an error set) when a stop was requested; after
// RENDEZVOUS_FIRST_S and then every RENDEZVOUS_REPORT_S a line saying whom this rank
// waits for (a rendezvous of ranks started together takes milliseconds: no line).
#define RENDEZVOUS_FIRST_S 2
static int watch(const DistStore *s, double start, double *next, const char *whom) {
    double now = now_s();
    if (s->stop && *s->stop) {
        CX_FAIL(CX_EIO, "rank %d: stopped (Ctrl-C or SIGTERM) while waiting for %s after %.0f s", s->rank, whom, now - start);
        return 1;
    }
    if (now >= *next && (s->stop || s->log)) {   // a watched rendezvous (a training rank's) speaks
        FILE *f = s->log ? s->log : stderr;
        fprintf(f, "note: rank %d: waiting for %s (%.0f s of %.0f s)\n", s->rank, whom, now - start, s->timeout);
        fflush(f);
        *next = now + RENDEZVOUS_REPORT_S;
    }
    return 0;
}

// poll() in slices of at most 0.2 s, so that a stop request is seen within a second.
static int poll_slice(struct pollfd *pf, double left) {
    double sl = left < 0.2 ? left : 0.2;
    return left > 0 ? poll(pf, 1, (int)(sl * 1000) + 1) : 0;
}

static void tune(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static cx_status open_hub(DistStore *s, const DistEnv *e) {
    int lf = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lf < 0) return CX_FAIL(CX_EIO, "rank 0: socket: %s", strerror(errno));
    int one = 1;
    setsockopt(lf, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)e->master_port),
                             .sin_addr.s_addr = htonl(INADDR_ANY) };
    if (bind(lf, (struct sockaddr *)&a, sizeof a) || listen(lf, 64)) {
        int err = errno;
        close(lf);
        if (err == EADDRINUSE)
            return CX_FAIL(CX_EIO, "rank 0: port %d is in use (another run's rendezvous?); %s", e->master_port,
                           getenv("CAMOXPERT_LAUNCHED") ? "give camoxpert train --master-port a free port, or leave it "
                                                          "out (a free one is chosen)"
                                                        : "set MASTER_PORT to a free port");
        return CX_FAIL(CX_EIO, "rank 0: cannot listen on port %d: %s", e->master_port, strerror(err));
    }
    s->peer = cx_calloc((size_t)s->world, sizeof *s->peer);
    for (int r = 0; r < s->world; r++) s->peer[r] = -1;
    const double start = now_s(), end = start + s->timeout;
    double next = start + RENDEZVOUS_FIRST_S;
    int arrived = 1;
    cx_status st = CX_OK;
    while (arrived < s->world) {
        double left = end - now_s();
        char miss[256] = "", whom[400];
        size_t o = 0;
        for (int k = 1; k < s->world && o + 12 < sizeof miss; k++)
            if (s->peer[k] < 0) o += (size_t)snprintf(miss + o, sizeof miss - o, "%s%d", o ? ", " : "", k);
        snprintf(whom, sizeof whom, "rank%s %s to connect to port %d", s->world - arrived > 1 ? "s" : "", miss,
                 e->master_port);
        if (watch(s, start, &next, whom)) {
            st = CX_EIO;
            break;
        }
        struct pollfd pf = { .fd = lf, .events = POLLIN };
        int r = poll_slice(&pf, left);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0 && left > 0.2) continue;
        if (r == 0) {
            st = CX_FAIL(CX_EIO, "rank 0: %d of %d ranks arrived at port %d within %.0f s (missing: %s); were they "
                         "all started, with the same MASTER_ADDR and MASTER_PORT?", arrived, s->world, e->master_port,
                         s->timeout, miss);
            break;
        }
        int fd = accept4(lf, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        tune(fd);
        uint32_t hello[3];
        if (xfer(fd, hello, sizeof hello, 0, 10, 0, -1) != CX_OK || hello[0] != DIST_MAGIC) {
            close(fd);   // not one of ours (a port scanner, a stale client): ignore it
            continue;
        }
        int rank = (int)hello[1], world = (int)hello[2];
        if (world != s->world) {
            close(fd);
            st = CX_FAIL(CX_EARG, "rank 0: rank %d says the run has %d ranks, rank 0 says %d; every rank must see the "
                         "same WORLD_SIZE", rank, world, s->world);
            break;
        }
        if (rank <= 0 || rank >= s->world || s->peer[rank] >= 0) {
            close(fd);
            st = CX_FAIL(CX_EARG, "rank 0: rank %d arrived twice or is out of range (0-%d); check RANK of every process",
                         rank, s->world - 1);
            break;
        }
        s->peer[rank] = fd;
        arrived++;
    }
    close(lf);
    if (st != CX_OK) return st;
    uint32_t ok = DIST_MAGIC;   // everyone is here: release them
    for (int r = 1; r < s->world; r++) CX_TRY(xfer(s->peer[r], &ok, sizeof ok, 1, s->timeout, 0, r));
    return CX_OK;
}

static cx_status open_spoke(DistStore *s, const DistEnv *e) {
    char port[16];
    snprintf(port, sizeof port, "%d", e->master_port);
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai = NULL;
    int g = getaddrinfo(e->master_addr, port, &hints, &ai);
    if (g) return CX_FAIL(CX_EARG, "rank %d: MASTER_ADDR=%s: %s", s->rank, e->master_addr, gai_strerror(g));
    const double start = now_s(), end = start + s->timeout;
    double next = start + RENDEZVOUS_FIRST_S;
    char whom[400];
    snprintf(whom, sizeof whom, "rank 0 at %s:%d to answer", e->master_addr, e->master_port);
    int fd = -1;
    while (now_s() < end) {
        if (watch(s, start, &next, whom)) {
            freeaddrinfo(ai);
            return CX_EIO;
        }
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        if (fd >= 0) close(fd);
        fd = -1;
        struct timespec t = { 0, 100 * 1000 * 1000 };
        nanosleep(&t, NULL);
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return CX_FAIL(CX_EIO, "rank %d: rank 0 at %s:%d did not answer within %.0f s (is it running? are MASTER_ADDR "
                       "and MASTER_PORT the same for every rank?)", s->rank, e->master_addr, e->master_port, s->timeout);
    tune(fd);
    s->fd = fd;
    uint32_t hello[3] = { DIST_MAGIC, (uint32_t)s->rank, (uint32_t)s->world }, ok = 0;
    CX_TRY(xfer(fd, hello, sizeof hello, 1, s->timeout, s->rank, 0));
    // Rank 0 answers when every rank has connected: watched as the connection was.
    snprintf(whom, sizeof whom, "the other ranks to connect to rank 0 at %s:%d (connected; rank 0 starts the run when "
             "all %d are there)", e->master_addr, e->master_port, s->world);
    for (;;) {
        if (watch(s, start, &next, whom)) return CX_EIO;
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        double left = end - now_s();
        int r = poll_slice(&pf, left);
        if (r > 0 || (r == 0 && left <= 0.2)) break;   // data, a closed connection, or the deadline: xfer says which
    }
    CX_TRY(xfer(fd, &ok, sizeof ok, 0, s->timeout, s->rank, 0));
    if (ok != DIST_MAGIC) return CX_FAIL(CX_EIO, "rank %d: rank 0 answered with something else", s->rank);
    return CX_OK;
}

cx_status dist_store_open(DistStore *s, const DistEnv *e, double timeout_s) {
    return dist_store_open_watched(s, e, timeout_s, NULL, NULL);
}

cx_status dist_store_open_watched(DistStore *s, const DistEnv *e, double timeout_s, volatile sig_atomic_t *stop,
                                  FILE *log) {
    memset(s, 0, sizeof *s);
    s->rank = e->rank, s->world = e->world, s->fd = -1, s->timeout = timeout_s;
    s->stop = stop, s->log = log;
    if (s->world == 1) return CX_OK;
    cx_status st = s->rank == 0 ? open_hub(s, e) : open_spoke(s, e);
    if (st != CX_OK) dist_store_close(s);
    return st;
}

void dist_store_close(DistStore *s) {
    if (s->fd >= 0) close(s->fd);
    if (s->peer)
        for (int r = 0; r < s->world; r++)
            if (s->peer[r] >= 0) close(s->peer[r]);
    free(s->peer);
    s->peer = NULL, s->fd = -1;
}

// ---- exchanges (rank 0 is the hub) -------------------------------------------------------------
cx_status dist_broadcast(DistStore *s, void *buf, size_t n) {
    if (s->world == 1) return CX_OK;
    if (s->rank) return xfer(s->fd, buf, n, 0, s->timeout, s->rank, 0);
    for (int r = 1; r < s->world; r++) CX_TRY(xfer(s->peer[r], buf, n, 1, s->timeout, 0, r));
    return CX_OK;
}

cx_status dist_sum(DistStore *s, double *v, int n) {
    if (s->world == 1 || n <= 0) return CX_OK;
    size_t bytes = sizeof(double) * (size_t)n;
    if (s->rank) {
        CX_TRY(xfer(s->fd, v, bytes, 1, s->timeout, s->rank, 0));
        return xfer(s->fd, v, bytes, 0, s->timeout, s->rank, 0);
    }
    double *in = cx_malloc(bytes);
    cx_status st = CX_OK;
    for (int r = 1; r < s->world && st == CX_OK; r++) {   // rank order: the same sum on every run
        st = xfer(s->peer[r], in, bytes, 0, s->timeout, 0, r);
        for (int i = 0; st == CX_OK && i < n; i++) v[i] += in[i];
    }
    free(in);
    CX_TRY(st);
    return dist_broadcast(s, v, bytes);
}

cx_status dist_any(DistStore *s, int flag, int *any) {
    double v = flag != 0;
    CX_TRY(dist_sum(s, &v, 1));
    *any = v > 0;
    return CX_OK;
}

cx_status dist_barrier(DistStore *s) {
    int any;
    return dist_any(s, 0, &any);
}

cx_status dist_gather(DistStore *s, const void *mine, size_t n, void **all, size_t *sizes) {
    *all = NULL;
    if (s->rank) {
        uint64_t len = n;
        CX_TRY(xfer(s->fd, &len, sizeof len, 1, s->timeout, s->rank, 0));
        return n ? xfer(s->fd, (void *)mine, n, 1, s->timeout, s->rank, 0) : CX_OK;
    }
    uint64_t *len = cx_calloc((size_t)s->world, sizeof *len);
    len[0] = n;
    cx_status st = CX_OK;
    for (int r = 1; r < s->world && st == CX_OK; r++) st = xfer(s->peer[r], &len[r], sizeof len[r], 0, s->timeout, 0, r);
    size_t total = 0;
    for (int r = 0; r < s->world; r++) total += len[r];
    char *buf = st == CX_OK ? cx_malloc(total ? total : 1) : NULL;
    size_t off = 0;
    for (int r = 0; r < s->world && st == CX_OK; r++) {
        if (r == 0) memcpy(buf, mine, n);
        else if (len[r]) st = xfer(s->peer[r], buf + off, len[r], 0, s->timeout, 0, r);
        sizes[r] = len[r];
        off += len[r];
    }
    free(len);
    if (st != CX_OK) { free(buf); return st; }
    *all = buf;
    return CX_OK;
}

int dist_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
    socklen_t n = sizeof a;
    int port = 0;
    if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) && !getsockname(fd, (struct sockaddr *)&a, &n))
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}
