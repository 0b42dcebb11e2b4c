/* Error codes, configurations and their encoding, boot validation, and out-of-memory at every
 * allocation. */
#include "core_fixture.h"
#include "harness.h"

TEST(strerror_and_names_cover_every_code)
{
    CHECK_STR_EQ(craft_err_name(CRAFT_ENOTLEADER), "CRAFT_ENOTLEADER");
    CHECK_STR_EQ(craft_strerror(CRAFT_ENOMEM), "out of memory");
    CHECK_STR_EQ(craft_strerror(12345), "unknown error");
    for (int rc = -1; rc >= CRAFT_EAPPLY; rc--) {
        CHECK(strcmp(craft_strerror(rc), "unknown error") != 0);
        CHECK(strncmp(craft_err_name(rc), "CRAFT_E", 7) == 0);
    }
    CHECK_STR_EQ(craft_role_name(CRAFT_LEADER), "leader");
    CHECK_STR_EQ(craft_message_type_name(CRAFT_MSG_APPEND_ENTRIES), "AppendEntries");
}

TEST(configuration_add_validates)
{
    struct craft_configuration c;
    craft_configuration_init(&c);
    CHECK_OK(craft_configuration_add(&c, NULL, 1, "a:1", CRAFT_VOTER));
    CHECK_EQ(craft_configuration_add(&c, NULL, 1, "b:1", CRAFT_VOTER), CRAFT_EEXISTS);
    CHECK_EQ(craft_configuration_add(&c, NULL, 0, "b:1", CRAFT_VOTER), CRAFT_EINVAL);
    CHECK_EQ(craft_configuration_add(&c, NULL, 2, "b:1", 9), CRAFT_EINVAL);
    char big[CRAFT_ADDRESS_MAX + 1];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_EQ(craft_configuration_add(&c, NULL, 2, big, CRAFT_VOTER), CRAFT_EINVAL);
    CHECK_OK(craft_configuration_add(&c, NULL, 2, "b:1", CRAFT_LEARNER));
    CHECK_EQ(craft_configuration_voters(&c), 1);
    craft_configuration_close(&c, NULL);
}

TEST(configuration_round_trip_and_total_decoding)
{
    struct craft_configuration c = fx_conf(5, 3), d;
    void *buf;
    size_t size;
    CHECK_OK(craft_configuration_encode(&c, NULL, &buf, &size));
    CHECK_OK(craft_configuration_decode(buf, size, NULL, &d));
    CHECK_EQ(d.n, 5);
    for (unsigned i = 0; i < 5; i++) {
        CHECK_EQ(d.servers[i].id, c.servers[i].id);
        CHECK_EQ(d.servers[i].role, c.servers[i].role);
        CHECK_STR_EQ(d.servers[i].address, c.servers[i].address);
    }
    craft_configuration_close(&d, NULL);
    /* Every truncation and every single-byte change either decodes or is refused cleanly. */
    for (size_t cut = 0; cut < size; cut++) {
        CHECK(craft_configuration_decode(buf, cut, NULL, &d) != 0);
    }
    uint8_t *p = buf;
    for (size_t i = 0; i < size; i++) {
        for (int bit = 0; bit < 8; bit++) {
            p[i] ^= (uint8_t)(1u << bit);
            if (craft_configuration_decode(p, size, NULL, &d) == 0) {
                craft_configuration_close(&d, NULL);
            }
            p[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* A count that the bytes cannot hold is refused before allocating. */
    uint8_t hostile[] = {1, 0xff, 0xff, 0xff, 0xff, 0};
    CHECK_EQ(craft_configuration_decode(hostile, sizeof hostile, NULL, &d), CRAFT_EMALFORMED);
    uint8_t version[] = {9, 0, 0, 0, 0};
    CHECK_EQ(craft_configuration_decode(version, sizeof version, NULL, &d), CRAFT_EVERSION);
    craft_free(NULL, buf);
    craft_configuration_close(&c, NULL);
}

TEST(config_validation)
{
    struct craft_config c;
    struct craft_node *n;
    craft_config_init(&c, 0);
    CHECK_EQ(craft_node_new(&c, NULL, &n), CRAFT_EINVAL);
    craft_config_init(&c, 1);
    c.heartbeat_ticks = c.election_ticks;
    CHECK_EQ(craft_node_new(&c, NULL, &n), CRAFT_EINVAL);
    craft_config_init(&c, 1);
    c.max_inflight = 0;
    CHECK_EQ(craft_node_new(&c, NULL, &n), CRAFT_EINVAL);
    /* A bootstrap configuration must contain the node itself. */
    craft_config_init(&c, 7);
    struct craft_configuration conf = fx_conf(3, 3);
    struct craft_boot b = {0};
    b.bootstrap = &conf;
    CHECK_EQ(craft_node_new(&c, &b, &n), CRAFT_EINVAL);
    craft_configuration_close(&conf, NULL);
}

TEST(boot_rejects_inconsistent_state)
{
    struct craft_config c;
    craft_config_init(&c, 1);
    struct craft_node *n;
    struct craft_entry e[2] = {{1, 1, CRAFT_ENTRY_COMMAND, "a", 1}, {1, 3, CRAFT_ENTRY_COMMAND, "b", 1}};
    struct craft_boot b = {0};
    b.hard_state.term = 1;
    b.entries = e;
    b.n_entries = 2;
    CHECK_EQ(craft_node_new(&c, &b, &n), CRAFT_ECORRUPT); /* a gap */
    e[1].index = 2;
    e[1].term = 5;
    CHECK_EQ(craft_node_new(&c, &b, &n), CRAFT_ECORRUPT); /* entry term above the hard state */
    b.hard_state.term = 5;
    b.hard_state.commit = 99; /* a commit hint past the log is capped */
    CHECK_OK(craft_node_new(&c, &b, &n));
    CHECK_EQ(craft_node_commit(n), 2);
    craft_node_free(n);
}

TEST(persisted_rejects_unknown_ticket)
{
    struct fx f;
    fx_init(&f, 1);
    CHECK_EQ(craft_persisted(f.node[1], 999), CRAFT_EINVAL);
    fx_close(&f);
}

/* An allocator that fails after a budget of allocations. */
struct budget {
    long left;
    long failures;
};

static void *b_malloc(void *d, size_t s)
{
    struct budget *b = d;
    if (b->left-- <= 0) {
        b->failures++;
        return NULL;
    }
    return malloc(s);
}

static void *b_calloc(void *d, size_t n, size_t s)
{
    struct budget *b = d;
    if (b->left-- <= 0) {
        b->failures++;
        return NULL;
    }
    return calloc(n, s);
}

static void *b_realloc(void *d, void *p, size_t s)
{
    struct budget *b = d;
    if (b->left-- <= 0) {
        b->failures++;
        return NULL;
    }
    return realloc(p, s);
}

static void b_free(void *d, void *p)
{
    (void)d;
    free(p);
}

/* Out-of-memory at every allocation of a three-node run: every failure is reported as
 * CRAFT_ENOMEM, nothing crashes, and ASan sees no leak. */
TEST(out_of_memory_at_every_allocation)
{
    unsigned saw_enomem = 0;
    for (long budget = 0; budget < 400; budget++) {
        struct budget bd = {budget, 0};
        struct craft_allocator a = {&bd, b_malloc, b_calloc, b_realloc, b_free};
        struct craft_configuration conf = fx_conf(3, 3);
        struct craft_node *nodes[4] = {NULL};
        bool ok = true;
        for (int i = 1; i <= 3 && ok; i++) {
            struct craft_config c;
            craft_config_init(&c, (craft_id)i);
            c.alloc = &a;
            c.pre_vote = false;
            struct craft_boot b = {0};
            b.bootstrap = &conf;
            int rc = craft_node_new(&c, &b, &nodes[i]);
            if (rc != 0) {
                CHECK_EQ(rc, CRAFT_ENOMEM);
                ok = false;
            }
        }
        /* Drive node 1 to an election and a proposal, taking updates, stepping the results
         * into the others, with every call allowed to fail. */
        for (int t = 0; t < 40 && ok; t++) {
            int rc = craft_tick(nodes[1]);
            if (rc == 0 && craft_node_role(nodes[1]) == CRAFT_LEADER) {
                rc = craft_propose(nodes[1], "x", 1, NULL, NULL);
            }
            for (int i = 1; i <= 3 && rc == 0; i++) {
                struct craft_update u;
                if (!craft_has_update(nodes[i])) {
                    continue;
                }
                rc = craft_take_update(nodes[i], &u);
                if (rc != 0) {
                    break;
                }
                struct craft_message msgs[16];
                size_t k = u.n_messages < 16 ? u.n_messages : 16;
                if (k > 0) {
                    memcpy(msgs, u.messages, k * sizeof msgs[0]);
                }
                uint64_t seq = u.seq;
                if (seq != 0) {
                    rc = craft_persisted(nodes[i], seq);
                }
                for (size_t j = 0; j < k && rc == 0; j++) {
                    if (msgs[j].type == CRAFT_MSG_APPEND_ENTRIES &&
                        msgs[j].u.append_entries.n_entries > 0) {
                        continue; /* their pointers die with the next call */
                    }
                    rc = craft_step(nodes[msgs[j].to], &msgs[j]);
                }
            }
            if (rc != 0) {
                CHECK_EQ(rc, CRAFT_ENOMEM);
                saw_enomem++;
                ok = false;
            }
        }
        for (int i = 1; i <= 3; i++) {
            craft_node_free(nodes[i]);
        }
        craft_configuration_close(&conf, NULL);
    }
    CHECK(saw_enomem > 0);
}

HARNESS_MAIN()
