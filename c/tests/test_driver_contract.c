/* The driver contract's write order (storage/driver_contract.c), crash point by crash point:
 * after any prefix of a job's store operations, the store boots, and every entry the booted
 * node counts as committed is the committed one. Shared by the simulator and the runtime. */
#include "harness.h"

#include <string.h>

#include "craft.h"
#include "storage/driver_contract.h"

static void add_conf(struct craft_configuration *c)
{
    craft_configuration_init(c);
    craft_configuration_add(c, NULL, 1, "a:1", CRAFT_VOTER);
    craft_configuration_add(c, NULL, 2, "b:1", CRAFT_VOTER);
    craft_configuration_add(c, NULL, 3, "c:1", CRAFT_VOTER);
}

/* A store holding entry 1 (the configuration, term 1) and entries 2.. with the given terms. */
static struct craft_store *store_with(const craft_term *terms, size_t n, craft_term term,
                                      craft_index commit)
{
    struct craft_store *s;
    if (craft_mem_store_new(NULL, &s) != 0) {
        abort();
    }
    struct craft_configuration c;
    add_conf(&c);
    void *buf;
    size_t size;
    craft_configuration_encode(&c, NULL, &buf, &size);
    struct craft_entry e[16];
    e[0] = (struct craft_entry){.term = 1, .index = 1, .type = CRAFT_ENTRY_CONFIG, .data = buf,
                                .size = size};
    for (size_t k = 0; k < n; k++) {
        e[k + 1] = (struct craft_entry){.term = terms[k], .index = k + 2,
                                        .type = CRAFT_ENTRY_COMMAND, .data = "x", .size = 1};
    }
    struct craft_hard_state hs = {.term = term, .commit = commit};
    if (s->save_hard_state(s->impl, &hs) != 0 || s->append(s->impl, e, n + 1) != 0) {
        abort();
    }
    free(buf);
    craft_configuration_close(&c, NULL);
    return s;
}

/* Boots a core from s as a driver does; 0 or the error. */
static int boot(struct craft_store *s, struct craft_node **out)
{
    struct craft_boot b = {0};
    struct craft_snapshot_meta meta;
    memset(&meta, 0, sizeof meta);
    s->load_hard_state(s->impl, &b.hard_state);
    if (s->snapshot_meta(s->impl, NULL, &meta) == 0) {
        b.snapshot = &meta;
    }
    craft_index first, last;
    s->bounds(s->impl, &first, &last);
    struct craft_entry *e = NULL;
    size_t n = 0;
    if (last >= first && s->entries(s->impl, first, last, NULL, &e, &n) != 0) {
        abort();
    }
    b.entries = e;
    b.n_entries = n;
    struct craft_config cfg;
    craft_config_init(&cfg, 2);
    int rc = craft_node_new(&cfg, &b, out);
    free(e);
    if (b.snapshot != NULL) {
        craft_configuration_close(&meta.conf, NULL);
    }
    return rc;
}

static unsigned ops_of(const struct craft__persist_job *j)
{
    return (unsigned)j->has_hard_state + (j->chunk != NULL ? 3 : 0) + 1 + (unsigned)j->n_entries;
}

/* Runs job j on fresh stores made by make(), crashing after every possible number of store
 * operations, and checks each result against the final log's terms (final[i - 1] for index
 * i; a booted node may count as committed only entries that have those terms, or lie under
 * its snapshot). */
static int every_crash_point(struct craft_store *(*make)(void), const struct craft__persist_job *j,
                             const craft_term *final, size_t n_final)
{
    unsigned ops = ops_of(j);
    for (unsigned k = 0; k <= ops; k++) {
        struct craft_store *s = make();
        struct craft__snap_rx rx = {0};
        struct craft__crash_point crash = {.armed = true, .ops_left = k};
        int rc = craft__persist(s, &rx, j, &crash, NULL);
        craft__snap_rx_abort(s, &rx);
        if (rc != 0 && rc != CRAFT__PERSIST_CRASHED) {
            FAIL_R(rc, "crash after %u operations: the job failed: %s", k, craft_err_name(rc));
        }
        struct craft_node *n = NULL;
        rc = boot(s, &n);
        if (rc != 0) {
            FAIL_R(rc, "crash after %u operations: the store does not boot: %s", k,
                   craft_err_name(rc));
        }
        craft_index commit = craft_node_commit(n);
        craft_index snap = craft_node_first_index(n) - 1;
        for (craft_index i = snap + 1; i <= commit; i++) {
            if (i > n_final || craft_node_term_at(n, i) != final[i - 1]) {
                FAIL_R(-1,
                       "crash after %u operations: the booted node counts index %llu (term "
                       "%llu) as committed, but the committed entry there has term %llu",
                       k, (unsigned long long)i, (unsigned long long)craft_node_term_at(n, i),
                       (unsigned long long)(i <= n_final ? final[i - 1] : 0));
            }
        }
        craft_node_free(n);
        craft_store_close(s);
    }
    return 0;
}

/* A follower in term 2 holds uncommitted entries 4 and 5 of term 2; the leader of term 3 tells
 * it about term 3 and replaces them (one job: the term change, the truncation, the append,
 * commit 6). */
static struct craft_store *divergent_follower(void)
{
    static const craft_term terms[] = {2, 2, 2, 2};
    return store_with(terms, 4, 2, 3);
}

TEST(new_term_and_replaced_suffix_every_crash_point)
{
    struct craft_entry e[3];
    for (int k = 0; k < 3; k++) {
        e[k] = (struct craft_entry){.term = 3, .index = 4 + (craft_index)k,
                                    .type = CRAFT_ENTRY_COMMAND, .data = "y", .size = 1};
    }
    struct craft__persist_job j = {
        .has_hard_state = true,
        .hard_state = {.term = 3, .vote = 0, .commit = 6},
        .entries = e,
        .n_entries = 3,
    };
    static const craft_term final[] = {1, 2, 2, 3, 3, 3};
    CHECK_OK(every_crash_point(divergent_follower, &j, final, 6));
}

/* The same follower is sent a snapshot at 10 (term 3) that does not match its log (so the log
 * is discarded), then entries 11 and 12. */
TEST(snapshot_replacing_a_divergent_log_every_crash_point)
{
    struct craft_configuration c;
    add_conf(&c);
    static char data[64];
    memset(data, 's', sizeof data);
    struct craft_install_snapshot chunk = {
        .meta = {.index = 10, .term = 3, .conf = c, .conf_index = 1, .size = sizeof data},
        .offset = 0,
        .data = data,
        .size = sizeof data,
        .done = true,
    };
    struct craft_entry e[2];
    for (int k = 0; k < 2; k++) {
        e[k] = (struct craft_entry){.term = 3, .index = 11 + (craft_index)k,
                                    .type = CRAFT_ENTRY_COMMAND, .data = "z", .size = 1};
    }
    struct craft__persist_job j = {
        .has_hard_state = true,
        .hard_state = {.term = 3, .vote = 0, .commit = 12},
        .chunk = &chunk,
        .discard_log = true,
        .entries = e,
        .n_entries = 2,
    };
    static const craft_term final[] = {1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3};
    CHECK_OK(every_crash_point(divergent_follower, &j, final, 12));
    craft_configuration_close(&c, NULL);
}

/* The commit hint never names an index the job is about to change. */
TEST(commit_hint_stays_below_what_the_job_changes)
{
    struct craft_entry e = {.term = 3, .index = 4, .type = CRAFT_ENTRY_COMMAND};
    struct craft__persist_job j = {.has_hard_state = true, .entries = &e, .n_entries = 1};
    CHECK_EQ(craft__persist_commit_hint(&j, 9), 3);
    CHECK_EQ(craft__persist_commit_hint(&j, 2), 2);
    j.n_entries = 0;
    CHECK_EQ(craft__persist_commit_hint(&j, 9), 9);
    struct craft_install_snapshot chunk = {.meta = {.index = 7}, .done = true};
    j.chunk = &chunk;
    CHECK_EQ(craft__persist_commit_hint(&j, 9), 7);
    j.discard_log = true;
    CHECK_EQ(craft__persist_commit_hint(&j, 9), 0);
}

HARNESS_MAIN()
