/*
 * bench-cluster: craft's runtime as a 3-process cluster on 127.0.0.1, beside canonical/raft
 * (Debian's libraft-dev) and hashicorp/raft (Go) under the same workload, in the same run.
 * Benchmarks B0, B1, B2, B5 (and B4 with --b4) of ../shared/BENCHMARKS.md; results and analysis
 * in docs/benchmarks.md.
 *
 *   bench-cluster [--quick] [-t MEAS_S] [-r REPS] [-w 1,16,64,256] [-s SIZE] [-f TRIALS]
 *                 [-d DIR] [--only b0,b1,b2,b4,b5] [--b4] [--no-peer] [--peers LIST]
 *                 [--keep-logs] [--security plaintext|tls|secret]
 *
 *   --quick     about one minute: 1 repetition, 1 s measured, windows 1 and 256, 5 failovers
 *   -t S        measured seconds per point (default 5; each point has 1 s of warm-up first)
 *   -r N        repetitions of every B1/B2 point (default 3): median and spread are reported
 *   -w LIST     windows: outstanding proposals (default 1,16,64,256)
 *   -s BYTES    command size (default 100)
 *   -f N        failover trials per library (default 20)
 *   -d DIR      where durable data directories go (default $TMPDIR or /tmp); nosync runs use
 *               /dev/shm
 *   --b4        also the payload sweep (window 64, durable, 10 B ... 64 KiB)
 *   --no-peer   craft alone
 *   --peers L   the peers to run beside craft: canonical, hashicorp, both (the default:
 *               canonical,hashicorp) or none; a peer that cannot be built is skipped with the
 *               reason on the first lines of the output, and its columns read n/a
 *   --security M  craft's nodes in mode M (docs/security.md; default plaintext): tls is mutual
 *               TLS 1.3 with certificates naming the server ids (made by
 *               tests/tls/make-certs.sh at the start), secret a cluster secret (TLS 1.3, PSK).
 *               The table labels craft's column with the mode. What TLS costs: run it with tls
 *               and without, e.g. --only b1 -w 1,256 --no-peer
 *
 * How it works. The driver forks three node processes per cluster (this binary with the
 * hidden first argument `node`; the canonical/raft harness bench/peers/canonical_raft.c,
 * compiled here at run time with `cc ... -lraft -luv` when /usr/include/raft.h exists; or the
 * hashicorp/raft harness bench/peers/hashicorp/, a Go module built here at run time with
 * `go build` when Go is installed) and talks to them over pipes (protocol:
 * bench/peers/proto.h, which the Go harness follows in proto.go). It asks every node for its
 * status until they agree on a leader, then tells the leader to run a closed-loop proposer inside
 * its own process: W proposals outstanding, each resubmitted from the completion of the previous
 * one; latency is submit to callback. For the failover it kills the leader with SIGKILL, tells
 * both survivors to probe (a proposal every 2 ms) and takes the first success; then restarts
 * the killed node on its data and waits until the three agree again. Every node is killed at
 * the end (and by PR_SET_PDEATHSIG if the driver dies), and the data directories are removed.
 */
#define _GNU_SOURCE /* nftw */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "craft.h"
#include "craft/uv.h"
#include "peers/proto.h"
#include "../c/tests/free_port.h"

/* =============================================================================================
 * The craft node (`bench-cluster node ...`)
 * =========================================================================================== */
static struct {
    uv_loop_t loop;
    struct craft_uv_node *node;
    int64_t value;
    struct craft_uv_request reqs[BN_SLOTS];
    /* Completions reach bn_done (single-threaded, on the loop) through a queue: the runtime
     * answers an applied proposal on its state machine thread. */
    uv_mutex_t mu;
    uv_async_t done_async;
    unsigned done_slots[BN_SLOTS];
    int done_status[BN_SLOTS];
    unsigned n_done;
    /* CRAFT_BENCH_FSM=loop: the state machine stream runs on the loop thread instead
     * (craft_uv_fsm_run from an async handle), for comparison. */
    bool fsm_on_loop;
    uv_async_t fsm_async;
} C;

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int k = 0; k < 8; k++) {
        v |= (uint64_t)p[k] << (8 * k);
    }
    return v;
}

static int node_apply(void *data, struct craft_uv_apply *cmds, size_t n)
{
    (void)data;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = cmds[i].data;
        if (cmds[i].size >= 9 && p[0] == 'i') {
            C.value += (int64_t)get64(p + 1);
        }
        cmds[i].result = craft_malloc(NULL, 8);
        if (cmds[i].result == NULL) {
            return CRAFT_ENOMEM;
        }
        memcpy(cmds[i].result, &C.value, 8);
        cmds[i].result_size = 8;
    }
    return 0;
}

static int node_snapshot(void *data, craft_uv_write_fn write, void *ctx)
{
    (void)data;
    return write(ctx, &C.value, sizeof C.value);
}

static int node_restore(void *data, craft_uv_read_fn read, void *ctx)
{
    (void)data;
    size_t got = 0;
    int64_t v = 0;
    while (got < sizeof v) {
        size_t k = 0;
        int rc = read(ctx, (char *)&v + got, sizeof v - got, &k);
        if (rc != 0 || k == 0) {
            return rc != 0 ? rc : CRAFT_ECORRUPT;
        }
        got += k;
    }
    C.value = v;
    return 0;
}

static void node_log(void *data, int level, const char *line)
{
    (void)data;
    if (level >= CRAFT_UV_WARN) {
        fprintf(stderr, "%s\n", line);
    }
}

static void node_cb(struct craft_uv_request *req, const struct craft_uv_result *r)
{
    if (C.fsm_on_loop) {
        bn_done((unsigned)(req - C.reqs), r->status); /* every callback is on the loop */
        return;
    }
    uv_mutex_lock(&C.mu);
    C.done_slots[C.n_done] = (unsigned)(req - C.reqs);
    C.done_status[C.n_done] = r->status;
    C.n_done++;
    uv_mutex_unlock(&C.mu);
    uv_async_send(&C.done_async);
}

static void node_done_cb(uv_async_t *h)
{
    static unsigned slots[BN_SLOTS];
    static int status[BN_SLOTS];
    (void)h;
    uv_mutex_lock(&C.mu);
    unsigned n = C.n_done;
    memcpy(slots, C.done_slots, n * sizeof *slots);
    memcpy(status, C.done_status, n * sizeof *status);
    C.n_done = 0;
    uv_mutex_unlock(&C.mu);
    for (unsigned k = 0; k < n; k++) {
        bn_done(slots[k], status[k]);
    }
}

static void node_fsm_wake(void *data)
{
    (void)data;
    uv_async_send(&C.fsm_async);
}

static void node_fsm_run(uv_async_t *h)
{
    (void)h;
    while (craft_uv_fsm_run(C.node) == 1) {
    }
}

static int impl_submit(unsigned slot, const void *cmd, size_t size, unsigned timeout_ms)
{
    struct craft_uv_request *req = &C.reqs[slot];
    memset(req, 0, sizeof *req);
    req->op = CRAFT_UV_PROPOSE;
    req->payload = cmd;
    req->size = size;
    req->timeout_ms = timeout_ms;
    req->cb = node_cb;
    return craft_uv_submit(C.node, req);
}

static void impl_status(char *buf, size_t cap)
{
    struct craft_uv_status s;
    craft_uv_status(C.node, &s);
    char role = s.role == CRAFT_LEADER ? 'L' : s.role == CRAFT_CANDIDATE ? 'C'
              : s.role == CRAFT_FOLLOWER ? 'F' : 'U';
    snprintf(buf, cap,
             "role=%c term=%llu leader=%llu applied=%llu last=%llu fsyncs=%llu entries=%llu "
             "msgs_sent=%llu msgs_received=%llu bytes_sent=%llu",
             role, (unsigned long long)s.term, (unsigned long long)s.leader,
             (unsigned long long)s.applied, (unsigned long long)s.last_index,
             (unsigned long long)s.fsyncs,
             (unsigned long long)s.entries_appended, (unsigned long long)s.msgs_sent,
             (unsigned long long)s.msgs_received, (unsigned long long)s.bytes_sent);
}

static bool impl_is_leader(void)
{
    struct craft_uv_status s;
    craft_uv_status(C.node, &s);
    return s.role == CRAFT_LEADER;
}

static bool impl_can_probe(void)
{
    return true; /* followers forward (or park until a leader is known) */
}

static void impl_counters(int64_t *fsyncs, int64_t *entries)
{
    struct craft_uv_status s;
    craft_uv_status(C.node, &s);
    *fsyncs = (int64_t)s.fsyncs;
    *entries = (int64_t)s.entries_appended;
}

/* --security, passed to the nodes in the environment by the driver. */
static void node_security(struct craft_uv_config *c, unsigned id)
{
    static char cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX], secret[PATH_MAX];
    const char *mode = getenv("CRAFT_BENCH_SECURITY");
    const char *dir = getenv("CRAFT_BENCH_SECURITY_DIR");
    if (mode == NULL || dir == NULL) {
        return;
    }
    if (strcmp(mode, "tls") == 0) {
        snprintf(cert, sizeof cert, "%s/server-%u.pem", dir, id);
        snprintf(key, sizeof key, "%s/server-%u.key", dir, id);
        snprintf(ca, sizeof ca, "%s/ca.pem", dir);
        c->security.mode = CRAFT_SECURITY_TLS;
        c->security.cert_file = cert;
        c->security.key_file = key;
        c->security.ca_file = ca;
        c->security.verify_id = true;
    } else if (strcmp(mode, "secret") == 0) {
        snprintf(secret, sizeof secret, "%s/cluster.secret", dir);
        c->security.mode = CRAFT_SECURITY_SECRET;
        c->security.secret_file = secret;
    }
}

static int node_main(int argc, char **argv)
{
    struct bn_args a;
    if (bn_parse_args(argc, argv, &a) != 0) {
        return 2;
    }
    struct craft_configuration conf;
    craft_configuration_init(&conf);
    for (unsigned i = 0; i < a.n; i++) {
        char addr[64];
        snprintf(addr, sizeof addr, "127.0.0.1:%u", a.ports[i]);
        craft_configuration_add(&conf, NULL, i + 1, addr, CRAFT_VOTER);
    }
    char address[64];
    snprintf(address, sizeof address, "127.0.0.1:%u", a.ports[a.id - 1]);
    struct craft_uv_config c;
    craft_uv_config_init(&c, a.id);
    c.address = address;
    c.data_dir = a.dir;
    c.cluster_id = 77;
    c.bootstrap = &conf;
    c.heartbeat_ms = a.hb;
    c.election_timeout_ms = a.et;
    c.fsync = a.sync;
    c.snapshot_entries = 16384;
    c.snapshot_trailing = 1024;
    if (getenv("CRAFT_BENCH_LOOP_WRITES") != NULL) { /* 0: every write on the worker */
        c.write_on_loop = strcmp(getenv("CRAFT_BENCH_LOOP_WRITES"), "0") != 0;
    }
    if (getenv("CRAFT_BENCH_SNAPSHOT_ENTRIES") != NULL) { /* diagnostics: snapshot cost */
        c.snapshot_entries = strtoull(getenv("CRAFT_BENCH_SNAPSHOT_ENTRIES"), NULL, 10);
    }
    c.fsm.apply = node_apply;
    c.fsm.snapshot = node_snapshot;
    c.fsm.restore = node_restore;
    c.log = node_log;
    c.log_level = CRAFT_UV_WARN;
    node_security(&c, a.id);
    uv_loop_init(&C.loop);
    uv_mutex_init(&C.mu);
    uv_async_init(&C.loop, &C.done_async, node_done_cb);
    const char *where = getenv("CRAFT_BENCH_FSM");
    C.fsm_on_loop = where != NULL && strcmp(where, "loop") == 0;
    if (C.fsm_on_loop) {
        uv_async_init(&C.loop, &C.fsm_async, node_fsm_run);
        c.fsm_wake = node_fsm_wake;
    }
    int rc = craft_uv_node_new(&C.loop, &c, &C.node);
    craft_configuration_close(&conf, NULL);
    if (rc != 0) {
        fprintf(stderr, "craft node: %s (%s)\n", craft_uv_last_error(), craft_err_name(rc));
        return 1;
    }
    craft_uv_node_start(C.node);
    bn_init(&C.loop);
    bn_reply("ready %s", address);
    uv_run(&C.loop, UV_RUN_DEFAULT);
    return 0;
}

/* =============================================================================================
 * The driver
 * =========================================================================================== */
enum { IMPL_CRAFT = 0, IMPL_CANON = 1, IMPL_HASHI = 2, NIMPL = 3 };
static const char *impl_name[NIMPL] = {"craft", "canonical/raft", "hashicorp/raft"};
static const char *impl_short[NIMPL] = {"craft", "canonical", "hashicorp"};
static char g_security_dir[PATH_MAX];

struct proc {
    pid_t pid;
    int in_fd, out_fd;
    char buf[8192];
    size_t len;
    char dir[1100];
    char log[1100];
};

struct cluster {
    int impl;
    bool sync;
    unsigned hb, et;
    char base[1024];
    unsigned ports[3];
    struct proc p[3];
};

/* Everything to clean up on any exit. */
static pid_t g_pids[64];
static char g_dirs[16][PATH_MAX];
static bool g_keep_logs;
static bool g_peer_only; /* --peer-only: debugging the harness */
static char g_self[PATH_MAX];
static char g_peer_bin[NIMPL][PATH_MAX];
/* g_want: the libraries asked for (their columns are printed); g_run: those that also built. */
static bool g_want[NIMPL] = {true, true, true};
static bool g_run[NIMPL];
static char g_skip_why[NIMPL][512];
static char g_peer_version[NIMPL][256];

static void track_pid(pid_t pid)
{
    for (size_t i = 0; i < sizeof g_pids / sizeof *g_pids; i++) {
        if (g_pids[i] == 0) {
            g_pids[i] = pid;
            return;
        }
    }
}

static void untrack_pid(pid_t pid)
{
    for (size_t i = 0; i < sizeof g_pids / sizeof *g_pids; i++) {
        if (g_pids[i] == pid) {
            g_pids[i] = 0;
        }
    }
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *dir)
{
    if (dir[0] != '\0') {
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
}

static void track_dir(const char *dir)
{
    for (size_t i = 0; i < sizeof g_dirs / sizeof *g_dirs; i++) {
        if (g_dirs[i][0] == '\0') {
            snprintf(g_dirs[i], sizeof g_dirs[i], "%s", dir);
            return;
        }
    }
}

static void untrack_dir(const char *dir)
{
    for (size_t i = 0; i < sizeof g_dirs / sizeof *g_dirs; i++) {
        if (strcmp(g_dirs[i], dir) == 0) {
            g_dirs[i][0] = '\0';
        }
    }
}

static void cleanup_all(void)
{
    for (size_t i = 0; i < sizeof g_pids / sizeof *g_pids; i++) {
        if (g_pids[i] > 0) {
            kill(g_pids[i], SIGKILL);
            waitpid(g_pids[i], NULL, 0);
            g_pids[i] = 0;
        }
    }
    for (size_t i = 0; i < sizeof g_dirs / sizeof *g_dirs; i++) {
        if (g_dirs[i][0] != '\0' && !g_keep_logs) {
            rm_rf(g_dirs[i]);
            g_dirs[i][0] = '\0';
        }
    }
}

static void on_fatal_signal(int sig)
{
    cleanup_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* A free port below the ephemeral range, where no outgoing connection can take it between the
 * probe and the node's listen (c/tests/free_port.h says why). */
static unsigned bench_free_port(void)
{
    int port = free_port();
    if (port < 0) {
        fprintf(stderr, "bench-cluster: no free port on 127.0.0.1 below the ephemeral range\n");
        exit(1);
    }
    return (unsigned)port;
}

static void msleep(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- talking to a node --------------------------------------------------------------------- */
static int proc_send(struct proc *p, const char *line)
{
    size_t n = strlen(line);
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s\n", line);
    n++;
    return write(p->in_fd, tmp, n) == (ssize_t)n ? 0 : -1;
}

/* Reads one line (without the newline) within ms; -1 on timeout or EOF. */
static int proc_line(struct proc *p, char *out, size_t cap, unsigned ms)
{
    uint64_t end = bn_now() + (uint64_t)ms * 1000000ull;
    for (;;) {
        char *nl = memchr(p->buf, '\n', p->len);
        if (nl != NULL) {
            size_t k = (size_t)(nl - p->buf);
            snprintf(out, cap, "%.*s", (int)k, p->buf);
            memmove(p->buf, nl + 1, p->len - k - 1);
            p->len -= k + 1;
            return 0;
        }
        uint64_t now = bn_now();
        if (now >= end || p->out_fd < 0) {
            return -1;
        }
        struct pollfd pf = {p->out_fd, POLLIN, 0};
        int r = poll(&pf, 1, (int)((end - now) / 1000000ull) + 1);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            continue;
        }
        if (p->len == sizeof p->buf) {
            p->len = 0;
        }
        ssize_t got = read(p->out_fd, p->buf + p->len, sizeof p->buf - p->len);
        if (got <= 0) {
            return -1;
        }
        p->len += (size_t)got;
    }
}

static void print_log_tail(struct proc *p)
{
    FILE *f = fopen(p->log, "r");
    if (f == NULL) {
        return;
    }
    char lines[20][512];
    unsigned n = 0;
    while (fgets(lines[n % 20], sizeof lines[0], f) != NULL) {
        n++;
    }
    fclose(f);
    if (n == 0) {
        return;
    }
    fprintf(stderr, "  --- %s (last lines)\n", p->log);
    for (unsigned k = n > 20 ? n - 20 : 0; k < n; k++) {
        fprintf(stderr, "  %s", lines[k % 20]);
    }
}

static int proc_start(struct cluster *c, int i)
{
    struct proc *p = &c->p[i];
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) {
        perror("pipe");
        return -1;
    }
    char id[16], ports[64], sync[4], hb[16], et[16];
    snprintf(id, sizeof id, "%d", i + 1);
    snprintf(ports, sizeof ports, "%u,%u,%u", c->ports[0], c->ports[1], c->ports[2]);
    snprintf(sync, sizeof sync, "%d", c->sync ? 1 : 0);
    snprintf(hb, sizeof hb, "%u", c->hb);
    snprintf(et, sizeof et, "%u", c->et);
    const char *bin = c->impl == IMPL_CRAFT ? g_self : g_peer_bin[c->impl];
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(in[0], 0);
        dup2(out[1], 1);
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execl(bin, bin, "node", "--id", id, "--dir", p->dir, "--ports", ports, "--sync", sync,
              "--hb", hb, "--et", et, (char *)NULL);
        _exit(127);
    }
    track_pid(pid);
    close(in[0]);
    close(out[1]);
    p->pid = pid;
    p->in_fd = in[1];
    p->out_fd = out[0];
    p->len = 0;
    char line[256];
    if (proc_line(p, line, sizeof line, 15000) != 0 || strncmp(line, "ready", 5) != 0) {
        fprintf(stderr, "bench-cluster: %s node %d did not start\n", impl_name[c->impl], i + 1);
        print_log_tail(p);
        return -1;
    }
    return 0;
}

static void proc_kill(struct proc *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
        untrack_pid(p->pid);
        p->pid = 0;
    }
    if (p->in_fd >= 0) {
        close(p->in_fd);
        p->in_fd = -1;
    }
    if (p->out_fd >= 0) {
        close(p->out_fd);
        p->out_fd = -1;
    }
}

struct nstatus {
    char role;
    unsigned long long term, leader, applied, last;
    bool ok;
};

static struct nstatus proc_status(struct proc *p)
{
    struct nstatus s = {'?', 0, 0, 0, 0, false};
    char line[512];
    if (p->pid <= 0 || proc_send(p, "status") != 0 || proc_line(p, line, sizeof line, 5000) != 0) {
        return s;
    }
    if (sscanf(line, "status role=%c term=%llu leader=%llu applied=%llu last=%llu", &s.role,
               &s.term, &s.leader, &s.applied, &s.last) == 5) {
        s.ok = true;
    }
    return s;
}

/* Waits until every live node agrees on one leader in one term (and, if need >= 0, node
 * `need` holds at least the log the leader had at the first agreement: `last`, not `applied`,
 * because a restarted canonical/raft 0.15 follower catches up its log but was seen not to
 * advance its applied index); returns the leader's index or -1. */
static int wait_leader(struct cluster *c, unsigned ms, int need)
{
    uint64_t end = bn_now() + (uint64_t)ms * 1000000ull;
    unsigned long long target = 0;
    bool have_target = false;
    while (bn_now() < end) {
        struct nstatus s[3];
        int leader = -1;
        for (int i = 0; i < 3; i++) {
            s[i] = proc_status(&c->p[i]);
            if (s[i].ok && s[i].role == 'L') {
                leader = i;
            }
        }
        bool agree = leader >= 0;
        for (int i = 0; agree && i < 3; i++) {
            if (c->p[i].pid > 0 && (!s[i].ok || s[i].leader != (unsigned long long)leader + 1 ||
                                    s[i].term != s[leader].term)) {
                agree = false;
            }
        }
        if (agree && need >= 0) {
            if (!have_target) {
                target = s[leader].last;
                have_target = true;
            }
            agree = s[need].last >= target;
        }
        if (agree) {
            return leader;
        }
        msleep(20);
    }
    return -1;
}

static void cluster_stop(struct cluster *c)
{
    for (int i = 0; i < 3; i++) {
        if (c->p[i].pid > 0) {
            proc_send(&c->p[i], "quit");
        }
    }
    for (int i = 0; i < 3; i++) {
        proc_kill(&c->p[i]);
    }
    if (!g_keep_logs) {
        rm_rf(c->base);
        untrack_dir(c->base);
    }
}

static int cluster_start(struct cluster *c, int impl, bool sync, unsigned hb, unsigned et,
                         const char *durable_root)
{
    memset(c, 0, sizeof *c);
    c->impl = impl;
    c->sync = sync;
    c->hb = hb;
    c->et = et;
    snprintf(c->base, sizeof c->base, "%s/craft-bench-XXXXXX", sync ? durable_root : "/dev/shm");
    if (mkdtemp(c->base) == NULL) {
        fprintf(stderr, "bench-cluster: mkdtemp %s: %s\n", c->base, strerror(errno));
        return -1;
    }
    track_dir(c->base);
    for (int i = 0; i < 3; i++) {
        c->ports[i] = bench_free_port();
        c->p[i].in_fd = c->p[i].out_fd = -1;
        snprintf(c->p[i].dir, sizeof c->p[i].dir, "%s/n%d", c->base, i + 1);
        snprintf(c->p[i].log, sizeof c->p[i].log, "%s/n%d.log", c->base, i + 1);
        mkdir(c->p[i].dir, 0755);
    }
    for (int i = 0; i < 3; i++) {
        if (proc_start(c, i) != 0) {
            cluster_stop(c);
            return -1;
        }
    }
    return 0;
}

static void cluster_dump_logs(struct cluster *c)
{
    for (int i = 0; i < 3; i++) {
        print_log_tail(&c->p[i]);
    }
}

/* ---- statistics ------------------------------------------------------------------------------ */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double t[64];
    if (n <= 0) {
        return 0;
    }
    memcpy(t, v, (size_t)n * sizeof *t);
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

static double vmin(const double *v, int n)
{
    double m = n > 0 ? v[0] : 0;
    for (int i = 1; i < n; i++) {
        m = v[i] < m ? v[i] : m;
    }
    return m;
}

static double vmax(const double *v, int n)
{
    double m = n > 0 ? v[0] : 0;
    for (int i = 1; i < n; i++) {
        m = v[i] > m ? v[i] : m;
    }
    return m;
}

#define MAXREP 16

/* One point's repetitions (latencies in ms). */
struct point {
    int n;
    double ops[MAXREP], p50[MAXREP], p90[MAXREP], p99[MAXREP], p999[MAXREP], max[MAXREP];
    double fsync_per_entry[MAXREP];
    int n_fs;
    unsigned long long errors;
    bool failed;
};

static int run_load(struct cluster *c, int leader, unsigned window, unsigned warm_ms,
                    unsigned meas_ms, size_t size, struct point *pt)
{
    char cmd[128], line[1024];
    snprintf(cmd, sizeof cmd, "load %u %u %u %zu", window, warm_ms, meas_ms, size);
    struct proc *p = &c->p[leader];
    if (proc_send(p, cmd) != 0 || proc_line(p, line, sizeof line, warm_ms + meas_ms + 30000) != 0) {
        fprintf(stderr, "bench-cluster: %s: no answer to '%s'\n", impl_name[c->impl], cmd);
        return -1;
    }
    unsigned long long ok, err, p50, p90, p99, p999, max;
    long long fs, en;
    double secs;
    if (sscanf(line,
               "load ok=%llu err=%llu secs=%lf p50=%llu p90=%llu p99=%llu p999=%llu max=%llu "
               "fsyncs=%lld entries=%lld",
               &ok, &err, &secs, &p50, &p90, &p99, &p999, &max, &fs, &en) != 10) {
        fprintf(stderr, "bench-cluster: %s: '%s' -> '%s'\n", impl_name[c->impl], cmd, line);
        return -1;
    }
    if (pt->n < MAXREP) {
        int k = pt->n++;
        pt->ops[k] = (double)ok / secs;
        pt->p50[k] = (double)p50 / 1e6;
        pt->p90[k] = (double)p90 / 1e6;
        pt->p99[k] = (double)p99 / 1e6;
        pt->p999[k] = (double)p999 / 1e6;
        pt->max[k] = (double)max / 1e6;
        if (fs >= 0 && ok > 0) {
            pt->fsync_per_entry[pt->n_fs++] = (double)fs / (double)ok;
        }
    }
    pt->errors += err;
    return 0;
}

/* ---- B0 -------------------------------------------------------------------------------------- */
static const char *fs_name(const char *dir)
{
    struct statfs s;
    if (statfs(dir, &s) != 0) {
        return "?";
    }
    switch ((unsigned long)s.f_type) {
    case 0xEF53: return "ext4";
    case 0x01021994: return "tmpfs";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x794c7630: return "overlayfs";
    case 0x2FC12FC1: return "zfs";
    case 0x6a656a63: return "fakeowner";
    default: return "other";
    }
}

struct b0 {
    char cpu[256];
    char kernel[256];
    char fs[64];
    char dir[PATH_MAX];
    double p50[8], p99[8], rate[8];
    int n;
};

static void raw_fsync(const char *root, double secs, struct b0 *b)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/craft-bench-fsync-XXXXXX", root);
    int fd = mkstemp(path);
    if (fd < 0) {
        fprintf(stderr, "bench-cluster: B0: %s: %s\n", path, strerror(errno));
        return;
    }
    static char block[4096];
    memset(block, 'x', sizeof block);
    size_t cap = 1 << 20, n = 0;
    double *lat = malloc(cap * sizeof *lat);
    uint64_t t0 = bn_now(), end = t0 + (uint64_t)(secs * 1e9);
    while (bn_now() < end && n < cap) {
        uint64_t a = bn_now();
        if (write(fd, block, sizeof block) != (ssize_t)sizeof block || fdatasync(fd) != 0) {
            perror("bench-cluster: B0 write/fdatasync");
            break;
        }
        lat[n++] = (double)(bn_now() - a) / 1e6;
    }
    double el = (double)(bn_now() - t0) / 1e9;
    close(fd);
    unlink(path);
    if (n > 0 && b->n < 8) {
        qsort(lat, n, sizeof *lat, cmp_double);
        b->p50[b->n] = lat[(size_t)(0.5 * (double)(n - 1))];
        b->p99[b->n] = lat[(size_t)(0.99 * (double)(n - 1))];
        b->rate[b->n] = (double)n / el;
        b->n++;
    }
    free(lat);
}

static void b0_env(const char *root, struct b0 *b)
{
    memset(b, 0, sizeof *b);
    snprintf(b->dir, sizeof b->dir, "%s", root);
    snprintf(b->cpu, sizeof b->cpu, "?");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f != NULL) {
        char line[512];
        int ncpu = 0;
        char model[256] = "?";
        while (fgets(line, sizeof line, f) != NULL) {
            if (strncmp(line, "model name", 10) == 0) {
                ncpu++;
                char *colon = strchr(line, ':');
                if (colon != NULL) {
                    snprintf(model, sizeof model, "%s", colon + 2);
                    model[strcspn(model, "\n")] = '\0';
                }
            }
        }
        fclose(f);
        snprintf(b->cpu, sizeof b->cpu, "%s, %d vCPUs", model, ncpu);
    }
    struct utsname u;
    if (uname(&u) == 0) {
        snprintf(b->kernel, sizeof b->kernel, "%s %s %s", u.sysname, u.release, u.machine);
    }
    snprintf(b->fs, sizeof b->fs, "%s", fs_name(root));
}

/* ---- B5 -------------------------------------------------------------------------------------- */
struct failover {
    double ms[256];
    int n, failed;
};

/* Every trial on a fresh cluster: a restarted canonical/raft 0.15 node was seen to apply
 * zeroed payloads after a kill -9 (its FSM then fails and the node becomes unavailable), so
 * reusing a cluster across trials would measure that instead of the failover. */
static int run_failover(int impl, int trials, const char *root, struct failover *fo)
{
    for (int t = 0; t < trials; t++) {
        struct cluster c;
        /* Election timeout 150 ms (random in [150, 300) in both libraries), heartbeat 15 ms. */
        if (cluster_start(&c, impl, true, 15, 150, root) != 0) {
            return -1;
        }
        int leader = wait_leader(&c, 15000, -1);
        struct point warm;
        memset(&warm, 0, sizeof warm);
        /* Some history and a settled cluster (every follower caught up) first. */
        if (leader >= 0) {
            run_load(&c, leader, 16, 200, 300, 100, &warm);
            msleep(100);
            leader = wait_leader(&c, 15000, -1);
        }
        if (leader < 0) {
            fprintf(stderr, "bench-cluster: B5 %s: no stable leader before trial %d\n",
                    impl_name[impl], t + 1);
            cluster_dump_logs(&c);
            cluster_stop(&c);
            fo->failed++;
            continue;
        }
        uint64_t t0 = bn_now();
        kill(c.p[leader].pid, SIGKILL);
        for (int i = 0; i < 3; i++) {
            if (i != leader) {
                proc_send(&c.p[i], "probe");
            }
        }
        /* The first survivor to answer has the earliest success (answers are immediate);
         * the other gets 50 ms more, then the cluster is torn down. */
        uint64_t first = 0, deadline = bn_now() + 12000000000ull;
        bool answered[3] = {false, false, false};
        answered[leader] = true;
        while (bn_now() < deadline && !(answered[0] && answered[1] && answered[2])) {
            for (int i = 0; i < 3; i++) {
                char line[256];
                unsigned long long ok = 0;
                if (answered[i] || proc_line(&c.p[i], line, sizeof line, 2) != 0) {
                    continue;
                }
                answered[i] = true;
                if (sscanf(line, "probe ok=%llu", &ok) == 1 && (first == 0 || ok < first)) {
                    first = ok;
                    uint64_t grace = bn_now() + 50000000ull;
                    deadline = deadline < grace ? deadline : grace;
                }
            }
        }
        if (first == 0) {
            fo->failed++;
            fprintf(stderr, "  B5 %-15s trial %2d: no write succeeded within 10 s\n",
                    impl_name[impl], t + 1);
            cluster_dump_logs(&c);
        } else {
            double ms = (double)(first - t0) / 1e6;
            fo->ms[fo->n++] = ms;
            fprintf(stderr, "  B5 %-15s trial %2d: %.1f ms\n", impl_name[impl], t + 1, ms);
        }
        cluster_stop(&c);
    }
    return 0;
}

/* ---- the peers ------------------------------------------------------------------------------ */
/* A peer's sources: $ENV_VAR, else bench/peers/<rel> beside this file (__FILE__ is absolute in
 * CMake builds). */
static void peer_src(const char *env_var, const char *rel, char *src, size_t cap)
{
    const char *env = getenv(env_var);
    if (env != NULL) {
        snprintf(src, cap, "%s", env);
        return;
    }
    char here[PATH_MAX - 32];
    snprintf(here, sizeof here, "%s", __FILE__);
    char *slash = strrchr(here, '/');
    if (slash != NULL) {
        *slash = '\0';
        snprintf(src, cap, "%s/peers/%s", here, rel);
    } else {
        snprintf(src, cap, "bench/peers/%s", rel);
    }
}

/* Where a peer's binary goes: next to this binary (the build directory), else in /tmp. Not
 * named bench-*: `make bench` runs every bench-* of the build directory without arguments. */
static void peer_bin(const char *name, char *bin, size_t cap)
{
    snprintf(bin, cap, "%s", g_self);
    char *slash = strrchr(bin, '/');
    if (slash != NULL) {
        slash[1] = '\0';
    }
    strncat(bin, name, cap - strlen(bin) - 1);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", bin);
    *strrchr(dir, '/') = '\0';
    if (access(dir, W_OK) != 0) {
        snprintf(bin, cap, "/tmp/%s", name);
    }
}

/* The canonical/raft peer: bench/peers/canonical_raft.c, compiled when libraft-dev is there. */
static bool build_peer(void)
{
    char *why = g_skip_why[IMPL_CANON], *bin = g_peer_bin[IMPL_CANON];
    if (access("/usr/include/raft.h", F_OK) != 0) {
        snprintf(why, sizeof g_skip_why[0], "not installed (make bench-deps)");
        return false;
    }
    char src[PATH_MAX];
    peer_src("CRAFT_BENCH_PEER_SRC", "canonical_raft.c", src, sizeof src);
    if (access(src, R_OK) != 0) {
        snprintf(why, sizeof g_skip_why[0], "%.400s not found (set CRAFT_BENCH_PEER_SRC)", src);
        return false;
    }
    peer_bin("peer-canonical-raft", bin, PATH_MAX);
    snprintf(g_peer_version[IMPL_CANON], sizeof g_peer_version[0],
             "libraft 0.15, harness bench/peers/canonical_raft.c");
    struct stat s1, s2, s3;
    char hdr[PATH_MAX];
    snprintf(hdr, sizeof hdr, "%s", src);
    *strrchr(hdr, '/') = '\0';
    strncat(hdr, "/proto.h", sizeof hdr - strlen(hdr) - 1);
    if (stat(bin, &s1) == 0 && stat(src, &s2) == 0 && stat(hdr, &s3) == 0 &&
        s1.st_mtime > s2.st_mtime && s1.st_mtime > s3.st_mtime) {
        return true;
    }
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof cmd, "cc -O2 -g -std=gnu11 -o '%s' '%s' -lraft -luv", bin, src);
    fprintf(stderr, "bench-cluster: building the canonical/raft peer: %s\n", cmd);
    if (system(cmd) != 0) {
        snprintf(why, sizeof g_skip_why[0], "could not build bench/peers/canonical_raft.c (the "
                                            "compiler's messages are above on stderr)");
        return false;
    }
    return true;
}

/* The go command: $GO, else `go` on PATH, else /usr/local/go/bin/go (Go's own tarball). */
static bool find_go(char *out, size_t cap)
{
    const char *env = getenv("GO");
    if (env != NULL && env[0] != '\0') {
        snprintf(out, cap, "%s", env);
        return access(out, X_OK) == 0;
    }
    const char *path = getenv("PATH");
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path != NULL ? path : "");
    for (char *dir = strtok(tmp, ":"); dir != NULL; dir = strtok(NULL, ":")) {
        snprintf(out, cap, "%s/go", dir);
        if (access(out, X_OK) == 0) {
            return true;
        }
    }
    snprintf(out, cap, "/usr/local/go/bin/go");
    return access(out, X_OK) == 0;
}

/* Whether bin is newer than every file of the harness's module directory (*.go, go.mod,
 * go.sum): then it is not rebuilt, and Go is not even started. */
static bool newer_than_dir(const char *bin, const char *dir)
{
    struct stat sb;
    if (stat(bin, &sb) != 0) {
        return false;
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        return false;
    }
    bool newer = true;
    struct dirent *e;
    while (newer && (e = readdir(d)) != NULL) {
        struct stat st;
        if (e->d_name[0] != '.' && fstatat(dirfd(d), e->d_name, &st, 0) == 0 &&
            S_ISREG(st.st_mode) && st.st_mtime >= sb.st_mtime) {
            newer = false;
        }
    }
    closedir(d);
    return newer;
}

/* The hashicorp/raft peer: the Go module bench/peers/hashicorp (its go.mod names the versions),
 * built with `go build` when Go is installed; the modules come from GOMODCACHE or the Go module
 * proxy. CRAFT_BENCH_HASHICORP_BIN names a prebuilt harness instead. */
static bool build_hashicorp(void)
{
    char *why = g_skip_why[IMPL_HASHI], *bin = g_peer_bin[IMPL_HASHI];
    const char *prebuilt = getenv("CRAFT_BENCH_HASHICORP_BIN");
    if (prebuilt != NULL) {
        snprintf(bin, PATH_MAX, "%s", prebuilt);
        if (access(bin, X_OK) != 0) {
            snprintf(why, sizeof g_skip_why[0],
                     "CRAFT_BENCH_HASHICORP_BIN=%.400s is not executable", prebuilt);
            return false;
        }
    } else {
        char src[PATH_MAX], go[PATH_MAX], mod[PATH_MAX + 16];
        peer_src("CRAFT_BENCH_HASHICORP_SRC", "hashicorp", src, sizeof src);
        snprintf(mod, sizeof mod, "%s/go.mod", src);
        if (access(mod, R_OK) != 0) {
            snprintf(why, sizeof g_skip_why[0],
                     "%.400s not found (set CRAFT_BENCH_HASHICORP_SRC)", mod);
            return false;
        }
        peer_bin("peer-hashicorp-raft", bin, PATH_MAX);
        if (!newer_than_dir(bin, src)) {
            if (!find_go(go, sizeof go)) {
                if (getenv("GO") != NULL && getenv("GO")[0] != '\0') {
                    snprintf(why, sizeof g_skip_why[0], "GO=%.400s is not executable", go);
                } else {
                    snprintf(why, sizeof g_skip_why[0],
                             "Go not found (install Go >= 1.22 or set GO=/path/to/go; looked on "
                             "PATH and at /usr/local/go/bin/go)");
                }
                return false;
            }
            /* GOTOOLCHAIN=local: build with this Go, never download another toolchain. */
            char cmd[4 * PATH_MAX];
            snprintf(cmd, sizeof cmd,
                     "cd '%s' && GOTOOLCHAIN=local '%s' build -buildvcs=false -o '%s' .", src, go,
                     bin);
            fprintf(stderr, "bench-cluster: building the hashicorp/raft peer (the first build "
                            "downloads its modules and takes about a minute): %s\n", cmd);
            if (system(cmd) != 0) {
                unlink(bin);
                snprintf(why, sizeof g_skip_why[0],
                         "go build failed in bench/peers/hashicorp (its modules, github.com/"
                         "hashicorp/raft and raft-boltdb/v2 at the versions of its go.mod, come "
                         "from GOMODCACHE or the Go module proxy; go's messages are above on "
                         "stderr)");
                return false;
            }
        }
    }
    /* The versions it was built with, from the binary itself (runtime/debug.ReadBuildInfo). */
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "'%s' version", bin);
    FILE *f = popen(cmd, "r");
    char *v = g_peer_version[IMPL_HASHI];
    if (f == NULL || fgets(v, sizeof g_peer_version[0], f) == NULL) {
        snprintf(v, sizeof g_peer_version[0], "version unknown");
    }
    v[strcspn(v, "\n")] = '\0';
    if (f != NULL) {
        pclose(f);
    }
    strncat(v, ", harness bench/peers/hashicorp", sizeof g_peer_version[0] - strlen(v) - 1);
    return true;
}

/* ---- output ---------------------------------------------------------------------------------- */
static void fmt_range(char *out, size_t cap, const double *v, int n, const char *fmt)
{
    char a[32], b[32], m[32];
    if (n == 0) {
        snprintf(out, cap, "-");
        return;
    }
    snprintf(m, sizeof m, fmt, median(v, n));
    if (n == 1) {
        snprintf(out, cap, "%s", m);
        return;
    }
    snprintf(a, sizeof a, fmt, vmin(v, n));
    snprintf(b, sizeof b, fmt, vmax(v, n));
    snprintf(out, cap, "%s (%s–%s)", m, a, b);
}

static void fmt_lat(char *out, size_t cap, const struct point *p)
{
    if (p->n == 0) {
        snprintf(out, cap, "-");
        return;
    }
    snprintf(out, cap, "%.2f / %.2f / %.2f / %.1f", median(p->p50, p->n), median(p->p90, p->n),
             median(p->p99, p->n), median(p->max, p->n));
}

static void fmt_ratio(char *out, size_t cap, double a, double b)
{
    if (a > 0 && b > 0) {
        snprintf(out, cap, "%.2fx", a / b);
    } else {
        snprintf(out, cap, "-");
    }
}

/* Columns: craft's ops/s, then every asked-for peer's ops/s and craft / peer; craft's latency,
 * then every peer's latency and peer p50 / craft p50; craft's log writes per entry. A peer that
 * was asked for but skipped reads n/a. */
static void print_load_table(const char *title, const unsigned *windows, int nw, const size_t *sizes,
                             struct point (*pt)[NIMPL], bool by_size)
{
    printf("\n%s\n\n", title);
    printf("| %s | craft ops/s |", by_size ? "size" : "window");
    int ncol = 4;
    for (int k = 1; k < NIMPL; k++) {
        if (g_want[k]) {
            printf(" %s ops/s | ratio |", impl_name[k]);
            ncol += 2;
        }
    }
    printf(" craft p50 / p90 / p99 / max ms |");
    for (int k = 1; k < NIMPL; k++) {
        if (g_want[k]) {
            printf(" %s p50 / p90 / p99 / max ms | p50 ratio (%s / craft) |", impl_short[k],
                   impl_short[k]);
            ncol += 2;
        }
    }
    printf(" craft log writes per entry (leader) |\n|");
    for (int k = 0; k < ncol; k++) {
        printf("---:|");
    }
    printf("\n");
    for (int i = 0; i < nw; i++) {
        struct point *c = &pt[i][IMPL_CRAFT];
        char buf[128], lat[96];
        if (by_size) {
            snprintf(buf, sizeof buf, "%zu B", sizes[i]);
        } else {
            snprintf(buf, sizeof buf, "%u", windows[i]);
        }
        printf("| %s |", buf);
        fmt_range(buf, sizeof buf, c->ops, c->n, "%.0f");
        printf(" %s |", buf);
        for (int k = 1; k < NIMPL; k++) {
            struct point *q = &pt[i][k];
            if (!g_want[k]) {
                continue;
            }
            if (!g_run[k]) {
                printf(" n/a | - |");
                continue;
            }
            fmt_range(buf, sizeof buf, q->ops, q->n, "%.0f");
            printf(" %s |", buf);
            fmt_ratio(buf, sizeof buf, median(c->ops, c->n), median(q->ops, q->n));
            printf(" %s |", buf);
        }
        fmt_lat(lat, sizeof lat, c);
        printf(" %s |", lat);
        for (int k = 1; k < NIMPL; k++) {
            struct point *q = &pt[i][k];
            if (!g_want[k]) {
                continue;
            }
            if (!g_run[k]) {
                printf(" n/a | - |");
                continue;
            }
            fmt_lat(lat, sizeof lat, q);
            fmt_ratio(buf, sizeof buf, median(q->p50, q->n), median(c->p50, c->n));
            printf(" %s | %s |", lat, buf);
        }
        fmt_range(buf, sizeof buf, c->fsync_per_entry, c->n_fs, "%.3f");
        printf(" %s |", buf);
        const char *sep = " errors:";
        for (int k = 0; k < NIMPL; k++) {
            struct point *q = &pt[i][k];
            if (g_run[k] && (q->errors || q->failed)) {
                printf("%s %s %llu%s", sep, impl_short[k], q->errors,
                       q->failed ? " (failed runs)" : "");
                sep = ",";
            }
        }
        printf("\n");
    }
}

static int parse_list(const char *s, unsigned *out, int cap)
{
    int n = 0;
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", s);
    for (char *tok = strtok(tmp, ","); tok != NULL && n < cap; tok = strtok(NULL, ",")) {
        out[n++] = (unsigned)atoi(tok);
    }
    return n;
}

/* --peers canonical,hashicorp | both | none */
static int parse_peers(const char *list)
{
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", list);
    g_want[IMPL_CANON] = g_want[IMPL_HASHI] = false;
    for (char *tok = strtok(tmp, ","); tok != NULL; tok = strtok(NULL, ",")) {
        if (strcmp(tok, "canonical") == 0 || strcmp(tok, "canonical/raft") == 0) {
            g_want[IMPL_CANON] = true;
        } else if (strcmp(tok, "hashicorp") == 0 || strcmp(tok, "hashicorp/raft") == 0) {
            g_want[IMPL_HASHI] = true;
        } else if (strcmp(tok, "both") == 0) {
            g_want[IMPL_CANON] = g_want[IMPL_HASHI] = true;
        } else if (strcmp(tok, "none") != 0) {
            fprintf(stderr, "bench-cluster: --peers: unknown peer '%s' (canonical, hashicorp, "
                            "both, none)\n", tok);
            return -1;
        }
    }
    return 0;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: bench-cluster [--quick] [-t MEAS_S] [-r REPS] [-w 1,16,64,256] [-s SIZE]\n"
            "                     [-f TRIALS] [-d DIR] [--only b0,b1,b2,b4,b5] [--b4] [--no-peer]\n"
            "                     [--peers canonical,hashicorp|both|none] [--keep-logs]\n"
            "                     [--security plaintext|tls|secret]\n");
    return 2;
}

/* Runs a set of load points (windows x sizes) for every library that runs, rep by rep; clusters
 * are started afresh for every repetition and library. */
static int run_points(bool sync, const char *root, unsigned *windows, int nw, size_t *sizes,
                      int reps, unsigned meas_ms, struct point (*pt)[NIMPL])
{
    for (int r = 0; r < reps; r++) {
        for (int impl = 0; impl < NIMPL; impl++) {
            if (!g_run[impl]) {
                continue;
            }
            struct cluster c;
            if (cluster_start(&c, impl, sync, 50, 500, root) != 0) {
                for (int i = 0; i < nw; i++) {
                    pt[i][impl].failed = true;
                }
                continue;
            }
            int leader = wait_leader(&c, 15000, -1);
            if (leader < 0) {
                fprintf(stderr, "bench-cluster: %s: no leader\n", impl_name[impl]);
                cluster_dump_logs(&c);
            }
            for (int i = 0; leader >= 0 && i < nw; i++) {
                int l = wait_leader(&c, 10000, -1);
                if (l < 0 || run_load(&c, l, windows[i], 1000, meas_ms, sizes[i], &pt[i][impl]) != 0) {
                    pt[i][impl].failed = true;
                    cluster_dump_logs(&c);
                    continue;
                }
                if (getenv("CRAFT_BENCH_DEBUG") != NULL) {
                    for (int j = 0; j < 3; j++) {
                        char line[512];
                        if (proc_send(&c.p[j], "status") == 0 &&
                            proc_line(&c.p[j], line, sizeof line, 5000) == 0) {
                            fprintf(stderr, "    node %d: %s\n", j + 1, line);
                        }
                    }
                }
                struct point *p = &pt[i][impl];
                int k = p->n - 1;
                fprintf(stderr,
                        "  %-8s rep %d %-15s window %4u size %6zu: %8.0f ops/s  p50 %.3f  p99 %.3f  max %.1f ms\n",
                        sync ? "durable" : "nosync", r + 1, impl_name[impl], windows[i], sizes[i],
                        p->ops[k], p->p50[k], p->p99[k], p->max[k]);
            }
            cluster_stop(&c);
        }
    }
    return 0;
}

/* --security tls|secret: the credentials, in a directory removed at exit; the nodes find them
 * through the environment. tls needs tests/tls/make-certs.sh (run from the repository's root,
 * as scripts/bench-cluster.sh does) and the openssl command. */
static int prepare_security(const char *mode, const char *root)
{
    static char label[64];
    char cmd[PATH_MAX + 128], secret[PATH_MAX + 32];
    snprintf(g_security_dir, sizeof g_security_dir, "%s/craft-bench-security.XXXXXX", root);
    if (mkdtemp(g_security_dir) == NULL) {
        perror("bench-cluster: mkdtemp");
        return 1;
    }
    track_dir(g_security_dir);
    if (strcmp(mode, "tls") == 0) {
        snprintf(cmd, sizeof cmd, "bash tests/tls/make-certs.sh '%s' 1 2 3", g_security_dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "bench-cluster: tests/tls/make-certs.sh failed (run from the "
                            "repository's root, with openssl installed)\n");
            return 1;
        }
        snprintf(label, sizeof label, "craft (TLS)");
    } else if (strcmp(mode, "secret") == 0) {
        snprintf(secret, sizeof secret, "%s/cluster.secret", g_security_dir);
        if (craft_secret_generate(secret) != 0) {
            fprintf(stderr, "bench-cluster: cannot write %s\n", secret);
            return 1;
        }
        snprintf(label, sizeof label, "craft (secret)");
    } else {
        fprintf(stderr, "bench-cluster: --security plaintext, tls or secret\n");
        return 2;
    }
    setenv("CRAFT_BENCH_SECURITY", mode, 1);
    setenv("CRAFT_BENCH_SECURITY_DIR", g_security_dir, 1);
    impl_name[IMPL_CRAFT] = label;
    return 0;
}

static int driver_main(int argc, char **argv)
{
    bool quick = false, want_b4 = false;
    unsigned meas_s = 5, reps = 3, trials = 20;
    size_t size = 100;
    unsigned windows[16] = {1, 16, 64, 256};
    int nw = 4;
    bool windows_set = false, t_set = false, r_set = false, f_set = false;
    const char *only = NULL;
    const char *security = "plaintext";
    const char *root = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            quick = true;
        } else if (strcmp(a, "--no-peer") == 0) {
            g_want[IMPL_CANON] = g_want[IMPL_HASHI] = false;
        } else if (strcmp(a, "--peers") == 0 && v) {
            if (parse_peers(v) != 0) {
                return usage();
            }
            i++;
        } else if (strcmp(a, "--b4") == 0) {
            want_b4 = true;
        } else if (strcmp(a, "--peer-only") == 0) {
            g_peer_only = true;
        } else if (strcmp(a, "--keep-logs") == 0) {
            g_keep_logs = true;
        } else if (strcmp(a, "-t") == 0 && v) {
            meas_s = (unsigned)atoi(v);
            t_set = true;
            i++;
        } else if (strcmp(a, "-r") == 0 && v) {
            reps = (unsigned)atoi(v);
            r_set = true;
            i++;
        } else if (strcmp(a, "-f") == 0 && v) {
            trials = (unsigned)atoi(v);
            f_set = true;
            i++;
        } else if (strcmp(a, "-s") == 0 && v) {
            size = (size_t)atol(v);
            i++;
        } else if (strcmp(a, "-d") == 0 && v) {
            root = v;
            i++;
        } else if (strcmp(a, "-w") == 0 && v) {
            nw = parse_list(v, windows, 16);
            windows_set = true;
            i++;
        } else if (strcmp(a, "--only") == 0 && v) {
            only = v;
            i++;
        } else if (strcmp(a, "--security") == 0 && v) {
            security = v;
            i++;
        } else {
            return usage();
        }
    }
    if (quick) {
        meas_s = t_set ? meas_s : 1;
        reps = r_set ? reps : 1;
        trials = f_set ? trials : 5;
        if (!windows_set) {
            windows[0] = 1;
            windows[1] = 256;
            nw = 2;
        }
    }
    if (reps < 1 || reps > MAXREP || meas_s < 1 || nw < 1 || size < 9 || size > BN_MAXSIZE ||
        trials > 256) {
        return usage();
    }
    for (int i = 0; i < nw; i++) {
        if (windows[i] < 1 || windows[i] > BN_MAXW) {
            return usage();
        }
    }
    bool do_b0 = !only || strstr(only, "b0"), do_b1 = !only || strstr(only, "b1") || strstr(only, "b2"),
         do_b5 = !only || strstr(only, "b5"), do_b4 = want_b4 || (only && strstr(only, "b4"));

    if (readlink("/proc/self/exe", g_self, sizeof g_self - 1) < 0) {
        perror("readlink /proc/self/exe");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_fatal_signal);
    signal(SIGTERM, on_fatal_signal);
    signal(SIGHUP, on_fatal_signal);
    atexit(cleanup_all);

    if (strcmp(security, "plaintext") != 0 && prepare_security(security, root) != 0) {
        return 1;
    }
    g_run[IMPL_CRAFT] = !g_peer_only;
    g_run[IMPL_CANON] = g_want[IMPL_CANON] && build_peer();
    g_run[IMPL_HASHI] = g_want[IMPL_HASHI] && build_hashicorp();
    for (int k = 1; k < NIMPL; k++) {
        if (g_want[k] && !g_run[k]) {
            printf("%s: skipped: %s\n", impl_name[k], g_skip_why[k]);
        }
    }

    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    printf("# bench-cluster, %s\n\n", date);
    printf("3 processes on 127.0.0.1, %zu-byte commands, %u s measured after 1 s of warm-up, "
           "%u repetition(s): median (min–max). Peers:",
           size, meas_s, reps);
    const char *sep = "";
    for (int k = 1; k < NIMPL; k++) {
        if (g_run[k]) {
            printf("%s %s (%s)", sep, impl_name[k], g_peer_version[k]);
            sep = ";";
        } else if (g_want[k]) {
            printf("%s %s (skipped, see above)", sep, impl_name[k]);
            sep = ";";
        }
    }
    printf("%s.\n", sep[0] == '\0' ? " none" : "");
    printf("craft's connections: %s.\n",
           strcmp(security, "tls") == 0      ? "mutual TLS 1.3 with certificates (--security tls)"
           : strcmp(security, "secret") == 0 ? "TLS 1.3 with a cluster secret (--security secret)"
                                             : "plaintext");
    fflush(stdout);

    struct b0 env;
    b0_env(root, &env);
    if (do_b0) {
        fprintf(stderr, "B0: raw fdatasync of 4 KiB appends in %s\n", root);
        for (int k = 0; k < 3; k++) {
            raw_fsync(root, quick ? 0.5 : 1.0, &env);
        }
        printf("\n## B0 environment\n\n");
        printf("| | |\n|---|---|\n");
        printf("| CPU | %s |\n| kernel | %s |\n| durable data dir | %s (%s) |\n| nosync data dir | /dev/shm (%s) |\n",
               env.cpu, env.kernel, root, env.fs, fs_name("/dev/shm"));
        char p50[128], p99[128], rate[128];
        fmt_range(p50, sizeof p50, env.p50, env.n, "%.3f");
        fmt_range(p99, sizeof p99, env.p99, env.n, "%.3f");
        fmt_range(rate, sizeof rate, env.rate, env.n, "%.0f");
        printf("| raw fdatasync, 4 KiB appends: p50 ms | %s |\n| raw fdatasync: p99 ms | %s |\n"
               "| raw fdatasync: syncs/s | %s |\n",
               p50, p99, rate);
        fflush(stdout);
    }

    if (do_b1) {
        size_t sizes[16];
        for (int i = 0; i < nw; i++) {
            sizes[i] = size;
        }
        for (int mode = 0; mode < 2; mode++) {
            bool sync = mode == 0;
            static struct point pt[16][NIMPL];
            memset(pt, 0, sizeof pt);
            run_points(sync, root, windows, nw, sizes, (int)reps, meas_s * 1000, pt);
            char title[256];
            snprintf(title, sizeof title, "## B1/B2 %s (%s)", sync ? "durable" : "nosync",
                     sync ? "fdatasync on, data dir on disk" : "data dir on /dev/shm, craft fsync off");
            print_load_table(title, windows, nw, sizes, pt, false);
            if (sync && do_b0 && env.n > 0) {
                for (int i = 0; i < nw; i++) {
                    if (windows[i] == 1 && pt[i][0].n > 0) {
                        printf("\nB1 goal: craft p50 at window 1 / raw fdatasync p50 = %.3f / %.3f = %.2fx (goal <= 1.2x)\n",
                               median(pt[i][0].p50, pt[i][0].n), median(env.p50, env.n),
                               median(pt[i][0].p50, pt[i][0].n) / median(env.p50, env.n));
                    }
                }
            }
            fflush(stdout);
        }
    }

    if (do_b4) {
        size_t sizes[] = {10, 100, 1024, 16384, 65536};
        unsigned w4[5] = {64, 64, 64, 64, 64};
        static struct point pt[5][NIMPL];
        memset(pt, 0, sizeof pt);
        run_points(true, root, w4, 5, sizes, (int)reps, meas_s * 1000, pt);
        print_load_table("## B4 payload sweep (durable, window 64)", w4, 5, sizes, pt, true);
        fflush(stdout);
    }

    if (do_b5) {
        struct failover fo[NIMPL];
        memset(fo, 0, sizeof fo);
        for (int impl = 0; impl < NIMPL; impl++) {
            if (g_run[impl]) {
                run_failover(impl, (int)trials, root, &fo[impl]);
            }
        }
        printf("\n## B5 failover (durable; kill -9 of the leader until the next write succeeds; "
               "heartbeat 15 ms, election timeout 150 ms = random in [150, 300) ms)\n\n");
        printf("| library | trials ok | failed | min ms | median ms | p90 ms | worst ms |\n");
        printf("|---|---:|---:|---:|---:|---:|---:|\n");
        for (int impl = 0; impl < NIMPL; impl++) {
            struct failover *f = &fo[impl];
            if (!g_run[impl]) {
                if (g_want[impl]) {
                    printf("| %s | n/a | | | | | |\n", impl_name[impl]);
                }
                continue;
            }
            double s[256];
            memcpy(s, f->ms, (size_t)f->n * sizeof *s);
            qsort(s, (size_t)f->n, sizeof *s, cmp_double);
            if (f->n == 0) {
                printf("| %s | 0 | %d | - | - | - | - |\n", impl_name[impl], f->failed);
                continue;
            }
            double med = f->n % 2 ? s[f->n / 2] : (s[f->n / 2 - 1] + s[f->n / 2]) / 2;
            printf("| %s | %d | %d | %.1f | %.1f | %.1f | %.1f |\n", impl_name[impl], f->n,
                   f->failed, s[0], med, s[(size_t)(0.9 * (f->n - 1))], s[f->n - 1]);
        }
        fflush(stdout);
    }
    cleanup_all();
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "node") == 0) {
        return node_main(argc, argv);
    }
    return driver_main(argc, argv);
}
