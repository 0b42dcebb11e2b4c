/*
 * The simulator's control API for test authors (craft/sim.h, "Control", "Observation for test
 * authors", "Bring your own core"): rules that hold, drop, duplicate and delay messages, the
 * held messages delivered in a chosen order, messages injected by hand, a node made to
 * campaign, clocks stopped, sped up and ticked by hand, per-node options at the next boot,
 * per-link counters, status and the durable store; and a core brought by the user run in place
 * of craft's, here craft's own behind the table (so every invariant still holds and a soak-like
 * schedule behaves like the native one).
 */
#include "harness.h"

#include <inttypes.h>

#include "craft/sim.h"

static struct craft_sim *make(struct craft_sim_options *o)
{
    struct craft_sim *s = NULL;
    return craft_sim_new(o, &s) == 0 ? s : NULL;
}

static bool has_leader(struct craft_sim *s, void *ud)
{
    (void)ud;
    return craft_sim_leader(s) != 0;
}

static uint32_t type_bit(int type)
{
    return 1u << type;
}

/* With every clock stopped nothing happens until the script says so. */
static struct craft_sim *manual(unsigned n)
{
    struct craft_sim_options o;
    craft_sim_options_init(&o);
    o.n_nodes = n;
    o.seed = 7;
    struct craft_sim *s = make(&o);
    if (s != NULL && craft_sim_set_clock(s, 0, 0) != 0) {
        craft_sim_free(s);
        return NULL;
    }
    return s;
}

TEST(stopped_clocks_and_campaign_elect_the_chosen_node)
{
    struct craft_sim *s = manual(3);
    CHECK(s != NULL);
    CHECK_OK(craft_sim_run_for(s, 5000));
    CHECK_EQ(craft_sim_leader(s), 0); /* no clock: nobody times out */
    CHECK_OK(craft_sim_campaign(s, 2));
    CHECK_OK(craft_sim_run_for(s, 100)); /* messages and disks still run */
    CHECK_EQ(craft_sim_leader(s), 2);
    CHECK_EQ(craft_sim_campaign(s, 2), CRAFT_ESTATE); /* leads already */
    struct craft_sim_node_status st;
    CHECK_OK(craft_sim_status(s, 2, &st));
    CHECK_EQ(st.role, CRAFT_LEADER);
    CHECK_EQ(st.voters, 7u);
    CHECK_EQ(st.boots, 1u);
    CHECK_OK(craft_sim_check(s));
    craft_sim_free(s);
}

TEST(hold_and_deliver_in_a_chosen_order)
{
    struct craft_sim *s = manual(3);
    CHECK(s != NULL);
    struct craft_sim_rule r = {.action = CRAFT_SIM_HOLD};
    uint64_t rule;
    CHECK_OK(craft_sim_rule_add(s, &r, &rule));
    CHECK_OK(craft_sim_campaign(s, 1));
    CHECK_OK(craft_sim_run_for(s, 50));
    /* Pre-vote requests to n2 and n3 wait. */
    struct craft_sim_held h[8];
    size_t n = craft_sim_held(s, NULL, h, 8);
    CHECK_EQ(n, 2u);
    CHECK_EQ(h[0].msg->type, CRAFT_MSG_REQUEST_VOTE);
    CHECK(h[0].msg->u.request_vote.pre_vote);
    CHECK_EQ(h[0].msg->to, 2);
    CHECK_EQ(h[1].msg->to, 3);
    /* Deliver only the one to n3: its answer is held in turn. */
    struct craft_sim_match to3 = {.to = 3};
    size_t done = 0;
    CHECK_OK(craft_sim_deliver(s, &to3, 0, &done));
    CHECK_EQ(done, 1u);
    struct craft_sim_match votes = {.types = type_bit(CRAFT_MSG_REQUEST_VOTE_RESULT)};
    CHECK_EQ(craft_sim_held(s, &votes, h, 8), 1u);
    CHECK(h[0].msg->u.request_vote_result.granted);
    /* Deliver everything until the leader is elected; the held request to n2 is discarded. */
    struct craft_sim_match to2 = {.to = 2};
    CHECK_OK(craft_sim_discard(s, &to2, &done));
    CHECK_EQ(done, 1u);
    for (int k = 0; k < 20 && craft_sim_leader(s) == 0; k++) {
        CHECK_OK(craft_sim_deliver(s, NULL, 0, NULL));
        CHECK_OK(craft_sim_run_for(s, 10)); /* disks */
    }
    CHECK_EQ(craft_sim_leader(s), 1);
    struct craft_sim_link_stats ls;
    CHECK_OK(craft_sim_link_stats(s, 1, 2, &ls));
    CHECK(ls.held >= 1 && ls.dropped >= 1);
    CHECK_OK(craft_sim_rule_remove(s, rule));
    CHECK_EQ(craft_sim_rule_remove(s, rule), CRAFT_ENOTFOUND);
    CHECK_OK(craft_sim_check(s));
    craft_sim_free(s);
}

static bool big_append(void *ud, const struct craft_message *m)
{
    (void)ud;
    return m->type == CRAFT_MSG_APPEND_ENTRIES && m->u.append_entries.n_entries > 0;
}

TEST(drop_duplicate_and_delay_rules)
{
    struct craft_sim_options o;
    craft_sim_options_init(&o);
    o.seed = 3;
    struct craft_sim *s = make(&o);
    CHECK(s != NULL);
    CHECK_OK(craft_sim_run_until(s, has_leader, NULL, 3000));
    craft_id l = craft_sim_leader(s);
    craft_id f = l == 1 ? 2 : 1;
    /* The next two appends carrying entries to f are lost. */
    struct craft_sim_rule drop = {
        .match = {.to = f, .pred = big_append}, .action = CRAFT_SIM_DROP, .count = 2};
    CHECK_OK(craft_sim_rule_add(s, &drop, NULL));
    struct craft_sim_link_stats before, after;
    CHECK_OK(craft_sim_link_stats(s, l, f, &before));
    craft_index idx;
    CHECK_OK(craft_sim_propose(s, 0, "a", 1, &idx, NULL));
    CHECK_OK(craft_sim_propose(s, 0, "b", 1, &idx, NULL));
    CHECK_OK(craft_sim_run_for(s, 30));
    CHECK_OK(craft_sim_link_stats(s, l, f, &after));
    CHECK_EQ(after.dropped - before.dropped, 2u);
    /* The rule ran out of count: it is gone. */
    CHECK_OK(craft_sim_run_for(s, 500));
    CHECK(craft_sim_applied_index(s, f) >= idx);
    /* Duplicate every message from the leader, delay those to f by 300 ms. */
    craft_id third = 6 - l - f;
    struct craft_sim_rule dup = {.match = {.from = l, .to = third},
                                 .action = CRAFT_SIM_DUPLICATE};
    struct craft_sim_rule delay = {.match = {.from = l, .to = f}, .action = CRAFT_SIM_DELAY,
                                   .delay_ms = 300};
    CHECK_OK(craft_sim_rule_add(s, &dup, NULL));
    CHECK_OK(craft_sim_rule_add(s, &delay, NULL));
    struct craft_sim_stats st0, st1;
    craft_sim_stats(s, &st0);
    CHECK_OK(craft_sim_propose(s, 0, "c", 1, &idx, NULL));
    CHECK_OK(craft_sim_run_for(s, 100));
    CHECK(craft_sim_applied_index(s, f) < idx); /* still on its way */
    craft_sim_stats(s, &st1);
    CHECK(st1.duplicated[CRAFT_MSG_APPEND_ENTRIES] > st0.duplicated[CRAFT_MSG_APPEND_ENTRIES]);
    CHECK_OK(craft_sim_run_for(s, 400));
    CHECK(craft_sim_applied_index(s, f) >= idx);
    craft_sim_rules_clear(s);
    CHECK_OK(craft_sim_check(s));
    struct craft_sim_rule bad = {.action = 9};
    CHECK_EQ(craft_sim_rule_add(s, &bad, NULL), CRAFT_EINVAL);
    craft_sim_free(s);
}

/* A leader ignores vote requests (thesis 4.2.3) unless they come from a transfer. */
TEST(an_injected_transfer_vote_request_with_a_higher_term_deposes_the_leader)
{
    struct craft_sim_options o;
    craft_sim_options_init(&o);
    o.seed = 5;
    o.node.pre_vote = false;
    o.node.check_quorum = false;
    struct craft_sim *s = make(&o);
    CHECK(s != NULL);
    CHECK_OK(craft_sim_run_until(s, has_leader, NULL, 3000));
    craft_id l = craft_sim_leader(s);
    craft_id other = l == 3 ? 2 : 3;
    struct craft_sim_node_status st, after;
    CHECK_OK(craft_sim_status(s, l, &st));
    struct craft_message m = {.type = CRAFT_MSG_REQUEST_VOTE, .from = other, .to = l,
                              .term = st.term + 5};
    CHECK_OK(craft_sim_inject(s, &m, 0));
    CHECK_OK(craft_sim_run_for(s, 0));
    CHECK_OK(craft_sim_status(s, l, &after));
    CHECK_EQ(after.term, st.term); /* ignored: the leader is alive */
    m.u.request_vote.transfer = true;
    CHECK_OK(craft_sim_inject(s, &m, 0));
    CHECK_OK(craft_sim_run_for(s, 0)); /* what is due now, the injected message included */
    CHECK_OK(craft_sim_status(s, l, &after));
    CHECK_EQ(after.term, st.term + 5);
    CHECK(after.role != CRAFT_LEADER);
    m.to = 99;
    CHECK_EQ(craft_sim_inject(s, &m, 0), CRAFT_EINVAL);
    CHECK_OK(craft_sim_run_until(s, has_leader, NULL, 3000));
    CHECK_OK(craft_sim_check(s));
    craft_sim_free(s);
}

TEST(a_faster_clock_and_per_node_options)
{
    struct craft_sim_options o;
    craft_sim_options_init(&o);
    o.seed = 9;
    struct craft_sim *s = make(&o);
    CHECK(s != NULL);
    /* n3 ticks five times faster: it times out first and leads. */
    CHECK_OK(craft_sim_set_clock(s, 3, 2));
    CHECK_EQ(craft_sim_clock(s, 3), 2u);
    CHECK_EQ(craft_sim_set_clock(s, 3, 1), CRAFT_EINVAL); /* not above the jitter */
    CHECK_OK(craft_sim_run_until(s, has_leader, NULL, 3000));
    CHECK_EQ(craft_sim_leader(s), 3);
    /* Options for the next boot. */
    struct craft_config c;
    CHECK_OK(craft_sim_node_config(s, 1, &c));
    CHECK_EQ(c.election_ticks, 10u);
    c.election_ticks = 40;
    CHECK_OK(craft_sim_set_node_config(s, 1, &c));
    c.heartbeat_ticks = 40;
    CHECK_EQ(craft_sim_set_node_config(s, 1, &c), CRAFT_EINVAL);
    CHECK_OK(craft_sim_crash(s, 1));
    CHECK_OK(craft_sim_restart(s, 1));
    CHECK_OK(craft_sim_node_config(s, 1, &c));
    CHECK_EQ(c.election_ticks, 40u);
    CHECK_EQ(craft_sim_boots(s, 1), 2u);
    CHECK_OK(craft_sim_check(s));
    craft_sim_free(s);
}

TEST(durable_store_and_progress)
{
    struct craft_sim_options o;
    craft_sim_options_init(&o);
    o.seed = 4;
    struct craft_sim *s = make(&o);
    CHECK(s != NULL);
    CHECK_OK(craft_sim_run_until(s, has_leader, NULL, 3000));
    craft_id l = craft_sim_leader(s);
    craft_index idx;
    craft_term term;
    CHECK_OK(craft_sim_propose(s, 0, "x", 1, &idx, &term));
    CHECK_OK(craft_sim_run_for(s, 200));
    struct craft_sim_durable d;
    CHECK_OK(craft_sim_durable(s, l, &d));
    CHECK_EQ(d.hard_state.term, term);
    CHECK_EQ(d.hard_state.vote, l);
    CHECK_EQ(d.first_index, 1u);
    CHECK_EQ(d.last_index, idx);
    CHECK(!d.has_snapshot);
    struct craft_progress_info p[4];
    unsigned n = craft_sim_progress(s, l, p, 4);
    CHECK_EQ(n, 3u);
    for (unsigned k = 0; k < n; k++) {
        CHECK_EQ(p[k].match, idx);
    }
    CHECK_EQ(craft_sim_progress(s, l == 1 ? 2 : 1, p, 4), 0u);
    CHECK_EQ(craft_sim_durable(s, 9, &d), CRAFT_EINVAL);
    craft_sim_free(s);
}

/* ---- a core brought by the user: craft's own, behind the table ------------------------------ */

static int pt_create(void *ud, const struct craft_config *c, const struct craft_boot *b,
                     void **core)
{
    (*(int *)ud)++;
    struct craft_node *n = NULL;
    int rc = craft_node_new(c, b, &n);
    *core = n;
    return rc;
}
static void pt_destroy(void *ud, void *core)
{
    (void)ud;
    craft_node_free(core);
}
static int pt_step(void *ud, void *core, const struct craft_message *m)
{
    (void)ud;
    return craft_step(core, m);
}
static int pt_tick(void *ud, void *core)
{
    (void)ud;
    return craft_tick(core);
}
static int pt_propose(void *ud, void *core, const void *d, size_t n, craft_index *i,
                      craft_term *t)
{
    (void)ud;
    return craft_propose(core, d, n, i, t);
}
static int pt_take(void *ud, void *core, struct craft_update *u)
{
    (void)ud;
    if (!craft_has_update(core)) {
        return 0;
    }
    int rc = craft_take_update(core, u);
    return rc == 0 ? 1 : rc;
}
static int pt_persisted(void *ud, void *core, uint64_t seq)
{
    (void)ud;
    return craft_persisted(core, seq);
}
static int pt_taken(void *ud, void *core, craft_index i, uint64_t size, craft_index *upto)
{
    (void)ud;
    return craft_snapshot_taken(core, i, size, upto);
}
static int pt_status(void *ud, void *core, struct craft_sim_core_status *st)
{
    (void)ud;
    const struct craft_node *n = core;
    st->role = craft_node_role(n);
    st->term = craft_node_term(n);
    st->vote = craft_node_vote(n);
    st->leader = craft_node_leader(n);
    st->commit = craft_node_commit(n);
    st->first_index = craft_node_first_index(n);
    st->last_index = craft_node_last_index(n);
    st->last_term = craft_node_term_at(n, st->last_index);
    const struct craft_configuration *c = craft_node_configuration(n, NULL);
    st->voters = 0;
    for (unsigned k = 0; k < c->n; k++) {
        if (c->servers[k].role == CRAFT_VOTER) {
            st->voters |= 1ull << (c->servers[k].id - 1);
        }
    }
    return 0;
}
static craft_term pt_term_at(void *ud, void *core, craft_index i)
{
    (void)ud;
    return craft_node_term_at(core, i);
}

TEST(a_user_core_runs_under_the_same_checker)
{
    int created = 0;
    struct craft_sim_core table = {
        .ud = &created, .create = pt_create, .destroy = pt_destroy, .step = pt_step,
        .tick = pt_tick, .propose = pt_propose, .take_update = pt_take,
        .persisted = pt_persisted, .snapshot_taken = pt_taken, .status = pt_status,
        .term_at = pt_term_at,
    };
    for (uint64_t seed = 1; seed <= 20; seed++) {
        struct craft_sim_options o;
        craft_sim_options_init(&o);
        o.n_nodes = 5;
        o.seed = seed;
        o.drop_rate = 0.05;
        o.node.snapshot_entries = 8;
        o.node.snapshot_trailing = 2;
        o.node.snapshot_chunk_bytes = 64;
        o.core = &table;
        struct craft_sim *s = make(&o);
        CHECK(s != NULL);
        for (int round = 0; round < 30; round++) {
            craft_id victim = 1 + (craft_id)((seed + (uint64_t)round) % 5);
            (void)craft_sim_propose(s, 0, "cmd", 3, NULL, NULL);
            if (round % 7 == 3 && craft_sim_is_up(s, victim)) {
                CHECK_OK(craft_sim_crash(s, victim));
            } else if (round % 7 == 5) {
                for (craft_id k = 1; k <= 5; k++) {
                    if (!craft_sim_is_up(s, k)) {
                        CHECK_OK(craft_sim_restart(s, k));
                    }
                }
            }
            int rc = craft_sim_run_for(s, 150);
            if (rc != 0) {
                FAIL("seed %" PRIu64 ": %s", seed, craft_sim_error(s));
            }
        }
        CHECK_OK(craft_sim_check(s));
        CHECK(craft_sim_committed(s) > 10);
        /* Membership and reads are craft's core only. */
        CHECK_EQ(craft_sim_add_server(s, 1, false, NULL), CRAFT_EINVAL);
        CHECK_EQ(craft_sim_read(s, 1, 1), CRAFT_EINVAL);
        craft_sim_free(s);
    }
    CHECK(created >= 100);
    struct craft_sim_options o;
    craft_sim_options_init(&o);
    struct craft_sim_core broken = table;
    broken.status = NULL;
    o.core = &broken;
    struct craft_sim *s = NULL;
    CHECK_EQ(craft_sim_new(&o, &s), CRAFT_EINVAL);
}

struct collect {
    int sends, roles;
};

static void count_event(void *ud, const struct craft_sim_event *ev)
{
    struct collect *c = ud;
    c->sends += ev->kind == CRAFT_SIM_EV_SEND;
    c->roles += ev->kind == CRAFT_SIM_EV_ROLE;
}

TEST(events_as_structs)
{
    struct craft_sim_options o;
    craft_sim_options_init(&o);
    o.trace_depth = 500;
    struct craft_sim *s = make(&o);
    CHECK(s != NULL);
    CHECK_OK(craft_sim_run_until(s, has_leader, NULL, 3000));
    struct collect c = {0, 0};
    craft_sim_dump_events(s, count_event, &c);
    CHECK(c.sends > 0 && c.roles > 0);
    craft_sim_free(s);
}

HARNESS_MAIN()
