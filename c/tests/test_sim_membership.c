/*
 * Membership changes, leadership transfer and reads in the simulator (issue 3): specific
 * regressions, each a schedule built with the public simulator API, with every invariant --
 * the configuration, quorum and read rules included -- checked after every event.
 *
 *  - the 2015 single-server change scenario (Ongaro, raft-dev, "bug in single-server membership
 *    changes"): a new leader that has not committed an entry of its term must refuse a change;
 *  - a removed server with a higher term does not unseat the leader;
 *  - a follower restored from a snapshot while entries after it are in flight;
 *  - a partitioned old leader's ReadIndex never completes, while the majority commits and
 *    serves reads;
 *  - a leader that removes itself steps down once the change commits, and the rest go on;
 *  - a joining server added with auto-promote becomes a voter that counts;
 *  - leadership transfer to a chosen voter.
 *
 * Times are virtual: with the defaults an election timeout is 100 to 200 ms.
 */
#include "harness.h"

#include <inttypes.h>

#include "craft/sim.h"

#define TIMEOUT_MS 100

static uint64_t bit(craft_id id)
{
    return 1ull << (id - 1);
}

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

static void elect(struct craft_sim *s)
{
    int rc = craft_sim_run_until(s, has_leader, NULL, 20 * TIMEOUT_MS);
    if (rc != 0) {
        FAIL("no leader (t=%" PRIu64 "ms): %s %s", craft_sim_now(s), craft_err_name(rc),
             craft_sim_error(s) ? craft_sim_error(s) : "");
    }
}

struct probe {
    craft_index index;
    craft_term term;
    uint64_t who; /* servers that must have applied it */
};

static bool applied_by(struct craft_sim *s, void *ud)
{
    const struct probe *p = ud;
    for (craft_id id = 1; id <= craft_sim_n_nodes(s); id++) {
        if (!(p->who & bit(id))) {
            continue;
        }
        const struct craft_sim_applied *a;
        size_t n;
        craft_sim_applied(s, id, &a, &n);
        if (craft_sim_applied_index(s, id) < p->index) {
            return false;
        }
        if (n > 0 && p->index >= a[0].index && a[p->index - a[0].index].term != p->term) {
            return false;
        }
    }
    return true;
}

/* Proposes at the leader and waits until every server in who applied it. */
static void commit_on(struct craft_sim *s, const char *cmd, uint64_t who)
{
    struct probe p = {.who = who};
    CHECK_OK(craft_sim_propose(s, 0, cmd, strlen(cmd), &p.index, &p.term));
    int rc = craft_sim_run_until(s, applied_by, &p, 30 * TIMEOUT_MS);
    if (rc != 0) {
        FAIL("\"%s\" at %" PRIu64 "/%" PRIu64 " not applied: %s (%s)", cmd, p.index, p.term,
             craft_err_name(rc), craft_sim_error(s) ? craft_sim_error(s) : "");
    }
}

/* The leader's configuration: voters and learners. */
static void leader_conf(struct craft_sim *s, uint64_t *voters, uint64_t *learners)
{
    *voters = *learners = 0;
    const struct craft_node *n = craft_sim_node(s, craft_sim_leader(s));
    if (n == NULL) {
        return;
    }
    const struct craft_configuration *c = craft_node_configuration(n, NULL);
    for (unsigned k = 0; k < c->n; k++) {
        *(c->servers[k].role == CRAFT_VOTER ? voters : learners) |= bit(c->servers[k].id);
    }
}

static bool committed_at(struct craft_sim *s, void *ud)
{
    return craft_sim_committed(s) >= *(const craft_index *)ud;
}

static void wait_committed(struct craft_sim *s, craft_index index)
{
    int rc = craft_sim_run_until(s, committed_at, &index, 30 * TIMEOUT_MS);
    if (rc != 0) {
        FAIL("index %" PRIu64 " not committed: %s (%s)", index, craft_err_name(rc),
             craft_sim_error(s) ? craft_sim_error(s) : "");
    }
}

static void check_sim(struct craft_sim *s)
{
    int rc = craft_sim_check(s);
    if (rc != 0) {
        FAIL("%s", craft_sim_error(s) ? craft_sim_error(s) : craft_err_name(rc));
    }
}

static const char *err(struct craft_sim *s)
{
    return craft_sim_error(s) ? craft_sim_error(s) : "";
}

/* Counts what the tests watch for, from the event stream. */
struct watch {
    craft_id node;          /* the server watched */
    unsigned became_leader; /* ROLE events making node leader */
    unsigned vote_requests; /* RequestVote messages node sent */
    bool receiving;         /* node is receiving a snapshot (chunk delivered, not installed) */
    unsigned installs;      /* snapshots node installed */
    unsigned ae_during;     /* AppendEntries with entries delivered to node mid-snapshot */
    unsigned ae_after;      /* ... and in the 50 ms after an install */
    uint64_t installed_at;
};

static void on_event(void *ud, const struct craft_sim_event *ev)
{
    struct watch *w = ud;
    if (ev->kind == CRAFT_SIM_EV_ROLE && ev->node == w->node && ev->role == CRAFT_LEADER) {
        w->became_leader++;
    }
    if (ev->kind == CRAFT_SIM_EV_SEND && ev->node == w->node &&
        ev->msg.type == CRAFT_MSG_REQUEST_VOTE) {
        w->vote_requests++;
    }
    if (ev->kind == CRAFT_SIM_EV_DELIVER && ev->peer == w->node) {
        if (ev->msg.type == CRAFT_MSG_INSTALL_SNAPSHOT) {
            w->receiving = true;
        }
        if (ev->msg.type == CRAFT_MSG_APPEND_ENTRIES && ev->msg.u.append_entries.n_entries > 0) {
            if (w->receiving) {
                w->ae_during++;
            } else if (w->installs > 0 && ev->time <= w->installed_at + 50) {
                w->ae_after++;
            }
        }
    }
    if (ev->kind == CRAFT_SIM_EV_NOTE && ev->node == w->node &&
        strstr(ev->text, "installed a snapshot") != NULL) {
        w->receiving = false;
        w->installs++;
        w->installed_at = ev->time;
    }
}

/* --- The 2015 single-server change scenario ----------------------------------------------- */

/* A leader among the servers of *ud (a mask). */
static bool leader_among(struct craft_sim *s, void *ud)
{
    craft_id l = craft_sim_leader(s);
    return l != 0 && (*(const uint64_t *)ud & bit(l));
}

/*
 * Ongaro's schedule, with S1 the first leader, S5 a spare and S2..S4 the other voters:
 *  1. S1 (leader, configuration {S1..S4} + learner S5) promotes S5; the entry reaches only S5
 *     ({S1,S5} are cut off from the rest): S1 and S5 now use {S1..S5}.
 *  2. S2 is elected in a later term by {S2,S3,S4}, a majority of {S1..S4}; it is isolated at
 *     once, so its first entry (the barrier) is not committed.
 *  3. Without the 2015 rule, S2 could now remove S1 and commit {S2,S3,S4} with S3 alone, while
 *     {S1,S4,S5} -- a majority of {S1..S5} -- elects S1, which then overwrites the committed
 *     change: two disjoint majorities. With the rule, S2 refuses every change (CRAFT_EBUSY)
 *     until its barrier is committed by a majority of {S1..S4}, which intersects every majority
 *     of {S1..S5}. The checker would flag the change (test_sim_invariants,
 *     change_before_committing_an_entry_of_the_term); here the cluster must then converge
 *     with every invariant intact.
 */
TEST(single_server_change_2015_scenario)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        struct craft_sim_options o;
        craft_sim_options_init(&o);
        o.n_nodes = 5;
        o.n_voters = 4;
        o.seed = seed;
        struct craft_sim *s = make(&o);
        CHECK(s != NULL);
        elect(s);
        craft_id s1 = craft_sim_leader(s);
        commit_on(s, "x", 0xf);
        craft_index idx = 0;
        CHECK_OK(craft_sim_add_server(s, 5, false, &idx));
        wait_committed(s, idx);
        commit_on(s, "caught up", 0x1f);
        if (harness_failed()) {
            fprintf(stderr, "  seed=%" PRIu64 ": %s\n", seed, err(s));
            craft_sim_free(s);
            return;
        }
        /* 1. {S1, S5} | {S2, S3, S4}; S1 promotes S5: only S5 gets the entry. */
        unsigned groups[5] = {1, 1, 1, 1, 0};
        groups[s1 - 1] = 0;
        CHECK_OK(craft_sim_partition(s, groups));
        craft_index promote_at = 0;
        /* A leader promotes only a learner it has seen acknowledge its own term's entries. */
        int prc = CRAFT_ESTATE;
        for (int tries = 0; tries < 100 && prc == CRAFT_ESTATE; tries++) {
            prc = craft_sim_promote(s, 5, &promote_at);
            if (prc == CRAFT_ESTATE) {
                CHECK_OK(craft_sim_run_for(s, 5));
            }
        }
        CHECK_OK(prc);
        CHECK_OK(craft_sim_run_for(s, 30));
        CHECK(craft_node_commit(craft_sim_node(s, s1)) < promote_at);
        /* 2. One of the others is elected; isolate it before its barrier commits. */
        uint64_t others = 0xf & ~bit(s1);
        CHECK_OK(craft_sim_run_until(s, leader_among, &others, 30 * TIMEOUT_MS));
        craft_id s2 = craft_sim_leader(s);
        const struct craft_node *n2 = craft_sim_node(s, s2);
        CHECK(craft_node_commit(n2) < craft_node_last_index(n2));
        for (unsigned i = 0; i < 5; i++) {
            groups[i] = i + 1 == s2 ? 2 : groups[i];
        }
        CHECK_OK(craft_sim_partition(s, groups));
        /* 3. S2 must refuse to start a change. */
        CHECK_EQ(craft_sim_leader(s), s2);
        CHECK_EQ(craft_sim_remove_server(s, s1, NULL), CRAFT_EBUSY);
        CHECK_EQ(craft_sim_promote(s, 5, NULL), CRAFT_EBUSY);
        /* Let S1's side try its luck with {S1..S5} meanwhile, then heal: the cluster must
         * converge, with every invariant held throughout. */
        CHECK_OK(craft_sim_run_for(s, 10 * TIMEOUT_MS));
        CHECK_OK(craft_sim_heal(s));
        elect(s);
        commit_on(s, "healed", 0x1f);
        check_sim(s);
        if (harness_failed()) {
            fprintf(stderr, "  seed=%" PRIu64 ": %s\n", seed, err(s));
            craft_sim_free(s);
            return;
        }
        craft_sim_free(s);
    }
}

/* --- A removed server cannot disrupt the cluster ------------------------------------------- */

TEST(removed_server_with_higher_term_does_not_unseat_leader)
{
    for (int pre_vote = 0; pre_vote <= 1; pre_vote++) {
        for (uint64_t seed = 1; seed <= 10; seed++) {
            struct craft_sim_options o;
            craft_sim_options_init(&o);
            o.seed = seed;
            o.node.pre_vote = pre_vote;
            struct craft_sim *s = make(&o);
            elect(s);
            craft_id leader = craft_sim_leader(s);
            craft_id gone = leader == 3 ? 2 : 3;
            commit_on(s, "x", 0x7);
            craft_index idx = 0;
            CHECK_OK(craft_sim_remove_server(s, gone, &idx));
            wait_committed(s, idx);
            craft_term term = craft_node_term(craft_sim_node(s, leader));
            uint64_t stay = 0x7 & ~bit(gone);
            /* The removed server keeps running for 30 election timeouts. */
            for (int k = 0; k < 30 && !harness_failed(); k++) {
                char cmd[32];
                snprintf(cmd, sizeof(cmd), "after-%d", k);
                commit_on(s, cmd, stay);
                CHECK_OK(craft_sim_run_for(s, TIMEOUT_MS));
            }
            CHECK(craft_sim_is_up(s, gone));
            CHECK_EQ(craft_sim_leader(s), leader);
            CHECK_EQ(craft_node_term(craft_sim_node(s, leader)), term);
            if (!pre_vote) {
                /* It campaigned again and again: its term is above the leader's. */
                CHECK(craft_node_term(craft_sim_node(s, gone)) > term);
            }
            check_sim(s);
            if (harness_failed()) {
                fprintf(stderr, "  pre_vote=%d seed=%" PRIu64 ": %s\n", pre_vote, seed, err(s));
                craft_sim_free(s);
                return;
            }
            craft_sim_free(s);
        }
    }
}

/* --- A follower restored from a snapshot while entries after it are in flight -------------- */

TEST(snapshot_install_with_entries_in_flight)
{
    unsigned installs = 0, during = 0, after = 0;
    for (uint64_t seed = 1; seed <= 30; seed++) {
        struct watch w = {0};
        struct craft_sim_options o;
        craft_sim_options_init(&o);
        o.seed = seed;
        o.node.snapshot_entries = 8;
        o.node.snapshot_trailing = 0;
        o.node.snapshot_chunk_bytes = 16; /* a snapshot is about 15 chunks */
        o.min_delay_ms = 1;
        o.max_delay_ms = 30; /* reordering: entries overtake chunks and the other way round */
        o.dup_rate = 0.1;
        o.event = on_event;
        o.ud = &w;
        struct craft_sim *s = make(&o);
        elect(s);
        craft_id leader = craft_sim_leader(s);
        craft_id f = leader == 1 ? 2 : 1;
        w.node = f;
        commit_on(s, "first", 0x7);
        CHECK_OK(craft_sim_crash(s, f));
        for (int k = 0; k < 40 && !harness_failed(); k++) {
            char cmd[32];
            snprintf(cmd, sizeof(cmd), "while-down-%d", k);
            commit_on(s, cmd, 0x7 & ~bit(f));
        }
        /* The follower comes back behind the leader's snapshot; proposals keep coming while
         * the snapshot is sent, so AppendEntries after its index are in flight around the
         * install. */
        CHECK_OK(craft_sim_restart(s, f));
        for (int k = 0; k < 60 && !harness_failed(); k++) {
            char cmd[32];
            snprintf(cmd, sizeof(cmd), "during-%d", k);
            int rc = craft_sim_propose(s, 0, cmd, strlen(cmd), NULL, NULL);
            CHECK(rc == 0 || rc == CRAFT_ENOTLEADER);
            CHECK_OK(craft_sim_run_for(s, 5));
        }
        commit_on(s, "last", 0x7);
        if (!harness_failed()) {
            /* The follower's log and state machine end equal to the leader's. */
            const struct craft_node *ln = craft_sim_node(s, craft_sim_leader(s));
            const struct craft_node *fn = craft_sim_node(s, f);
            CHECK_EQ(craft_node_last_index(fn), craft_node_last_index(ln));
            for (craft_index i = craft_node_first_index(fn); i <= craft_node_last_index(fn); i++) {
                CHECK_EQ(craft_node_term_at(fn, i), craft_node_term_at(ln, i));
            }
            CHECK_EQ(craft_sim_applied_index(s, f), craft_sim_applied_index(s, leader));
            CHECK(w.installs > 0);
        }
        check_sim(s);
        installs += w.installs;
        during += w.ae_during;
        after += w.ae_after;
        if (harness_failed()) {
            fprintf(stderr, "  seed=%" PRIu64 ": %s\n", seed, err(s));
            craft_sim_free(s);
            return;
        }
        craft_sim_free(s);
    }
    fprintf(stderr,
            "snapshot installs: %u; AppendEntries with entries delivered mid-transfer: %u, "
            "within 50 ms after the install: %u\n",
            installs, during, after);
    /* Both orders happened: entries delivered while the snapshot was arriving, and right
     * after it was installed. */
    CHECK(installs >= 30);
    CHECK(during > 0);
    CHECK(after > 0);
}

/* --- Reads ---------------------------------------------------------------------------------- */

static bool read_settled(struct craft_sim *s, void *ud)
{
    struct craft_sim_read r;
    return craft_sim_read_result(s, *(const uint64_t *)ud, &r) == 0 &&
           (r.state == CRAFT_SIM_READ_SERVED || r.state == CRAFT_SIM_READ_FAILED);
}

static uint8_t read_state(struct craft_sim *s, uint64_t id)
{
    struct craft_sim_read r;
    return craft_sim_read_result(s, id, &r) == 0 ? r.state : 0;
}

TEST(partitioned_old_leader_read_never_completes)
{
    for (int check_quorum = 0; check_quorum <= 1; check_quorum++) {
        for (uint64_t seed = 1; seed <= 10; seed++) {
            struct craft_sim_options o;
            craft_sim_options_init(&o);
            o.n_nodes = 5;
            o.seed = seed;
            o.node.check_quorum = check_quorum;
            struct craft_sim *s = make(&o);
            elect(s);
            craft_id old = craft_sim_leader(s);
            commit_on(s, "x", 0x1f);
            /* A read at the leader is served. */
            CHECK_OK(craft_sim_read(s, old, 1));
            CHECK_OK(craft_sim_run_until(s, read_settled, &(uint64_t){1}, 10 * TIMEOUT_MS));
            CHECK_EQ(read_state(s, 1), CRAFT_SIM_READ_SERVED);
            /* {old, one} | {three}: the old leader's read must never complete. */
            craft_id buddy = old == 1 ? 2 : 1;
            unsigned groups[5] = {1, 1, 1, 1, 1};
            groups[old - 1] = groups[buddy - 1] = 0;
            CHECK_OK(craft_sim_partition(s, groups));
            CHECK_OK(craft_sim_read(s, old, 2));
            uint64_t majority = 0x1f & ~bit(old) & ~bit(buddy);
            CHECK_OK(craft_sim_run_until(s, leader_among, &majority, 30 * TIMEOUT_MS));
            for (int k = 0; k < 3; k++) {
                commit_on(s, "majority", majority);
            }
            /* The majority side serves reads, at an index covering its commits. */
            craft_id nl = craft_sim_leader(s);
            CHECK_OK(craft_sim_read(s, nl, 3));
            CHECK_OK(craft_sim_run_until(s, read_settled, &(uint64_t){3}, 10 * TIMEOUT_MS));
            struct craft_sim_read r3;
            CHECK_OK(craft_sim_read_result(s, 3, &r3));
            CHECK_EQ(r3.state, CRAFT_SIM_READ_SERVED);
            CHECK(r3.index >= r3.committed);
            CHECK_OK(craft_sim_run_for(s, 10 * TIMEOUT_MS));
            struct craft_sim_read r2;
            CHECK_OK(craft_sim_read_result(s, 2, &r2));
            if (check_quorum) {
                /* The old leader stepped down: the read failed. */
                CHECK_EQ(r2.state, CRAFT_SIM_READ_FAILED);
            } else {
                /* Still leader in its own eyes, and still waiting. */
                CHECK_EQ(r2.state, CRAFT_SIM_READ_PENDING);
                CHECK_EQ(craft_node_role(craft_sim_node(s, old)), CRAFT_LEADER);
            }
            /* Healed, it learns the new term: the read fails, never served. */
            CHECK_OK(craft_sim_heal(s));
            CHECK_OK(craft_sim_run_until(s, read_settled, &(uint64_t){2}, 10 * TIMEOUT_MS));
            CHECK_OK(craft_sim_read_result(s, 2, &r2));
            CHECK_EQ(r2.state, CRAFT_SIM_READ_FAILED);
            CHECK_EQ(r2.status, CRAFT_ENOTLEADER);
            /* A follower refuses reads (the runtime forwards them). */
            CHECK_EQ(craft_sim_read(s, old, 4), CRAFT_ENOTLEADER);
            check_sim(s);
            if (harness_failed()) {
                fprintf(stderr, "  check_quorum=%d seed=%" PRIu64 ": %s\n", check_quorum, seed,
                        err(s));
                craft_sim_free(s);
                return;
            }
            craft_sim_free(s);
        }
    }
}

/* --- Leader self-removal ------------------------------------------------------------------- */

static bool not_leader(struct craft_sim *s, void *ud)
{
    const struct craft_node *n = craft_sim_node(s, *(const craft_id *)ud);
    return n == NULL || craft_node_role(n) != CRAFT_LEADER;
}

TEST(leader_removes_itself)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        struct watch w = {0};
        struct craft_sim_options o;
        craft_sim_options_init(&o);
        o.seed = seed;
        o.event = on_event;
        o.ud = &w;
        struct craft_sim *s = make(&o);
        elect(s);
        craft_id old = craft_sim_leader(s);
        commit_on(s, "x", 0x7);
        craft_index idx = 0;
        CHECK_OK(craft_sim_remove_server(s, old, &idx));
        /* It keeps leading until the change commits, then steps down. */
        CHECK_OK(craft_sim_run_until(s, not_leader, &old, 10 * TIMEOUT_MS));
        CHECK(craft_node_commit(craft_sim_node(s, old)) >= idx);
        uint64_t rest = 0x7 & ~bit(old);
        CHECK_OK(craft_sim_run_until(s, leader_among, &rest, 30 * TIMEOUT_MS));
        w.node = old;
        w.became_leader = 0;
        uint64_t voters, learners;
        leader_conf(s, &voters, &learners);
        CHECK_EQ(voters, rest);
        commit_on(s, "after", rest);
        /* The old leader keeps running and never leads again. */
        craft_id leader = craft_sim_leader(s);
        CHECK_OK(craft_sim_run_for(s, 30 * TIMEOUT_MS));
        commit_on(s, "later", rest);
        CHECK_EQ(craft_sim_leader(s), leader);
        CHECK_EQ(w.became_leader, 0);
        check_sim(s);
        if (harness_failed()) {
            fprintf(stderr, "  seed=%" PRIu64 ": %s\n", seed, err(s));
            craft_sim_free(s);
            return;
        }
        craft_sim_free(s);
    }
}

/* --- Joining with auto-promotion ------------------------------------------------------------ */

static bool is_voter_now(struct craft_sim *s, void *ud)
{
    uint64_t voters, learners;
    leader_conf(s, &voters, &learners);
    return (voters & bit(*(const craft_id *)ud)) != 0;
}

TEST(joining_server_auto_promoted)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        struct watch w = {.node = 4};
        struct craft_sim_options o;
        craft_sim_options_init(&o);
        o.n_nodes = 4;
        o.n_voters = 3;
        o.seed = seed;
        o.event = on_event;
        o.ud = &w;
        struct craft_sim *s = make(&o);
        elect(s);
        for (int k = 0; k < 5; k++) {
            commit_on(s, "x", 0x7);
        }
        /* The spare server waited without campaigning. */
        CHECK_OK(craft_sim_run_for(s, 10 * TIMEOUT_MS));
        CHECK_EQ(w.vote_requests, 0);
        CHECK_EQ(craft_sim_applied_index(s, 4), 0);
        craft_index idx = 0;
        CHECK_OK(craft_sim_add_server(s, 4, true, &idx));
        craft_id n4 = 4;
        CHECK_OK(craft_sim_run_until(s, is_voter_now, &n4, 30 * TIMEOUT_MS));
        commit_on(s, "promoted", 0xf);
        /* It counts: with another voter down, 3 of the 4 voters still commit. */
        craft_id leader = craft_sim_leader(s);
        craft_id down = leader == 1 ? 2 : 1;
        CHECK_OK(craft_sim_crash(s, down));
        commit_on(s, "with n4", 0xf & ~bit(down));
        check_sim(s);
        if (harness_failed()) {
            fprintf(stderr, "  seed=%" PRIu64 ": %s\n", seed, err(s));
            craft_sim_free(s);
            return;
        }
        craft_sim_free(s);
    }
}

/* A change asked of a follower, or for a server outside the simulation. */
TEST(membership_errors)
{
    struct craft_sim_options o;
    craft_sim_options_init(&o);
    o.n_nodes = 4;
    o.n_voters = 3;
    struct craft_sim *s = make(&o);
    CHECK_EQ(craft_sim_add_server(s, 4, false, NULL), CRAFT_ENOTLEADER);
    elect(s);
    commit_on(s, "x", 0x7);
    CHECK_EQ(craft_sim_add_server(s, 9, false, NULL), CRAFT_EINVAL);
    CHECK_EQ(craft_sim_add_server(s, 1, false, NULL), CRAFT_EEXISTS);
    CHECK_EQ(craft_sim_remove_server(s, 4, NULL), CRAFT_ENOTFOUND);
    craft_index idx = 0;
    CHECK_OK(craft_sim_add_server(s, 4, false, &idx));
    CHECK_EQ(craft_sim_remove_server(s, 4, NULL), CRAFT_EBUSY); /* the add is not committed */
    wait_committed(s, idx);
    commit_on(s, "y", 0xf);
    CHECK_OK(craft_sim_promote(s, 4, &idx));
    wait_committed(s, idx);
    CHECK_EQ(craft_sim_read(s, craft_sim_leader(s), 7), 0);
    CHECK_EQ(craft_sim_read(s, craft_sim_leader(s), 7), CRAFT_EEXISTS);
    struct craft_sim_read r;
    CHECK_EQ(craft_sim_read_result(s, 8, &r), CRAFT_ENOTFOUND);
    check_sim(s);
    craft_sim_free(s);
}

/* --- Leadership transfer -------------------------------------------------------------------- */

TEST(leadership_transfer_to_a_chosen_voter)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        struct craft_sim_options o;
        craft_sim_options_init(&o);
        o.n_nodes = 5;
        o.seed = seed;
        struct craft_sim *s = make(&o);
        elect(s);
        commit_on(s, "x", 0x1f);
        craft_id old = craft_sim_leader(s);
        craft_id target = old % 5 + 1;
        CHECK_OK(craft_sim_transfer(s, target));
        /* No proposals during the transfer. */
        CHECK_EQ(craft_sim_propose(s, old, "no", 2, NULL, NULL), CRAFT_EBUSY);
        uint64_t t = bit(target);
        CHECK_OK(craft_sim_run_until(s, leader_among, &t, 10 * TIMEOUT_MS));
        commit_on(s, "after", 0x1f);
        check_sim(s);
        if (harness_failed()) {
            fprintf(stderr, "  seed=%" PRIu64 ": %s\n", seed, err(s));
            craft_sim_free(s);
            return;
        }
        craft_sim_free(s);
    }
}

/* --- Regressions of core bugs the soak found (fixed) ----------------------------------------- */

static bool candidate(struct craft_sim *s, void *ud)
{
    const struct craft_node *n = craft_sim_node(s, *(const craft_id *)ud);
    return n != NULL && craft_node_role(n) == CRAFT_CANDIDATE;
}

/* Lease reads (thesis 6.4) rest on voters ignoring vote requests for an election timeout after
 * hearing from the leader; a transfer's vote requests override that (thesis 3.10), so a leader
 * that sent TimeoutNow must not serve lease reads. It used to: cut off right after the target
 * campaigned, the old leader answered a lease read at its stale commit index while the new
 * leader had committed more (read linearizability). */
TEST(regression_lease_read_after_transfer)
{
    struct craft_sim_options o;
    craft_sim_options_init(&o);
    o.node.lease_reads = true;
    struct craft_sim *s = make(&o);
    elect(s);
    commit_on(s, "x", 0x7);
    craft_id old = craft_sim_leader(s), target = old % 3 + 1;
    CHECK_OK(craft_sim_transfer(s, target));
    CHECK_OK(craft_sim_run_until(s, candidate, &target, 10 * TIMEOUT_MS));
    unsigned groups[3] = {1, 1, 1};
    groups[old - 1] = 0;
    CHECK_OK(craft_sim_partition(s, groups));
    uint64_t t = bit(target);
    CHECK_OK(craft_sim_run_until(s, leader_among, &t, 10 * TIMEOUT_MS));
    CHECK_OK(craft_sim_propose(s, target, "y", 1, NULL, NULL));
    CHECK_OK(craft_sim_run_for(s, 15));
    int rc = craft_sim_read_mode(s, old, 1, CRAFT_READ_LEASE);
    if (rc != 0 && rc != CRAFT_ENOTLEADER) {
        FAIL("%s", err(s));
    }
    CHECK_OK(craft_sim_run_for(s, 20));
    check_sim(s);
    craft_sim_free(s);
}

/* A learner added with auto-promote used to be promoted after promote_rounds heartbeat rounds
 * while its match index (0) was within promote_distance of a short log -- though it never
 * answered. The two-voter configuration then could not commit, the leader stepped down, and the
 * new voter, outside every configuration it knew, reset its election timer at each timeout and
 * so believed the old leader alive forever: it ignored every vote request, and no leader was
 * ever elected again (soak seeds 2781 and 3968). */
TEST(regression_auto_promotion_of_a_silent_learner)
{
    struct craft_sim_options o;
    craft_sim_options_init(&o);
    o.n_nodes = 2;
    o.n_voters = 1;
    struct craft_sim *s = make(&o);
    elect(s);
    commit_on(s, "x", 0x1);
    CHECK_OK(craft_sim_cut(s, 2, 1)); /* n2 hears n1 but its answers are lost */
    CHECK_OK(craft_sim_add_server(s, 2, true, NULL));
    CHECK_OK(craft_sim_run_for(s, TIMEOUT_MS / 2));
    const struct craft_configuration *c = craft_node_configuration(craft_sim_node(s, 1), NULL);
    const struct craft_server *n2 = craft_configuration_get(c, 2);
    CHECK(n2 != NULL);
    if (n2 != NULL && n2->role == CRAFT_VOTER) {
        FAIL("n2 was promoted without ever answering the leader");
    }
    CHECK_OK(craft_sim_heal(s));
    elect(s);
    commit_on(s, "healed", 0x3);
    craft_sim_free(s);
}

HARNESS_MAIN()
