/* Log replication: paper section 5.3, with batching, pipelining, flow control, fast
 * backtracking and the leader's parallel disk write (thesis 10.2.1). */
#include "core_fixture.h"
#include "harness.h"

static void terms_of(struct craft_node *n, craft_term *out, size_t *count)
{
    *count = 0;
    for (craft_index i = craft_node_first_index(n); i <= craft_node_last_index(n); i++) {
        out[(*count)++] = craft_node_term_at(n, i);
    }
}

/* 5.3: the leader appends a command, replicates it, commits once a majority stores it, applies
 * it, and followers learn the commit index and apply it too. */
TEST(s5_3_proposal_is_replicated_committed_and_applied_everywhere)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    craft_index idx;
    craft_term term;
    CHECK_OK(craft_propose(f.node[1], "hello", 5, &idx, &term));
    CHECK_EQ(term, craft_node_term(f.node[1]));
    fx_drain(&f, 1);
    fx_deliver_all(&f);
    CHECK_EQ(craft_node_commit(f.node[1]), idx);
    CHECK_EQ(f.applied_index[1], idx);
    for (int i = 2; i <= 3; i++) {
        CHECK_EQ(craft_node_commit(f.node[i]), idx);
        CHECK_EQ(f.applied_index[i], idx);
        const struct craft_entry *e = craft_node_entry(f.node[i], idx);
        CHECK(e != NULL && e->size == 5 && memcmp(e->data, "hello", 5) == 0);
    }
    fx_close(&f);
}

TEST(s5_3_follower_refuses_proposals)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    CHECK_EQ(craft_propose(f.node[2], "x", 1, NULL, NULL), CRAFT_ENOTLEADER);
    fx_close(&f);
}

/* 5.3: the leader commits with a majority even when one follower is unreachable, and the
 * follower catches up when it returns. */
TEST(s5_3_commit_with_majority_and_catch_up)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    f.down[3] = true;
    for (int k = 0; k < 50; k++) {
        CHECK_OK(fx_propose(&f, 1, "cmd"));
        fx_deliver_all(&f);
    }
    craft_index last = craft_node_last_index(f.node[1]);
    CHECK_EQ(craft_node_commit(f.node[1]), last);
    CHECK(craft_node_last_index(f.node[3]) < last);
    f.down[3] = false;
    fx_rounds(&f, 5);
    CHECK_EQ(craft_node_last_index(f.node[3]), last);
    CHECK_EQ(f.applied_index[3], last);
    fx_close(&f);
}

/* Figure 2: a follower acknowledges an append only after the entries are durable. */
TEST(s5_3_follower_acks_only_after_persisted)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    f.manual_persist[2] = f.manual_persist[3] = true;
    CHECK_OK(fx_propose(&f, 1, "x"));
    fx_deliver_all(&f);
    craft_index idx = craft_node_last_index(f.node[1]);
    CHECK(craft_node_commit(f.node[1]) < idx);
    fx_persist(&f, 2);
    fx_deliver_all(&f);
    CHECK_EQ(craft_node_commit(f.node[1]), idx);
    fx_close(&f);
}

/* Thesis 10.2.1: the leader sends entries before its own write completes; it commits once a
 * majority of followers has them, and applies once its own disk holds them too. */
TEST(leader_writes_in_parallel_with_replication)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    f.manual_persist[1] = true;
    CHECK_OK(fx_propose(&f, 1, "x"));
    fx_deliver_all(&f);
    craft_index idx = craft_node_last_index(f.node[1]);
    CHECK_EQ(craft_node_commit(f.node[1]), idx);
    CHECK(f.applied_index[1] < idx);
    fx_persist(&f, 1);
    CHECK_EQ(f.applied_index[1], idx);
    fx_close(&f);
}

/* Batching: many proposals travel in AppendEntries of at most max_batch_entries entries and
 * (beyond the first entry) max_batch_bytes bytes. */
TEST(batching_respects_entry_and_byte_limits)
{
    struct fx f;
    fx_init(&f, 2);
    f.cfg[1].max_batch_entries = 8;
    f.cfg[1].max_batch_bytes = 100;
    fx_boot(&f, 1, 1, NULL, 0, 2);
    fx_elect(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    struct craft_buf bufs[100];
    char payload[30] = {0};
    for (int i = 0; i < 100; i++) {
        bufs[i].base = payload;
        bufs[i].len = sizeof payload;
    }
    CHECK_OK(craft_propose_batch(f.node[1], bufs, 100, NULL, NULL));
    fx_drain(&f, 1);
    unsigned msgs = 0;
    struct craft_message m;
    while (f.head != f.tail) {
        m = f.queue[f.head % FX_QUEUE].m;
        if (m.type == CRAFT_MSG_APPEND_ENTRIES) {
            size_t bytes = 0;
            for (size_t k = 0; k < m.u.append_entries.n_entries; k++) {
                bytes += m.u.append_entries.entries[k].size;
            }
            CHECK(m.u.append_entries.n_entries <= 8);
            CHECK(m.u.append_entries.n_entries <= 1 || bytes <= 100);
            msgs++;
        }
        fx_deliver_one(&f, NULL);
    }
    CHECK(msgs >= 34); /* 3 entries of 30 bytes per message at most */
    fx_deliver_all(&f);
    CHECK_EQ(craft_node_commit(f.node[1]), craft_node_last_index(f.node[1]));
    fx_close(&f);
}

/* Flow control: in replicate mode at most max_inflight AppendEntries are outstanding. */
TEST(pipelining_is_bounded_by_inflight_window)
{
    struct fx f;
    fx_init(&f, 2);
    f.cfg[1].max_inflight = 4;
    f.cfg[1].max_batch_entries = 1;
    fx_boot(&f, 1, 1, NULL, 0, 2);
    fx_elect(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    f.down[2] = true; /* nothing is acknowledged */
    for (int i = 0; i < 20; i++) {
        CHECK_OK(fx_propose(&f, 1, "x"));
    }
    struct craft_progress_info pi[2];
    CHECK_EQ(craft_node_progress(f.node[1], pi, 2), 2);
    unsigned ae = 0;
    struct craft_message m;
    while (fx_deliver_one(&f, &m)) {
        ae += m.type == CRAFT_MSG_APPEND_ENTRIES && m.to == 2;
    }
    CHECK(ae <= 5); /* the probe of the election, then at most a window's worth */
    f.down[2] = false;
    fx_rounds(&f, 30);
    CHECK_EQ(craft_node_commit(f.node[1]), craft_node_last_index(f.node[1]));
    fx_close(&f);
}

/* 5.3: if a follower's log disagrees, it rejects; the conflict hint lets the leader skip a
 * whole term per round trip rather than one entry. */
TEST(s5_3_fast_backtracking_with_conflict_hint)
{
    struct fx f;
    fx_init_with(&f, 3, 3, false, false);
    craft_term leader_log[] = {2, 2, 2, 2, 2, 2, 2, 2, 2, 2};
    craft_term follower_log[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    fx_boot(&f, 1, 3, leader_log, 10, 3);
    fx_boot(&f, 2, 3, follower_log, 20, 3);
    fx_boot(&f, 3, 3, leader_log, 10, 3);
    f.cut[1][2] = true; /* let 3 elect 1 first */
    fx_elect(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    f.cut[1][2] = false;
    unsigned rejects = 0;
    for (int r = 0; r < 10; r++) {
        fx_tick(&f, 1, 1);
        struct craft_message m;
        while (fx_deliver_one(&f, &m)) {
            rejects += m.type == CRAFT_MSG_APPEND_ENTRIES_RESULT && m.from == 2 &&
                       m.u.append_entries_result.rejected;
        }
    }
    CHECK(rejects <= 3);
    craft_term a[64], b[64];
    size_t na, nb;
    terms_of(f.node[1], a, &na);
    terms_of(f.node[2], b, &nb);
    CHECK_EQ(na, nb);
    CHECK(memcmp(a, b, na * sizeof a[0]) == 0);
    CHECK(f.dropped_from[2] != 0);
    fx_close(&f);
}

/* 5.3: a follower receiving entries that conflict with its own deletes the conflicting entry
 * and all that follow, and reports where proposals were dropped. */
TEST(s5_3_conflicting_suffix_is_truncated)
{
    struct fx f;
    fx_init_with(&f, 2, 2, false, false);
    craft_term mine[] = {1, 1, 1};
    fx_boot(&f, 2, 1, mine, 3, 2);
    struct craft_entry e[2] = {{2, 3, CRAFT_ENTRY_COMMAND, "a", 1}, {2, 4, CRAFT_ENTRY_COMMAND, "b", 1}};
    struct craft_message ae = {0};
    ae.type = CRAFT_MSG_APPEND_ENTRIES;
    ae.from = 1;
    ae.to = 2;
    ae.term = 2;
    ae.u.append_entries.prev_index = 2;
    ae.u.append_entries.prev_term = 1;
    ae.u.append_entries.entries = e;
    ae.u.append_entries.n_entries = 2;
    CHECK_OK(craft_step(f.node[2], &ae));
    CHECK_EQ(craft_node_last_index(f.node[2]), 4);
    CHECK_EQ(craft_node_term_at(f.node[2], 3), 2);
    CHECK_EQ(craft_node_term_at(f.node[2], 2), 1);
    struct craft_update u;
    CHECK_OK(craft_take_update(f.node[2], &u));
    CHECK_EQ(u.dropped_from, 3);
    CHECK_EQ(u.n_entries, 2);
    CHECK_EQ(u.entries[0].index, 3);
    CHECK_OK(craft_persisted(f.node[2], u.seq));
    fx_close(&f);
}

/* Malformed AppendEntries (non-contiguous indexes, a term above the message's) are refused
 * without changing the log. */
TEST(malformed_append_entries_rejected)
{
    struct fx f;
    fx_init_with(&f, 2, 2, false, false);
    struct craft_entry e[2] = {{2, 2, CRAFT_ENTRY_COMMAND, "a", 1}, {2, 4, CRAFT_ENTRY_COMMAND, "b", 1}};
    struct craft_message ae = {0};
    ae.type = CRAFT_MSG_APPEND_ENTRIES;
    ae.from = 1;
    ae.to = 2;
    ae.term = 2;
    ae.u.append_entries.prev_index = 1;
    ae.u.append_entries.prev_term = 1;
    ae.u.append_entries.entries = e;
    ae.u.append_entries.n_entries = 2;
    CHECK_EQ(craft_step(f.node[2], &ae), CRAFT_EMALFORMED);
    e[1].index = 3;
    e[1].term = 9;
    CHECK_EQ(craft_step(f.node[2], &ae), CRAFT_EMALFORMED);
    e[1].term = 2;
    e[1].type = 77;
    CHECK_EQ(craft_step(f.node[2], &ae), CRAFT_EMALFORMED);
    e[1].type = CRAFT_ENTRY_CONFIG; /* "b" is no configuration */
    CHECK_EQ(craft_step(f.node[2], &ae), CRAFT_EMALFORMED);
    CHECK_EQ(craft_node_last_index(f.node[2]), 1);
    ae.type = 99;
    CHECK_EQ(craft_step(f.node[2], &ae), CRAFT_EMALFORMED);
    fx_close(&f);
}

/* A lost AppendEntries in replicate mode is detected through heartbeats and resent. */
TEST(lost_append_entries_recovered_by_heartbeats)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    CHECK_OK(fx_propose(&f, 1, "a"));
    fx_deliver_all(&f);
    CHECK_OK(fx_propose(&f, 1, "b"));
    /* Lose the AppendEntries to 3 only. */
    f.cut[1][3] = true;
    fx_deliver_all(&f);
    f.cut[1][3] = false;
    CHECK(craft_node_last_index(f.node[3]) < craft_node_last_index(f.node[1]));
    fx_rounds(&f, 6);
    CHECK_EQ(craft_node_last_index(f.node[3]), craft_node_last_index(f.node[1]));
    CHECK_EQ(craft_node_commit(f.node[3]), craft_node_commit(f.node[1]));
    fx_close(&f);
}

/* Regression (soak seed 88): in replicate mode the follower receives an AppendEntries but its
 * acknowledgement is lost. Its log is then as long as what was sent, so only the window that
 * stays unacknowledged can reveal the loss; the leader must still recover. */
TEST(lost_acknowledgement_recovered_in_replicate_mode)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    fx_rounds(&f, 2);
    CHECK_OK(fx_propose(&f, 1, "a"));
    f.cut[3][1] = true; /* 3 stores the entry; its answer is lost */
    fx_deliver_all(&f);
    f.cut[3][1] = false;
    CHECK_EQ(craft_node_last_index(f.node[3]), craft_node_last_index(f.node[1]));
    fx_rounds(&f, 6);
    struct craft_progress_info pi[3];
    CHECK_EQ(craft_node_progress(f.node[1], pi, 3), 3);
    CHECK_EQ(pi[2].match, craft_node_last_index(f.node[1]));
    CHECK_EQ(craft_node_commit(f.node[3]), craft_node_last_index(f.node[1]));
    fx_close(&f);
}

/* Heartbeats carry the commit index only up to what the follower is known to hold. */
TEST(heartbeat_commit_bounded_by_match)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    f.down[3] = true;
    CHECK_OK(fx_propose(&f, 1, "a"));
    fx_deliver_all(&f);
    f.down[3] = false;
    fx_tick(&f, 1, 1);
    struct craft_message m;
    while (fx_deliver_one(&f, &m)) {
        if (m.type == CRAFT_MSG_APPEND_ENTRIES && m.to == 3 && m.u.append_entries.n_entries == 0 &&
            m.u.append_entries.ctx != 0) {
            CHECK(m.u.append_entries.commit <= m.u.append_entries.prev_index);
        }
    }
    fx_close(&f);
}

HARNESS_MAIN()
