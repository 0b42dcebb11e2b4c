/*
 * The node side of bench-cluster's driver protocol, shared by the craft node (bench/cluster_bench.c,
 * `bench-cluster node ...`) and the canonical/raft peer (bench/peers/canonical_raft.c). Both run
 * one Raft server on a libuv loop and read commands, one per line, on stdin; every reply is one
 * line on stdout. The hashicorp/raft peer, in Go, cannot include this header: its
 * bench/peers/hashicorp/proto.go follows it step by step, so a change here goes there too.
 *
 *   status                      -> "status role=L|F|C|U term=T leader=ID applied=N last=N ..."
 *   load W WARM_MS MEAS_MS SIZE -> a closed loop of W outstanding proposals of SIZE bytes, made
 *                                  in this process; after WARM_MS the completions of the next
 *                                  MEAS_MS are counted and timed (submit to callback); then it
 *                                  stops submitting, waits for what is in flight, and replies
 *                                  "load ok=N err=E secs=S p50=NS p90=NS p99=NS p999=NS max=NS
 *                                   fsyncs=F entries=A" (F, A: -1 when the library has no such
 *                                   counter), or "load error WHY"
 *   probe                       -> failover probe: from now on, every 2 ms, a new proposal (at
 *                                  most 32 in flight, each with a 1 s timeout) while this node
 *                                  can propose (craft: always, followers forward; canonical:
 *                                  when it leads); replies "probe ok=T_NS" with the CLOCK_MONOTONIC
 *                                  time of the first success of a proposal made after the command
 *                                  arrived, or "probe none" after 10 s
 *   quit                        -> exits at once
 *
 * EOF on stdin (the driver died) also exits. The implementation provides the impl_* functions
 * declared below and calls bn_done() from its completion callbacks (possibly from inside
 * impl_submit, when the library answers synchronously).
 */
#ifndef BENCH_PEERS_PROTO_H
#define BENCH_PEERS_PROTO_H

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define BN_MAXW 4096
#define BN_PROBES 32
#define BN_SLOTS (BN_MAXW + BN_PROBES)
#define BN_MAXSIZE (1u << 20)

/* ---- provided by the implementation --------------------------------------------------------- */
/* Proposes cmd (copied or owned by the library as it needs) under slot; 0 or an error (then no
 * completion follows). The completion calls bn_done(slot, status) (status 0: applied). */
static int impl_submit(unsigned slot, const void *cmd, size_t size, unsigned timeout_ms);
/* "role=.. term=.. leader=.. applied=.." */
static void impl_status(char *buf, size_t cap);
static bool impl_is_leader(void);
/* Whether a failover probe may be submitted here now. */
static bool impl_can_probe(void);
/* Counters: fsyncs and entries appended so far, or -1 when unknown. */
static void impl_counters(int64_t *fsyncs, int64_t *entries);

/* ---- helpers --------------------------------------------------------------------------------- */
static inline uint64_t bn_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int bn_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void bn_reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void bn_reply(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* ---- state ------------------------------------------------------------------------------------ */
struct bn_state {
    uv_loop_t *loop;
    uv_pipe_t in;
    char line[4096];
    size_t len;
    uint64_t t_submit[BN_SLOTS];
    bool busy[BN_SLOTS];
    unsigned char *cmd;
    uint64_t seq;

    /* load */
    bool loading;
    unsigned window;
    size_t size;
    uint64_t t_meas, t_end;
    uint64_t ok, err, outstanding;
    uint64_t *lat;
    size_t nlat, caplat;
    bool snapped_start, snapped_end;
    int64_t fs0, en0, fs1, en1;
    unsigned *retry;
    size_t nretry;
    uv_timer_t guard, retry_timer;

    /* probe */
    bool probing;
    uint64_t probe_t0;
    unsigned probe_out;
    uv_timer_t probe_timer;
};

static struct bn_state bn;

static void bn_make_cmd(size_t size)
{
    /* A counter increment: 'i', 8 bytes little-endian (1), padding up to size. */
    memset(bn.cmd, 0, size);
    bn.cmd[0] = 'i';
    bn.cmd[1] = 1;
    /* Vary the padding so that nothing can be deduplicated. */
    bn.seq++;
    if (size >= 17) {
        memcpy(bn.cmd + 9, &bn.seq, 8);
    }
}

static void bn_load_finish(const char *why)
{
    bn.loading = false;
    uv_timer_stop(&bn.guard);
    uv_timer_stop(&bn.retry_timer);
    if (why != NULL) {
        bn_reply("load error %s", why);
        return;
    }
    if (!bn.snapped_end) {
        impl_counters(&bn.fs1, &bn.en1);
    }
    uint64_t p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;
    if (bn.nlat > 0) {
        qsort(bn.lat, bn.nlat, sizeof *bn.lat, bn_cmp_u64);
        p50 = bn.lat[(size_t)(0.50 * (double)(bn.nlat - 1))];
        p90 = bn.lat[(size_t)(0.90 * (double)(bn.nlat - 1))];
        p99 = bn.lat[(size_t)(0.99 * (double)(bn.nlat - 1))];
        p999 = bn.lat[(size_t)(0.999 * (double)(bn.nlat - 1))];
        max = bn.lat[bn.nlat - 1];
    }
    int64_t fs = bn.fs0 >= 0 && bn.fs1 >= 0 ? bn.fs1 - bn.fs0 : -1;
    int64_t en = bn.en0 >= 0 && bn.en1 >= 0 ? bn.en1 - bn.en0 : -1;
    double secs = (double)(bn.t_end - bn.t_meas) / 1e9;
    bn_reply("load ok=%" PRIu64 " err=%" PRIu64 " secs=%.3f p50=%" PRIu64 " p90=%" PRIu64
             " p99=%" PRIu64 " p999=%" PRIu64 " max=%" PRIu64 " fsyncs=%" PRId64 " entries=%" PRId64,
             bn.nlat, bn.err, secs, p50, p90, p99, p999, max, fs, en);
}

static void bn_retry_cb(uv_timer_t *t);

static void bn_load_submit(unsigned slot)
{
    bn_make_cmd(bn.size);
    bn.busy[slot] = true;
    bn.outstanding++;
    bn.t_submit[slot] = bn_now();
    int rc = impl_submit(slot, bn.cmd, bn.size, 0);
    if (rc != 0) {
        bn.busy[slot] = false;
        bn.outstanding--;
        bn.err++;
        bn.retry[bn.nretry++] = slot;
        if (!uv_is_active((uv_handle_t *)&bn.retry_timer)) {
            uv_timer_start(&bn.retry_timer, bn_retry_cb, 1, 0);
        }
    }
}

static void bn_retry_cb(uv_timer_t *t)
{
    (void)t;
    size_t n = bn.nretry;
    bn.nretry = 0;
    unsigned slots[BN_MAXW];
    memcpy(slots, bn.retry, n * sizeof *slots);
    for (size_t k = 0; k < n; k++) {
        if (bn.loading && bn_now() < bn.t_end) {
            bn_load_submit(slots[k]);
        }
    }
    if (bn.loading && bn.outstanding == 0 && bn.nretry == 0) {
        bn_load_finish(NULL);
    }
}

static void bn_guard_cb(uv_timer_t *t)
{
    (void)t;
    if (bn.loading) {
        bn_load_finish("timeout: the cluster stopped answering");
    }
}

static void bn_probe_finish(uint64_t t_ok)
{
    bn.probing = false;
    uv_timer_stop(&bn.probe_timer);
    if (t_ok == 0) {
        bn_reply("probe none");
    } else {
        bn_reply("probe ok=%" PRIu64, t_ok);
    }
}

/* Called by the implementation when the proposal of slot completes. */
static void bn_done(unsigned slot, int status)
{
    uint64_t t = bn_now();
    if (slot >= BN_SLOTS || !bn.busy[slot]) {
        return;
    }
    bn.busy[slot] = false;
    if (slot >= BN_MAXW) {
        bn.probe_out--;
        if (bn.probing && status == 0 && bn.t_submit[slot] >= bn.probe_t0) {
            bn_probe_finish(t);
        }
        return;
    }
    bn.outstanding--;
    if (!bn.loading) {
        return;
    }
    if (t >= bn.t_meas && !bn.snapped_start) {
        bn.snapped_start = true;
        impl_counters(&bn.fs0, &bn.en0);
    }
    if (t >= bn.t_end && !bn.snapped_end) {
        bn.snapped_end = true;
        impl_counters(&bn.fs1, &bn.en1);
    }
    if (status != 0) {
        bn.err++;
        if (t < bn.t_end) {
            /* Not at once: a library that fails synchronously would recurse. */
            bn.retry[bn.nretry++] = slot;
            if (!uv_is_active((uv_handle_t *)&bn.retry_timer)) {
                uv_timer_start(&bn.retry_timer, bn_retry_cb, 1, 0);
            }
        }
    } else {
        if (t >= bn.t_meas && t < bn.t_end) {
            if (bn.nlat == bn.caplat) {
                bn.caplat = bn.caplat ? bn.caplat * 2 : 1 << 16;
                bn.lat = realloc(bn.lat, bn.caplat * sizeof *bn.lat);
                if (bn.lat == NULL) {
                    abort();
                }
            }
            bn.lat[bn.nlat++] = t - bn.t_submit[slot];
        }
        if (t < bn.t_end) {
            bn_load_submit(slot);
        }
    }
    if (bn.outstanding == 0 && bn.nretry == 0) {
        bn_load_finish(NULL);
    }
}

static void bn_probe_cb(uv_timer_t *t)
{
    (void)t;
    if (!bn.probing) {
        return;
    }
    if (bn_now() - bn.probe_t0 > 10000000000ull) {
        bn_probe_finish(0);
        return;
    }
    if (bn.probe_out >= BN_PROBES || !impl_can_probe()) {
        return;
    }
    for (unsigned s = BN_MAXW; s < BN_SLOTS; s++) {
        if (!bn.busy[s]) {
            bn_make_cmd(100);
            bn.busy[s] = true;
            bn.probe_out++;
            bn.t_submit[s] = bn_now();
            if (impl_submit(s, bn.cmd, 100, 1000) != 0 && bn.busy[s]) {
                bn.busy[s] = false;
                bn.probe_out--;
            }
            return;
        }
    }
}

static void bn_command(char *line)
{
    char buf[1024];
    if (strcmp(line, "status") == 0) {
        impl_status(buf, sizeof buf);
        bn_reply("status %s", buf);
    } else if (strncmp(line, "load ", 5) == 0) {
        unsigned w = 0, warm = 0, meas = 0;
        size_t size = 0;
        if (sscanf(line + 5, "%u %u %u %zu", &w, &warm, &meas, &size) != 4 || w == 0 ||
            w > BN_MAXW || size < 9 || size > BN_MAXSIZE) {
            bn_reply("load error bad arguments");
            return;
        }
        if (bn.loading || bn.outstanding > 0) {
            bn_reply("load error busy");
            return;
        }
        if (!impl_is_leader()) {
            bn_reply("load error notleader");
            return;
        }
        bn.loading = true;
        bn.window = w;
        bn.size = size;
        bn.ok = bn.err = 0;
        bn.nlat = 0;
        bn.nretry = 0;
        bn.snapped_start = bn.snapped_end = false;
        bn.fs0 = bn.en0 = bn.fs1 = bn.en1 = -1;
        uint64_t t0 = bn_now();
        bn.t_meas = t0 + (uint64_t)warm * 1000000ull;
        bn.t_end = bn.t_meas + (uint64_t)meas * 1000000ull;
        uv_timer_start(&bn.guard, bn_guard_cb, warm + meas + 20000, 0);
        for (unsigned s = 0; s < w && bn.loading; s++) {
            bn_load_submit(s);
        }
    } else if (strcmp(line, "probe") == 0) {
        if (bn.probing) {
            bn_reply("probe error busy");
            return;
        }
        bn.probing = true;
        bn.probe_t0 = bn_now();
        uv_timer_start(&bn.probe_timer, bn_probe_cb, 0, 2);
    } else if (strcmp(line, "quit") == 0) {
        fflush(stdout);
        _exit(0);
    } else {
        bn_reply("error unknown command");
    }
}

static void bn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char chunk[4096];
    buf->base = chunk;
    buf->len = sizeof chunk;
}

static void bn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)s;
    if (nread < 0) {
        _exit(0); /* the driver went away */
    }
    for (ssize_t k = 0; k < nread; k++) {
        char c = buf->base[k];
        if (c == '\n') {
            bn.line[bn.len] = '\0';
            bn.len = 0;
            bn_command(bn.line);
        } else if (bn.len + 1 < sizeof bn.line) {
            bn.line[bn.len++] = c;
        }
    }
}

/* Starts reading commands; call once the node is started. */
static void bn_init(uv_loop_t *loop)
{
    bn.loop = loop;
    bn.cmd = calloc(1, BN_MAXSIZE);
    bn.retry = calloc(BN_MAXW, sizeof *bn.retry);
    if (bn.cmd == NULL || bn.retry == NULL) {
        abort();
    }
    uv_timer_init(loop, &bn.guard);
    uv_timer_init(loop, &bn.retry_timer);
    uv_timer_init(loop, &bn.probe_timer);
    uv_pipe_init(loop, &bn.in, 0);
    if (uv_pipe_open(&bn.in, 0) != 0 ||
        uv_read_start((uv_stream_t *)&bn.in, bn_alloc_cb, bn_read_cb) != 0) {
        fprintf(stderr, "cannot read commands on stdin\n");
        exit(1);
    }
}

/* Command line shared by both node programs:
 *   node --id I --dir DIR --ports P1,P2,P3 --sync 0|1 --hb MS --et MS */
struct bn_args {
    unsigned id;
    const char *dir;
    unsigned ports[8];
    unsigned n;
    bool sync;
    unsigned hb, et;
};

static int bn_parse_args(int argc, char **argv, struct bn_args *a)
{
    memset(a, 0, sizeof *a);
    a->sync = true;
    a->hb = 50;
    a->et = 500;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--id") == 0) {
            a->id = (unsigned)atoi(argv[++i]);
        } else if (strcmp(argv[i], "--dir") == 0) {
            a->dir = argv[++i];
        } else if (strcmp(argv[i], "--sync") == 0) {
            a->sync = atoi(argv[++i]) != 0;
        } else if (strcmp(argv[i], "--hb") == 0) {
            a->hb = (unsigned)atoi(argv[++i]);
        } else if (strcmp(argv[i], "--et") == 0) {
            a->et = (unsigned)atoi(argv[++i]);
        } else if (strcmp(argv[i], "--ports") == 0) {
            char tmp[256];
            snprintf(tmp, sizeof tmp, "%s", argv[++i]);
            for (char *tok = strtok(tmp, ","); tok != NULL && a->n < 8; tok = strtok(NULL, ",")) {
                a->ports[a->n++] = (unsigned)atoi(tok);
            }
        }
    }
    if (a->id == 0 || a->id > a->n || a->dir == NULL) {
        fprintf(stderr, "usage: node --id I --dir DIR --ports P1,P2,P3 [--sync 0|1] [--hb MS] [--et MS]\n");
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

#endif
