/* Terms and indexes at their bounds (issue 13). One AppendEntries of term 2^64 - 1 used to be
 * stored, and every restart stayed leaderless because term + 1 wrapped to 0. The wire decoder
 * now refuses such a term (test_wire_hostile.c); here the core's own overflow guards: it refuses
 * to start from a stored term or snapshot beyond the bound, never campaigns past
 * CRAFT_TERM_MAX, and never appends past CRAFT_INDEX_MAX. */
#include "harness.h"

#include "core_fixture.h"

TEST(boot_refuses_a_term_beyond_the_bound)
{
    struct craft_config c;
    craft_config_init(&c, 1);
    struct craft_node *n;
    struct craft_boot b = {0};
    b.hard_state.term = UINT64_MAX; /* what the forged AppendEntries left behind */
    CHECK_EQ(craft_node_new(&c, &b, &n), CRAFT_ECORRUPT);
    b.hard_state.term = (craft_term)CRAFT_TERM_MAX + 1;
    CHECK_EQ(craft_node_new(&c, &b, &n), CRAFT_ECORRUPT);
    b.hard_state.term = CRAFT_TERM_MAX;
    CHECK_OK(craft_node_new(&c, &b, &n));
    craft_node_free(n);
}

TEST(boot_refuses_a_snapshot_beyond_the_bound)
{
    struct craft_config c;
    craft_config_init(&c, 1);
    struct craft_node *n;
    struct craft_snapshot_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.conf = fx_conf(1, 1);
    meta.index = UINT64_MAX;
    meta.term = 1;
    meta.conf_index = 1;
    struct craft_boot b = {0};
    b.hard_state.term = 1;
    b.snapshot = &meta;
    CHECK_EQ(craft_node_new(&c, &b, &n), CRAFT_ECORRUPT);
    meta.index = 5;
    meta.term = UINT64_MAX;
    b.hard_state.term = UINT64_MAX;
    CHECK_EQ(craft_node_new(&c, &b, &n), CRAFT_ECORRUPT);
    craft_configuration_close(&meta.conf, NULL);
}

/* A voter at the term bound never campaigns: its term would not fit. */
TEST(no_campaign_at_the_term_bound)
{
    struct fx f;
    fx_init(&f, 3);
    craft_term start = CRAFT_TERM_MAX - 1;
    for (craft_id id = 1; id <= 3; id++) {
        fx_boot(&f, id, start, NULL, 0, 3);
    }
    /* One election takes the cluster to the bound. */
    fx_elect(&f, 1);
    CHECK_EQ(craft_node_role(f.node[1]), CRAFT_LEADER);
    CHECK_EQ(craft_node_term(f.node[1]), CRAFT_TERM_MAX);
    /* The leader goes away; the others time out again and again, and stay at the bound. */
    f.down[1] = true;
    for (int r = 0; r < 20; r++) {
        fx_tick(&f, 2, f.cfg[2].election_ticks * 2);
        fx_tick(&f, 3, f.cfg[3].election_ticks * 2);
        fx_deliver_all(&f);
    }
    CHECK_EQ(craft_node_term(f.node[2]), CRAFT_TERM_MAX);
    CHECK_EQ(craft_node_term(f.node[3]), CRAFT_TERM_MAX);
    CHECK(craft_node_role(f.node[2]) != CRAFT_LEADER);
    CHECK(craft_node_role(f.node[2]) != CRAFT_CANDIDATE);
    fx_close(&f);
}

/* Takes n's updates, reporting them persisted (a candidate's own vote counts once it is). */
static void persist_all(struct craft_node *n)
{
    while (craft_has_update(n)) {
        struct craft_update u;
        if (craft_take_update(n, &u) != 0) {
            abort();
        }
        if (u.seq != 0) {
            craft_persisted(n, u.seq);
        }
    }
}

/* A leader whose log reaches the index bound refuses more entries instead of wrapping. */
TEST(no_append_past_the_index_bound)
{
    struct craft_config c;
    craft_config_init(&c, 1);
    struct craft_snapshot_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.conf = fx_conf(1, 1);
    meta.index = CRAFT_INDEX_MAX - 2;
    meta.term = 1;
    meta.conf_index = 1;
    struct craft_boot b = {0};
    b.hard_state.term = 1;
    b.snapshot = &meta;
    struct craft_node *n;
    CHECK_OK(craft_node_new(&c, &b, &n));
    for (unsigned i = 0; i < 4 * c.election_ticks && craft_node_role(n) != CRAFT_LEADER; i++) {
        CHECK_OK(craft_tick(n));
        persist_all(n);
    }
    CHECK_EQ(craft_node_role(n), CRAFT_LEADER);
    /* The new leader's barrier took CRAFT_INDEX_MAX - 1. */
    CHECK_EQ(craft_node_last_index(n), CRAFT_INDEX_MAX - 1);
    craft_index at = 0;
    CHECK_OK(craft_propose(n, "a", 1, &at, NULL));
    persist_all(n);
    CHECK_EQ(at, CRAFT_INDEX_MAX);
    CHECK_EQ(craft_propose(n, "b", 1, &at, NULL), CRAFT_ETOOBIG);
    CHECK_EQ(craft_node_last_index(n), CRAFT_INDEX_MAX);
    craft_node_free(n);
    craft_configuration_close(&meta.conf, NULL);
}

HARNESS_MAIN()
