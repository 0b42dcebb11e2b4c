/* Membership changes, one server at a time (thesis chapter 4), and leadership transfer (thesis
 * 3.10). */
#include "core_fixture.h"
#include "harness.h"

static void settle(struct fx *f, unsigned rounds)
{
    fx_rounds(f, rounds);
}

/* Thesis 4.2.1: a new server joins as a learner with an empty log, catches up without voting,
 * and is promoted once within promote_distance of the leader. */
TEST(add_learner_catch_up_promote)
{
    struct fx f;
    fx_init_with(&f, 4, 3, true, true);
    fx_empty(&f, 4); /* started empty: waits to be added */
    /* The bootstrap configuration already names 4 as a learner; rebuild with 3 servers. */
    for (craft_id i = 1; i <= 3; i++) {
        fx_boot(&f, i, 1, NULL, 0, 3);
    }
    f.n = 4;
    fx_elect(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    for (int k = 0; k < 20; k++) {
        CHECK_OK(fx_propose(&f, 1, "before"));
    }
    fx_deliver_all(&f);
    craft_index idx;
    CHECK_EQ(craft_promote(f.node[1], 4, NULL), CRAFT_ENOTFOUND);
    CHECK_OK(craft_add_server(f.node[1], 4, "127.0.0.1:9004", false, &idx));
    fx_drain(&f, 1);
    settle(&f, 5);
    CHECK_EQ(craft_node_last_index(f.node[4]), craft_node_last_index(f.node[1]));
    const struct craft_server *s = craft_configuration_get(craft_node_configuration(f.node[4], NULL), 4);
    CHECK(s != NULL && s->role == CRAFT_LEARNER);
    CHECK_EQ(craft_node_role(f.node[4]), CRAFT_FOLLOWER);
    CHECK_OK(craft_promote(f.node[1], 4, &idx));
    fx_drain(&f, 1);
    settle(&f, 5);
    s = craft_configuration_get(craft_node_configuration(f.node[2], NULL), 4);
    CHECK(s != NULL && s->role == CRAFT_VOTER);
    CHECK_EQ(craft_configuration_voters(craft_node_configuration(f.node[1], NULL)), 4);
    fx_close(&f);
}

/* A learner that has not caught up cannot be promoted. */
TEST(promote_refused_until_caught_up)
{
    struct fx f;
    fx_init_with(&f, 4, 3, true, true);
    for (craft_id i = 1; i <= 3; i++) {
        fx_boot(&f, i, 1, NULL, 0, 3);
    }
    fx_empty(&f, 4);
    fx_elect(&f, 1);
    f.down[4] = true;
    CHECK_OK(craft_add_server(f.node[1], 4, "x:4", false, NULL));
    fx_drain(&f, 1);
    fx_deliver_all(&f);
    struct craft_buf b[200];
    for (int i = 0; i < 200; i++) {
        b[i].base = "y";
        b[i].len = 1;
    }
    CHECK_OK(craft_propose_batch(f.node[1], b, 200, NULL, NULL));
    fx_drain(&f, 1);
    fx_deliver_all(&f);
    CHECK_EQ(craft_promote(f.node[1], 4, NULL), CRAFT_ESTATE);
    fx_close(&f);
}

/* Ongaro's 2015 correction: a new leader must commit an entry of its own term before starting
 * a change; and only one change may be uncommitted at a time. */
TEST(change_needs_own_term_commit_and_one_at_a_time)
{
    struct fx f;
    fx_init(&f, 3);
    f.manual_persist[2] = f.manual_persist[3] = true; /* nothing gets committed */
    fx_elect(&f, 1);
    fx_persist(&f, 2);
    fx_persist(&f, 3);
    fx_deliver_all(&f);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    /* The barrier is sent, but its acknowledgements are held back. */
    CHECK(craft_node_commit(f.node[1]) < craft_node_last_index(f.node[1]));
    CHECK_EQ(craft_add_server(f.node[1], 9, "x:9", false, NULL), CRAFT_EBUSY);
    fx_persist(&f, 2);
    fx_persist(&f, 3);
    fx_deliver_all(&f);
    CHECK_EQ(craft_node_commit(f.node[1]), craft_node_last_index(f.node[1]));
    f.manual_persist[2] = f.manual_persist[3] = false;
    f.down[2] = f.down[3] = true;
    CHECK_OK(craft_add_server(f.node[1], 9, "x:9", false, NULL));
    CHECK_EQ(craft_add_server(f.node[1], 8, "x:8", false, NULL), CRAFT_EBUSY);
    CHECK_EQ(craft_remove_server(f.node[1], 3, NULL), CRAFT_EBUSY);
    CHECK_EQ(craft_add_server(f.node[2], 8, "x:8", false, NULL), CRAFT_ENOTLEADER);
    fx_close(&f);
}

/* Removing a follower: the cluster goes on with the rest, and the removed server, which keeps
 * timing out, cannot disrupt it (pre-vote plus thesis 4.2.3). */
TEST(removed_server_cannot_disrupt)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    fx_rounds(&f, 2);
    craft_term t = craft_node_term(f.node[1]);
    f.cut[1][3] = true; /* 3 never learns it was removed */
    CHECK_OK(craft_remove_server(f.node[1], 3, NULL));
    fx_drain(&f, 1);
    fx_rounds(&f, 3);
    CHECK_EQ(craft_node_configuration(f.node[1], NULL)->n, 2);
    for (int r = 0; r < 100; r++) {
        fx_rounds(&f, 1);
    }
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    CHECK_EQ(craft_node_term(f.node[1]), t);
    CHECK_OK(fx_propose(&f, 1, "still works"));
    fx_deliver_all(&f);
    CHECK_EQ(craft_node_commit(f.node[1]), craft_node_last_index(f.node[1]));
    fx_close(&f);
}

/* Issue regression: a removed server whose term is higher still does not unseat the leader. */
TEST(removed_server_with_higher_term_does_not_unseat_leader)
{
    struct fx f;
    fx_init_with(&f, 3, 3, false, true);
    fx_elect(&f, 1);
    fx_rounds(&f, 2);
    craft_term t = craft_node_term(f.node[1]);
    f.cut[1][3] = true;
    CHECK_OK(craft_remove_server(f.node[1], 3, NULL));
    fx_drain(&f, 1);
    fx_rounds(&f, 3);
    /* 3 (no pre-vote) campaigns again and again, raising its term. */
    for (int r = 0; r < 100; r++) {
        fx_rounds(&f, 1);
    }
    CHECK(craft_node_term(f.node[3]) > t);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    CHECK_EQ(craft_node_term(f.node[1]), t);
    fx_close(&f);
}

/* Thesis 4.2.2: a leader that removes itself keeps leading until the change commits, without
 * counting itself, then steps down; the others elect a leader among themselves. */
TEST(leader_removes_itself_and_steps_down)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    fx_rounds(&f, 2);
    CHECK_OK(craft_remove_server(f.node[1], 1, NULL));
    fx_drain(&f, 1);
    fx_deliver_all(&f);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_FOLLOWER);
    f.down[1] = true;
    for (int r = 0; r < 60; r++) {
        fx_rounds(&f, 1);
    }
    CHECK(craft_node_role(f.node[2]) == CRAFT_LEADER || craft_node_role(f.node[3]) == CRAFT_LEADER);
    fx_close(&f);
}

/* Removing the last voter would leave a cluster that can never elect a leader. */
TEST(cannot_remove_last_voter)
{
    struct fx f;
    fx_init(&f, 1);
    fx_elect(&f, 1);
    CHECK_EQ(craft_remove_server(f.node[1], 1, NULL), CRAFT_EINVAL);
    fx_close(&f);
}

/* Issue item 7: a learner added with auto-promote becomes a voter once it has caught up for
 * promote_rounds rounds, with no further call. */
TEST(auto_promotion)
{
    struct fx f;
    fx_init_with(&f, 4, 3, true, true);
    for (craft_id i = 1; i <= 3; i++) {
        fx_boot(&f, i, 1, NULL, 0, 3);
    }
    fx_empty(&f, 4);
    fx_elect(&f, 1);
    fx_rounds(&f, 2);
    CHECK_OK(craft_add_server(f.node[1], 4, "x:4", true, NULL));
    fx_drain(&f, 1);
    for (int r = 0; r < 10; r++) {
        fx_rounds(&f, 1);
    }
    const struct craft_server *s = craft_configuration_get(craft_node_configuration(f.node[1], NULL), 4);
    CHECK(s != NULL && s->role == CRAFT_VOTER);
    CHECK_EQ(craft_configuration_voters(craft_node_configuration(f.node[4], NULL)), 4);
    fx_close(&f);
}

/* Demotion (thesis 4.2, the inverse of promotion): a voter becomes a learner through one
 * configuration entry; it keeps receiving entries but no longer votes nor counts toward a
 * commit, and is not promoted back automatically. */
TEST(demote_voter_to_learner)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    fx_rounds(&f, 2);
    craft_index idx = 0;
    CHECK_OK(craft_demote(f.node[1], 3, &idx));
    CHECK_EQ(idx, craft_node_last_index(f.node[1]));
    fx_drain(&f, 1);
    fx_rounds(&f, 3);
    CHECK(craft_node_commit(f.node[1]) >= idx);
    for (craft_id i = 1; i <= 3; i++) {
        const struct craft_configuration *c = craft_node_configuration(f.node[i], NULL);
        const struct craft_server *s = craft_configuration_get(c, 3);
        CHECK(s != NULL && s->role == CRAFT_LEARNER);
        CHECK(!(s->flags & CRAFT_SERVER_AUTO_PROMOTE));
        CHECK_EQ(craft_configuration_voters(c), 2);
    }
    /* Still replicated to... */
    CHECK_OK(fx_propose(&f, 1, "after"));
    fx_deliver_all(&f);
    CHECK_EQ(craft_node_last_index(f.node[3]), craft_node_last_index(f.node[1]));
    /* ...but with 2 silent, nothing commits: 3's answers no longer count (a majority of the
     * two voters needs both). */
    f.down[2] = true;
    craft_index before = craft_node_commit(f.node[1]);
    CHECK_OK(fx_propose(&f, 1, "needs 2"));
    fx_deliver_all(&f);
    CHECK_EQ(craft_node_commit(f.node[1]), before);
    f.down[2] = false;
    for (int r = 0; r < 30 && craft_node_commit(f.node[1]) == before; r++) {
        fx_rounds(&f, 1); /* the lost AppendEntries is sent again */
    }
    CHECK(craft_node_commit(f.node[1]) > before);
    /* Promoted back only on request, once caught up. */
    for (int r = 0; r < 5; r++) {
        fx_rounds(&f, 1);
    }
    const struct craft_server *s =
        craft_configuration_get(craft_node_configuration(f.node[1], NULL), 3);
    CHECK(s->role == CRAFT_LEARNER);
    CHECK_OK(craft_promote(f.node[1], 3, NULL));
    fx_drain(&f, 1);
    fx_rounds(&f, 3);
    CHECK_EQ(craft_configuration_voters(craft_node_configuration(f.node[3], NULL)), 3);
    fx_close(&f);
}

/* The same rules as the other changes: leader only, one uncommitted change at a time, a known
 * voter, never the last voter. */
TEST(demote_rules)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    fx_rounds(&f, 2);
    CHECK_EQ(craft_demote(f.node[2], 3, NULL), CRAFT_ENOTLEADER);
    CHECK_EQ(craft_demote(f.node[1], 9, NULL), CRAFT_ENOTFOUND);
    CHECK_OK(craft_demote(f.node[1], 3, NULL));
    /* Uncommitted: a second change waits. */
    CHECK_EQ(craft_demote(f.node[1], 2, NULL), CRAFT_EBUSY);
    fx_drain(&f, 1);
    fx_rounds(&f, 3);
    CHECK_EQ(craft_demote(f.node[1], 3, NULL), CRAFT_EINVAL); /* already a learner */
    CHECK_OK(craft_demote(f.node[1], 2, NULL));
    fx_drain(&f, 1);
    fx_rounds(&f, 3);
    CHECK_EQ(craft_configuration_voters(craft_node_configuration(f.node[1], NULL)), 1);
    CHECK_EQ(craft_demote(f.node[1], 1, NULL), CRAFT_EINVAL); /* the last voter */
    fx_close(&f);
}

/* Thesis 4.2.2 applied to demotion: a leader that demotes itself keeps leading until the
 * change commits (without counting itself), then steps down; a voter takes over, and the old
 * leader, now a learner, never campaigns. */
TEST(leader_demotes_itself_and_steps_down)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    fx_rounds(&f, 2);
    CHECK_OK(craft_demote(f.node[1], 1, NULL));
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    fx_drain(&f, 1);
    fx_deliver_all(&f);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_FOLLOWER);
    for (int r = 0; r < 60; r++) {
        fx_rounds(&f, 1);
    }
    CHECK(craft_node_role(f.node[2]) == CRAFT_LEADER || craft_node_role(f.node[3]) == CRAFT_LEADER);
    CHECK(craft_node_role(f.node[1]) == CRAFT_FOLLOWER);
    const struct craft_server *s =
        craft_configuration_get(craft_node_configuration(f.node[2], NULL), 1);
    CHECK(s != NULL && s->role == CRAFT_LEARNER);
    fx_close(&f);
}

/* Found by the simulator (soak seed 5002 with demotions): leader L of {L, F} demotes itself
 * while F cannot hear it, and loses its leadership before the change commits. F still has
 * {L, F} and needs L's vote, which L refuses (its log is longer); L, a learner of its own
 * latest configuration, must still campaign (as a leader that removed itself, thesis 4.2.2),
 * win with F's vote, commit the change and step down. */
TEST(demoted_leader_that_lost_leadership_still_campaigns)
{
    struct fx f;
    fx_init(&f, 2);
    fx_elect(&f, 1);
    fx_rounds(&f, 2);
    f.down[2] = true;
    CHECK_OK(craft_demote(f.node[1], 1, NULL));
    fx_drain(&f, 1);
    fx_deliver_all(&f);
    for (int r = 0; r < 40 && craft_node_role(f.node[1]) == CRAFT_LEADER; r++) {
        fx_rounds(&f, 1); /* check-quorum: F is silent */
    }
    CHECK(craft_node_role(f.node[1]) != CRAFT_LEADER);
    f.down[2] = false;
    craft_index conf_index = 0;
    craft_node_configuration(f.node[1], &conf_index);
    for (int r = 0; r < 200 && craft_node_commit(f.node[2]) < conf_index; r++) {
        fx_rounds(&f, 1);
    }
    CHECK(craft_node_commit(f.node[2]) >= conf_index);
    const struct craft_server *s =
        craft_configuration_get(craft_node_configuration(f.node[2], NULL), 1);
    CHECK(s != NULL && s->role == CRAFT_LEARNER);
    for (int r = 0; r < 200 && craft_node_role(f.node[2]) != CRAFT_LEADER; r++) {
        fx_rounds(&f, 1);
    }
    CHECK_EQ(craft_node_role(f.node[2]), CRAFT_LEADER);
    CHECK(craft_node_role(f.node[1]) != CRAFT_LEADER);
    fx_close(&f);
}

/* Thesis 3.10: transfer to an up-to-date follower: it wins the next term at once; proposals
 * are refused while the transfer is under way. */
TEST(leadership_transfer)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    fx_rounds(&f, 2);
    craft_term t = craft_node_term(f.node[1]);
    CHECK_OK(craft_transfer_leadership(f.node[1], 3));
    CHECK_EQ(craft_node_transfer_target(f.node[1]), 3);
    CHECK_EQ(craft_propose(f.node[1], "x", 1, NULL, NULL), CRAFT_EBUSY);
    CHECK_EQ(craft_transfer_leadership(f.node[1], 2), CRAFT_EBUSY);
    fx_drain(&f, 1);
    fx_deliver_all(&f);
    CHECK_EQ(craft_node_role(f.node[3]), CRAFT_LEADER);
    CHECK_EQ(craft_node_term(f.node[3]), t + 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_FOLLOWER);
    CHECK_EQ(craft_node_transfer_target(f.node[1]), 0);
    fx_close(&f);
}

/* A lagging target is brought up to date first. */
TEST(leadership_transfer_to_lagging_target)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    f.down[3] = true;
    for (int k = 0; k < 30; k++) {
        CHECK_OK(fx_propose(&f, 1, "x"));
    }
    fx_deliver_all(&f);
    f.down[3] = false;
    CHECK_OK(craft_transfer_leadership(f.node[1], 3));
    fx_drain(&f, 1);
    for (int r = 0; r < 5 && craft_node_role(f.node[3]) != CRAFT_LEADER; r++) {
        fx_rounds(&f, 1);
    }
    CHECK_EQ(craft_node_role(f.node[3]), CRAFT_LEADER);
    fx_close(&f);
}

/* The transfer is abandoned after an election timeout if the target does not take over. */
TEST(leadership_transfer_times_out)
{
    struct fx f;
    fx_init(&f, 3);
    fx_elect(&f, 1);
    fx_rounds(&f, 1);
    f.down[3] = true;
    CHECK_OK(craft_transfer_leadership(f.node[1], 3));
    CHECK_EQ(craft_transfer_leadership(f.node[1], 1), CRAFT_EBUSY);
    for (unsigned r = 0; r < f.cfg[1].election_ticks + 1; r++) {
        fx_rounds(&f, 1);
    }
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    CHECK_EQ(craft_node_transfer_target(f.node[1]), 0);
    CHECK_OK(fx_propose(&f, 1, "accepted again"));
    CHECK_EQ(craft_transfer_leadership(f.node[2], 1), CRAFT_ENOTLEADER);
    fx_close(&f);
}

/* A learner that never answered is not caught up, however short the log (regression:
 * simulator seed 2781 promoted a silent learner because match 0 was within promote_distance). */
TEST(silent_learner_is_never_promoted)
{
    struct fx f;
    fx_init_with(&f, 2, 1, true, true);
    fx_boot(&f, 1, 1, NULL, 0, 1);
    fx_empty(&f, 2);
    fx_elect(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    f.cut[2][1] = true; /* 2 hears 1, its answers are lost */
    CHECK_OK(craft_add_server(f.node[1], 2, "x:2", true, NULL));
    fx_drain(&f, 1);
    for (int r = 0; r < 20; r++) {
        fx_rounds(&f, 1);
    }
    const struct craft_server *s = craft_configuration_get(craft_node_configuration(f.node[1], NULL), 2);
    CHECK(s != NULL && s->role == CRAFT_LEARNER);
    CHECK_EQ(craft_promote(f.node[1], 2, NULL), CRAFT_ESTATE);
    f.cut[2][1] = false; /* once it answers, it is promoted */
    for (int r = 0; r < 10; r++) {
        fx_rounds(&f, 1);
    }
    s = craft_configuration_get(craft_node_configuration(f.node[1], NULL), 2);
    CHECK(s != NULL && s->role == CRAFT_VOTER);
    fx_close(&f);
}

HARNESS_MAIN()
