/* Leader election: paper section 5.2, pre-vote (thesis 9.6), check-quorum (thesis 6.2) and the
 * leader-alive rule for vote requests (thesis 4.2.3). */
#include "core_fixture.h"
#include "harness.h"

/* 5.2: "If a follower receives no communication over a period of time called the election
 * timeout, then it ... begins an election": it increments its term, votes for itself and sends
 * RequestVote to every other server. */
TEST(s5_2_follower_times_out_and_becomes_candidate)
{
    struct fx f;
    fx_init_with(&f, 3, 3, false, false);
    struct craft_node *n = f.node[1];
    craft_term term = craft_node_term(n);
    unsigned ticks = 0;
    while (craft_node_role(n) == CRAFT_FOLLOWER && ticks < 100) {
        fx_tick(&f, 1, 1);
        ticks++;
    }
    CHECK_EQ(craft_node_role(n), CRAFT_CANDIDATE);
    CHECK_EQ(craft_node_term(n), term + 1);
    CHECK_EQ(craft_node_vote(n), 1);
    CHECK(ticks >= f.cfg[1].election_ticks && ticks < 2 * f.cfg[1].election_ticks + 1);
    unsigned votes = 0;
    struct craft_message m;
    while (fx_deliver_one(&f, &m)) {
        if (m.type == CRAFT_MSG_REQUEST_VOTE && m.from == 1) {
            votes++;
            CHECK(!m.u.request_vote.pre_vote);
            CHECK_EQ(m.term, term + 1);
        }
    }
    CHECK_EQ(votes, 2);
    CHECK_EQ(craft_node_role(n), CRAFT_LEADER);
    fx_close(&f);
}

/* 5.2: election timeouts are chosen randomly from a fixed interval, so different seeds give
 * different timeouts, always within [election_ticks, 2 * election_ticks). */
TEST(s5_2_election_timeout_is_randomized)
{
    bool seen[40] = {false};
    for (uint64_t seed = 1; seed <= 200; seed++) {
        struct craft_config c;
        craft_config_init(&c, 1);
        c.seed = seed;
        c.pre_vote = false;
        struct craft_configuration conf = fx_conf(3, 3);
        struct craft_boot b = {0};
        b.bootstrap = &conf;
        struct craft_node *n;
        CHECK_OK(craft_node_new(&c, &b, &n));
        unsigned t = 0;
        while (craft_node_role(n) == CRAFT_FOLLOWER && t < 100) {
            craft_tick(n);
            t++;
        }
        CHECK(t >= c.election_ticks && t < 2 * c.election_ticks);
        seen[t] = true;
        craft_node_free(n);
        craft_configuration_close(&conf, NULL);
    }
    unsigned distinct = 0;
    for (int i = 0; i < 40; i++) {
        distinct += seen[i];
    }
    CHECK(distinct >= 8);
}

/* 5.2: a candidate wins once it has votes from a majority, and then sends heartbeats; as a new
 * leader it appends a no-op entry of its term (5.4.2). */
TEST(s5_2_candidate_with_majority_becomes_leader)
{
    struct fx f;
    fx_init(&f, 5);
    fx_elect(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    const struct craft_entry *e = craft_node_entry(f.node[1], craft_node_last_index(f.node[1]));
    CHECK(e != NULL);
    CHECK_EQ(e->type, CRAFT_ENTRY_BARRIER);
    CHECK_EQ(e->term, craft_node_term(f.node[1]));
    for (int i = 2; i <= 5; i++) {
        CHECK_EQ(craft_node_leader(f.node[i]), 1);
        CHECK_EQ(craft_node_role(f.node[i]), CRAFT_FOLLOWER);
    }
    fx_close(&f);
}

/* 5.2: without a majority (two of five reachable) a candidate does not win. */
TEST(s5_2_candidate_without_majority_does_not_win)
{
    struct fx f;
    fx_init_with(&f, 5, 5, false, false);
    f.down[3] = f.down[4] = f.down[5] = true;
    fx_elect(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_CANDIDATE);
    fx_close(&f);
}

/* 5.2 / Figure 2: each server votes for at most one candidate in a term, first come first
 * served. */
TEST(s5_2_one_vote_per_term)
{
    struct fx f;
    fx_init_with(&f, 3, 3, false, false);
    struct craft_message rv = {0};
    rv.type = CRAFT_MSG_REQUEST_VOTE;
    rv.to = 3;
    rv.term = 5;
    rv.u.request_vote.last_log_index = 1;
    rv.u.request_vote.last_log_term = 1;
    rv.from = 1;
    CHECK_OK(craft_step(f.node[3], &rv));
    rv.from = 2;
    CHECK_OK(craft_step(f.node[3], &rv));
    CHECK_EQ(craft_node_vote(f.node[3]), 1);
    fx_drain(&f, 3);
    struct craft_message m;
    unsigned granted = 0, rejected = 0;
    while (f.head != f.tail) {
        m = f.queue[f.head % FX_QUEUE].m;
        if (m.type == CRAFT_MSG_REQUEST_VOTE_RESULT) {
            if (m.u.request_vote_result.granted) {
                granted++;
                CHECK_EQ(m.to, 1);
            } else {
                rejected++;
                CHECK_EQ(m.to, 2);
            }
        }
        fx_free_msg(&f.queue[f.head++ % FX_QUEUE]);
    }
    CHECK_EQ(granted, 1);
    CHECK_EQ(rejected, 1);
    fx_close(&f);
}

/* Figure 2: a vote is answered only after it is on stable storage. */
TEST(s5_2_vote_granted_only_after_persisted)
{
    struct fx f;
    fx_init_with(&f, 3, 3, false, false);
    f.manual_persist[3] = true;
    struct craft_message rv = {0};
    rv.type = CRAFT_MSG_REQUEST_VOTE;
    rv.from = 1;
    rv.to = 3;
    rv.term = 5;
    rv.u.request_vote.last_log_index = 1;
    rv.u.request_vote.last_log_term = 1;
    CHECK_OK(craft_step(f.node[3], &rv));
    fx_drain(&f, 3);
    CHECK_EQ(f.tail - f.head, 0); /* nothing may leave yet */
    fx_persist(&f, 3);
    CHECK_EQ(f.tail - f.head, 1);
    CHECK(f.queue[f.head % FX_QUEUE].m.u.request_vote_result.granted);
    fx_close(&f);
}

/* 5.2: a candidate that receives AppendEntries from a leader of its term returns to follower. */
TEST(s5_2_candidate_steps_down_for_leader_of_same_term)
{
    struct fx f;
    fx_init_with(&f, 3, 3, false, false);
    f.down[2] = f.down[3] = true;
    fx_elect(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_CANDIDATE);
    struct craft_message ae = {0};
    ae.type = CRAFT_MSG_APPEND_ENTRIES;
    ae.from = 2;
    ae.to = 1;
    ae.term = craft_node_term(f.node[1]);
    CHECK_OK(craft_step(f.node[1], &ae));
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_FOLLOWER);
    CHECK_EQ(craft_node_leader(f.node[1]), 2);
    fx_close(&f);
}

/* 5.1: a server that sees a higher term adopts it and becomes a follower; a stale message is
 * rejected. */
TEST(s5_1_higher_term_makes_leader_step_down)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    craft_term t = craft_node_term(f.node[1]);
    struct craft_message r = {0};
    r.type = CRAFT_MSG_APPEND_ENTRIES_RESULT;
    r.from = 2;
    r.to = 1;
    r.term = t + 3;
    CHECK_OK(craft_step(f.node[1], &r));
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_FOLLOWER);
    CHECK_EQ(craft_node_term(f.node[1]), t + 3);
    fx_close(&f);
}

/* Thesis 9.6: with pre-vote a timed-out follower first asks at term + 1 without changing its
 * own term; a partitioned server therefore cannot inflate its term. */
TEST(pre_vote_does_not_raise_term_while_partitioned)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    craft_term t = craft_node_term(f.node[3]);
    f.cut[3][1] = f.cut[3][2] = f.cut[1][3] = f.cut[2][3] = true;
    for (int r = 0; r < 10; r++) {
        fx_tick(&f, 3, 30);
        fx_deliver_all(&f);
    }
    CHECK_EQ(craft_node_term(f.node[3]), t);
    CHECK(craft_node_role(f.node[3]) == CRAFT_PRE_CANDIDATE ||
          craft_node_role(f.node[3]) == CRAFT_FOLLOWER);
    /* Healing: the old leader keeps its place and term. */
    memset(f.cut, 0, sizeof f.cut);
    fx_rounds(&f, 5);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    CHECK_EQ(craft_node_term(f.node[1]), t);
    CHECK_EQ(craft_node_leader(f.node[3]), 1);
    fx_close(&f);
}

/* Without pre-vote the same partition raises the term, and the rejoining server deposes the
 * leader: the behaviour pre-vote exists to prevent (a lab can show it). */
TEST(without_pre_vote_rejoining_server_disrupts)
{
    struct fx f;
    fx_init_with(&f, 3, 3, false, false);
    fx_elect(&f, 1);
    craft_term t = craft_node_term(f.node[1]);
    f.cut[3][1] = f.cut[3][2] = f.cut[1][3] = f.cut[2][3] = true;
    fx_tick(&f, 3, 100);
    fx_flush(&f);
    CHECK(craft_node_term(f.node[3]) > t);
    memset(f.cut, 0, sizeof f.cut);
    fx_rounds(&f, 3);
    CHECK(craft_node_term(f.node[1]) > t);
    fx_close(&f);
}

/* Thesis 9.6: a pre-vote is granted only to a candidate whose log is up to date, and it binds
 * nothing: the voter's term and vote do not change. */
TEST(pre_vote_changes_no_state)
{
    struct fx f;
    fx_init_with(&f, 3, 3, true, false);
    struct craft_message rv = {0};
    rv.type = CRAFT_MSG_REQUEST_VOTE;
    rv.from = 2;
    rv.to = 3;
    rv.term = 7;
    rv.u.request_vote.pre_vote = true;
    rv.u.request_vote.last_log_index = 1;
    rv.u.request_vote.last_log_term = 1;
    craft_term t = craft_node_term(f.node[3]);
    CHECK_OK(craft_step(f.node[3], &rv));
    CHECK_EQ(craft_node_term(f.node[3]), t);
    CHECK_EQ(craft_node_vote(f.node[3]), 0);
    fx_drain(&f, 3);
    CHECK_EQ(f.tail - f.head, 1);
    struct craft_message m = f.queue[f.head % FX_QUEUE].m;
    CHECK(m.u.request_vote_result.granted);
    CHECK(m.u.request_vote_result.pre_vote);
    CHECK_EQ(m.term, 7);
    fx_close(&f);
}

/* Thesis 4.2.3: a server that heard from a live leader within the election timeout ignores
 * vote requests, even of a higher term: a removed or partitioned server cannot depose it. */
TEST(vote_request_ignored_while_leader_alive)
{
    struct fx f;
    fx_init_with(&f, 3, 3, false, true);
    fx_elect(&f, 1);
    craft_term t = craft_node_term(f.node[2]);
    struct craft_message rv = {0};
    rv.type = CRAFT_MSG_REQUEST_VOTE;
    rv.from = 3;
    rv.to = 2;
    rv.term = t + 5;
    rv.u.request_vote.last_log_index = 100;
    rv.u.request_vote.last_log_term = t;
    CHECK_OK(craft_step(f.node[2], &rv));
    CHECK_EQ(craft_node_term(f.node[2]), t);
    CHECK_EQ(craft_node_leader(f.node[2]), 1);
    rv.to = 1;
    CHECK_OK(craft_step(f.node[1], &rv));
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    CHECK_EQ(craft_node_term(f.node[1]), t);
    /* A leadership transfer overrides the rule (thesis 3.10). */
    rv.to = 2;
    rv.u.request_vote.transfer = true;
    CHECK_OK(craft_step(f.node[2], &rv));
    CHECK_EQ(craft_node_term(f.node[2]), t + 5);
    fx_close(&f);
}

/* Thesis 6.2: with check-quorum, a leader that has not heard from a majority within an
 * election timeout steps down. */
TEST(check_quorum_leader_steps_down_when_isolated)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    f.down[2] = f.down[3] = true;
    for (unsigned i = 0; i < 2 * f.cfg[1].election_ticks + 1; i++) {
        fx_tick(&f, 1, 1);
        fx_deliver_all(&f);
    }
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_FOLLOWER);
    fx_close(&f);
}

/* ... and without check-quorum it stays leader forever, unaware (a lab can show it). */
TEST(without_check_quorum_isolated_leader_stays)
{
    struct fx f;
    fx_init_with(&f, 3, 3, true, false);
    fx_elect(&f, 1);
    f.down[2] = f.down[3] = true;
    for (unsigned i = 0; i < 10 * f.cfg[1].election_ticks; i++) {
        fx_tick(&f, 1, 1);
        fx_deliver_all(&f);
    }
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    fx_close(&f);
}

/* A learner (non-voter, thesis 4.2.1) never campaigns and does not count toward a majority. */
TEST(learner_never_campaigns)
{
    struct fx f;
    fx_init_with(&f, 3, 2, true, true);
    fx_tick(&f, 3, 200);
    CHECK_EQ(craft_node_role(f.node[3]), CRAFT_FOLLOWER);
    CHECK_EQ(f.tail - f.head, 0);
    fx_elect(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    fx_close(&f);
}

/* A server started empty and without a bootstrap configuration waits without campaigning. */
TEST(empty_node_without_bootstrap_waits)
{
    struct craft_config c;
    craft_config_init(&c, 4);
    struct craft_node *n;
    CHECK_OK(craft_node_new(&c, NULL, &n));
    for (int i = 0; i < 1000; i++) {
        CHECK_OK(craft_tick(n));
    }
    CHECK_EQ(craft_node_role(n), CRAFT_FOLLOWER);
    CHECK(!craft_has_update(n));
    craft_node_free(n);
}

/* A single-voter cluster elects itself and commits alone. */
TEST(single_node_cluster_elects_itself_and_commits)
{
    struct fx f;
    fx_init(&f, 1);
    fx_elect(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    CHECK_OK(fx_propose(&f, 1, "x"));
    CHECK_EQ(craft_node_commit(f.node[1]), 3);
    CHECK_EQ(f.applied_index[1], 3);
    fx_close(&f);
}

/* Figure 2: a vote request of an older term is answered "no" with our term, so that the
 * candidate catches up (regression: simulator seeds 2663, 7495 deadlocked when it was
 * dropped silently). */
TEST(stale_vote_request_answered_with_current_term)
{
    struct fx f;
    fx_init_with(&f, 3, 3, false, false);
    struct craft_message rv = {0};
    rv.type = CRAFT_MSG_REQUEST_VOTE;
    rv.from = 2;
    rv.to = 3;
    rv.term = 9;
    CHECK_OK(craft_step(f.node[3], &rv));
    fx_flush(&f);
    rv.term = 4;
    CHECK_OK(craft_step(f.node[3], &rv));
    fx_drain(&f, 3);
    bool answered = false;
    while (f.head != f.tail) {
        struct craft_message m = f.queue[f.head % FX_QUEUE].m;
        if (m.type == CRAFT_MSG_REQUEST_VOTE_RESULT && !m.u.request_vote_result.granted) {
            CHECK_EQ(m.term, 9);
            CHECK_EQ(m.to, 2);
            answered = true;
        }
        fx_free_msg(&f.queue[f.head++ % FX_QUEUE]);
    }
    CHECK(answered);
    fx_close(&f);
}

/* A server that is not a voter in its own configuration cannot campaign, but once it has not
 * heard from a leader for an election timeout it grants votes again (regression: it used to
 * reset its timer and ignore vote requests forever, simulator seed 2781). */
TEST(non_voter_grants_votes_after_leader_silence)
{
    struct fx f;
    fx_init_with(&f, 3, 2, false, true); /* 3 is a learner in its own configuration */
    fx_elect(&f, 1);
    fx_rounds(&f, 2);
    CHECK_EQ(craft_node_leader(f.node[3]), 1);
    f.down[1] = true;
    fx_tick(&f, 3, 3 * f.cfg[3].election_ticks);
    fx_flush(&f);
    struct craft_message rv = {0};
    rv.type = CRAFT_MSG_REQUEST_VOTE;
    rv.from = 2;
    rv.to = 3;
    rv.term = craft_node_term(f.node[3]) + 1;
    rv.u.request_vote.last_log_index = craft_node_last_index(f.node[3]);
    rv.u.request_vote.last_log_term = craft_node_term_at(f.node[3], rv.u.request_vote.last_log_index);
    CHECK_OK(craft_step(f.node[3], &rv));
    CHECK_EQ(craft_node_vote(f.node[3]), 2);
    fx_close(&f);
}

HARNESS_MAIN()
