/* Snapshots and log compaction: paper section 7. */
#include "core_fixture.h"
#include "harness.h"

static void small_snapshots(struct craft_config *c)
{
    c->snapshot_entries = 50;
    c->snapshot_trailing = 10;
    c->snapshot_chunk_bytes = 1024;
}

static void propose_n(struct fx *f, craft_id leader, int count)
{
    for (int k = 0; k < count; k++) {
        char buf[32];
        snprintf(buf, sizeof buf, "cmd-%d", k);
        if (fx_propose(f, leader, buf) != 0) {
            abort();
        }
        fx_deliver_all(f);
    }
}

/* Section 7: once the log passes the threshold the core asks for a snapshot at the applied
 * index, then compacts its log, keeping the trailing entries. */
TEST(s7_snapshot_requested_then_log_compacted)
{
    fx_tweak = small_snapshots;
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    propose_n(&f, 1, 60);
    CHECK(f.snapshots_taken[1] >= 1);
    CHECK(f.snap_index[1] >= 50);
    CHECK_EQ(f.compacted[1], f.snap_index[1] - 10);
    CHECK_EQ(craft_node_first_index(f.node[1]), f.compacted[1] + 1);
    CHECK(craft_node_entry(f.node[1], f.compacted[1]) == NULL);
    CHECK_EQ(craft_node_term_at(f.node[1], f.compacted[1]), craft_node_term(f.node[1]));
    fx_close(&f);
    fx_tweak = NULL;
}

/* A snapshot is never asked for twice while the driver is taking one, and taking one at an
 * index below the latest is ignored (never backwards). */
TEST(s7_snapshot_never_backwards)
{
    fx_tweak = small_snapshots;
    struct fx f;
    fx_init(&f, 1);
    f.no_snapshots[1] = true;
    fx_elect(&f, 1);
    propose_n(&f, 1, 120);
    craft_index applied = craft_node_applied(f.node[1]);
    craft_index upto;
    CHECK_OK(craft_snapshot_taken(f.node[1], applied, 10, &upto));
    CHECK_EQ(upto, applied - 10);
    CHECK_OK(craft_snapshot_taken(f.node[1], applied - 5, 10, &upto));
    CHECK_EQ(upto, 0);
    CHECK_EQ(craft_node_first_index(f.node[1]), applied - 9);
    CHECK_EQ(craft_snapshot_taken(f.node[1], applied + 100, 10, &upto), CRAFT_EINVAL);
    fx_close(&f);
    fx_tweak = NULL;
}

/* craft_snapshot_request: a snapshot now, below the thresholds, covering what is applied;
 * nothing to do when the latest snapshot covers everything; the snapshot being taken is the
 * answer while one is under way. */
TEST(s7_snapshot_on_request)
{
    fx_tweak = small_snapshots;
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    propose_n(&f, 1, 10); /* far below snapshot_entries (50) */
    CHECK_EQ(f.snapshots_taken[2], 0);
    craft_index at = 0;
    CHECK_OK(craft_snapshot_request(f.node[2], &at));
    CHECK_EQ(at, craft_node_applied(f.node[2]));
    CHECK(craft_has_update(f.node[2]));
    fx_drain(&f, 2);
    CHECK_EQ(f.snapshots_taken[2], 1);
    CHECK_EQ(f.snap_index[2], at);
    CHECK_EQ(f.snapshots_taken[1], 0); /* only the node asked */
    CHECK_OK(craft_snapshot_request(f.node[2], &at));
    CHECK_EQ(at, 0); /* nothing applied since */
    CHECK(!craft_has_update(f.node[2]));
    /* While the driver takes one, a request answers with its index and asks for no other. */
    f.no_snapshots[3] = true;
    CHECK_OK(craft_snapshot_request(f.node[3], &at));
    fx_drain(&f, 3);
    craft_index taking = at;
    propose_n(&f, 1, 3);
    CHECK_OK(craft_snapshot_request(f.node[3], &at));
    CHECK_EQ(at, taking);
    CHECK_EQ(craft_snapshot_request(NULL, &at), CRAFT_EINVAL);
    fx_close(&f);
    fx_tweak = NULL;
}

/* Section 7 / Figure 13: a follower too far behind gets the snapshot in chunks, installs it,
 * and then catches up from the log; its state machine ends identical to the leader's. */
TEST(s7_lagging_follower_gets_snapshot_in_chunks)
{
    fx_tweak = small_snapshots;
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    f.down[3] = true;
    propose_n(&f, 1, 120);
    CHECK(f.compacted[1] > craft_node_last_index(f.node[3]));
    f.down[3] = false;
    fx_rounds(&f, 20);
    CHECK_EQ(f.snapshots_installed[3], 1);
    CHECK(f.chunks_received[3] >= FX_SNAP_SIZE / 1024);
    CHECK_EQ(craft_node_last_index(f.node[3]), craft_node_last_index(f.node[1]));
    CHECK_EQ(f.applied_index[3], f.applied_index[1]);
    CHECK_EQ(f.fsm[3].hash, f.fsm[1].hash);
    CHECK_EQ(f.fsm[3].count, f.fsm[1].count);
    fx_close(&f);
    fx_tweak = NULL;
}

/* A lost chunk is resent, and the transfer resumes where it stopped rather than from 0. */
TEST(s7_lost_chunk_resent_and_transfer_resumes)
{
    fx_tweak = small_snapshots;
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    f.down[3] = true;
    propose_n(&f, 1, 120);
    f.down[3] = false;
    /* Let two chunks through, then lose the third. */
    fx_tick(&f, 1, 1);
    unsigned chunks = 0, restarts = 0;
    bool dropped = false;
    for (int r = 0; r < 40; r++) {
        struct craft_message m;
        while (f.head != f.tail) {
            m = f.queue[f.head % FX_QUEUE].m;
            if (m.type == CRAFT_MSG_INSTALL_SNAPSHOT) {
                chunks++;
                restarts += m.u.install_snapshot.offset == 0;
                if (chunks == 3 && !dropped) {
                    dropped = true;
                    fx_free_msg(&f.queue[f.head++ % FX_QUEUE]);
                    continue;
                }
            }
            fx_deliver_one(&f, NULL);
        }
        for (craft_id i = 1; i <= 3; i++) {
            fx_tick(&f, i, 1); /* time passes; deliveries stay in the loop above */
        }
    }
    CHECK(dropped);
    CHECK_EQ(restarts, 1);
    CHECK_EQ(f.snapshots_installed[3], 1);
    CHECK_EQ(f.fsm[3].hash, f.fsm[1].hash);
    fx_close(&f);
    fx_tweak = NULL;
}

/* Figure 13 step 6: a follower that already holds the snapshot's last entry keeps the entries
 * after it; step 5/7 otherwise: it discards its log. And a snapshot at or below the commit index
 * changes nothing. */
TEST(s7_follower_keeps_log_after_snapshot_point)
{
    struct fx f;
    fx_init_with(&f, 2, 2, false, false);
    craft_term mine[] = {1, 1, 1, 1, 1, 1};
    fx_boot(&f, 2, 1, mine, 6, 2);
    struct craft_configuration conf = fx_conf(2, 2);
    char data[8] = "snapsho";
    struct craft_message is = {0};
    is.type = CRAFT_MSG_INSTALL_SNAPSHOT;
    is.from = 1;
    is.to = 2;
    is.term = 2;
    is.u.install_snapshot.meta.index = 4;
    is.u.install_snapshot.meta.term = 1;
    is.u.install_snapshot.meta.conf = conf;
    is.u.install_snapshot.meta.conf_index = 1;
    is.u.install_snapshot.meta.size = 8;
    is.u.install_snapshot.data = data;
    is.u.install_snapshot.size = 8;
    is.u.install_snapshot.done = true;
    CHECK_OK(craft_step(f.node[2], &is));
    CHECK_EQ(craft_node_last_index(f.node[2]), 7); /* entries 5..7 kept */
    CHECK_EQ(craft_node_first_index(f.node[2]), 5);
    CHECK_EQ(craft_node_commit(f.node[2]), 4);
    struct craft_update u;
    CHECK_OK(craft_take_update(f.node[2], &u));
    CHECK(u.snapshot_chunk != NULL && u.snapshot_chunk->done);
    CHECK(!u.snapshot_discard_log);
    CHECK_OK(craft_persisted(f.node[2], u.seq));

    /* Another follower whose entry 4 has another term discards everything. */
    craft_term other[] = {1, 1, 1};
    fx_boot(&f, 2, 1, other, 3, 2);
    is.u.install_snapshot.meta.term = 2;
    CHECK_OK(craft_step(f.node[2], &is));
    CHECK_EQ(craft_node_last_index(f.node[2]), 4);
    CHECK_OK(craft_take_update(f.node[2], &u));
    CHECK(u.snapshot_discard_log);
    CHECK_OK(craft_persisted(f.node[2], u.seq));

    /* An older snapshot changes nothing. */
    is.u.install_snapshot.meta.index = 3;
    CHECK_OK(craft_step(f.node[2], &is));
    CHECK_EQ(craft_node_commit(f.node[2]), 4);
    CHECK_OK(craft_take_update(f.node[2], &u));
    CHECK(u.snapshot_chunk == NULL);
    craft_configuration_close(&conf, NULL);
    fx_close(&f);
}

/* A malformed InstallSnapshot (size beyond the snapshot, no voters) is refused. */
TEST(s7_malformed_install_snapshot_refused)
{
    struct fx f;
    fx_init_with(&f, 2, 2, false, false);
    struct craft_configuration conf = fx_conf(2, 2);
    char data[8] = {0};
    struct craft_message is = {0};
    is.type = CRAFT_MSG_INSTALL_SNAPSHOT;
    is.from = 1;
    is.to = 2;
    is.term = 2;
    is.u.install_snapshot.meta.index = 4;
    is.u.install_snapshot.meta.term = 1;
    is.u.install_snapshot.meta.conf = conf;
    is.u.install_snapshot.meta.size = 4;
    is.u.install_snapshot.data = data;
    is.u.install_snapshot.size = 8;
    is.u.install_snapshot.done = true;
    CHECK_EQ(craft_step(f.node[2], &is), CRAFT_EMALFORMED);
    is.u.install_snapshot.size = 4;
    is.u.install_snapshot.meta.conf.n = 0;
    CHECK_EQ(craft_step(f.node[2], &is), CRAFT_EMALFORMED);
    craft_configuration_close(&conf, NULL);
    fx_close(&f);
}

/* A node restarted from a snapshot plus the log after it re-applies only what follows. */
TEST(s7_restart_from_snapshot)
{
    struct craft_config c;
    craft_config_init(&c, 1);
    struct craft_configuration conf = fx_conf(1, 1);
    struct craft_snapshot_meta meta = {0};
    meta.index = 10;
    meta.term = 2;
    meta.conf = conf;
    meta.conf_index = 1;
    struct craft_entry e[3] = {{2, 11, CRAFT_ENTRY_COMMAND, "a", 1},
                               {2, 12, CRAFT_ENTRY_COMMAND, "b", 1},
                               {2, 13, CRAFT_ENTRY_COMMAND, "c", 1}};
    struct craft_boot b = {0};
    b.hard_state.term = 2;
    b.hard_state.commit = 12;
    b.snapshot = &meta;
    b.entries = e;
    b.n_entries = 3;
    struct craft_node *n;
    CHECK_OK(craft_node_new(&c, &b, &n));
    CHECK_EQ(craft_node_first_index(n), 11);
    CHECK_EQ(craft_node_commit(n), 12);
    struct craft_update u;
    CHECK_OK(craft_take_update(n, &u));
    CHECK_EQ(u.n_committed, 2);
    CHECK_EQ(u.committed[0].index, 11);
    craft_node_free(n);
    craft_configuration_close(&conf, NULL);
}

HARNESS_MAIN()
