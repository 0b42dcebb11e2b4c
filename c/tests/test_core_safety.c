/* Safety: paper section 5.4 (the election restriction, committing entries from previous terms)
 * with the Figure 7 follower logs and the Figure 8 scenario. */
#include "core_fixture.h"
#include "harness.h"

static bool same_log(struct craft_node *a, struct craft_node *b)
{
    if (craft_node_last_index(a) != craft_node_last_index(b)) {
        return false;
    }
    for (craft_index i = 1; i <= craft_node_last_index(a); i++) {
        if (craft_node_term_at(a, i) != craft_node_term_at(b, i)) {
            return false;
        }
    }
    return true;
}

/* 5.4.1: a voter denies its vote to a candidate whose log is less up to date: a lower last
 * term, or the same last term and a shorter log. */
TEST(s5_4_1_vote_denied_to_candidate_with_stale_log)
{
    struct fx f;
    fx_init_with(&f, 3, 3, false, false);
    craft_term mine[] = {2, 3};
    fx_boot(&f, 3, 3, mine, 2, 3);
    struct craft_message rv = {0};
    rv.type = CRAFT_MSG_REQUEST_VOTE;
    rv.to = 3;
    rv.term = 4;
    struct {
        craft_index index;
        craft_term term;
        bool granted;
    } cases[] = {
        {3, 2, false}, /* lower last term, even if longer */
        {10, 2, false},
        {2, 3, false}, /* same last term, shorter */
        {3, 3, true},  /* same last term, as long */
        {1, 4, true},  /* higher last term, even if shorter */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fx_boot(&f, 3, 3, mine, 2, 3);
        rv.from = 1;
        rv.u.request_vote.last_log_index = cases[i].index;
        rv.u.request_vote.last_log_term = cases[i].term;
        CHECK_OK(craft_step(f.node[3], &rv));
        CHECK_EQ(craft_node_vote(f.node[3]) == 1, cases[i].granted);
    }
    fx_close(&f);
}

/* Figure 7: whatever shape a follower's log has (missing entries, extra uncommitted entries,
 * both), the leader brings it to exactly the leader's log. Three servers: the leader, a
 * helper with the leader's log (so the leader can win), and the follower of each case. */
TEST(s5_3_figure7_leader_repairs_every_follower_log)
{
    static const craft_term leader[] = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
    static const struct {
        const char *name;
        craft_term terms[12];
        size_t n;
    } cases[] = {
        {"a", {1, 1, 1, 4, 4, 5, 5, 6, 6}, 9},
        {"b", {1, 1, 1, 4}, 4},
        {"c", {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6}, 11},
        {"d", {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7}, 12},
        {"e", {1, 1, 1, 4, 4, 4, 4}, 7},
        {"f", {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3}, 11},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct fx f;
        fx_init_with(&f, 3, 3, false, false);
        fx_boot(&f, 1, 8, leader, 10, 3);
        fx_boot(&f, 2, 8, leader, 10, 3);
        fx_boot(&f, 3, 8, cases[c].terms, cases[c].n, 3);
        fx_elect(&f, 1);
        if (craft_node_role(f.node[1]) != CRAFT_LEADER) {
            FAIL("case %s: no leader", cases[c].name);
        }
        fx_rounds(&f, 5);
        if (!same_log(f.node[1], f.node[3])) {
            FAIL("case %s: follower log differs from the leader's", cases[c].name);
        }
        CHECK_EQ(craft_node_commit(f.node[3]), craft_node_last_index(f.node[1]));
        fx_close(&f);
    }
}

/* Figure 8 / 5.4.2: a leader must not commit an entry of an earlier term by counting
 * replicas. S1 holds an entry of term 2 at index 2; S3 holds one of term 3 at index 2 (from
 * the leader of term 3). S1 wins term 4 with S2's vote. Once S1 has copied its term-2 entry
 * onto S2 a majority stores it, yet it must stay uncommitted until the barrier of term 4 is
 * stored by a majority too: otherwise S3 could still win an election (its last term 3 beats
 * 2) and erase it. */
TEST(s5_4_2_figure8_no_commit_of_older_term_by_counting)
{
    struct fx f;
    fx_init_with(&f, 3, 3, false, false);
    craft_term s1[] = {2};
    craft_term s3[] = {3};
    fx_boot(&f, 1, 3, s1, 1, 3);
    fx_boot(&f, 2, 3, NULL, 0, 3);
    fx_boot(&f, 3, 3, s3, 1, 3);
    f.cfg[1].max_batch_entries = 1;
    /* Re-boot S1 with one entry per AppendEntries so that 2@2 travels alone. */
    fx_boot(&f, 1, 3, s1, 1, 3);
    f.cut[1][3] = f.cut[3][1] = true;
    for (int t = 0; t < 100 && craft_node_role(f.node[1]) == CRAFT_FOLLOWER; t++) {
        fx_tick(&f, 1, 1);
    }
    /* Deliver until S1 has processed S2's acknowledgement of index 2 (and of no more). */
    for (int guard = 0; guard < 1000; guard++) {
        struct craft_message m;
        if (!fx_deliver_one(&f, &m)) {
            break;
        }
        if (m.type == CRAFT_MSG_APPEND_ENTRIES_RESULT && m.from == 2 &&
            !m.u.append_entries_result.rejected && m.u.append_entries_result.index == 2) {
            break;
        }
    }
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    CHECK_EQ(craft_node_term(f.node[1]), 4);
    CHECK_EQ(craft_node_term_at(f.node[2], 2), 2);
    CHECK_EQ(craft_node_last_index(f.node[2]), 2);
    CHECK(craft_node_commit(f.node[1]) < 2); /* replicated on a majority, not committed */
    fx_deliver_all(&f);
    CHECK_EQ(craft_node_commit(f.node[1]), 3); /* committed with the barrier of term 4 */
    fx_close(&f);
}

/* 5.4.3 in miniature: after the leader of a committed entry crashes, the next leader has it. */
TEST(s5_4_leader_completeness_after_leader_crash)
{
    struct fx f;
    fx_init(&f, 5);
    fx_elect(&f, 1);
    CHECK_OK(fx_propose(&f, 1, "committed"));
    f.down[4] = f.down[5] = true; /* only 1, 2, 3 get it */
    fx_deliver_all(&f);
    craft_index idx = craft_node_commit(f.node[1]);
    CHECK_EQ(craft_node_last_index(f.node[1]), idx);
    f.down[1] = true;
    f.down[4] = f.down[5] = false;
    fx_flush(&f);
    /* 4 and 5 lack the entry: neither can win; 2 or 3 will. */
    for (int r = 0; r < 100 && craft_node_role(f.node[2]) != CRAFT_LEADER &&
                    craft_node_role(f.node[3]) != CRAFT_LEADER;
         r++) {
        fx_rounds(&f, 1);
    }
    craft_id leader = 0;
    for (craft_id i = 2; i <= 5; i++) {
        if (craft_node_role(f.node[i]) == CRAFT_LEADER) {
            leader = i;
        }
    }
    CHECK(leader == 2 || leader == 3);
    CHECK_EQ(craft_node_term_at(f.node[leader], idx), craft_node_term_at(f.node[1], idx));
    fx_close(&f);
}

HARNESS_MAIN()
