/* The state machine off the loop (docs/runtime.md, "The state machine stream"): a slow apply
 * never stops heartbeats, replication or the disk; reads still wait for the state machine to
 * reach their index and see no apply in progress; snapshots still happen while applies are
 * slow; and an embedder's stream (craft_uv_fsm_run on a thread of the embedder's, as the Lua
 * binding runs it) gets every callback on its own thread.
 *
 * The slow apply sleeps 2 s, and, so that nothing here depends on how fast the machine is, does
 * not return before the test lets it: while it blocks, the test waits (bounded) for the loop to
 * commit more writes. Before the state machine had a thread of its own that wait could only
 * time out (the loop was inside apply), and the leader, silent for 2 s with a 500 ms election
 * timeout, was deposed. */
#include "harness.h"

#include <pthread.h>
#include <time.h>

#include "uv_fixture.h"

static const char SLOW[] = "SLOW";

struct slow {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool release;       /* the test lets slow applies return (after their 2 s) */
    unsigned inside;    /* slow applies in progress, over every node */
    unsigned finished;  /* slow applies that returned */
};

static struct slow G = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, 0};

/* Per node: a counter and whether the slow command was applied; touched by the node's state
 * machine thread only (and by the test once the node reports the index applied). */
struct counter {
    int64_t value;
    bool slow_done;
    craft_index last;
    unsigned out_of_order;
    uv_thread_t thread; /* the thread apply last ran on */
};

static struct counter C[UF_MAX + 1];

static void sleep_ms(unsigned ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {
    }
}

static void slow_apply_one(void)
{
    pthread_mutex_lock(&G.mu);
    G.inside++;
    pthread_cond_broadcast(&G.cv);
    pthread_mutex_unlock(&G.mu);
    sleep_ms(2000);
    pthread_mutex_lock(&G.mu);
    for (int k = 0; k < 300 && !G.release; k++) { /* at most 30 s more: never a hang */
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 100 * 1000000L;
        if (t.tv_nsec >= 1000000000L) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&G.cv, &G.mu, &t);
    }
    G.inside--;
    G.finished++;
    pthread_mutex_unlock(&G.mu);
}

static int counter_apply(void *data, struct craft_uv_apply *cmds, size_t n)
{
    struct counter *c = data;
    c->thread = uv_thread_self();
    for (size_t i = 0; i < n; i++) {
        if (cmds[i].index <= c->last) {
            c->out_of_order++;
        }
        c->last = cmds[i].index;
        if (cmds[i].size == sizeof SLOW - 1 && memcmp(cmds[i].data, SLOW, sizeof SLOW - 1) == 0) {
            slow_apply_one();
            c->slow_done = true;
        } else if (cmds[i].size == 8) {
            c->value += (int64_t)uf_get64(cmds[i].data);
        }
        cmds[i].result = craft_malloc(NULL, 8);
        memcpy(cmds[i].result, &c->value, 8);
        cmds[i].result_size = 8;
    }
    return 0;
}

static int counter_snapshot(void *data, craft_uv_write_fn write, void *ctx)
{
    struct counter *c = data;
    return write(ctx, &c->value, sizeof c->value);
}

static int counter_restore(void *data, craft_uv_read_fn read, void *ctx)
{
    struct counter *c = data;
    int64_t v = 0;
    size_t got = 0, k = 0;
    while (got < sizeof v) {
        int rc = read(ctx, (char *)&v + got, sizeof v - got, &k);
        if (rc != 0 || k == 0) {
            return rc != 0 ? rc : CRAFT_ECORRUPT;
        }
        got += k;
    }
    c->value = v;
    return 0;
}

/* Node i's configuration: the fixture's template, its own identity, and the counter C[i]. */
static struct craft_uv_config node_config(
    struct uf *f, int i, int (*apply)(void *, struct craft_uv_apply *, size_t),
    int (*snapshot)(void *, craft_uv_write_fn, void *),
    int (*restore)(void *, craft_uv_read_fn, void *), uint64_t seed)
{
    struct uf_node *u = &f->node[i];
    struct craft_uv_config c = f->base;
    c.id = u->id;
    c.address = u->address;
    c.data_dir = u->dir;
    c.bootstrap = &f->conf;
    c.fsm.data = &C[i];
    c.fsm.apply = apply;
    c.fsm.snapshot = snapshot;
    c.fsm.restore = restore;
    c.event = uf_event;
    c.event_data = u;
    c.seed = seed;
    return c;
}

static int counter_open(struct uf *f, int i)
{
    struct uf_node *u = &f->node[i];
    struct craft_uv_config c =
        node_config(f, i, counter_apply, counter_snapshot, counter_restore, (uint64_t)i * 7919);
    int rc = craft_uv_node_new(&f->loop, &c, &u->n);
    if (rc != 0) {
        fprintf(stderr, "counter_open(%d): %s\n", i, craft_uv_last_error());
        return rc;
    }
    u->up = true;
    return craft_uv_node_start(u->n);
}

static void slow_init(struct uf *f, int n)
{
    uf_init(f, n);
    /* The numbers: a 2 s apply against a 500 ms election timeout. */
    f->base.heartbeat_ms = 50;
    f->base.election_timeout_ms = 500;
    memset(C, 0, sizeof C);
    pthread_mutex_lock(&G.mu);
    G.release = false;
    G.inside = G.finished = 0;
    pthread_mutex_unlock(&G.mu);
}

static void slow_release(void)
{
    pthread_mutex_lock(&G.mu);
    G.release = true;
    pthread_cond_broadcast(&G.cv);
    pthread_mutex_unlock(&G.mu);
}

static unsigned slow_count(unsigned *field)
{
    pthread_mutex_lock(&G.mu);
    unsigned v = *field;
    pthread_mutex_unlock(&G.mu);
    return v;
}

static bool slow_inside_all(struct uf *f, void *arg)
{
    (void)f;
    return slow_count(&G.inside) >= *(unsigned *)arg;
}

static int submit(struct uf *f, int i, int op, const void *payload, size_t size,
                  void (*cb)(struct craft_uv_request *, const struct craft_uv_result *),
                  void *data)
{
    struct craft_uv_request *req = calloc(1, sizeof *req);
    req->op = op;
    req->payload = payload;
    req->size = size;
    req->cb = cb;
    req->data = data;
    req->timeout_ms = 20000;
    int rc = craft_uv_submit(f->node[i].n, req);
    if (rc != 0) {
        free(req);
    }
    return rc;
}

struct commit_arg {
    int node;
    craft_index index;
};

static bool committed(struct uf *f, void *arg)
{
    struct commit_arg *a = arg;
    struct craft_uv_status s;
    craft_uv_status(f->node[a->node].n, &s);
    return s.commit >= a->index;
}

static bool all_applied_to(struct uf *f, void *arg)
{
    craft_index want = *(craft_index *)arg;
    for (int i = 1; i <= f->n; i++) {
        if (f->node[i].up && uf_applied(f, i) < want) {
            return false;
        }
    }
    return true;
}

static struct craft_uv_status status_of(struct uf *f, int i)
{
    struct craft_uv_status s;
    craft_uv_status(f->node[i].n, &s);
    return s;
}

/* A 2 s apply on every node of a three-node cluster: no election, the leader is not deposed,
 * and while the state machines are busy the loops go on committing (heartbeats, replication and
 * fsync do not wait for apply). */
TEST(slow_apply_causes_no_election)
{
    struct uf f;
    slow_init(&f, 3);
    for (int i = 1; i <= 3; i++) {
        CHECK_OK(counter_open(&f, i));
    }
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 10000));
    uf_run_for(&f, 300); /* followers learn the leader */
    int l = uf_leader(&f);
    struct craft_uv_status before[4];
    for (int i = 1; i <= 3; i++) {
        before[i] = status_of(&f, i);
    }

    CHECK_OK(submit(&f, l, CRAFT_UV_PROPOSE, SLOW, sizeof SLOW - 1, uf_done_cb, &f));
    unsigned three = 3;
    CHECK(uf_run_until(&f, slow_inside_all, &three, 10000)); /* every node is in the slow apply */
    /* While they are: more writes commit (their applies wait behind the slow one). */
    for (int k = 0; k < 20; k++) {
        CHECK_OK(uf_propose(&f, l, 1));
    }
    struct commit_arg ca = {l, status_of(&f, l).last_index};
    CHECK(uf_run_until(&f, committed, &ca, 10000));
    struct craft_uv_status busy = status_of(&f, l);
    CHECK(busy.applied < ca.index); /* committed, not applied: the state machine is busy */
    CHECK_EQ(slow_count(&G.finished), 0);
    slow_release();

    CHECK(uf_wait_done(&f, 21, 30000));
    CHECK_EQ(f.ok, 21);
    craft_index want = ca.index;
    CHECK(uf_run_until(&f, all_applied_to, &want, 10000));
    for (int i = 1; i <= 3; i++) {
        struct craft_uv_status after = status_of(&f, i);
        CHECK_EQ(after.elections, before[i].elections);
        CHECK_EQ(after.term, before[i].term);
        CHECK_EQ(after.leader, (craft_id)l);
        CHECK(C[i].slow_done);
        CHECK_EQ(C[i].value, 20);
        CHECK_EQ(C[i].out_of_order, 0);
    }
    CHECK_EQ(status_of(&f, l).role, CRAFT_LEADER);
    uf_close(&f);
}

/* A read submitted while a slow apply runs is answered only after it, and sees its effect: the
 * read's callback runs on the state machine's thread with no apply in progress. */
struct read_check {
    struct counter *c;
    int status;
    bool slow_done_then;
    int64_t value_then;
    bool done;
};

static void read_check_cb(struct craft_uv_request *req, const struct craft_uv_result *r)
{
    struct read_check *x = req->data;
    x->slow_done_then = x->c->slow_done;
    x->value_then = x->c->value;
    x->status = r->status;
    free(req);
    __atomic_store_n(&x->done, true, __ATOMIC_RELEASE);
}

static bool read_check_done(struct uf *f, void *arg)
{
    (void)f;
    return __atomic_load_n(&((struct read_check *)arg)->done, __ATOMIC_ACQUIRE);
}

TEST(read_waits_for_a_slow_apply)
{
    struct uf f;
    slow_init(&f, 3);
    for (int i = 1; i <= 3; i++) {
        CHECK_OK(counter_open(&f, i));
    }
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 10000));
    uf_run_for(&f, 300);
    int l = uf_leader(&f);
    int follower = l % 3 + 1;
    CHECK_OK(uf_propose(&f, l, 5));
    CHECK(uf_wait_done(&f, 1, 10000));
    CHECK_OK(submit(&f, l, CRAFT_UV_PROPOSE, SLOW, sizeof SLOW - 1, uf_done_cb, &f));
    unsigned three = 3;
    CHECK(uf_run_until(&f, slow_inside_all, &three, 10000)); /* committed, being applied */
    /* Reads on the leader and on a follower (forwarded), both behind the slow apply. */
    struct read_check on_leader = {&C[l], 1, false, 0, false};
    struct read_check on_follower = {&C[follower], 1, false, 0, false};
    CHECK_OK(submit(&f, l, CRAFT_UV_READ, NULL, 0, read_check_cb, &on_leader));
    CHECK_OK(submit(&f, follower, CRAFT_UV_READ, NULL, 0, read_check_cb, &on_follower));
    uf_run_for(&f, 200);
    CHECK(!read_check_done(&f, &on_leader) && !read_check_done(&f, &on_follower));
    slow_release();
    CHECK(uf_run_until(&f, read_check_done, &on_leader, 20000));
    CHECK(uf_run_until(&f, read_check_done, &on_follower, 20000));
    CHECK_EQ(on_leader.status, 0);
    CHECK_EQ(on_follower.status, 0);
    CHECK(on_leader.slow_done_then);
    CHECK(on_follower.slow_done_then);
    CHECK_EQ(on_leader.value_then, 5);
    CHECK_EQ(on_follower.value_then, 5);
    CHECK(uf_wait_done(&f, 2, 10000));
    uf_close(&f);
}

/* Snapshots are taken while every apply is slow (10 ms per command here), and a node restarted
 * after the others compacted their logs catches up by snapshot; the replicas agree. */
static int64_t tens = 10;

static int slowish_apply(void *data, struct craft_uv_apply *cmds, size_t n)
{
    sleep_ms(10 * (unsigned)(n < 20 ? n : 20));
    return counter_apply(data, cmds, n);
}

static bool snapshots_everywhere(struct uf *f, void *arg)
{
    (void)arg;
    for (int i = 1; i <= f->n; i++) {
        if (f->node[i].up && f->node[i].snapshots == 0) {
            return false;
        }
    }
    return true;
}

TEST(snapshots_while_applies_are_slow)
{
    struct uf f;
    slow_init(&f, 3);
    f.base.snapshot_entries = 15;
    f.base.snapshot_trailing = 3;
    for (int i = 1; i <= 3; i++) {
        struct uf_node *u = &f.node[i];
        struct craft_uv_config c = f.base;
        c.id = u->id;
        c.address = u->address;
        c.data_dir = u->dir;
        c.bootstrap = &f.conf;
        c.fsm.data = &C[i];
        c.fsm.apply = slowish_apply;
        c.fsm.snapshot = counter_snapshot;
        c.fsm.restore = counter_restore;
        c.event = uf_event;
        c.event_data = u;
        c.seed = (uint64_t)i * 31;
        CHECK_OK(craft_uv_node_new(&f.loop, &c, &u->n));
        u->up = true;
        CHECK_OK(craft_uv_node_start(u->n));
    }
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 10000));
    int l = uf_leader(&f);
    int down = l % 3 + 1;
    craft_term term = status_of(&f, l).term;
    uf_stop(&f, down);
    for (int k = 0; k < 60; k++) {
        CHECK_OK(uf_propose(&f, l, 10));
    }
    CHECK(uf_wait_done(&f, 60, 30000));
    CHECK_EQ(f.ok, 60);
    CHECK(uf_run_until(&f, snapshots_everywhere, NULL, 20000));
    /* The node that was down: the leader's log no longer holds what it lacks. */
    struct uf_node *u = &f.node[down];
    struct craft_uv_config c = f.base;
    c.id = u->id;
    c.address = u->address;
    c.data_dir = u->dir;
    c.bootstrap = &f.conf;
    memset(&C[down], 0, sizeof C[down]);
    c.fsm.data = &C[down];
    c.fsm.apply = slowish_apply;
    c.fsm.snapshot = counter_snapshot;
    c.fsm.restore = counter_restore;
    c.event = uf_event;
    c.event_data = u;
    CHECK_OK(craft_uv_node_new(&f.loop, &c, &u->n));
    u->up = true;
    CHECK_OK(craft_uv_node_start(u->n));
    craft_index want = status_of(&f, l).applied;
    CHECK(uf_run_until(&f, all_applied_to, &want, 20000));
    CHECK(u->installs >= 1);
    for (int i = 1; i <= 3; i++) {
        CHECK_EQ(C[i].value, 600);
        CHECK_EQ(status_of(&f, i).term, term); /* nobody was deposed */
    }
    uf_close(&f);
}

/* ---- the store's lock ---------------------------------------------------------------------- */

/* The stream's snapshots call the store under store_lock, which every disk job holds too, and
 * which the loop takes for a small write it carries out itself (disk.c, "Writing on the loop").
 * The loop must never wait for that lock: a stream inside a slow store call (here the first
 * snapshot_write of any node, which does not return before the test lets it) would otherwise
 * stop that node's loop, and with it every node of this test's shared loop. The loop only tries
 * the lock and sends the write to the thread pool when it is taken. Found on merging the state
 * machine stream with writes on the loop: with a plain lock the test's loop stops, the held call
 * gives up after 10 s, and held.timed_out says so. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool used, holding, release, timed_out;
} H = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, false, false};

static int (*inner_snapshot_write)(void *impl, void *writer, const void *buf, size_t len);

static int held_snapshot_write(void *impl, void *writer, const void *buf, size_t len)
{
    pthread_mutex_lock(&H.mu);
    if (!H.used) {
        H.used = true;
        H.holding = true;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10;
        while (!H.release && !H.timed_out) {
            if (pthread_cond_timedwait(&H.cv, &H.mu, &until) != 0) {
                H.timed_out = true;
            }
        }
        H.holding = false;
    }
    pthread_mutex_unlock(&H.mu);
    return inner_snapshot_write(impl, writer, buf, len);
}

static struct craft_store *held_store(struct uf_node *u)
{
    (void)u;
    struct craft_store *s = NULL;
    if (craft_mem_store_new(NULL, &s) != 0) {
        return NULL;
    }
    inner_snapshot_write = s->snapshot_write;
    s->snapshot_write = held_snapshot_write;
    return s;
}

static bool held(struct uf *f, void *arg)
{
    (void)f;
    (void)arg;
    pthread_mutex_lock(&H.mu);
    bool h = H.holding;
    pthread_mutex_unlock(&H.mu);
    return h;
}

TEST(a_slow_store_call_of_the_stream_never_stops_the_loop)
{
    struct uf f;
    uf_init(&f, 3);
    f.base.heartbeat_ms = 50;
    f.base.election_timeout_ms = 500;
    f.base.snapshot_entries = 10;
    f.base.snapshot_trailing = 2;
    for (int i = 1; i <= 3; i++) {
        f.node[i].make_store = held_store;
    }
    CHECK_OK(uf_start(&f));
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 10000));
    uf_run_for(&f, 300);
    int l = uf_leader(&f);
    craft_term term = status_of(&f, l).term;
    for (int k = 0; k < 15; k++) {
        CHECK_OK(uf_propose(&f, l, 1));
    }
    CHECK(uf_run_until(&f, held, NULL, 10000)); /* a stream is inside snapshot_write */
    /* Meanwhile every node's loop gets small writes to do, and must go on turning. */
    for (int k = 0; k < 15; k++) {
        CHECK_OK(uf_propose(&f, l, 1));
    }
    uf_run_for(&f, 1000);
    pthread_mutex_lock(&H.mu);
    bool timed_out = H.timed_out;
    H.release = true;
    pthread_cond_broadcast(&H.cv);
    pthread_mutex_unlock(&H.mu);
    CHECK(!timed_out);
    CHECK(uf_wait_done(&f, 30, 30000));
    CHECK_EQ(f.ok, 30);
    for (int i = 1; i <= 3; i++) {
        CHECK_EQ(status_of(&f, i).term, term); /* nobody was deposed */
    }
    uf_close(&f);
}

/* ---- an embedder's stream, on a thread of its own ------------------------------------------ */

/* The embedder: a thread that waits for fsm_wake and runs the stream of every node it was
 * woken for, as the Lua binding's caller thread does in raft.run. */
struct embedder {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool woken[UF_MAX + 1];
    struct craft_uv_node *nodes[UF_MAX + 1];
    bool quit;
    uv_thread_t self;
    /* What ran elsewhere than on the embedder's thread (must stay 0). */
    unsigned foreign;
    unsigned applies, answers, events, snapshots, restores, stops;
};

static struct embedder E;

static void on_embedder(void)
{
    uv_thread_t me = uv_thread_self();
    if (!uv_thread_equal(&me, &E.self)) {
        __atomic_fetch_add(&E.foreign, 1, __ATOMIC_RELAXED);
    }
}

struct embed_wake {
    int node;
};

static struct embed_wake wakes[UF_MAX + 1];

static void embed_wake(void *data)
{
    struct embed_wake *w = data;
    pthread_mutex_lock(&E.mu);
    E.woken[w->node] = true;
    pthread_cond_signal(&E.cv);
    pthread_mutex_unlock(&E.mu);
}

static void *embedder_main(void *arg)
{
    (void)arg;
    E.self = uv_thread_self();
    pthread_mutex_lock(&E.mu);
    for (;;) {
        int i = 1;
        while (i <= UF_MAX && !E.woken[i]) {
            i++;
        }
        if (i > UF_MAX) {
            if (E.quit) {
                break;
            }
            pthread_cond_wait(&E.cv, &E.mu);
            continue;
        }
        E.woken[i] = false;
        struct craft_uv_node *n = E.nodes[i];
        pthread_mutex_unlock(&E.mu);
        int rc = n != NULL ? craft_uv_fsm_run(n) : 0;
        pthread_mutex_lock(&E.mu);
        if (rc == 1) {
            E.woken[i] = true;
        } else if (rc == CRAFT_ESHUTDOWN) {
            E.nodes[i] = NULL; /* gone: its stop callback ran here */
        }
    }
    pthread_mutex_unlock(&E.mu);
    return NULL;
}

static int embedded_apply(void *data, struct craft_uv_apply *cmds, size_t n)
{
    on_embedder();
    E.applies++;
    return counter_apply(data, cmds, n);
}

static int embedded_snapshot(void *data, craft_uv_write_fn write, void *ctx)
{
    on_embedder();
    E.snapshots++;
    return counter_snapshot(data, write, ctx);
}

static int embedded_restore(void *data, craft_uv_read_fn read, void *ctx)
{
    on_embedder();
    E.restores++;
    return counter_restore(data, read, ctx);
}

static void embedded_event(void *data, const struct craft_uv_event *e)
{
    on_embedder();
    E.events++;
    uf_event(data, e);
}

static void embedded_done(struct craft_uv_request *req, const struct craft_uv_result *r)
{
    on_embedder();
    E.answers++;
    uf_done_cb(req, r);
}

static bool embedded_stopped[UF_MAX + 1];

static void embedded_stop_cb(void *data)
{
    on_embedder();
    E.stops++;
    __atomic_store_n(&embedded_stopped[(intptr_t)data], true, __ATOMIC_RELEASE);
}

static int embedded_open(struct uf *f, int i)
{
    struct uf_node *u = &f->node[i];
    struct craft_uv_config c =
        node_config(f, i, embedded_apply, embedded_snapshot, embedded_restore, (uint64_t)i * 13);
    c.event = embedded_event;
    wakes[i].node = i;
    c.fsm_wake = embed_wake;
    c.fsm_wake_data = &wakes[i];
    int rc = craft_uv_node_new(&f->loop, &c, &u->n);
    if (rc != 0) {
        return rc;
    }
    pthread_mutex_lock(&E.mu);
    E.nodes[i] = u->n;
    pthread_mutex_unlock(&E.mu);
    u->up = true;
    return craft_uv_node_start(u->n);
}

static bool embedded_is_stopped(struct uf *f, void *arg)
{
    (void)f;
    return __atomic_load_n(&embedded_stopped[(intptr_t)arg], __ATOMIC_ACQUIRE);
}

static void embedded_stop(struct uf *f, int i)
{
    f->node[i].up = false;
    __atomic_store_n(&embedded_stopped[i], false, __ATOMIC_RELAXED);
    craft_uv_node_stop(f->node[i].n, embedded_stop_cb, (void *)(intptr_t)i);
    uf_run_until(f, embedded_is_stopped, (void *)(intptr_t)i, 10000);
    f->node[i].n = NULL;
}

TEST(embedded_stream_runs_every_callback_on_the_embedders_thread)
{
    struct uf f;
    uf_init(&f, 3);
    f.base.snapshot_entries = 20;
    f.base.snapshot_trailing = 4;
    memset(C, 0, sizeof C);
    memset(&E, 0, sizeof E);
    pthread_mutex_init(&E.mu, NULL);
    pthread_cond_init(&E.cv, NULL);
    pthread_create(&E.thread, NULL, embedder_main, NULL);
    for (int i = 1; i <= 3; i++) {
        CHECK_OK(embedded_open(&f, i));
    }
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 10000));
    int l = uf_leader(&f);
    int down = l % 3 + 1;
    embedded_stop(&f, down);
    CHECK(embedded_is_stopped(&f, (void *)(intptr_t)down));
    for (int k = 0; k < 80; k++) {
        CHECK_OK(submit(&f, l, CRAFT_UV_PROPOSE, &tens, 8, embedded_done, &f));
    }
    CHECK(uf_wait_done(&f, 80, 20000));
    CHECK_EQ(f.ok, 80);
    /* A read: answered there too. */
    CHECK_OK(submit(&f, l, CRAFT_UV_READ, NULL, 0, embedded_done, &f));
    CHECK(uf_wait_done(&f, 81, 10000));
    /* The node that was down catches up by snapshot: a restore on the embedder's thread. */
    CHECK_OK(embedded_open(&f, down));
    craft_index want = status_of(&f, l).applied;
    CHECK(uf_run_until(&f, all_applied_to, &want, 20000));
    for (int i = 1; i <= 3; i++) {
        CHECK_EQ(C[i].value, 800);
    }
    for (int i = 1; i <= 3; i++) {
        embedded_stop(&f, i);
        CHECK(embedded_is_stopped(&f, (void *)(intptr_t)i));
    }
    pthread_mutex_lock(&E.mu);
    E.quit = true;
    pthread_cond_signal(&E.cv);
    pthread_mutex_unlock(&E.mu);
    pthread_join(E.thread, NULL);
    CHECK_EQ(E.foreign, 0);
    CHECK(E.applies > 0 && E.answers == 81 && E.events > 0);
    CHECK(E.snapshots > 0);
    CHECK(E.restores > 0);
    CHECK_EQ(E.stops, 4);
    uf_close(&f);
    pthread_mutex_destroy(&E.mu);
    pthread_cond_destroy(&E.cv);
}

HARNESS_MAIN()
