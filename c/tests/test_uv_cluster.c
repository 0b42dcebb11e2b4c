/* The libuv runtime with real sockets on 127.0.0.1 and real files: clusters in one process. */
#include <pthread.h>

#include "uv_fixture.h"

static bool all_applied(struct uf *f, void *arg)
{
    craft_index want = *(craft_index *)arg;
    for (int i = 1; i <= UF_MAX; i++) {
        if (f->node[i].up && uf_applied(f, i) < want) {
            return false;
        }
    }
    return true;
}

static craft_index leader_applied(struct uf *f)
{
    int l = uf_leader(f);
    return l ? uf_applied(f, l) : 0;
}

/* Three nodes elect a leader; proposals made on every node (followers forward them) are all
 * committed and applied everywhere, with identical values at every index. */
TEST(three_nodes_replicate_with_forwarding)
{
    struct uf f;
    uf_init(&f, 3);
    CHECK_OK(uf_start(&f));
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 5000));
    for (int k = 0; k < 300; k++) {
        CHECK_OK(uf_propose(&f, 1 + k % 3, 1));
    }
    CHECK(uf_wait_done(&f, 300, 20000));
    CHECK_EQ(f.ok, 300);
    CHECK_EQ(f.bad_results, 0);
    CHECK_EQ(f.result_sum, 300 * 301 / 2); /* every value 1..300 returned exactly once */
    craft_index want = leader_applied(&f);
    CHECK(uf_run_until(&f, all_applied, &want, 5000));
    for (int i = 1; i <= 3; i++) {
        CHECK_EQ(f.node[i].value, 300);
    }
    CHECK(uf_consistent(&f));
    struct craft_uv_status s;
    craft_uv_status(f.node[uf_leader(&f)].n, &s);
    CHECK_EQ(s.n_peers, 3);
    CHECK(s.msgs_sent > 0 && s.fsyncs > 0);
    uf_close(&f);
}

/* Five nodes: the leader is stopped, a new one is elected and serves writes, and the old one,
 * restarted from its data directory, catches up from the log. */
TEST(five_nodes_leader_lost_then_restarted)
{
    struct uf f;
    uf_init(&f, 5);
    CHECK_OK(uf_start(&f));
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 5000));
    for (int k = 0; k < 50; k++) {
        CHECK_OK(uf_propose(&f, uf_leader(&f), 1));
    }
    CHECK(uf_wait_done(&f, 50, 10000));
    int old = uf_leader(&f);
    uf_stop(&f, old);
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 5000));
    CHECK(uf_leader(&f) != old);
    unsigned before = f.ok;
    for (int k = 0; k < 50; k++) {
        int target = 1 + k % 5;
        if (target == old) {
            target = uf_leader(&f);
        }
        CHECK_OK(uf_propose(&f, target, 1));
    }
    CHECK(uf_wait_done(&f, 100, 15000));
    CHECK_EQ(f.ok - before, 50);
    CHECK_OK(uf_open(&f, old));
    craft_index want = leader_applied(&f);
    CHECK(uf_run_until(&f, all_applied, &want, 10000));
    CHECK_EQ(f.node[old].value, 100);
    CHECK(uf_consistent(&f));
    uf_close(&f);
}

static bool leader_snapshotted(struct uf *f, void *arg)
{
    (void)arg;
    int l = uf_leader(f);
    return l != 0 && f->node[l].snapshots > 0;
}

/* A node that was down while the others compacted their logs catches up by snapshot. */
TEST(restarted_node_catches_up_by_snapshot)
{
    struct uf f;
    uf_init(&f, 3);
    f.base.snapshot_entries = 40;
    f.base.snapshot_trailing = 5;
    CHECK_OK(uf_start(&f));
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 5000));
    int down = uf_leader(&f) == 3 ? 2 : 3;
    uf_stop(&f, down);
    for (int k = 0; k < 200; k++) {
        CHECK_OK(uf_propose(&f, uf_leader(&f), 2));
    }
    CHECK(uf_wait_done(&f, 200, 15000));
    CHECK_EQ(f.ok, 200);
    /* The 200 proposals were group-committed together: one snapshot is asked for at the end. */
    CHECK(uf_run_until(&f, leader_snapshotted, NULL, 10000));
    CHECK_OK(uf_open(&f, down));
    craft_index want = leader_applied(&f);
    CHECK(uf_run_until(&f, all_applied, &want, 10000));
    CHECK(f.node[down].installs >= 1);
    CHECK_EQ(f.node[down].value, 400);
    struct craft_uv_status st;
    craft_uv_status(f.node[down].n, &st);
    CHECK(st.snapshot_index > 0);
    CHECK(uf_consistent(&f));
    /* And it restarts from its own snapshot afterwards. */
    uf_stop(&f, down);
    CHECK_OK(uf_open(&f, down));
    want = leader_applied(&f);
    CHECK(uf_run_until(&f, all_applied, &want, 10000));
    CHECK_EQ(f.node[down].value, 400);
    uf_close(&f);
}

struct member_arg {
    int leader;
    craft_id id;
    int role;
};

static bool has_member(struct uf *f, void *arg)
{
    struct member_arg *a = arg;
    int l = uf_leader(f);
    if (l == 0) {
        return false;
    }
    struct craft_uv_status s;
    craft_uv_status(f->node[l].n, &s);
    for (unsigned i = 0; i < s.n_peers; i++) {
        if (s.peers[i].id == a->id) {
            return a->role != 0 && s.peers[i].role == a->role;
        }
    }
    return a->role == 0;
}

/* A server is added (started empty in join mode, auto-promoted) and another removed while
 * clients keep writing; every write succeeds and the new server holds the same state. */
TEST(add_and_remove_servers_while_writing)
{
    struct uf f;
    uf_init(&f, 3);
    CHECK_OK(uf_start(&f));
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 5000));
    f.node[4].join = true;
    CHECK_OK(uf_open(&f, 4));
    for (int k = 0; k < 50; k++) {
        CHECK_OK(uf_propose(&f, 1 + k % 3, 1));
    }
    struct craft_uv_request *add = calloc(1, sizeof *add);
    add->op = CRAFT_UV_ADD;
    add->server = 4;
    add->address = f.node[4].address;
    add->auto_promote = true;
    add->cb = uf_done_cb;
    add->data = &f;
    CHECK_OK(craft_uv_submit(f.node[uf_leader(&f)].n, add));
    CHECK(uf_wait_done(&f, 51, 15000));
    struct member_arg voter = {0, 4, CRAFT_VOTER};
    if (!uf_run_until(&f, has_member, &voter, 10000)) {
        struct craft_uv_status st;
        craft_uv_status(f.node[uf_leader(&f)].n, &st);
        for (unsigned i = 0; i < st.n_peers; i++) {
            fprintf(stderr, "  peer %llu role=%d match=%llu connected=%d (leader last=%llu)\n",
                    (unsigned long long)st.peers[i].id, st.peers[i].role,
                    (unsigned long long)st.peers[i].match, st.peers[i].connected,
                    (unsigned long long)st.last_index);
        }
        FAIL("server 4 was not promoted");
    }
    int victim = uf_leader(&f) == 2 ? 3 : 2;
    for (int k = 0; k < 50; k++) {
        CHECK_OK(uf_propose(&f, uf_leader(&f), 1));
    }
    struct craft_uv_request *rm = calloc(1, sizeof *rm);
    rm->op = CRAFT_UV_REMOVE;
    rm->server = (craft_id)victim;
    rm->cb = uf_done_cb;
    rm->data = &f;
    CHECK_OK(craft_uv_submit(f.node[uf_leader(&f)].n, rm));
    CHECK(uf_wait_done(&f, 102, 15000));
    CHECK_EQ(f.ok, 102);
    struct member_arg gone = {0, (craft_id)victim, 0};
    CHECK(uf_run_until(&f, has_member, &gone, 10000));
    uf_stop(&f, victim);
    for (int k = 0; k < 20; k++) {
        CHECK_OK(uf_propose(&f, 4, 1));
    }
    CHECK(uf_wait_done(&f, 122, 15000));
    CHECK_EQ(f.ok, 122);
    CHECK_EQ(f.node[4].value, 120);
    CHECK(uf_consistent(&f));
    uf_close(&f);
}

/* With forwarding off a follower refuses with CRAFT_ENOTLEADER and names the leader. */
static int hint_status;
static craft_id hint_id;
static char hint_addr[CRAFT_ADDRESS_MAX];

static void hint_cb(struct craft_uv_request *req, const struct craft_uv_result *r)
{
    hint_status = r->status;
    hint_id = r->leader_id;
    snprintf(hint_addr, sizeof hint_addr, "%s", r->leader_address);
    free(req);
}

static bool hint_seen(struct uf *f, void *arg)
{
    (void)f;
    (void)arg;
    return hint_status != 1;
}

TEST(not_leader_without_forwarding)
{
    struct uf f;
    uf_init(&f, 3);
    f.base.forward = false;
    CHECK_OK(uf_start(&f));
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 5000));
    uf_run_for(&f, 200); /* followers learn the leader */
    int l = uf_leader(&f);
    int follower = l == 1 ? 2 : 1;
    struct craft_uv_request *req = calloc(1, sizeof *req);
    int64_t one = 1;
    req->op = CRAFT_UV_PROPOSE;
    req->payload = &one;
    req->size = 8;
    req->cb = hint_cb;
    hint_status = 1;
    CHECK_OK(craft_uv_submit(f.node[follower].n, req));
    CHECK(uf_run_until(&f, hint_seen, NULL, 5000));
    CHECK_EQ(hint_status, CRAFT_ENOTLEADER);
    CHECK_EQ(hint_id, (craft_id)l);
    CHECK_STR_EQ(hint_addr, f.node[l].address);
    uf_close(&f);
}

/* A read barrier on a follower completes once that follower has applied every write
 * acknowledged before it. */
static craft_index read_index;
static int read_status;
static int64_t read_value;
static struct uf_node *read_node;

/* On the follower's state machine thread, where its apply runs: the value read there is the
 * state the read was answered at. The status is stored last, with release order. */
static void read_cb(struct craft_uv_request *req, const struct craft_uv_result *r)
{
    read_index = r->index;
    read_value = read_node->value;
    free(req);
    __atomic_store_n(&read_status, r->status, __ATOMIC_RELEASE);
}

static bool read_done(struct uf *f, void *arg)
{
    (void)f;
    (void)arg;
    return __atomic_load_n(&read_status, __ATOMIC_ACQUIRE) != 1;
}

TEST(linearizable_read_on_follower)
{
    struct uf f;
    uf_init(&f, 3);
    CHECK_OK(uf_start(&f));
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 5000));
    uf_run_for(&f, 200);
    for (int k = 0; k < 40; k++) {
        CHECK_OK(uf_propose(&f, uf_leader(&f), 1));
    }
    CHECK(uf_wait_done(&f, 40, 10000));
    int l = uf_leader(&f);
    int follower = l == 1 ? 2 : 1;
    read_node = &f.node[follower];
    read_status = 1;
    struct craft_uv_request *req = calloc(1, sizeof *req);
    req->op = CRAFT_UV_READ;
    req->cb = read_cb;
    CHECK_OK(craft_uv_submit(f.node[follower].n, req));
    CHECK(uf_run_until(&f, read_done, NULL, 5000));
    CHECK_EQ(read_status, 0);
    CHECK_EQ(read_value, 40);
    CHECK(read_index >= 41);
    uf_close(&f);
}

/* craft_uv_submit from another thread, as the bindings do. */
struct thread_arg {
    struct craft_uv_node *n;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;
    int ok;
    bool finished;
};

static void thread_cb(struct craft_uv_request *req, const struct craft_uv_result *r)
{
    struct thread_arg *a = req->data;
    pthread_mutex_lock(&a->mu);
    a->pending--;
    a->ok += r->status == 0;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static void *thread_main(void *p)
{
    struct thread_arg *a = p;
    static struct craft_uv_request reqs[100];
    static int64_t one = 1;
    for (int k = 0; k < 100; k++) {
        memset(&reqs[k], 0, sizeof reqs[k]);
        reqs[k].op = CRAFT_UV_PROPOSE;
        reqs[k].payload = &one;
        reqs[k].size = 8;
        reqs[k].cb = thread_cb;
        reqs[k].data = a;
        pthread_mutex_lock(&a->mu);
        a->pending++;
        pthread_mutex_unlock(&a->mu);
        if (craft_uv_submit(a->n, &reqs[k]) != 0) {
            pthread_mutex_lock(&a->mu);
            a->pending--;
            pthread_mutex_unlock(&a->mu);
        }
        /* Wait for each, as a blocking apply() would. */
        pthread_mutex_lock(&a->mu);
        while (a->pending > 0) {
            pthread_cond_wait(&a->cv, &a->mu);
        }
        pthread_mutex_unlock(&a->mu);
    }
    pthread_mutex_lock(&a->mu);
    a->finished = true;
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

static bool thread_finished(struct uf *f, void *arg)
{
    (void)f;
    struct thread_arg *a = arg;
    pthread_mutex_lock(&a->mu);
    bool done = a->finished;
    pthread_mutex_unlock(&a->mu);
    return done;
}

TEST(submit_from_another_thread)
{
    struct uf f;
    uf_init(&f, 3);
    CHECK_OK(uf_start(&f));
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 5000));
    uf_run_for(&f, 200);
    struct thread_arg a;
    memset(&a, 0, sizeof a);
    a.n = f.node[1].n;
    pthread_mutex_init(&a.mu, NULL);
    pthread_cond_init(&a.cv, NULL);
    pthread_t t;
    pthread_create(&t, NULL, thread_main, &a);
    CHECK(uf_run_until(&f, thread_finished, &a, 20000));
    pthread_join(t, NULL);
    CHECK_EQ(a.ok, 100);
    uf_close(&f);
}

static bool snapshot_attempted(struct uf *f, void *arg)
{
    (void)arg;
    struct craft_uv_status st;
    craft_uv_status(f->node[1].n, &st);
    return uf_fail_snapshots == 0 && (st.snapshot_failures >= 1 || f->node[1].snapshots >= 1);
}

/* A snapshot that fails is not fatal: the node goes on, says so in its status, and a later
 * snapshot, after the backoff (1 s), succeeds. The data directories are created with their
 * missing parents. */
TEST(failed_snapshot_is_retried_and_not_fatal)
{
    struct uf f;
    uf_init(&f, 1);
    f.base.snapshot_entries = 20;
    f.base.snapshot_trailing = 2;
    strcat(f.node[1].dir, "/deeper/still");
    uf_fail_snapshots = 1;
    CHECK_OK(uf_start(&f));
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 5000));
    for (int k = 0; k < 60; k++) {
        CHECK_OK(uf_propose(&f, 1, 1));
        CHECK(uf_wait_done(&f, (unsigned)k + 1, 5000));
    }
    CHECK_EQ(f.ok, 60);
    /* The snapshot runs on the worker, in parallel with the proposals: wait for its outcome
     * (the status copy is refreshed as the loop turns). */
    CHECK(uf_run_until(&f, snapshot_attempted, NULL, 5000));
    CHECK_EQ(uf_fail_snapshots, 0);
    struct craft_uv_status st;
    craft_uv_status(f.node[1].n, &st);
    CHECK(st.snapshot_failures == 1 || f.node[1].snapshots >= 1);
    /* The core asks again when it next has work: a proposal here, where the node is alone. */
    for (unsigned k = 61; k <= 160 && f.node[1].snapshots == 0; k++) {
        CHECK_OK(uf_propose(&f, 1, 1));
        CHECK(uf_wait_done(&f, k, 5000));
        uf_run_for(&f, 30);
    }
    CHECK(f.node[1].snapshots >= 1);
    craft_uv_status(f.node[1].n, &st);
    CHECK_EQ(st.snapshot_failures, 0);
    CHECK(!st.stopped);
    CHECK(st.snapshot_index >= 20);
    uf_close(&f);
}

/* Fault injection: a leader whose messages to both followers are blocked loses its place (with
 * check-quorum), and the others elect a leader and keep serving; clearing the faults heals. */
TEST(fault_injection_isolates_a_node)
{
    struct uf f;
    uf_init(&f, 3);
    CHECK_OK(uf_start(&f));
    CHECK(uf_run_until(&f, uf_has_leader, NULL, 5000));
    int l = uf_leader(&f);
    CHECK_EQ(craft_uv_set_faults(f.node[l].n, 0, 0, 0, 0, true), CRAFT_EINVAL);
    CHECK_EQ(craft_uv_set_faults(f.node[l].n, 1, 2.0, 0, 0, false), CRAFT_EINVAL);
    for (int i = 1; i <= 3; i++) {
        if (i != l) {
            CHECK_OK(craft_uv_set_faults(f.node[l].n, (craft_id)i, 0, 0, 0, true));
            CHECK_OK(craft_uv_set_faults(f.node[i].n, (craft_id)l, 0, 0, 0, true));
        }
    }
    bool moved = false;
    for (int k = 0; k < 100 && !moved; k++) {
        uf_run_for(&f, 50);
        int now = uf_leader(&f);
        moved = now != 0 && now != l;
    }
    CHECK(moved);
    CHECK_OK(uf_propose(&f, uf_leader(&f), 1));
    CHECK(uf_wait_done(&f, 1, 5000));
    CHECK_EQ(f.ok, 1);
    for (int i = 1; i <= 3; i++) {
        if (i != l) {
            CHECK_OK(craft_uv_set_faults(f.node[l].n, (craft_id)i, 0, 0, 0, false));
            CHECK_OK(craft_uv_set_faults(f.node[i].n, (craft_id)l, 0, 0, 0, false));
        }
    }
    struct uf_applied_arg a = {l, 0};
    a.index = uf_applied(&f, uf_leader(&f));
    CHECK(uf_run_until(&f, uf_applied_reached, &a, 5000));
    CHECK_EQ(f.node[l].value, 1);
    uf_close(&f);
}

HARNESS_MAIN()
