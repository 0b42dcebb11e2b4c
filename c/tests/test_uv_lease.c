/* Lease reads on real loops: a leader whose loop stalls (a long callback, a paused process, a
 * suspended machine) must not wake up believing its lease still holds; nor may one whose state
 * machine stalls (a slow apply: since the state machine has a thread of its own the loop goes
 * on, and the leader, cut off, steps down on its own).
 *
 * Node 1 runs on a loop of its own, on a thread of its own, so that its loop can stall while
 * nodes 2 and 3 (on the test's loop) go on: they elect a new leader and commit a write. A lease
 * read submitted to node 1 during the stall is served after it; it must fail or return the new
 * value, never the old one. The stall is released by the test once the write is committed, not
 * after a fixed time, and the new leader's messages to node 1 are held back until the read has
 * been decided, so that nothing but node 1's own sense of time decides it. */
#include "harness.h"

#include <pthread.h>

#include "uv_fixture.h"

/* ---- node 1, on its own loop and thread ---------------------------------------------------- */

struct solo {
    struct uf *f;
    uv_loop_t loop;
    uv_async_t cmd;   /* from the test thread: stall now, or stop */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ready, opened_ok, stop;
    bool stall_in_apply; /* the next STALL command stalls apply (else: stall_now stalls cmd) */
    bool stall_now;
    bool stalled;        /* the loop is stalled (set by the stalled code) */
    bool release;        /* the test lets it go on */
    int64_t value;       /* the state machine: only the loop thread writes it */
    /* The read submitted during the stall, answered on node 1's loop. */
    struct craft_uv_request read;
    bool read_done;
    int read_status;
    int64_t read_value;
};

static const char STALL[] = "STALL";

static void stall_here(struct solo *s)
{
    pthread_mutex_lock(&s->mu);
    s->stalled = true;
    pthread_cond_broadcast(&s->cv);
    for (int k = 0; k < 600 && !s->release; k++) { /* at most a minute: never a hang */
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 100 * 1000000L;
        if (t.tv_nsec >= 1000000000L) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &t);
    }
    s->stalled = false;
    pthread_mutex_unlock(&s->mu);
}

static int solo_apply(void *data, struct craft_uv_apply *cmds, size_t n)
{
    struct solo *s = data;
    for (size_t i = 0; i < n; i++) {
        if (cmds[i].size == 8) {
            s->value += (int64_t)uf_get64(cmds[i].data);
        } else if (cmds[i].size == sizeof STALL - 1 && s->stall_in_apply &&
                   memcmp(cmds[i].data, STALL, sizeof STALL - 1) == 0) {
            stall_here(s); /* a 'slow apply': its state machine thread is busy here */
        }
    }
    return 0;
}

static void solo_read_cb(struct craft_uv_request *req, const struct craft_uv_result *r)
{
    struct solo *s = req->data;
    pthread_mutex_lock(&s->mu);
    s->read_status = r->status;
    s->read_value = s->value; /* what a read function would see now, on node 1 */
    s->read_done = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Requests submitted to node 1 are answered on its loop thread. */
static unsigned solo_answers, solo_ok;

static void solo_done_cb(struct craft_uv_request *req, const struct craft_uv_result *r)
{
    struct solo *s = req->data;
    pthread_mutex_lock(&s->mu);
    solo_answers++;
    solo_ok += r->status == 0;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    free(req);
}

static bool solo_answered(struct uf *f, void *arg)
{
    (void)f;
    struct solo *s = arg;
    pthread_mutex_lock(&s->mu);
    bool v = solo_answers >= 1;
    pthread_mutex_unlock(&s->mu);
    return v;
}

static int submit_solo(struct solo *s, const void *payload, size_t size)
{
    struct craft_uv_request *req = calloc(1, sizeof *req);
    req->op = CRAFT_UV_PROPOSE;
    req->payload = payload;
    req->size = size;
    req->cb = solo_done_cb;
    req->data = s;
    int rc = craft_uv_submit(s->f->node[1].n, req);
    if (rc != 0) {
        free(req);
    }
    return rc;
}

static void solo_stopped(void *data)
{
    struct solo *s = data;
    uv_close((uv_handle_t *)&s->cmd, NULL);
}

static void solo_cmd(uv_async_t *h)
{
    struct solo *s = h->data;
    pthread_mutex_lock(&s->mu);
    bool stop = s->stop, stall = s->stall_now;
    s->stall_now = false;
    pthread_mutex_unlock(&s->mu);
    if (stall) {
        stall_here(s); /* any other callback that takes its time: GC, a slow log handler */
    }
    if (stop && s->f->node[1].n != NULL) {
        craft_uv_node_stop(s->f->node[1].n, solo_stopped, s);
        s->f->node[1].n = NULL;
    }
}

static void *solo_main(void *p)
{
    struct solo *s = p;
    struct uf *f = s->f;
    struct uf_node *u = &f->node[1];
    uv_loop_init(&s->loop);
    uv_async_init(&s->loop, &s->cmd, solo_cmd);
    s->cmd.data = s;
    struct craft_uv_config c = f->base;
    c.id = 1;
    c.address = u->address;
    c.data_dir = u->dir;
    c.bootstrap = &f->conf;
    c.fsm.data = s;
    c.fsm.apply = solo_apply;
    c.seed = 7919;
    int rc = craft_uv_node_new(&s->loop, &c, &u->n);
    if (rc == 0) {
        rc = craft_uv_node_start(u->n);
    }
    pthread_mutex_lock(&s->mu);
    s->ready = true;
    s->opened_ok = rc == 0;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (rc != 0) {
        fprintf(stderr, "node 1: %s\n", craft_uv_last_error());
        uv_close((uv_handle_t *)&s->cmd, NULL);
    }
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    return NULL;
}

static bool solo_flag(struct solo *s, bool *flag)
{
    pthread_mutex_lock(&s->mu);
    bool v = *flag;
    pthread_mutex_unlock(&s->mu);
    return v;
}

static bool solo_stalled(struct uf *f, void *arg)
{
    (void)f;
    struct solo *s = arg;
    return solo_flag(s, &s->stalled);
}

static bool solo_read_done(struct uf *f, void *arg)
{
    (void)f;
    struct solo *s = arg;
    return solo_flag(s, &s->read_done);
}

static int node1_role(struct uf *f)
{
    struct craft_uv_status st;
    craft_uv_status(f->node[1].n, &st);
    return st.role;
}

static bool node1_leads(struct uf *f, void *arg)
{
    (void)arg;
    return node1_role(f) == CRAFT_LEADER;
}

static bool node1_decided(struct uf *f, void *arg)
{
    return node1_role(f) != CRAFT_LEADER || solo_read_done(f, arg);
}

/* The leader among nodes 2 and 3, 0 if none. */
static int other_leader(struct uf *f)
{
    for (int i = 2; i <= 3; i++) {
        struct craft_uv_status st;
        craft_uv_status(f->node[i].n, &st);
        if (st.role == CRAFT_LEADER) {
            return i;
        }
    }
    return 0;
}

static bool other_leads(struct uf *f, void *arg)
{
    (void)arg;
    return other_leader(f) != 0;
}

static int submit_on(struct uf *f, int i, int op, const void *payload, size_t size, craft_id server)
{
    struct craft_uv_request *req = calloc(1, sizeof *req);
    req->op = op;
    req->payload = payload;
    req->size = size;
    req->server = server;
    req->cb = uf_done_cb;
    req->data = f;
    int rc = craft_uv_submit(f->node[i].n, req);
    if (rc != 0) {
        free(req);
    }
    return rc;
}

static void cut_to_node1(struct uf *f, bool cut)
{
    for (int i = 2; i <= 3; i++) {
        craft_uv_set_faults(f->node[i].n, 1, 0, 0, 0, cut);
    }
}

/* The steps of one run (see stalled_leader_lease_read); a failed check returns from here, and
 * the caller still stops node 1's thread. */
static void stall_steps(struct uf *f, struct solo *s, bool in_apply)
{
    static int64_t one = 1, ten = 10;
    /* Node 1 leads: hand leadership to it if another got it first. */
    for (int attempt = 0; attempt < 10 && !node1_leads(f, NULL); attempt++) {
        uf_run_until(f, other_leads, NULL, 3000);
        int l = other_leader(f);
        if (l != 0) {
            submit_on(f, l, CRAFT_UV_TRANSFER, NULL, 0, 1);
        }
        uf_run_until(f, node1_leads, NULL, 2000);
    }
    CHECK(node1_leads(f, NULL));
    solo_answers = solo_ok = 0;
    CHECK_OK(submit_solo(s, &one, 8));
    CHECK(uf_run_until(f, solo_answered, s, 5000));
    CHECK_EQ(solo_ok, 1);
    /* Heartbeat rounds acknowledged for a while: node 1's lease holds when the stall begins. */
    uf_run_for(f, 300);

    /* The stall. */
    if (in_apply) {
        CHECK_OK(submit_solo(s, STALL, sizeof STALL - 1));
    } else {
        pthread_mutex_lock(&s->mu);
        s->stall_now = true;
        pthread_mutex_unlock(&s->mu);
        uv_async_send(&s->cmd);
    }
    CHECK(uf_run_until(f, solo_stalled, s, 5000));
    cut_to_node1(f, true); /* node 1 hears nothing from 2 and 3 until the read is decided */
    CHECK(uf_run_until(f, other_leads, NULL, 10000));
    int l = other_leader(f);
    unsigned target = f->done + 1;
    CHECK_OK(submit_on(f, l, CRAFT_UV_PROPOSE, &ten, 8, 0));
    CHECK(uf_wait_done(f, target, 10000));
    CHECK_EQ(f->last_status, 0);
    CHECK_EQ(f->node[l].value, 11); /* committed by the new majority during the stall */

    /* The lease read, queued while node 1's loop is stalled; then the stall ends. */
    memset(&s->read, 0, sizeof s->read);
    s->read.op = CRAFT_UV_READ_LEASE;
    s->read.cb = solo_read_cb;
    s->read.data = s;
    s->read.timeout_ms = 5000;
    CHECK_OK(craft_uv_submit(f->node[1].n, &s->read));
    pthread_mutex_lock(&s->mu);
    s->release = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    CHECK(uf_run_until(f, node1_decided, s, 15000));
    cut_to_node1(f, false);
    CHECK(uf_run_until(f, solo_read_done, s, 15000));
    if (s->read_status == 0 && s->read_value < 11) {
        FAIL("a lease read on the stalled old leader returned %lld: the new leader had "
             "committed 11 during the stall",
             (long long)s->read_value);
    }
}

/* One run: node 1 leads and has committed +1; it stalls (in apply, or its loop in another
 * callback) while 2 and 3 elect a leader and commit +10; a lease read submitted to node 1 during
 * the stall is decided after it. */
static void stalled_leader_lease_read(bool in_apply)
{
    static struct uf f;
    static struct solo s;
    uf_init(&f, 3);
    memset(&s, 0, sizeof s);
    s.f = &f;
    s.stall_in_apply = in_apply;
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    for (int i = 2; i <= 3; i++) {
        CHECK_OK(uf_open(&f, i));
    }
    pthread_create(&s.thread, NULL, solo_main, &s);
    pthread_mutex_lock(&s.mu);
    while (!s.ready) {
        pthread_cond_wait(&s.cv, &s.mu);
    }
    pthread_mutex_unlock(&s.mu);
    bool opened = s.opened_ok;
    if (opened) {
        stall_steps(&f, &s, in_apply);
    }
    pthread_mutex_lock(&s.mu);
    s.release = true; /* if a check failed during the stall */
    s.stop = true;
    pthread_cond_broadcast(&s.cv);
    pthread_mutex_unlock(&s.mu);
    uv_async_send(&s.cmd);
    pthread_join(s.thread, NULL);
    f.node[1].n = NULL;
    uf_close(&f);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    CHECK(opened);
}

TEST(leader_stalled_in_apply_serves_no_stale_lease_read)
{
    stalled_leader_lease_read(true);
}

TEST(leader_stalled_in_another_callback_serves_no_stale_lease_read)
{
    stalled_leader_lease_read(false);
}

/* A healthy leader serves a lease read without a heartbeat round; a ReadIndex read needs one.
 * With the leader's messages to the followers blocked, no new round can be acknowledged: the
 * ReadIndex read waits, the lease read (taken while the lease holds: one second here, from a
 * round acknowledged a heartbeat ago) is answered at once. Should the loop ever be too slow to
 * get there within the lease (the read then correctly waits for a round), it tries again. */
static int lr_status[2];
static bool lr_done[2];

/* A read that passed is answered on the state machine's thread, a failed one on the loop's. */
static void lr_cb(struct craft_uv_request *req, const struct craft_uv_result *r)
{
    int k = req->op == CRAFT_UV_READ_LEASE;
    lr_status[k] = r->status;
    free(req);
    __atomic_store_n(&lr_done[k], true, __ATOMIC_RELEASE);
}

static bool lr_is_done(int k)
{
    return __atomic_load_n(&lr_done[k], __ATOMIC_ACQUIRE);
}

static bool lr_both_done(struct uf *f, void *arg)
{
    (void)f;
    (void)arg;
    return lr_is_done(0) && lr_is_done(1);
}

static void block_leader(struct uf *f, int l, bool block)
{
    for (int i = 1; i <= 3; i++) {
        if (i != l) {
            craft_uv_set_faults(f->node[l].n, (craft_id)i, 0, 0, 0, block);
        }
    }
    uf_run_for(f, 30); /* the setting reaches the loop thread */
}

TEST(lease_read_is_served_without_a_round)
{
    struct uf f;
    uf_init(&f, 3);
    f.base.election_timeout_ms = 1000;
    CHECK_OK(uf_start(&f));
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 10000));
    uf_run_for(&f, 200);
    bool served = false;
    for (int attempt = 0; attempt < 5 && !served; attempt++) {
        int l = uf_leader(&f);
        CHECK(l != 0);
        block_leader(&f, l, true);
        for (int k = 0; k < 2; k++) {
            struct craft_uv_request *req = calloc(1, sizeof *req);
            req->op = k ? CRAFT_UV_READ_LEASE : CRAFT_UV_READ;
            req->cb = lr_cb;
            req->timeout_ms = 5000;
            __atomic_store_n(&lr_done[k], false, __ATOMIC_RELAXED);
            CHECK_OK(craft_uv_submit(f.node[l].n, req));
        }
        uf_run_for(&f, 20);
        CHECK(!lr_is_done(0) || lr_status[0] != 0); /* ReadIndex: no round can complete now */
        served = lr_is_done(1) && lr_status[1] == 0;
        block_leader(&f, l, false);
        CHECK(uf_run_until(&f, lr_both_done, NULL, 10000));
        uf_run_for(&f, 200);
    }
    CHECK(served);
    uf_close(&f);
}

HARNESS_MAIN()
