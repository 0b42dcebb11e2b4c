/* Real clusters in one process for the runtime's tests: N nodes on one libuv loop, each with its
 * own data directory and a port on 127.0.0.1, a counter state machine that records the value
 * after every index it applies (so that replicas can be compared index by index), and helpers
 * to run the loop until something holds, bounded in time.
 *
 * Threads: the test's thread runs the loop; each node's state machine runs on the node's own
 * thread, where applied proposals and reads are answered (craft/uv.h). The completion counters
 * are therefore atomic (uf_done_cb), and a test reads a state machine's fields after waiting
 * for its applied index in the node's status: the loop publishes it after the state machine's
 * thread handed the applied entries back (under a lock), so what apply wrote is visible. */
#ifndef CRAFT_TEST_UV_FIXTURE_H
#define CRAFT_TEST_UV_FIXTURE_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "craft.h"
#include "craft/uv.h"
#include "free_port.h"
#include "harness.h"

#define UF_MAX 7
#define UF_HISTORY 100000

struct uf_node {
    struct craft_uv_node *n;
    craft_id id;
    char dir[512];
    char address[64];
    bool up;
    bool join;
    /* The state machine. */
    int64_t value;
    int64_t *history; /* value after applying index i, or INT64_MIN if not seen */
    unsigned installs, snapshots;
    unsigned logs_lost; /* leader: followers reported with a log gone backwards */
    unsigned lagging, caught_up; /* leader: follower lag events */
    craft_id lagging_id;
    bool stopped_flag;
    /* Optional: the store to open the node with (taken by the node); NULL: the durable store
     * in dir. */
    struct craft_store *(*make_store)(struct uf_node *u);
};

struct uf {
    uv_loop_t loop;
    uv_timer_t kicker;
    uv_async_t embed; /* uf_embed: the loop thread runs the state machine streams */
    int n;
    struct uf_node node[UF_MAX + 1];
    struct craft_configuration conf;
    struct craft_uv_config base; /* template for every node */
    unsigned done, ok, failed;
    unsigned bad_results; /* successful proposals whose result was not the counter's 8 bytes */
    int64_t result_sum;
    int last_status;
};

/* A free port below the ephemeral range (free_port.h says why); a test cannot go on without. */
static inline int uf_free_port(void)
{
    int port = free_port();
    if (port < 0) {
        abort();
    }
    return port;
}

static inline uint64_t uf_get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int k = 0; k < 8; k++) {
        v |= (uint64_t)p[k] << (8 * k);
    }
    return v;
}

static int uf_apply(void *data, struct craft_uv_apply *cmds, size_t n)
{
    struct uf_node *u = data;
    for (size_t i = 0; i < n; i++) {
        if (cmds[i].size == 8) {
            u->value += (int64_t)uf_get64(cmds[i].data);
        }
        if (cmds[i].index < UF_HISTORY) {
            u->history[cmds[i].index] = u->value;
        }
        cmds[i].result = craft_malloc(NULL, 8);
        memcpy(cmds[i].result, &u->value, 8);
        cmds[i].result_size = 8;
    }
    return 0;
}

/* Snapshots to fail before one succeeds (tests of a failing state machine snapshot). */
static int uf_fail_snapshots __attribute__((unused));

static int uf_snapshot(void *data, craft_uv_write_fn write, void *ctx)
{
    struct uf_node *u = data;
    if (uf_fail_snapshots > 0) {
        uf_fail_snapshots--;
        return CRAFT_EIO;
    }
    return write(ctx, &u->value, sizeof u->value);
}

static int uf_restore(void *data, craft_uv_read_fn read, void *ctx)
{
    struct uf_node *u = data;
    size_t got = 0, k;
    int64_t v = 0;
    while (got < sizeof v) {
        int rc = read(ctx, (char *)&v + got, sizeof v - got, &k);
        if (rc != 0 || k == 0) {
            return rc != 0 ? rc : CRAFT_ECORRUPT;
        }
        got += k;
    }
    u->value = v;
    return 0;
}

static void uf_event(void *data, const struct craft_uv_event *e)
{
    struct uf_node *u = data;
    if (e->type == CRAFT_UV_EVENT_FOLLOWER_LOG_LOST) {
        u->logs_lost++;
    }
    if (e->type == CRAFT_UV_EVENT_FOLLOWER_LAGGING) {
        u->lagging++;
        u->lagging_id = e->leader;
    }
    if (e->type == CRAFT_UV_EVENT_FOLLOWER_CAUGHT_UP) {
        u->caught_up++;
    }
    if (e->type == CRAFT_UV_EVENT_SNAPSHOT) {
        if (e->installed) {
            u->installs++;
        } else {
            u->snapshots++;
        }
    }
}

static void uf_log(void *data, int level, const char *line)
{
    (void)data;
    if (level >= CRAFT_UV_WARN || getenv("CRAFT_TEST_VERBOSE") != NULL) {
        fprintf(stderr, "  log: %s\n", line);
    }
}

static void uf_kick(uv_timer_t *t)
{
    (void)t;
}

/* uf_embed: every node's state machine stream runs on the test's (loop) thread, as an embedder
 * runs it (craft_uv_fsm_run): every callback is then on that one thread. */
static void uf_embed_run(uv_async_t *h)
{
    struct uf *f = h->data;
    for (int i = 1; i <= UF_MAX; i++) {
        int rc = 0;
        while (f->node[i].n != NULL && (rc = craft_uv_fsm_run(f->node[i].n)) == 1) {
        }
        if (f->node[i].n != NULL && rc == CRAFT_ESHUTDOWN) {
            f->node[i].n = NULL; /* its stop callback ran: the node is gone */
        }
    }
}

static void uf_embed_wake(void *data)
{
    uv_async_send(&((struct uf *)data)->embed);
}

static inline void uf_embed(struct uf *f)
{
    f->base.fsm_wake = uf_embed_wake;
    f->base.fsm_wake_data = f;
}

static inline void uf_init(struct uf *f, int n)
{
    memset(f, 0, sizeof *f);
    uv_loop_init(&f->loop);
    uv_timer_init(&f->loop, &f->kicker);
    uv_timer_start(&f->kicker, uf_kick, 5, 5);
    uv_async_init(&f->loop, &f->embed, uf_embed_run);
    f->embed.data = f;
    f->n = n;
    craft_configuration_init(&f->conf);
    craft_uv_config_init(&f->base, 0);
    if (getenv("CRAFT_TEST_NO_LOOP_WRITES") != NULL) {
        f->base.write_on_loop = false;
    }
    f->base.heartbeat_ms = 20;
    f->base.election_timeout_ms = 200;
    f->base.cluster_id = 7;
    f->base.log = uf_log;
    f->base.default_timeout_ms = 8000;
    const char *tmp = harness_tmpdir();
    for (int i = 1; i <= UF_MAX; i++) {
        struct uf_node *u = &f->node[i];
        u->id = (craft_id)i;
        snprintf(u->dir, sizeof u->dir, "%s/n%d", tmp, i);
        snprintf(u->address, sizeof u->address, "127.0.0.1:%d", uf_free_port());
        u->history = malloc(UF_HISTORY * sizeof *u->history);
        for (size_t k = 0; k < UF_HISTORY; k++) {
            u->history[k] = INT64_MIN;
        }
    }
    for (int i = 1; i <= n; i++) {
        craft_configuration_add(&f->conf, NULL, (craft_id)i, f->node[i].address, CRAFT_VOTER);
    }
}

static inline int uf_open(struct uf *f, int i)
{
    struct uf_node *u = &f->node[i];
    struct craft_uv_config c = f->base;
    c.id = u->id;
    c.address = u->address;
    c.data_dir = u->dir;
    c.bootstrap = u->join ? NULL : &f->conf;
    c.fsm.data = u;
    c.fsm.apply = uf_apply;
    c.fsm.snapshot = uf_snapshot;
    c.fsm.restore = uf_restore;
    c.event = uf_event;
    c.event_data = u;
    c.seed = (uint64_t)i * 7919;
    c.store = u->make_store != NULL ? u->make_store(u) : NULL;
    u->value = 0;
    int rc = craft_uv_node_new(&f->loop, &c, &u->n);
    if (rc != 0) {
        fprintf(stderr, "uf_open(%d): %s\n", i, craft_uv_last_error());
        return rc;
    }
    u->up = true;
    return craft_uv_node_start(u->n);
}

static inline int uf_start(struct uf *f)
{
    for (int i = 1; i <= f->n; i++) {
        int rc = uf_open(f, i);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* Runs the loop until pred(f, arg) holds or ms pass; returns whether it held. */
static inline bool uf_run_until(struct uf *f, bool (*pred)(struct uf *, void *), void *arg,
                                unsigned ms)
{
    uint64_t end = uv_now(&f->loop) + ms;
    while (!pred(f, arg)) {
        if (uv_now(&f->loop) >= end) {
            return false;
        }
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    return true;
}

static inline bool uf_always_false(struct uf *f, void *arg)
{
    (void)f;
    (void)arg;
    return false;
}

static inline void uf_run_for(struct uf *f, unsigned ms)
{
    uf_run_until(f, uf_always_false, NULL, ms);
}

/* The live leader with the highest term, 0 if none. */
static inline int uf_leader(struct uf *f)
{
    int best = 0;
    craft_term term = 0;
    for (int i = 1; i <= UF_MAX; i++) {
        if (!f->node[i].up) {
            continue;
        }
        struct craft_uv_status s;
        craft_uv_status(f->node[i].n, &s);
        if (s.role == CRAFT_LEADER && s.term >= term) {
            best = i;
            term = s.term;
        }
    }
    return best;
}

static inline bool uf_has_leader(struct uf *f, void *arg)
{
    (void)arg;
    return uf_leader(f) != 0;
}

/* On the state machine's thread (applied, read) or the loop's (failures): the counters are
 * atomic, and `done` is counted last, with release order, so that a thread that sees it reach
 * a number (uf_done_reached) sees the other counters of those completions too. */
static void uf_done_cb(struct craft_uv_request *req, const struct craft_uv_result *r)
{
    struct uf *f = req->data;
    __atomic_store_n(&f->last_status, r->status, __ATOMIC_RELAXED);
    if (r->status == 0) {
        __atomic_fetch_add(&f->ok, 1, __ATOMIC_RELAXED);
        if (req->op == CRAFT_UV_PROPOSE) {
            /* Read the result bytes: a result that outlived its owner shows up here (and in
             * the ASan build as a use-after-free). */
            int64_t v;
            if (r->size != 8 || r->data == NULL) {
                __atomic_fetch_add(&f->bad_results, 1, __ATOMIC_RELAXED);
            } else {
                memcpy(&v, r->data, 8);
                __atomic_fetch_add(&f->result_sum, v, __ATOMIC_RELAXED);
                __atomic_fetch_add(&f->bad_results, v <= 0, __ATOMIC_RELAXED);
            }
        }
    } else {
        __atomic_fetch_add(&f->failed, 1, __ATOMIC_RELAXED);
        if (getenv("CRAFT_TEST_VERBOSE") != NULL) {
            fprintf(stderr, "  request failed: %s\n", craft_err_name(r->status));
        }
    }
    free(req);
    __atomic_fetch_add(&f->done, 1, __ATOMIC_RELEASE);
}

/* Submits an increment of `by` on node i (a leader or not: followers forward). */
static inline int uf_propose(struct uf *f, int i, int64_t by)
{
    struct craft_uv_request *req = calloc(1, sizeof *req);
    static int64_t payload_by;
    payload_by = by;
    req->op = CRAFT_UV_PROPOSE;
    req->payload = &payload_by;
    req->size = 8;
    req->cb = uf_done_cb;
    req->data = f;
    int rc = craft_uv_submit(f->node[i].n, req);
    if (rc != 0) {
        free(req);
    }
    return rc;
}

struct uf_wait {
    unsigned target;
};

static inline bool uf_done_reached(struct uf *f, void *arg)
{
    return __atomic_load_n(&f->done, __ATOMIC_ACQUIRE) >= ((struct uf_wait *)arg)->target;
}

static inline bool uf_wait_done(struct uf *f, unsigned target, unsigned ms)
{
    struct uf_wait w = {target};
    return uf_run_until(f, uf_done_reached, &w, ms);
}

static void uf_stopped(void *data)
{
    ((struct uf_node *)data)->stopped_flag = true;
}

static inline bool uf_is_stopped(struct uf *f, void *arg)
{
    (void)f;
    return ((struct uf_node *)arg)->stopped_flag;
}

static inline void uf_stop(struct uf *f, int i)
{
    struct uf_node *u = &f->node[i];
    if (!u->up) {
        return;
    }
    u->up = false;
    u->stopped_flag = false;
    craft_uv_node_stop(u->n, uf_stopped, u);
    uf_run_until(f, uf_is_stopped, u, 10000);
    u->n = NULL;
}

/* Every pair of live nodes agrees on the value after every index both applied. */
static inline bool uf_consistent(struct uf *f)
{
    for (size_t k = 1; k < UF_HISTORY; k++) {
        int64_t seen = INT64_MIN;
        for (int i = 1; i <= UF_MAX; i++) {
            int64_t v = f->node[i].history[k];
            if (v == INT64_MIN) {
                continue;
            }
            if (seen != INT64_MIN && v != seen) {
                fprintf(stderr, "index %zu: values differ (%lld vs %lld)\n", k, (long long)seen,
                        (long long)v);
                return false;
            }
            seen = v;
        }
    }
    return true;
}

struct uf_applied_arg {
    int node;
    craft_index index;
};

static inline bool uf_applied_reached(struct uf *f, void *arg)
{
    struct uf_applied_arg *a = arg;
    struct craft_uv_status s;
    craft_uv_status(f->node[a->node].n, &s);
    return s.applied >= a->index;
}

static inline craft_index uf_applied(struct uf *f, int i)
{
    struct craft_uv_status s;
    craft_uv_status(f->node[i].n, &s);
    return s.applied;
}

static inline void uf_close(struct uf *f)
{
    for (int i = 1; i <= UF_MAX; i++) {
        uf_stop(f, i);
    }
    uv_timer_stop(&f->kicker);
    uv_close((uv_handle_t *)&f->kicker, NULL);
    uv_close((uv_handle_t *)&f->embed, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_loop_close(&f->loop);
    for (int i = 1; i <= UF_MAX; i++) {
        free(f->node[i].history);
    }
    craft_configuration_close(&f->conf, NULL);
}

#endif
