/*
 * The canonical/raft peer for bench-cluster: one server of a 3-server cluster, modelled on
 * canonical/raft's example/server.c (a counter FSM, raft_uv_init + raft_uv_tcp_init, bootstrap
 * of every server, raft_apply), driven by the protocol of bench/peers/proto.h.
 *
 * Not part of the CMake build (the project does not require libraft-dev): bench-cluster compiles
 * it at run time when /usr/include/raft.h exists:
 *
 *   cc -O2 -g -o peer-canonical-raft bench/peers/canonical_raft.c -lraft -luv
 *
 * and runs it as `peer-canonical-raft node --id I --dir DIR --ports P1,P2,P3
 * --sync 0|1 --hb MS --et MS`. canonical/raft has no "sync off" switch: it writes with O_DIRECT
 * and O_DSYNC through kernel AIO where the file system allows it; the driver gives it a data
 * directory on /dev/shm for the nosync runs (tmpfs: no direct I/O, syncs are no-ops), so --sync
 * is accepted and ignored here.
 */
#include <raft.h>
#include <raft/uv.h>

#include "proto.h"

static struct raft *g_raft;
/* ---- the counter FSM (as in example/server.c) ------------------------------------------------ */
struct counter {
    uint64_t count;
};

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct counter *c = fsm->data;
    const unsigned char *p = buf->base;
    if (buf->len < 9 || p[0] != 'i') {
        fprintf(stderr, "canonical-raft node: apply: unexpected command (len %zu, first byte %d) "
                        "after index %llu\n",
                buf->len, buf->len ? p[0] : -1, (unsigned long long)raft_last_applied(g_raft));
        return RAFT_MALFORMED;
    }
    uint64_t by = 0;
    for (int k = 0; k < 8; k++) {
        by |= (uint64_t)p[1 + k] << (8 * k);
    }
    c->count += by;
    *result = &c->count;
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct counter *c = fsm->data;
    *n_bufs = 1;
    *bufs = raft_malloc(sizeof **bufs);
    if (*bufs == NULL) {
        return RAFT_NOMEM;
    }
    (*bufs)[0].len = sizeof(uint64_t);
    (*bufs)[0].base = raft_malloc(sizeof(uint64_t));
    if ((*bufs)[0].base == NULL) {
        raft_free(*bufs);
        return RAFT_NOMEM;
    }
    memcpy((*bufs)[0].base, &c->count, sizeof(uint64_t));
    return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct counter *c = fsm->data;
    if (buf->len != sizeof(uint64_t)) {
        return RAFT_MALFORMED;
    }
    memcpy(&c->count, buf->base, sizeof(uint64_t));
    raft_free(buf->base);
    return 0;
}

/* ---- the server ---------------------------------------------------------------------------- */
static struct {
    uv_loop_t loop;
    struct raft_uv_transport transport;
    struct raft_io io;
    struct raft_fsm fsm;
    struct counter counter;
    struct raft raft;
    struct raft_apply reqs[BN_SLOTS];
} S;

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    (void)result;
    bn_done((unsigned)(req - S.reqs), status);
}

static int impl_submit(unsigned slot, const void *cmd, size_t size, unsigned timeout_ms)
{
    (void)timeout_ms; /* raft_apply has no timeout: a lost leadership fails it */
    if (raft_state(&S.raft) != RAFT_LEADER) {
        return RAFT_NOTLEADER;
    }
    struct raft_buffer buf;
    buf.len = size;
    buf.base = raft_malloc(size);
    if (buf.base == NULL) {
        return RAFT_NOMEM;
    }
    memcpy(buf.base, cmd, size);
    struct raft_apply *req = &S.reqs[slot];
    memset(req, 0, sizeof *req);
    int rv = raft_apply(&S.raft, req, &buf, 1, apply_cb);
    if (rv != 0) {
        raft_free(buf.base);
    }
    return rv;
}

static void impl_status(char *buf, size_t cap)
{
    static const char roles[] = "UFCL";
    int st = raft_state(&S.raft);
    raft_id leader = 0;
    const char *address = NULL;
    raft_leader(&S.raft, &leader, &address);
    snprintf(buf, cap, "role=%c term=%llu leader=%llu applied=%llu last=%llu",
             st >= 0 && st <= 3 ? roles[st] : '?', (unsigned long long)S.raft.current_term,
             (unsigned long long)leader, (unsigned long long)raft_last_applied(&S.raft),
             (unsigned long long)raft_last_index(&S.raft));
}

static bool impl_is_leader(void)
{
    return raft_state(&S.raft) == RAFT_LEADER;
}

static bool impl_can_probe(void)
{
    return raft_state(&S.raft) == RAFT_LEADER; /* no forwarding in canonical/raft */
}

static void impl_counters(int64_t *fsyncs, int64_t *entries)
{
    *fsyncs = -1;
    *entries = -1;
}

static void die(const char *what, int rv)
{
    fprintf(stderr, "canonical-raft node: %s: %s\n", what, raft_strerror(rv));
    exit(1);
}

int main(int argc, char **argv)
{
    struct bn_args a;
    if (bn_parse_args(argc, argv, &a) != 0) {
        return 2;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    srandom((unsigned)(now.tv_nsec ^ now.tv_sec ^ (long)a.id * 7919));

    int rv = uv_loop_init(&S.loop);
    if (rv != 0) {
        fprintf(stderr, "uv_loop_init: %s\n", uv_strerror(rv));
        return 1;
    }
    if ((rv = raft_uv_tcp_init(&S.transport, &S.loop)) != 0) {
        die("raft_uv_tcp_init", rv);
    }
    if ((rv = raft_uv_init(&S.io, &S.loop, a.dir, &S.transport)) != 0) {
        die("raft_uv_init", rv);
    }
    raft_uv_set_connect_retry_delay(&S.io, 50);
    S.fsm.version = 1;
    S.fsm.data = &S.counter;
    S.fsm.apply = fsm_apply;
    S.fsm.snapshot = fsm_snapshot;
    S.fsm.restore = fsm_restore;

    char address[64];
    snprintf(address, sizeof address, "127.0.0.1:%u", a.ports[a.id - 1]);
    g_raft = &S.raft;
    if ((rv = raft_init(&S.raft, &S.io, &S.fsm, a.id, address)) != 0) {
        die("raft_init", rv);
    }
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    for (unsigned i = 0; i < a.n; i++) {
        char addr[64];
        snprintf(addr, sizeof addr, "127.0.0.1:%u", a.ports[i]);
        if ((rv = raft_configuration_add(&conf, i + 1, addr, RAFT_VOTER)) != 0) {
            die("raft_configuration_add", rv);
        }
    }
    rv = raft_bootstrap(&S.raft, &conf);
    if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) { /* CANTBOOTSTRAP: restarted on its data */
        die("raft_bootstrap", rv);
    }
    raft_configuration_close(&conf);

    raft_set_heartbeat_timeout(&S.raft, a.hb);
    raft_set_election_timeout(&S.raft, a.et);
    /* The same snapshot policy as the craft nodes of the benchmark. */
    raft_set_snapshot_threshold(&S.raft, 16384);
    raft_set_snapshot_trailing(&S.raft, 1024);

    if ((rv = raft_start(&S.raft)) != 0) {
        die("raft_start", rv);
    }
    bn_init(&S.loop);
    bn_reply("ready %s", address);
    uv_run(&S.loop, UV_RUN_DEFAULT);
    return 0;
}
