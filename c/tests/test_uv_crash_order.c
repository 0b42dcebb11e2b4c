/* A crash between any two store operations of a disk job leaves a node that starts again and
 * catches up (issue 12, defect 1). The runtime used to append a job's entries and then save its
 * hard state: a follower whose first contact with a new term is an AppendEntries gets both in
 * one job, and a crash between them left a log whose last term is above the durable term, which
 * boot rightly refuses (a vote could otherwise be cast twice in a term). The write order is now
 * the driver contract's (storage/driver_contract.h), shared with the simulator.
 *
 * The crash is a store wrapper that lets k store writes through and fails every later one, as
 * a process killed at that point would leave the disk store (each of its writes is synced
 * before it returns). k runs over every write of a follower that joins late, so its first
 * contact with the leader's term brings the term and entries together. */
#include "uv_fixture.h"

#include "craft/store.h"

struct crash_store {
    struct craft_store iface;
    struct craft_store *inner;
    unsigned writes_left;
    bool crashed;
};

static int allow(struct crash_store *c)
{
    if (c->crashed || c->writes_left == 0) {
        c->crashed = true;
        return CRAFT_EIO;
    }
    c->writes_left--;
    return 0;
}

#define INNER(c) ((struct crash_store *)(c))->inner
#define PASS(name, ...) INNER(impl)->name(INNER(impl)->impl, __VA_ARGS__)

static int cs_load_hard_state(void *impl, struct craft_hard_state *out)
{
    return PASS(load_hard_state, out);
}
static int cs_save_hard_state(void *impl, const struct craft_hard_state *hs)
{
    int rc = allow(impl);
    return rc != 0 ? rc : PASS(save_hard_state, hs);
}
static int cs_bounds(void *impl, craft_index *first, craft_index *last)
{
    return PASS(bounds, first, last);
}
static int cs_append(void *impl, const struct craft_entry *e, size_t n)
{
    int rc = allow(impl);
    return rc != 0 ? rc : PASS(append, e, n);
}
static int cs_truncate(void *impl, craft_index from)
{
    int rc = allow(impl);
    return rc != 0 ? rc : PASS(truncate, from);
}
static int cs_compact(void *impl, craft_index upto)
{
    int rc = allow(impl);
    return rc != 0 ? rc : PASS(compact, upto);
}
static int cs_entries(void *impl, craft_index lo, craft_index hi, const struct craft_allocator *a,
                      struct craft_entry **out, size_t *n)
{
    return PASS(entries, lo, hi, a, out, n);
}
static int cs_term(void *impl, craft_index i, craft_term *out)
{
    return PASS(term, i, out);
}
static int cs_snapshot_begin(void *impl, const struct craft_snapshot_meta *m, void **w)
{
    return PASS(snapshot_begin, m, w);
}
static int cs_snapshot_write(void *impl, void *w, const void *buf, size_t len)
{
    return PASS(snapshot_write, w, buf, len);
}
static int cs_snapshot_commit(void *impl, void *w)
{
    int rc = allow(impl);
    if (rc != 0) {
        PASS(snapshot_abort, w);
        return rc;
    }
    return PASS(snapshot_commit, w);
}
static void cs_snapshot_abort(void *impl, void *w)
{
    PASS(snapshot_abort, w);
}
static int cs_snapshot_meta(void *impl, const struct craft_allocator *a,
                            struct craft_snapshot_meta *out)
{
    return PASS(snapshot_meta, a, out);
}
static int cs_snapshot_open(void *impl, void **r)
{
    return PASS(snapshot_open, r);
}
static int cs_snapshot_read(void *impl, void *r, uint64_t off, void *buf, size_t len, size_t *n)
{
    return PASS(snapshot_read, r, off, buf, len, n);
}
static void cs_snapshot_close(void *impl, void *r)
{
    PASS(snapshot_close, r);
}
static void cs_close(void *impl)
{
    struct crash_store *c = impl;
    craft_store_close(c->inner);
    free(c);
}

static unsigned crash_after;
static struct crash_store *last_wrapper;

static struct craft_store *make_crash_store(struct uf_node *u)
{
    struct craft_disk_store_options o;
    craft_disk_store_options_init(&o);
    o.segment_size = 1 << 20;
    struct craft_store *inner = NULL;
    if (craft_disk_store_open(u->dir, &o, NULL, &inner, NULL) != 0) {
        return NULL;
    }
    struct crash_store *c = calloc(1, sizeof *c);
    c->inner = inner;
    c->writes_left = crash_after;
    c->iface = (struct craft_store){
        .version = CRAFT_STORE_VERSION,
        .impl = c,
        .load_hard_state = cs_load_hard_state,
        .save_hard_state = cs_save_hard_state,
        .bounds = cs_bounds,
        .append = cs_append,
        .truncate = cs_truncate,
        .compact = cs_compact,
        .entries = cs_entries,
        .term = cs_term,
        .snapshot_begin = cs_snapshot_begin,
        .snapshot_write = cs_snapshot_write,
        .snapshot_commit = cs_snapshot_commit,
        .snapshot_abort = cs_snapshot_abort,
        .snapshot_meta = cs_snapshot_meta,
        .snapshot_open = cs_snapshot_open,
        .snapshot_read = cs_snapshot_read,
        .snapshot_close = cs_snapshot_close,
        .close = cs_close,
    };
    last_wrapper = c;
    return &c->iface;
}

static bool crashed_or_caught_up(struct uf *f, void *arg)
{
    craft_index want = *(craft_index *)arg;
    return (last_wrapper != NULL && last_wrapper->crashed) || uf_applied(f, 2) >= want;
}

static bool caught_up(struct uf *f, void *arg)
{
    craft_index want = *(craft_index *)arg;
    return uf_leader(f) != 0 && uf_applied(f, 2) >= want && uf_applied(f, uf_leader(f)) >= want;
}

TEST(follower_crashed_between_any_two_writes_starts_and_catches_up)
{
    bool any_crash = false;
    for (unsigned k = 0; k <= 6; k++) {
        struct uf f;
        uf_init(&f, 3);
        CHECK_OK(uf_open(&f, 1));
        CHECK_OK(uf_open(&f, 3));
        CHECK(uf_run_until(&f, uf_has_leader, NULL, 8000));
        for (int c = 0; c < 3; c++) {
            CHECK_OK(uf_propose(&f, uf_leader(&f), 1));
        }
        CHECK(uf_wait_done(&f, 3, 8000));
        craft_index want = uf_applied(&f, uf_leader(&f));

        /* Node 2 joins late: its first write is its bootstrap, then the leader's term and
         * entries arrive together. It crashes after k writes. */
        crash_after = k;
        last_wrapper = NULL;
        f.node[2].make_store = make_crash_store;
        CHECK_OK(uf_open(&f, 2));
        uf_run_until(&f, crashed_or_caught_up, &want, 8000);
        bool crashed = last_wrapper != NULL && last_wrapper->crashed;
        any_crash |= crashed;
        for (int i = 1; i <= 3; i++) {
            uf_stop(&f, i);
        }

        /* Everything restarts from its data directory; node 2 must boot and catch up. */
        f.node[2].make_store = NULL;
        for (int i = 1; i <= 3; i++) {
            int rc = uf_open(&f, i);
            if (rc != 0) {
                FAIL("crash after %u writes%s: node %d does not start again: %s (%s)", k,
                     crashed ? "" : " (no crash)", i, craft_err_name(rc),
                     craft_uv_last_error());
            }
        }
        CHECK(uf_run_until(&f, caught_up, &want, 15000));
        CHECK(uf_consistent(&f));
        uf_close(&f);
    }
    CHECK(any_crash);
}

HARNESS_MAIN()
