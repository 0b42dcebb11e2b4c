/* What must be durable before a vote counts, what a leader does when a follower's disk lost
 * what it had acknowledged, and a leader that removes itself (issue 11). Each test here failed
 * before its fix. */
#include "core_fixture.h"
#include "harness.h"

/* Paper Figure 2 ("respond to RPCs only after updating stable storage") applies to the
 * candidate's own vote too. Three voters; node 1 campaigns in term 2 and only node 2 hears it.
 * If node 1 counted its own vote before its new term and vote were durable, it would lead term
 * 2 with node 2's grant, replicate, crash with its hard state still at term 1, restart, and
 * grant node 3 a vote in term 2: node 3 would lead term 2 as well. */
TEST(candidate_counts_its_own_vote_only_once_durable)
{
    struct fx f;
    fx_init_with(&f, 3, 3, false, false);
    f.manual_persist[1] = true;
    f.cut[1][3] = f.cut[3][1] = true;
    fx_elect(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_CANDIDATE);
    CHECK_EQ(craft_node_term(f.node[1]), 2);
    CHECK_EQ(craft_node_vote(f.node[2]), 1); /* node 2's grant arrived */
    if (craft_node_role(f.node[1]) == CRAFT_LEADER) {
        /* The consequence, spelled out for whoever breaks this again. */
        CHECK_OK(fx_propose(&f, 1, "X"));
        fx_deliver_all(&f);
        struct craft_hard_state durable = {.term = 1};
        fx_restart_prefix(&f, 1, 1, &durable);
        f.cut[1][3] = f.cut[3][1] = false;
        f.cut[3][2] = f.cut[2][3] = true;
        fx_elect(&f, 3);
        FAIL("node 1 led term 2 before its vote was durable; node 3 then led term %llu",
             (unsigned long long)craft_node_term(f.node[3]));
    }
    /* Node 2's grant is in; the win comes with the persistence of node 1's own vote. */
    fx_persist(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    CHECK_EQ(craft_node_term(f.node[1]), 2);
    fx_close(&f);
}

/* The same rule in a cluster of one: the only voter wins once its vote is durable. */
TEST(single_voter_wins_once_its_vote_is_durable)
{
    struct fx f;
    fx_init_with(&f, 1, 1, false, false);
    f.manual_persist[1] = true;
    fx_elect(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_CANDIDATE);
    fx_persist(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    fx_close(&f);
}

/* A pre-vote records nothing durable, so the pre-candidate's own poll answer counts at once:
 * a cluster of one moves to a real candidacy without waiting for the disk. */
TEST(pre_candidate_counts_itself_at_once)
{
    struct fx f;
    fx_init_with(&f, 1, 1, true, false);
    f.manual_persist[1] = true;
    fx_elect(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_CANDIDATE);
    fx_persist(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    fx_close(&f);
}

static bool leader_of_only(struct fx *f, craft_id id, craft_index conf_index)
{
    craft_index ci = 0;
    const struct craft_configuration *c = craft_node_configuration(f->node[id], &ci);
    return craft_node_role(f->node[id]) == CRAFT_LEADER && ci >= conf_index &&
           craft_node_commit(f->node[id]) >= conf_index && craft_configuration_voters(c) == 1 &&
           craft_configuration_get(c, id) != NULL;
}

/* Thesis 4.2.2. Two voters {1, 2}; leader 1 appends {2} while 2 cannot hear it. restart: node
 * 1 then crashes and restarts; otherwise it steps down by check-quorum. Either way node 2 still
 * has {1, 2} and needs node 1's vote, which node 1 refuses (its log is longer). Node 1 must
 * campaign although it is not in its own latest configuration (that configuration is not
 * committed), win with node 2's vote, commit {2} and step down; then node 2 leads {2}. */
static void removed_leader_case(bool restart)
{
    struct fx f;
    fx_init_with(&f, 2, 2, true, true);
    fx_elect(&f, 1);
    fx_rounds(&f, 2);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    f.cut[1][2] = true;
    craft_index idx = 0;
    CHECK_OK(craft_remove_server(f.node[1], 1, &idx));
    fx_drain(&f, 1);
    fx_deliver_all(&f);
    if (restart) {
        fx_restart_prefix(&f, 1, (craft_index)-1, NULL);
    } else {
        fx_tick(&f, 1, 3 * f.cfg[1].election_ticks);
    }
    CHECK(craft_node_role(f.node[1]) != CRAFT_LEADER);
    f.cut[1][2] = false;
    for (int r = 0; r < 500 && !leader_of_only(&f, 2, idx); r++) {
        fx_rounds(&f, 1);
    }
    if (!leader_of_only(&f, 2, idx)) {
        FAIL("%s: no leader of {2} after 500 rounds (node 1 %s term %llu, node 2 %s term "
             "%llu commit %llu, removal at %llu)",
             restart ? "restart" : "check-quorum", craft_role_name(craft_node_role(f.node[1])),
             (unsigned long long)craft_node_term(f.node[1]),
             craft_role_name(craft_node_role(f.node[2])),
             (unsigned long long)craft_node_term(f.node[2]),
             (unsigned long long)craft_node_commit(f.node[2]), (unsigned long long)idx);
    }
    CHECK_OK(fx_propose(&f, 2, "after"));
    fx_rounds(&f, 2);
    CHECK_EQ(craft_node_commit(f.node[2]), craft_node_last_index(f.node[2]));
    /* Its removal committed, node 1 never campaigns again, whatever it hears. */
    CHECK(craft_node_commit(f.node[1]) >= idx);
    f.down[2] = true;
    craft_term term = craft_node_term(f.node[1]);
    fx_tick(&f, 1, 10 * f.cfg[1].election_ticks);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_FOLLOWER);
    CHECK_EQ(craft_node_term(f.node[1]), term);
    fx_close(&f);
}

TEST(thesis_4_2_2_removed_leader_that_stepped_down_campaigns_until_removal_commits)
{
    removed_leader_case(false);
}

TEST(thesis_4_2_2_removed_leader_that_restarted_campaigns_until_removal_commits)
{
    removed_leader_case(true);
}

/* A cluster of three with five commands committed everywhere: last index 7. */
static void committed_seven(struct fx *f)
{
    fx_init(f, 3);
    fx_elect(f, 1);
    for (int i = 0; i < 5; i++) {
        char cmd[8];
        snprintf(cmd, sizeof cmd, "c%d", i);
        if (fx_propose(f, 1, cmd) != 0) {
            abort();
        }
    }
    fx_rounds(f, 3);
}

static bool repaired(struct fx *f, craft_id id)
{
    craft_index last = craft_node_last_index(f->node[1]);
    if (craft_node_last_index(f->node[id]) != last || craft_node_commit(f->node[id]) != last) {
        return false;
    }
    for (craft_index i = 1; i <= last; i++) {
        if (craft_node_term_at(f->node[id], i) != craft_node_term_at(f->node[1], i)) {
            return false;
        }
    }
    return true;
}

/* A follower whose disk lost the tail it had acknowledged (a torn segment cut back at
 * recovery, an older copy put back) rejects the leader's heartbeats at its old match index.
 * The leader used to drop such rejections as stale and never lowered next below match + 1:
 * the follower stayed behind for as long as that leader lived. Now the leader reports the
 * regression and re-replicates. */
TEST(follower_whose_log_lost_its_tail_is_repaired)
{
    struct fx f;
    committed_seven(&f);
    CHECK_EQ(craft_node_commit(f.node[3]), 7);
    fx_restart_prefix(&f, 3, 3, NULL);
    for (int r = 0; r < 20 && !repaired(&f, 3); r++) {
        fx_rounds(&f, 1);
    }
    CHECK(repaired(&f, 3));
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    CHECK_EQ(f.n_regressions[1], 1);
    CHECK_EQ(f.regression[1].id, 3);
    CHECK_EQ(f.regression[1].match, 7);
    CHECK_EQ(f.regression[1].last_index, 3);
    fx_close(&f);
}

/* A wiped data directory, restarted without a bootstrap configuration (as an operator would
 * restart it): empty, term 0. */
TEST(follower_whose_disk_was_wiped_is_repaired)
{
    struct fx f;
    committed_seven(&f);
    fx_empty(&f, 3);
    for (int r = 0; r < 20 && !repaired(&f, 3); r++) {
        fx_rounds(&f, 1);
    }
    CHECK(repaired(&f, 3));
    CHECK_EQ(f.n_regressions[1], 1);
    CHECK_EQ(f.regression[1].last_index, 0);
    fx_close(&f);
}

/* An older copy of the directory put back, holding entries of an older term the cluster
 * never committed: the leader finds the divergence below its old match and overwrites it. */
TEST(follower_restored_from_an_older_divergent_copy_is_repaired)
{
    struct fx f;
    committed_seven(&f);
    craft_term old[] = {1, 1, 1};
    fx_boot(&f, 3, 2, old, 3, 3);
    for (int r = 0; r < 20 && !repaired(&f, 3); r++) {
        fx_rounds(&f, 1);
    }
    CHECK(repaired(&f, 3));
    CHECK_EQ(f.n_regressions[1], 1);
    CHECK_EQ(f.regression[1].last_index, 4);
    fx_close(&f);
}

/* Heartbeats sent before the leader noticed carry the same news: one report, not one per
 * heartbeat in flight. */
TEST(log_regression_is_reported_once_per_event)
{
    struct fx f;
    committed_seven(&f);
    fx_restart_prefix(&f, 3, 3, NULL);
    /* Several heartbeat rounds in flight before any answer arrives. */
    fx_tick(&f, 1, 5);
    fx_deliver_all(&f);
    fx_rounds(&f, 5);
    CHECK(repaired(&f, 3));
    CHECK_EQ(f.n_regressions[1], 1);
    fx_close(&f);
}

/* ------------------------------------------------------------------------------------------
 * One quorum module, no fixed limit (ReadIndex used to take the median of the first 64 voters
 * only). */

static void step_ok(struct craft_node *n, const struct craft_message *m)
{
    if (craft_step(n, m) != 0) {
        abort();
    }
}

/* Takes every update of n, persisting each at once; returns the last heartbeat ctx seen and
 * the number of reads that became ready. */
static uint64_t drain_lone(struct craft_node *n, unsigned *ready)
{
    uint64_t ctx = 0;
    while (craft_has_update(n)) {
        struct craft_update u;
        if (craft_take_update(n, &u) != 0) {
            abort();
        }
        for (size_t i = 0; i < u.n_messages; i++) {
            if (u.messages[i].type == CRAFT_MSG_APPEND_ENTRIES &&
                u.messages[i].u.append_entries.ctx > ctx) {
                ctx = u.messages[i].u.append_entries.ctx;
            }
        }
        for (size_t i = 0; i < u.n_reads; i++) {
            *ready += u.reads[i].status == 0;
        }
        if (u.seq != 0) {
            craft_persisted(n, u.seq);
        }
    }
    return ctx;
}

static void ack(struct craft_node *n, craft_id from, craft_index index, uint64_t ctx)
{
    struct craft_message m = {0};
    m.type = CRAFT_MSG_APPEND_ENTRIES_RESULT;
    m.from = from;
    m.to = 1;
    m.term = craft_node_term(n);
    m.u.append_entries_result.index = index;
    m.u.append_entries_result.last_index = index;
    m.u.append_entries_result.ctx = ctx;
    step_ok(n, &m);
}

TEST(read_index_needs_a_majority_of_all_voters_beyond_64)
{
    enum { VOTERS = 100 };
    struct craft_configuration c;
    craft_configuration_init(&c);
    for (craft_id id = 1; id <= VOTERS; id++) {
        char addr[32];
        snprintf(addr, sizeof addr, "10.0.0.%llu:1", (unsigned long long)id);
        CHECK_OK(craft_configuration_add(&c, NULL, id, addr, CRAFT_VOTER));
    }
    struct craft_config cfg;
    craft_config_init(&cfg, 1);
    cfg.pre_vote = false;
    struct craft_boot b = {0};
    b.bootstrap = &c;
    struct craft_node *n;
    CHECK_OK(craft_node_new(&cfg, &b, &n));
    unsigned ready = 0;
    drain_lone(n, &ready);
    for (int t = 0; t < 40 && craft_node_role(n) != CRAFT_CANDIDATE; t++) {
        craft_tick(n);
        drain_lone(n, &ready);
    }
    CHECK_EQ(craft_node_role(n), CRAFT_CANDIDATE);
    for (craft_id id = 2; id <= 51; id++) {
        struct craft_message m = {0};
        m.type = CRAFT_MSG_REQUEST_VOTE_RESULT;
        m.from = id;
        m.to = 1;
        m.term = craft_node_term(n);
        m.u.request_vote_result.granted = true;
        step_ok(n, &m);
    }
    CHECK_EQ(craft_node_role(n), CRAFT_LEADER);
    drain_lone(n, &ready);
    craft_index barrier = craft_node_last_index(n);
    for (craft_id id = 2; id <= 51; id++) {
        ack(n, id, barrier, 0);
    }
    drain_lone(n, &ready);
    CHECK_EQ(craft_node_commit(n), barrier);

    CHECK_OK(craft_read_index(n, 7, CRAFT_READ_INDEX));
    uint64_t ctx = drain_lone(n, &ready);
    CHECK(ctx != 0);
    /* 32 followers and the leader: a majority of the first 64 voters, not of the 100. */
    for (craft_id id = 2; id <= 33; id++) {
        ack(n, id, barrier, ctx);
    }
    drain_lone(n, &ready);
    CHECK_EQ(ready, 0);
    for (craft_id id = 34; id <= 51; id++) {
        ack(n, id, barrier, ctx);
    }
    drain_lone(n, &ready);
    CHECK_EQ(ready, 1);
    craft_node_free(n);
    craft_configuration_close(&c, NULL);
}

/* ------------------------------------------------------------------------------------------
 * Smaller defects found by reading. */

/* A stale InstallSnapshot is answered in kind with our term (it used to be answered as an
 * AppendEntries, reading the AppendEntries member of the message union). */
TEST(stale_install_snapshot_answered_with_our_term)
{
    struct fx f;
    fx_init_with(&f, 3, 3, false, false);
    fx_boot(&f, 2, 5, NULL, 0, 3);
    struct craft_message m = {0};
    m.type = CRAFT_MSG_INSTALL_SNAPSHOT;
    m.from = 1;
    m.to = 2;
    m.term = 3;
    m.u.install_snapshot.meta.index = 40;
    m.u.install_snapshot.meta.term = 3;
    CHECK_OK(craft_step(f.node[2], &m));
    struct craft_update u;
    CHECK_OK(craft_take_update(f.node[2], &u));
    CHECK_EQ(u.n_messages, 1);
    CHECK_EQ(u.messages[0].type, CRAFT_MSG_INSTALL_SNAPSHOT_RESULT);
    CHECK_EQ(u.messages[0].term, 5);
    CHECK_EQ(u.messages[0].u.install_snapshot_result.index, 40);
    CHECK(u.messages[0].u.install_snapshot_result.rejected);
    fx_close(&f);
}

/* A pre-candidate whose poll times out polls again without reporting a role change. */
TEST(repeated_poll_reports_no_role_change)
{
    struct fx f;
    fx_init_with(&f, 3, 3, true, false);
    f.down[2] = f.down[3] = true;
    fx_elect(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_PRE_CANDIDATE);
    unsigned changes = f.role_changes[1];
    fx_tick(&f, 1, 4 * f.cfg[1].election_ticks); /* at least one more poll */
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_PRE_CANDIDATE);
    CHECK_EQ(f.role_changes[1], changes);
    fx_close(&f);
}

HARNESS_MAIN()
