/* Linearizable reads (thesis 6.4): ReadIndex and lease reads. */
#include "core_fixture.h"
#include "harness.h"

static const struct craft_read_state *find_read(struct fx *f, craft_id id, uint64_t rid)
{
    for (unsigned i = 0; i < f->n_reads[id]; i++) {
        if (f->reads[id][i].id == rid) {
            return &f->reads[id][i];
        }
    }
    return NULL;
}

/* A read completes once a heartbeat round after it was acknowledged by a majority; its index is
 * the leader's commit index. */
TEST(read_index_after_heartbeat_round)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    CHECK_OK(fx_propose(&f, 1, "w"));
    fx_deliver_all(&f);
    craft_index commit = craft_node_commit(f.node[1]);
    CHECK_OK(craft_read_index(f.node[1], 7, CRAFT_READ_INDEX));
    CHECK_EQ(craft_read_index(f.node[2], 8, CRAFT_READ_INDEX), CRAFT_ENOTLEADER);
    fx_drain(&f, 1);
    CHECK(find_read(&f, 1, 7) == NULL); /* not before the round */
    fx_deliver_all(&f);
    const struct craft_read_state *r = find_read(&f, 1, 7);
    CHECK(r != NULL);
    CHECK_EQ(r->status, 0);
    CHECK_EQ(r->index, commit);
    fx_close(&f);
}

/* Many reads between two updates share one heartbeat round. */
TEST(reads_batched_into_one_round)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    fx_rounds(&f, 1);
    for (uint64_t id = 1; id <= 100; id++) {
        CHECK_OK(craft_read_index(f.node[1], id, CRAFT_READ_INDEX));
    }
    fx_drain(&f, 1);
    unsigned heartbeats = 0;
    struct craft_message m;
    while (fx_deliver_one(&f, &m)) {
        heartbeats += m.type == CRAFT_MSG_APPEND_ENTRIES && m.from == 1;
    }
    CHECK_EQ(heartbeats, 2);
    CHECK_EQ(f.n_reads[1], 64); /* the fixture keeps 64 */
    fx_close(&f);
}

/* Delivers everything except AppendEntries that carry entries (so the barrier never arrives). */
static void deliver_without_entries(struct fx *f)
{
    while (f->head != f->tail) {
        struct craft_message m = f->queue[f->head % FX_QUEUE].m;
        if (m.type == CRAFT_MSG_APPEND_ENTRIES && m.u.append_entries.n_entries > 0) {
            fx_free_msg(&f->queue[f->head++ % FX_QUEUE]);
            continue;
        }
        fx_deliver_one(f, NULL);
    }
}

/* Thesis 6.4 step 1: a new leader serves reads only after committing an entry of its term, even
 * if a heartbeat round confirms its leadership earlier. */
TEST(read_waits_for_commit_in_own_term)
{
    struct fx f;
    fx_init(&f, 3);
    for (int t = 0; t < 100 && craft_node_role(f.node[1]) != CRAFT_LEADER; t++) {
        fx_tick(&f, 1, 1);
        deliver_without_entries(&f);
    }
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    CHECK(craft_node_commit(f.node[1]) < craft_node_last_index(f.node[1]));
    CHECK_OK(craft_read_index(f.node[1], 1, CRAFT_READ_INDEX));
    fx_drain(&f, 1);
    deliver_without_entries(&f);
    fx_tick(&f, 1, 1);
    deliver_without_entries(&f);
    CHECK(find_read(&f, 1, 1) == NULL); /* leadership confirmed, barrier not committed */
    fx_tick(&f, 1, 1);
    fx_deliver_all(&f);
    const struct craft_read_state *r = find_read(&f, 1, 1);
    CHECK(r != NULL);
    CHECK_EQ(r->index, craft_node_commit(f.node[1]));
    CHECK(r->index >= 2);
    fx_close(&f);
}

/* Issue regression: a partitioned old leader's ReadIndex never completes; when check-quorum
 * deposes it, the read fails instead of being served. */
TEST(partitioned_old_leader_read_never_completes)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    fx_rounds(&f, 2);
    f.cut[1][2] = f.cut[1][3] = f.cut[2][1] = f.cut[3][1] = true;
    CHECK_OK(craft_read_index(f.node[1], 42, CRAFT_READ_INDEX));
    /* The majority elects a new leader and commits a write the old one cannot see. */
    for (int r = 0; r < 40; r++) {
        fx_rounds(&f, 1);
        CHECK(find_read(&f, 1, 42) == NULL || find_read(&f, 1, 42)->status != 0);
    }
    CHECK(craft_node_role(f.node[2]) == CRAFT_LEADER || craft_node_role(f.node[3]) == CRAFT_LEADER);
    const struct craft_read_state *r = find_read(&f, 1, 42);
    CHECK(r != NULL);
    CHECK_EQ(r->status, CRAFT_ENOTLEADER);
    CHECK(craft_node_role(f.node[1]) != CRAFT_LEADER);
    fx_close(&f);
}

static void lease_on(struct craft_config *c)
{
    c->lease_reads = true;
}

/* Lease reads: served at once while a recent round was acknowledged by a majority; when the
 * lease has run out they fall back to a round. Off by default. */
TEST(lease_reads)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    fx_rounds(&f, 2);
    CHECK_OK(craft_read_index(f.node[1], 1, CRAFT_READ_LEASE));
    fx_drain(&f, 1);
    CHECK(find_read(&f, 1, 1) == NULL); /* lease_reads is off: a round is needed */
    fx_deliver_all(&f);
    CHECK(find_read(&f, 1, 1) != NULL);
    fx_close(&f);

    fx_tweak = lease_on;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    fx_rounds(&f, 2);
    CHECK_OK(craft_read_index(f.node[1], 2, CRAFT_READ_LEASE));
    fx_drain(&f, 1);
    CHECK(find_read(&f, 1, 2) != NULL); /* served without a round */
    /* Cut off, the lease expires after election_ticks - drift ticks. */
    f.down[2] = f.down[3] = true;
    fx_tick(&f, 1, f.cfg[1].election_ticks - f.cfg[1].lease_drift_ticks);
    fx_deliver_all(&f);
    CHECK_OK(craft_read_index(f.node[1], 3, CRAFT_READ_LEASE));
    fx_drain(&f, 1);
    CHECK(find_read(&f, 1, 3) == NULL);
    fx_close(&f);
    fx_tweak = NULL;
}

TEST(single_voter_reads_at_once)
{
    struct fx f;
    fx_init(&f, 1);
    fx_elect(&f, 1);
    CHECK_OK(craft_read_index(f.node[1], 5, CRAFT_READ_INDEX));
    fx_drain(&f, 1);
    CHECK(find_read(&f, 1, 5) != NULL);
    CHECK_EQ(craft_read_index(f.node[1], 6, 99), CRAFT_EINVAL);
    fx_close(&f);
}

/* A leader that sent TimeoutNow gives up its lease: the transfer's vote requests override the
 * leader-alive rule the lease relies on (regression found by the simulator). */
TEST(no_lease_reads_after_timeout_now)
{
    fx_tweak = lease_on;
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    fx_rounds(&f, 2);
    CHECK_OK(craft_read_index(f.node[1], 8, CRAFT_READ_LEASE));
    fx_drain(&f, 1);
    CHECK(find_read(&f, 1, 8) != NULL); /* the lease holds */
    CHECK_OK(craft_transfer_leadership(f.node[1], 2));
    fx_drain(&f, 1); /* TimeoutNow is sent... */
    f.down[2] = true; /* ...and lost: the transfer cannot complete */
    fx_deliver_all(&f);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    CHECK_OK(craft_read_index(f.node[1], 9, CRAFT_READ_LEASE));
    fx_drain(&f, 1);
    CHECK(find_read(&f, 1, 9) == NULL); /* no lease: it waits for a heartbeat round */
    fx_close(&f);
    fx_tweak = NULL;
}

HARNESS_MAIN()
