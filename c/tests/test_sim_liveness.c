/*
 * Liveness in the simulator (issue 2): elections happen and proposals commit when a majority
 * can talk; crashed or partitioned leaders are replaced; a partitioned minority never commits;
 * pre-vote keeps a rejoining node from disrupting the leader; check-quorum makes a cut-off
 * leader step down. Every run also has every safety invariant checked after each event.
 *
 * Times are virtual. With the defaults an election timeout is election_ticks (10) ticks of
 * tick_ms (10 ms): 100 ms, randomized up to 200 ms.
 */
#include "harness.h"

#include <inttypes.h>

#include "craft/sim.h"

#define TIMEOUT_MS 100 /* one (minimum) election timeout */

static struct craft_sim *make(unsigned n, uint64_t seed, bool pre_vote, bool check_quorum)
{
    struct craft_sim_options o;
    craft_sim_options_init(&o);
    o.n_nodes = n;
    o.seed = seed;
    o.node.pre_vote = pre_vote;
    o.node.check_quorum = check_quorum;
    struct craft_sim *s = NULL;
    int rc = craft_sim_new(&o, &s);
    return rc == 0 ? s : NULL;
}

static bool has_leader(struct craft_sim *s, void *ud)
{
    (void)ud;
    return craft_sim_leader(s) != 0;
}

/* A leader other than *ud. */
static bool other_leader(struct craft_sim *s, void *ud)
{
    craft_id l = craft_sim_leader(s);
    return l != 0 && l != *(const craft_id *)ud;
}

struct probe {
    craft_index index;
    craft_term term;
    craft_id skip; /* a node not expected to apply (partitioned away), or 0 */
};

/* Every live node has applied the entry at probe->index, with probe->term. */
static bool applied_everywhere(struct craft_sim *s, void *ud)
{
    const struct probe *p = ud;
    for (craft_id id = 1; id <= craft_sim_n_nodes(s); id++) {
        if (!craft_sim_is_up(s, id) || id == p->skip) {
            continue;
        }
        const struct craft_sim_applied *a;
        size_t n;
        craft_sim_applied(s, id, &a, &n);
        if (n == 0 || a[n - 1].index < p->index) {
            return false;
        }
        if (a[p->index - a[0].index].term != p->term) {
            return false;
        }
    }
    return true;
}

static bool not_leader(struct craft_sim *s, void *ud)
{
    const struct craft_node *n = craft_sim_node(s, *(const craft_id *)ud);
    return n == NULL || craft_node_role(n) != CRAFT_LEADER;
}

/* Proposes at the leader and waits until every live node (but skip) applied it. */
static void commit_but(struct craft_sim *s, const char *cmd, craft_id skip)
{
    struct probe p = {.skip = skip};
    CHECK_OK(craft_sim_propose(s, 0, cmd, strlen(cmd), &p.index, &p.term));
    int rc = craft_sim_run_until(s, applied_everywhere, &p, 10 * TIMEOUT_MS);
    if (rc != 0) {
        FAIL("\"%s\" at %" PRIu64 "/%" PRIu64 " not applied everywhere: %s (%s)", cmd, p.index,
             p.term, craft_err_name(rc), craft_sim_error(s) ? craft_sim_error(s) : "");
    }
}

static void commit_one(struct craft_sim *s, const char *cmd)
{
    commit_but(s, cmd, 0);
}

static void elect(struct craft_sim *s)
{
    int rc = craft_sim_run_until(s, has_leader, NULL, 10 * TIMEOUT_MS);
    if (rc != 0) {
        FAIL("no leader within 10 election timeouts (t=%" PRIu64 "ms): %s %s",
             craft_sim_now(s), craft_err_name(rc), craft_sim_error(s) ? craft_sim_error(s) : "");
    }
}

static craft_term term_of(struct craft_sim *s, craft_id id)
{
    return craft_node_term(craft_sim_node(s, id));
}

TEST(leader_elected_and_proposal_commits)
{
    static const unsigned sizes[] = {1, 2, 3, 4, 5, 7, 9};
    for (unsigned k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        for (uint64_t seed = 1; seed <= 20; seed++) {
            struct craft_sim *s = make(sizes[k], seed, true, true);
            CHECK(s != NULL);
            elect(s);
            if (harness_failed()) {
                fprintf(stderr, "  n=%u seed=%" PRIu64 "\n", sizes[k], seed);
                craft_sim_free(s);
                return;
            }
            commit_one(s, "hello");
            CHECK_OK(craft_sim_check(s));
            craft_sim_free(s);
            if (harness_failed()) {
                fprintf(stderr, "  n=%u seed=%" PRIu64 "\n", sizes[k], seed);
                return;
            }
        }
    }
}

TEST(leader_elected_without_pre_vote_or_check_quorum)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        struct craft_sim *s = make(5, seed, false, false);
        CHECK(s != NULL);
        elect(s);
        if (!harness_failed()) {
            commit_one(s, "hello");
        }
        craft_sim_free(s);
        if (harness_failed()) {
            fprintf(stderr, "  seed=%" PRIu64 "\n", seed);
            return;
        }
    }
}

TEST(new_leader_after_crash)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        struct craft_sim *s = make(5, seed, true, true);
        elect(s);
        if (!harness_failed()) {
            commit_one(s, "before");
        }
        craft_id old = craft_sim_leader(s);
        if (!harness_failed()) {
            CHECK_OK(craft_sim_crash(s, old));
            CHECK_OK(craft_sim_run_until(s, other_leader, &old, 10 * TIMEOUT_MS));
        }
        if (!harness_failed()) {
            commit_one(s, "after");
        }
        /* The old leader comes back and catches up. */
        if (!harness_failed()) {
            CHECK_OK(craft_sim_restart(s, old));
            commit_one(s, "rejoined");
            CHECK_OK(craft_sim_check(s));
        }
        craft_sim_free(s);
        if (harness_failed()) {
            fprintf(stderr, "  seed=%" PRIu64 "\n", seed);
            return;
        }
    }
}

TEST(new_leader_after_partition)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        struct craft_sim *s = make(5, seed, true, true);
        elect(s);
        craft_id old = craft_sim_leader(s);
        if (!harness_failed()) {
            unsigned groups[5] = {0, 0, 0, 0, 0};
            groups[old - 1] = 1;
            CHECK_OK(craft_sim_partition(s, groups));
            CHECK_OK(craft_sim_run_until(s, other_leader, &old, 10 * TIMEOUT_MS));
        }
        if (!harness_failed()) {
            CHECK(term_of(s, craft_sim_leader(s)) > term_of(s, old));
            commit_but(s, "majority side", old);
        }
        if (!harness_failed()) {
            CHECK_OK(craft_sim_heal(s));
            commit_one(s, "healed");
            CHECK_OK(craft_sim_check(s));
        }
        craft_sim_free(s);
        if (harness_failed()) {
            fprintf(stderr, "  seed=%" PRIu64 "\n", seed);
            return;
        }
    }
}

TEST(partitioned_minority_never_commits)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        /* Without check-quorum the old leader keeps leading its minority and accepting
         * proposals: the strongest temptation to commit without a majority. */
        struct craft_sim *s = make(5, seed, true, false);
        elect(s);
        if (!harness_failed()) {
            commit_one(s, "before");
        }
        if (harness_failed()) {
            craft_sim_free(s);
            return;
        }
        craft_id old = craft_sim_leader(s);
        craft_id buddy = old % 5 + 1; /* one follower stays with the old leader */
        unsigned groups[5] = {0, 0, 0, 0, 0};
        groups[old - 1] = groups[buddy - 1] = 1;
        CHECK_OK(craft_sim_partition(s, groups));
        craft_index minority_commit[2] = {craft_node_commit(craft_sim_node(s, old)),
                                          craft_node_commit(craft_sim_node(s, buddy))};
        craft_index majority_before = 0;
        for (craft_id id = 1; id <= 5; id++) {
            if (id != old && id != buddy) {
                majority_before = craft_node_commit(craft_sim_node(s, id));
                break;
            }
        }
        for (int round = 0; round < 20; round++) {
            char cmd[32];
            snprintf(cmd, sizeof(cmd), "minority-%d", round);
            int rc = craft_sim_propose(s, old, cmd, strlen(cmd), NULL, NULL);
            CHECK(rc == 0 || rc == CRAFT_ENOTLEADER);
            snprintf(cmd, sizeof(cmd), "majority-%d", round);
            craft_id l = craft_sim_leader(s);
            if (l != 0 && l != old) {
                CHECK_OK(craft_sim_propose(s, l, cmd, strlen(cmd), NULL, NULL));
            }
            CHECK_OK(craft_sim_run_for(s, 50));
            CHECK_EQ(craft_node_commit(craft_sim_node(s, old)), minority_commit[0]);
            CHECK_EQ(craft_node_commit(craft_sim_node(s, buddy)), minority_commit[1]);
        }
        craft_id l = craft_sim_leader(s);
        CHECK(l != old && l != buddy && l != 0);
        CHECK(craft_node_commit(craft_sim_node(s, l)) > majority_before);
        /* Healing replaces the minority's uncommitted entries; safety is checked meanwhile. */
        CHECK_OK(craft_sim_heal(s));
        commit_one(s, "healed");
        CHECK_OK(craft_sim_check(s));
        craft_sim_free(s);
        if (harness_failed()) {
            fprintf(stderr, "  seed=%" PRIu64 "\n", seed);
            return;
        }
    }
}

/* Isolates follower f for a long time while the others keep committing, then heals. Returns
 * through *leader_before/after and *term_before/after. */
static void isolate_and_rejoin(struct craft_sim *s, craft_id *leader_before,
                               craft_id *leader_after, craft_term *term_before,
                               craft_term *term_after, craft_term *isolated_term)
{
    elect(s);
    if (harness_failed()) {
        return;
    }
    commit_one(s, "before");
    if (harness_failed()) {
        return;
    }
    craft_id l = craft_sim_leader(s);
    craft_id f = l % 5 + 1;
    *leader_before = l;
    *term_before = term_of(s, l);
    unsigned groups[5] = {0, 0, 0, 0, 0};
    groups[f - 1] = 1;
    CHECK_OK(craft_sim_partition(s, groups));
    for (int k = 0; k < 10; k++) {
        CHECK_OK(craft_sim_propose(s, l, "while away", 10, NULL, NULL));
        CHECK_OK(craft_sim_run_for(s, 100));
    }
    *isolated_term = term_of(s, f);
    CHECK_OK(craft_sim_heal(s));
    CHECK_OK(craft_sim_run_for(s, 10 * TIMEOUT_MS));
    *leader_after = craft_sim_leader(s);
    *term_after = *leader_after ? term_of(s, *leader_after) : 0;
}

TEST(pre_vote_rejoining_node_does_not_disrupt)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        struct craft_sim *s = make(5, seed, true, true);
        craft_id lb = 0, la = 0;
        craft_term tb = 0, ta = 0, ti = 0;
        isolate_and_rejoin(s, &lb, &la, &tb, &ta, &ti);
        CHECK_EQ(ti, tb); /* the isolated node only polled: its term did not move */
        CHECK_EQ(la, lb);
        CHECK_EQ(ta, tb);
        CHECK_OK(craft_sim_check(s));
        craft_sim_free(s);
        if (harness_failed()) {
            fprintf(stderr, "  seed=%" PRIu64 "\n", seed);
            return;
        }
    }
}

/* The contrast, which is why pre-vote exists: without it the isolated node's term runs away
 * and its return forces the leader to step down. */
TEST(without_pre_vote_rejoining_node_disrupts)
{
    struct craft_sim *s = make(5, 7, false, false);
    craft_id lb = 0, la = 0;
    craft_term tb = 0, ta = 0, ti = 0;
    isolate_and_rejoin(s, &lb, &la, &tb, &ta, &ti);
    CHECK(ti > tb);
    CHECK(ta > tb);
    CHECK_OK(craft_sim_check(s));
    craft_sim_free(s);
}

TEST(check_quorum_isolated_leader_steps_down)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        struct craft_sim *s = make(5, seed, true, true);
        elect(s);
        craft_id old = craft_sim_leader(s);
        if (!harness_failed()) {
            unsigned groups[5] = {0, 0, 0, 0, 0};
            groups[old - 1] = 1;
            CHECK_OK(craft_sim_partition(s, groups));
            uint64_t t0 = craft_sim_now(s);
            /* It notices within one election timeout of its last contact with a majority:
             * allow two timeouts plus the message delay. */
            CHECK_OK(craft_sim_run_until(s, not_leader, &old, 2 * TIMEOUT_MS + 20));
            if (harness_failed()) {
                fprintf(stderr, "  still leader %" PRIu64 " ms after the cut\n",
                        craft_sim_now(s) - t0);
            }
        }
        CHECK_OK(craft_sim_check(s));
        craft_sim_free(s);
        if (harness_failed()) {
            fprintf(stderr, "  seed=%" PRIu64 "\n", seed);
            return;
        }
    }
}

TEST(without_check_quorum_isolated_leader_stays)
{
    struct craft_sim *s = make(5, 3, true, false);
    elect(s);
    craft_id old = craft_sim_leader(s);
    unsigned groups[5] = {0, 0, 0, 0, 0};
    groups[old - 1] = 1;
    CHECK_OK(craft_sim_partition(s, groups));
    CHECK_OK(craft_sim_run_for(s, 10 * TIMEOUT_MS));
    CHECK_EQ(craft_node_role(craft_sim_node(s, old)), CRAFT_LEADER);
    craft_sim_free(s);
}

TEST(one_way_cut_from_leader_causes_new_election)
{
    /* The leader can hear everyone but no one hears it: followers time out and elect another
     * leader, which the old one then learns about (it still receives). */
    struct craft_sim *s = make(3, 11, true, true);
    elect(s);
    craft_id old = craft_sim_leader(s);
    for (craft_id id = 1; id <= 3; id++) {
        if (id != old) {
            CHECK_OK(craft_sim_cut(s, old, id));
        }
    }
    CHECK_OK(craft_sim_run_until(s, other_leader, &old, 10 * TIMEOUT_MS));
    CHECK_OK(craft_sim_run_until(s, not_leader, &old, 10 * TIMEOUT_MS));
    CHECK_OK(craft_sim_heal(s));
    commit_one(s, "healed");
    CHECK_OK(craft_sim_check(s));
    craft_sim_free(s);
}

TEST(deterministic_replay)
{
    /* Two runs with the same seed and inputs are identical event for event. */
    uint64_t events[2], committed[2], now[2];
    for (int k = 0; k < 2; k++) {
        struct craft_sim_options o;
        craft_sim_options_init(&o);
        o.n_nodes = 5;
        o.seed = 99;
        o.drop_rate = 0.1;
        o.dup_rate = 0.05;
        struct craft_sim *s;
        CHECK_OK(craft_sim_new(&o, &s));
        for (int r = 0; r < 30; r++) {
            craft_sim_propose(s, 0, "x", 1, NULL, NULL);
            CHECK_OK(craft_sim_run_for(s, 37));
        }
        struct craft_sim_stats st;
        craft_sim_stats(s, &st);
        events[k] = st.events;
        committed[k] = craft_sim_committed(s);
        now[k] = craft_sim_now(s);
        craft_sim_free(s);
    }
    CHECK_EQ(events[0], events[1]);
    CHECK_EQ(committed[0], committed[1]);
    CHECK_EQ(now[0], now[1]);
    CHECK(committed[0] > 10);
}

HARNESS_MAIN()
