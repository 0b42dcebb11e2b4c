/*
 * The invariant checker can fail: each test feeds it a fabricated observation that breaks one
 * Raft safety property (through the hooks of c/src/sim/testing.h, which call the very functions
 * the simulator's driver path calls) and expects the violation, its name in the message, the
 * simulator stopped, and the violation at the end of the trace.
 *
 * The simulators here are freshly booted: every node holds entry 1/1 (the bootstrap
 * configuration), nothing is committed, and no event has run.
 */
#include "harness.h"

#include "craft/sim.h"
#include "sim/testing.h"

static struct craft_sim *fresh(void)
{
    struct craft_sim_options o;
    craft_sim_options_init(&o);
    o.n_nodes = 3;
    o.seed = 5;
    struct craft_sim *s = NULL;
    return craft_sim_new(&o, &s) == 0 ? s : NULL;
}

static struct craft_entry cmd(craft_index index, craft_term term, const char *data)
{
    struct craft_entry e = {
        .term = term, .index = index, .type = CRAFT_ENTRY_COMMAND, .data = data,
        .size = strlen(data)};
    return e;
}

struct last_line {
    char text[512];
};

static void keep_last(void *ud, const char *line)
{
    struct last_line *l = ud;
    snprintf(l->text, sizeof(l->text), "%s", line);
}

/* rc is a violation whose message contains what; the simulator has stopped for good. */
static void expect_violation(struct craft_sim *s, int rc, const char *what)
{
    CHECK_EQ(rc, CRAFT_SIM_EVIOLATION);
    const char *err = craft_sim_error(s);
    CHECK(err != NULL);
    if (strstr(err, what) == NULL) {
        FAIL("expected \"%s\" in \"%s\"", what, err);
    }
    CHECK_EQ(craft_sim_step(s), CRAFT_SIM_EVIOLATION);
    CHECK_EQ(craft_sim_run_for(s, 100), CRAFT_SIM_EVIOLATION);
    CHECK_EQ(craft_sim_check(s), CRAFT_SIM_EVIOLATION);
    CHECK_EQ(craft_sim_propose(s, 1, "x", 1, NULL, NULL), CRAFT_SIM_EVIOLATION);
    struct last_line l = {""};
    craft_sim_dump_trace(s, keep_last, &l);
    if (strstr(l.text, "VIOLATION") == NULL || strstr(l.text, what) == NULL) {
        FAIL("the trace does not end with the violation: \"%s\"", l.text);
    }
}

TEST(fresh_simulator_is_consistent)
{
    struct craft_sim *s = fresh();
    CHECK(s != NULL);
    CHECK_OK(craft_sim_check(s));
    CHECK(craft_sim_error(s) == NULL);
    craft_sim_free(s);
}

TEST(two_leaders_in_one_term)
{
    struct craft_sim *s = fresh();
    CHECK_OK(craft__sim_test_fake_leader(s, 1, 7));
    CHECK_OK(craft__sim_test_fake_leader(s, 1, 7)); /* the same leader again is fine */
    expect_violation(s, craft__sim_test_fake_leader(s, 2, 7), "election safety");
    craft_sim_free(s);
}

TEST(log_matching)
{
    struct craft_sim *s = fresh();
    struct craft_entry a = cmd(2, 1, "A"), b = cmd(2, 1, "B");
    CHECK_OK(craft__sim_test_fake_append(s, 1, &a, 1, false));
    expect_violation(s, craft__sim_test_fake_append(s, 2, &b, 1, false), "log matching");
    craft_sim_free(s);
}

TEST(log_matching_detects_differences_below_the_index)
{
    /* Same entry at 3, different entries at 2: the logs are not identical up to 3. */
    struct craft_sim *s = fresh();
    struct craft_entry one[2] = {cmd(2, 1, "A"), cmd(3, 1, "C")};
    struct craft_entry two[2] = {cmd(2, 1, "B"), cmd(3, 1, "C")};
    CHECK_OK(craft__sim_test_fake_append(s, 1, one, 2, false));
    expect_violation(s, craft__sim_test_fake_append(s, 2, two, 2, false), "log matching");
    craft_sim_free(s);
}

TEST(leader_append_only)
{
    struct craft_sim *s = fresh();
    struct craft_entry a = cmd(2, 1, "A"), b = cmd(2, 1, "B");
    CHECK_OK(craft__sim_test_fake_append(s, 1, &a, 1, true));
    expect_violation(s, craft__sim_test_fake_append(s, 1, &b, 1, true), "append-only");
    craft_sim_free(s);
}

TEST(log_terms_never_decrease)
{
    struct craft_sim *s = fresh();
    struct craft_entry e[2] = {cmd(2, 3, "A"), cmd(3, 2, "B")};
    expect_violation(s, craft__sim_test_fake_append(s, 1, e, 2, false), "log terms");
    craft_sim_free(s);
}

TEST(leader_completeness)
{
    struct craft_sim *s = fresh();
    struct craft_entry e[2] = {cmd(2, 1, "A"), cmd(3, 1, "B")};
    CHECK_OK(craft__sim_test_fake_append(s, 1, e, 2, false));
    CHECK_OK(craft__sim_test_fake_commit(s, 1, 3, 1)); /* committed in term 1 */
    /* n2 holds only entry 1, yet becomes leader of term 2. */
    expect_violation(s, craft__sim_test_fake_leader(s, 2, 2), "leader completeness");
    craft_sim_free(s);
}

TEST(leader_completeness_allows_a_late_leader_of_an_older_term)
{
    /* An entry first known committed in term 5 need not be in the log of a leader of term 4
     * whose election completes late: the checker must not cry wolf. */
    struct craft_sim *s = fresh();
    struct craft_entry a = cmd(2, 5, "A");
    CHECK_OK(craft__sim_test_fake_append(s, 1, &a, 1, false));
    CHECK_OK(craft__sim_test_fake_commit(s, 1, 2, 5));
    CHECK_OK(craft__sim_test_fake_leader(s, 2, 4));
    CHECK(craft_sim_error(s) == NULL);
    craft_sim_free(s);
}

TEST(state_machine_safety)
{
    struct craft_sim *s = fresh();
    struct craft_entry a = cmd(2, 1, "A"), b = cmd(2, 2, "B");
    CHECK_OK(craft__sim_test_fake_append(s, 1, &a, 1, false));
    CHECK_OK(craft__sim_test_fake_append(s, 2, &b, 1, false));
    CHECK_OK(craft__sim_test_fake_commit(s, 1, 2, 1));
    /* n2 applies its own entry 1 (fine), then its different entry 2. */
    const struct craft_entry *first = craft_node_entry(craft_sim_node(s, 2), 1);
    CHECK(first != NULL);
    struct craft_entry one = *first;
    CHECK_OK(craft__sim_test_fake_apply(s, 2, &one));
    expect_violation(s, craft__sim_test_fake_apply(s, 2, &b), "state machine safety");
    craft_sim_free(s);
}

TEST(overwriting_a_committed_entry)
{
    struct craft_sim *s = fresh();
    struct craft_entry a = cmd(2, 1, "A"), b = cmd(2, 2, "B");
    CHECK_OK(craft__sim_test_fake_append(s, 1, &a, 1, false));
    CHECK_OK(craft__sim_test_fake_commit(s, 1, 2, 1));
    expect_violation(s, craft__sim_test_fake_append(s, 1, &b, 1, false), "overwrote committed");
    craft_sim_free(s);
}

TEST(applying_out_of_order)
{
    struct craft_sim *s = fresh();
    struct craft_entry a = cmd(2, 1, "A");
    CHECK_OK(craft__sim_test_fake_append(s, 1, &a, 1, false));
    expect_violation(s, craft__sim_test_fake_apply(s, 1, &a), "next to apply was 1");
    craft_sim_free(s);
}

TEST(applying_an_entry_not_in_the_log)
{
    struct craft_sim *s = fresh();
    const struct craft_entry *first = craft_node_entry(craft_sim_node(s, 1), 1);
    CHECK(first != NULL);
    struct craft_entry forged = *first;
    forged.data = "forged";
    forged.size = 6;
    expect_violation(s, craft__sim_test_fake_apply(s, 1, &forged), "not the entry its log");
    craft_sim_free(s);
}

TEST(commit_index_never_decreases)
{
    struct craft_sim *s = fresh();
    struct craft_entry a = cmd(2, 1, "A");
    CHECK_OK(craft__sim_test_fake_append(s, 1, &a, 1, false));
    CHECK_OK(craft__sim_test_fake_commit(s, 1, 2, 1));
    expect_violation(s, craft__sim_test_fake_commit(s, 1, 1, 1), "went back");
    craft_sim_free(s);
}

TEST(commit_beyond_the_log)
{
    struct craft_sim *s = fresh();
    expect_violation(s, craft__sim_test_fake_commit(s, 1, 5, 1), "beyond its last log entry");
    craft_sim_free(s);
}

TEST(durable_vote_never_changes_within_a_term)
{
    struct craft_sim *s = fresh();
    struct craft_hard_state hs = {.term = 5, .vote = 2, .commit = 0};
    CHECK_OK(craft__sim_test_fake_durable(s, 1, &hs));
    hs.commit = 1; /* the commit hint may change */
    CHECK_OK(craft__sim_test_fake_durable(s, 1, &hs));
    hs.vote = 3;
    expect_violation(s, craft__sim_test_fake_durable(s, 1, &hs), "changed its persisted vote");
    craft_sim_free(s);
}

TEST(durable_term_never_decreases)
{
    struct craft_sim *s = fresh();
    struct craft_hard_state hs = {.term = 5, .vote = 0, .commit = 0};
    CHECK_OK(craft__sim_test_fake_durable(s, 1, &hs));
    hs.term = 4;
    expect_violation(s, craft__sim_test_fake_durable(s, 1, &hs), "persisted term 4");
    craft_sim_free(s);
}

/* A CONFIG entry whose servers 1..n are voters, except those in learners (a mask). */
static struct craft_entry conf_entry(craft_index index, craft_term term, unsigned n,
                                     uint64_t learners, void **buf)
{
    struct craft_configuration c;
    craft_configuration_init(&c);
    for (unsigned id = 1; id <= n; id++) {
        char address[16];
        snprintf(address, sizeof(address), "sim-%u", id);
        craft_configuration_add(&c, NULL, id, address,
                                (learners >> (id - 1)) & 1 ? CRAFT_LEARNER : CRAFT_VOTER);
    }
    size_t size = 0;
    craft_configuration_encode(&c, NULL, buf, &size);
    craft_configuration_close(&c, NULL);
    struct craft_entry e = {
        .term = term, .index = index, .type = CRAFT_ENTRY_CONFIG, .data = *buf, .size = size};
    return e;
}

TEST(committed_configurations_change_by_one_voter)
{
    /* Bootstrap {1,2,3}; a committed configuration {1,2,3,4,5} adds two voters at once. */
    struct craft_sim *s = fresh();
    void *buf = NULL;
    struct craft_entry e = conf_entry(2, 1, 5, 0, &buf);
    CHECK_OK(craft__sim_test_fake_append(s, 1, &e, 1, false));
    expect_violation(s, craft__sim_test_fake_commit(s, 1, 2, 1), "more than one voter");
    craft_free(NULL, buf);
    craft_sim_free(s);
}

TEST(committed_configuration_with_one_more_voter_is_fine)
{
    struct craft_sim *s = fresh();
    void *buf = NULL;
    struct craft_entry e = conf_entry(2, 1, 4, 0, &buf);
    CHECK_OK(craft__sim_test_fake_append(s, 1, &e, 1, false));
    CHECK_OK(craft__sim_test_fake_commit(s, 1, 2, 1));
    craft_free(NULL, buf);
    craft_sim_free(s);
}

TEST(change_before_committing_an_entry_of_the_term)
{
    /* Ongaro's 2015 correction: n1, leader of term 2 with only entry 1/1 committed, must not
     * start a change. */
    struct craft_sim *s = fresh();
    struct craft_entry barrier = {.term = 2, .index = 2, .type = CRAFT_ENTRY_BARRIER};
    CHECK_OK(craft__sim_test_fake_append(s, 1, &barrier, 1, true));
    CHECK_OK(craft__sim_test_fake_commit(s, 1, 1, 2));
    void *buf = NULL;
    struct craft_entry e = conf_entry(3, 2, 3, 0x4, &buf); /* demote n3 */
    expect_violation(s, craft__sim_test_fake_conf_append(s, 1, &e, 1),
                     "before committing an entry of its term");
    craft_free(NULL, buf);
    craft_sim_free(s);
}

TEST(second_change_while_the_first_is_uncommitted)
{
    struct craft_sim *s = fresh();
    struct craft_entry barrier = {.term = 2, .index = 2, .type = CRAFT_ENTRY_BARRIER};
    CHECK_OK(craft__sim_test_fake_append(s, 1, &barrier, 1, true));
    CHECK_OK(craft__sim_test_fake_commit(s, 1, 2, 2));
    void *b1 = NULL, *b2 = NULL;
    struct craft_entry c1 = conf_entry(3, 2, 4, 0x8, &b1); /* add n4 as a learner */
    struct craft_entry c2 = conf_entry(4, 2, 4, 0, &b2);   /* promote it */
    CHECK_OK(craft__sim_test_fake_conf_append(s, 1, &c1, 2));
    expect_violation(s, craft__sim_test_fake_conf_append(s, 1, &c2, 2), "was not committed");
    craft_free(NULL, b1);
    craft_free(NULL, b2);
    craft_sim_free(s);
}

TEST(a_real_run_passes_the_full_check)
{
    struct craft_sim_options o;
    craft_sim_options_init(&o);
    o.n_nodes = 5;
    o.seed = 12;
    o.drop_rate = 0.05;
    o.dup_rate = 0.05;
    struct craft_sim *s;
    CHECK_OK(craft_sim_new(&o, &s));
    for (int k = 0; k < 50; k++) {
        craft_sim_propose(s, 0, "x", 1, NULL, NULL);
        CHECK_OK(craft_sim_run_for(s, 20));
    }
    CHECK(craft_sim_committed(s) > 10);
    CHECK_OK(craft_sim_check(s));
    craft_sim_free(s);
}

HARNESS_MAIN()
