/*
 * The storage conformance suite: one set of test bodies, run against every store through a
 * factory, so that the in-memory store and the durable store cannot drift apart in semantics.
 * A store written in Python or Lua is expected to pass the same rules (the bindings port them).
 *
 * Every test runs with a counting allocator for the store and another for what the caller
 * receives, and fails if either leaks. For a durable store, fx_reopen() closes and reopens the
 * store in the middle of a test, so every rule is also checked across a restart; for the
 * in-memory store it does nothing.
 */
#include "harness.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "craft.h"
#include "craft/store.h"

/* --- A counting allocator that can also fail on demand ----------------------------------- */

struct counting {
    struct craft_allocator a;
    long live;       /* allocations not yet freed */
    long fail_after; /* fail every allocation once this many more succeeded; -1: never */
};

static bool counting_should_fail(struct counting *c)
{
    if (c->fail_after < 0) {
        return false;
    }
    if (c->fail_after == 0) {
        return true;
    }
    c->fail_after--;
    return false;
}

static void *c_malloc(void *data, size_t size)
{
    struct counting *c = data;
    if (counting_should_fail(c)) {
        return NULL;
    }
    void *p = malloc(size == 0 ? 1 : size);
    if (p != NULL) {
        c->live++;
    }
    return p;
}

static void *c_calloc(void *data, size_t nmemb, size_t size)
{
    struct counting *c = data;
    if (counting_should_fail(c)) {
        return NULL;
    }
    void *p = calloc(nmemb == 0 ? 1 : nmemb, size == 0 ? 1 : size);
    if (p != NULL) {
        c->live++;
    }
    return p;
}

static void *c_realloc(void *data, void *ptr, size_t size)
{
    struct counting *c = data;
    if (counting_should_fail(c)) {
        return NULL;
    }
    void *p = realloc(ptr, size == 0 ? 1 : size);
    if (p != NULL && ptr == NULL) {
        c->live++;
    }
    return p;
}

static void c_free(void *data, void *ptr)
{
    struct counting *c = data;
    if (ptr != NULL) {
        c->live--;
        free(ptr);
    }
}

static void counting_init(struct counting *c)
{
    c->a.data = c;
    c->a.malloc = c_malloc;
    c->a.calloc = c_calloc;
    c->a.realloc = c_realloc;
    c->a.free = c_free;
    c->live = 0;
    c->fail_after = -1;
}

/* --- Factories --------------------------------------------------------------------------- */

struct fx {
    const struct factory *f;
    char *dir; /* durable stores only */
    struct counting store_alloc;
    struct counting user_alloc; /* what the caller receives from entries() and snapshot_meta() */
    struct craft_store *s;
};

struct factory {
    const char *name;
    int (*open)(struct fx *fx);
    bool durable;
};

static int mem_open(struct fx *fx)
{
    return craft_mem_store_new(&fx->store_alloc.a, &fx->s);
}

static int disk_open(struct fx *fx)
{
    struct craft_disk_store_options o;
    craft_disk_store_options_init(&o);
    o.fsync = false;          /* the crash tests check durability; this checks semantics */
    o.segment_size = 4096;    /* small segments: rolls and deletions happen in every test */
    char *msg = NULL;
    int rv = craft_disk_store_open(fx->dir, &o, &fx->store_alloc.a, &fx->s, &msg);
    if (rv != 0) {
        fprintf(stderr, "disk store open: %s\n", msg != NULL ? msg : craft_strerror(rv));
    }
    craft_free(&fx->store_alloc.a, msg);
    return rv;
}

static const struct factory mem_factory = {"mem", mem_open, false};
static const struct factory disk_factory = {"disk", disk_open, true};

static void fx_reopen(struct fx *fx)
{
    if (!fx->f->durable) {
        return;
    }
    craft_store_close(fx->s);
    fx->s = NULL;
    CHECK_OK(fx->f->open(fx));
}

static void run(const struct factory *f, void (*body)(struct fx *))
{
    struct fx fx;
    memset(&fx, 0, sizeof fx);
    fx.f = f;
    counting_init(&fx.store_alloc);
    counting_init(&fx.user_alloc);
    if (f->durable) {
        fx.dir = harness_tmpdir();
    }
    CHECK_OK(f->open(&fx));
    body(&fx);
    craft_store_close(fx.s);
    if (harness_failed()) {
        return;
    }
    CHECK_EQ(fx.store_alloc.live, 0);
    CHECK_EQ(fx.user_alloc.live, 0);
}

#define STORE_TEST(name)                                                                          \
    static void body_##name(struct fx *fx);                                                       \
    TEST(mem_##name)                                                                              \
    {                                                                                             \
        run(&mem_factory, body_##name);                                                           \
    }                                                                                             \
    TEST(disk_##name)                                                                             \
    {                                                                                             \
        run(&disk_factory, body_##name);                                                          \
    }                                                                                             \
    static void body_##name(struct fx *fx)

/* --- Helpers ------------------------------------------------------------------------------ */

/* The payload of entry i in term t: deterministic, of varying length (0 to 300 bytes), so a
 * read can be checked without remembering what was written. */
static size_t payload(craft_index i, craft_term t, uint8_t *buf)
{
    size_t n = (size_t)((i * 7919u + t * 31u) % 301u);
    for (size_t k = 0; k < n; k++) {
        buf[k] = (uint8_t)(i * 131u + t * 17u + k);
    }
    return n;
}

/* Appends entries [lo, hi] of term t, each with payload(i, t). */
static int append_range(struct craft_store *s, craft_index lo, craft_index hi, craft_term t)
{
    size_t n = (size_t)(hi - lo + 1);
    struct craft_entry *es = calloc(n, sizeof *es);
    uint8_t *bufs = malloc(n * 301);
    if (es == NULL || bufs == NULL) {
        free(es);
        free(bufs);
        return CRAFT_ENOMEM;
    }
    for (size_t k = 0; k < n; k++) {
        es[k].index = lo + k;
        es[k].term = t;
        es[k].type = (uint8_t)((lo + k - 1) % 3 == 2 ? CRAFT_ENTRY_BARRIER : CRAFT_ENTRY_COMMAND);
        es[k].data = bufs + k * 301;
        es[k].size = payload(lo + k, t, bufs + k * 301);
    }
    int rv = s->append(s->impl, es, n);
    free(es);
    free(bufs);
    return rv;
}

static void check_bounds(struct fx *fx, craft_index first, craft_index last)
{
    craft_index f = 99, l = 99;
    CHECK_OK(fx->s->bounds(fx->s->impl, &f, &l));
    CHECK_EQ(f, first);
    CHECK_EQ(l, last);
}

/* Reads [lo, hi] and checks every entry against term t (the term of each entry is t_of(i)). */
static void check_range(struct fx *fx, craft_index lo, craft_index hi,
                        craft_term (*t_of)(craft_index))
{
    struct craft_entry *es = NULL;
    size_t n = 0;
    uint8_t buf[301];
    CHECK_OK(fx->s->entries(fx->s->impl, lo, hi, &fx->user_alloc.a, &es, &n));
    CHECK_EQ(n, hi - lo + 1);
    long live_before_free = fx->user_alloc.live;
    for (size_t k = 0; k < n; k++) {
        craft_index i = lo + k;
        craft_term t = t_of(i);
        size_t want = payload(i, t, buf);
        if (es[k].index != i || es[k].term != t || es[k].size != want || es[k].data == NULL ||
            memcmp(es[k].data, buf, want) != 0 ||
            es[k].type != (uint8_t)((i - 1) % 3 == 2 ? CRAFT_ENTRY_BARRIER : CRAFT_ENTRY_COMMAND)) {
            craft_free(&fx->user_alloc.a, es);
            FAIL("entry %llu differs (index %llu term %llu size %zu, want term %llu size %zu)",
                 (unsigned long long)i, (unsigned long long)es[k].index,
                 (unsigned long long)es[k].term, es[k].size, (unsigned long long)t, want);
        }
    }
    craft_free(&fx->user_alloc.a, es);
    /* One allocation, released by one free. */
    CHECK_EQ(fx->user_alloc.live, live_before_free - 1);
}

static craft_term term_one(craft_index i)
{
    (void)i;
    return 1;
}

static craft_term term_of_store(struct fx *fx, craft_index i, int *rv)
{
    craft_term t = 0;
    *rv = fx->s->term(fx->s->impl, i, &t);
    return t;
}

/* --- Tests -------------------------------------------------------------------------------- */

STORE_TEST(empty_store)
{
    struct craft_hard_state hs = {7, 7, 7};
    check_bounds(fx, 1, 0);
    CHECK_OK(fx->s->load_hard_state(fx->s->impl, &hs));
    CHECK_EQ(hs.term, 0);
    CHECK_EQ(hs.vote, 0);
    CHECK_EQ(hs.commit, 0);
    int rv;
    CHECK_EQ(term_of_store(fx, 0, &rv), 0);
    CHECK_OK(rv);
    term_of_store(fx, 1, &rv);
    CHECK_EQ(rv, CRAFT_EUNAVAILABLE);
    struct craft_entry *es = NULL;
    size_t n = 5;
    CHECK_EQ(fx->s->entries(fx->s->impl, 1, 1, &fx->user_alloc.a, &es, &n), CRAFT_EUNAVAILABLE);
    struct craft_snapshot_meta m;
    CHECK_EQ(fx->s->snapshot_meta(fx->s->impl, &fx->user_alloc.a, &m), CRAFT_ENOTFOUND);
    void *r = NULL;
    CHECK_EQ(fx->s->snapshot_open(fx->s->impl, &r), CRAFT_ENOTFOUND);
    CHECK_EQ(fx->s->version, CRAFT_STORE_VERSION);
}

STORE_TEST(hard_state_roundtrip)
{
    struct craft_hard_state hs = {5, 3, 17}, got;
    CHECK_OK(fx->s->save_hard_state(fx->s->impl, &hs));
    CHECK_OK(fx->s->load_hard_state(fx->s->impl, &got));
    CHECK_EQ(got.term, 5);
    CHECK_EQ(got.vote, 3);
    CHECK_EQ(got.commit, 17);
    for (uint64_t k = 0; k < 20; k++) {
        hs.term = 6 + k;
        hs.vote = k % 4;
        hs.commit = 100 + k;
        CHECK_OK(fx->s->save_hard_state(fx->s->impl, &hs));
        if (k % 5 == 0) {
            fx_reopen(fx);
            if (harness_failed()) {
                return;
            }
        }
    }
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    CHECK_OK(fx->s->load_hard_state(fx->s->impl, &got));
    CHECK_EQ(got.term, 25);
    CHECK_EQ(got.vote, 3);
    CHECK_EQ(got.commit, 119);
}

STORE_TEST(append_and_read)
{
    CHECK_OK(append_range(fx->s, 1, 1, 1));
    CHECK_OK(append_range(fx->s, 2, 100, 1));
    CHECK_OK(append_range(fx->s, 101, 301, 1));
    check_bounds(fx, 1, 301);
    if (harness_failed()) {
        return;
    }
    check_range(fx, 1, 301, term_one);
    check_range(fx, 50, 50, term_one);
    check_range(fx, 299, 301, term_one);
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    check_bounds(fx, 1, 301);
    check_range(fx, 1, 301, term_one);
    int rv;
    CHECK_EQ(term_of_store(fx, 301, &rv), 1);
    CHECK_OK(rv);
}

STORE_TEST(append_empty_batch_is_noop)
{
    CHECK_OK(fx->s->append(fx->s->impl, NULL, 0));
    check_bounds(fx, 1, 0);
}

STORE_TEST(entries_returns_one_allocation_with_empty_payloads)
{
    struct craft_entry e[3] = {{1, 1, CRAFT_ENTRY_BARRIER, NULL, 0},
                               {1, 2, CRAFT_ENTRY_BARRIER, NULL, 0},
                               {2, 3, CRAFT_ENTRY_COMMAND, "xyz", 3}};
    CHECK_OK(fx->s->append(fx->s->impl, e, 3));
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    struct craft_entry *es = NULL;
    size_t n = 0;
    CHECK_OK(fx->s->entries(fx->s->impl, 1, 3, &fx->user_alloc.a, &es, &n));
    CHECK_EQ(n, 3);
    CHECK_EQ(fx->user_alloc.live, 1);
    CHECK_EQ(es[0].size, 0);
    CHECK_EQ(es[0].type, CRAFT_ENTRY_BARRIER);
    CHECK_EQ(es[2].term, 2);
    CHECK_EQ(es[2].type, CRAFT_ENTRY_COMMAND);
    CHECK_EQ(es[2].size, 3);
    CHECK(memcmp(es[2].data, "xyz", 3) == 0);
    /* The payload lies inside the allocation, after the array. */
    CHECK((const uint8_t *)es[2].data >= (const uint8_t *)(es + 3));
    craft_free(&fx->user_alloc.a, es);
}

STORE_TEST(append_rejects_gaps_overlaps_and_bad_batches)
{
    CHECK_OK(append_range(fx->s, 1, 10, 2));
    /* Gap. */
    CHECK_EQ(append_range(fx->s, 12, 12, 2), CRAFT_EINVAL);
    /* Overlap: the caller must truncate first. */
    CHECK_EQ(append_range(fx->s, 10, 11, 2), CRAFT_EINVAL);
    /* Not contiguous inside the batch. */
    struct craft_entry e[2] = {{2, 11, CRAFT_ENTRY_COMMAND, "a", 1},
                               {2, 13, CRAFT_ENTRY_COMMAND, "b", 1}};
    CHECK_EQ(fx->s->append(fx->s->impl, e, 2), CRAFT_EINVAL);
    /* A term below the last entry's. */
    struct craft_entry older = {1, 11, CRAFT_ENTRY_COMMAND, "a", 1};
    CHECK_EQ(fx->s->append(fx->s->impl, &older, 1), CRAFT_EINVAL);
    /* Term 0 never exists in a log. */
    struct craft_entry zero = {0, 11, CRAFT_ENTRY_COMMAND, "a", 1};
    CHECK_EQ(fx->s->append(fx->s->impl, &zero, 1), CRAFT_EINVAL);
    check_bounds(fx, 1, 10);
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    check_bounds(fx, 1, 10);
    /* Still appendable where it should be. */
    CHECK_OK(append_range(fx->s, 11, 11, 3));
    check_bounds(fx, 1, 11);
}

STORE_TEST(entries_edges)
{
    CHECK_OK(append_range(fx->s, 1, 20, 1));
    CHECK_OK(fx->s->compact(fx->s->impl, 5));
    struct craft_entry *es = (struct craft_entry *)1;
    size_t n = 9;
    const struct craft_allocator *a = &fx->user_alloc.a;
    CHECK_EQ(fx->s->entries(fx->s->impl, 5, 6, a, &es, &n), CRAFT_ECOMPACTED);
    CHECK_EQ(fx->s->entries(fx->s->impl, 6, 21, a, &es, &n), CRAFT_EUNAVAILABLE);
    CHECK_EQ(fx->s->entries(fx->s->impl, 0, 3, a, &es, &n), CRAFT_EINVAL);
    CHECK_EQ(fx->s->entries(fx->s->impl, 9, 7, a, &es, &n), CRAFT_EINVAL);
    CHECK_OK(fx->s->entries(fx->s->impl, 9, 8, a, &es, &n));
    CHECK_EQ(n, 0);
    CHECK(es == NULL);
    CHECK_EQ(fx->user_alloc.live, 0);
    check_range(fx, 6, 20, term_one);
}

STORE_TEST(term_lookup)
{
    CHECK_OK(append_range(fx->s, 1, 3, 1));
    CHECK_OK(append_range(fx->s, 4, 6, 3));
    CHECK_OK(append_range(fx->s, 7, 7, 4));
    int rv;
    craft_term want[8] = {0, 1, 1, 1, 3, 3, 3, 4};
    for (craft_index i = 0; i <= 7; i++) {
        CHECK_EQ(term_of_store(fx, i, &rv), want[i]);
        CHECK_OK(rv);
    }
    term_of_store(fx, 8, &rv);
    CHECK_EQ(rv, CRAFT_EUNAVAILABLE);
    CHECK_EQ(fx->s->term(fx->s->impl, 1, NULL), CRAFT_EINVAL);
    CHECK_OK(fx->s->compact(fx->s->impl, 4));
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    term_of_store(fx, 3, &rv);
    CHECK_EQ(rv, CRAFT_ECOMPACTED);
    /* The term of the last compacted entry stays known: the next append checks against it. */
    CHECK_EQ(term_of_store(fx, 4, &rv), 3);
    CHECK_OK(rv);
    CHECK_EQ(term_of_store(fx, 5, &rv), 3);
    CHECK_OK(rv);
}

static craft_term term_truncated(craft_index i)
{
    return i <= 40 ? 1 : 2;
}

STORE_TEST(truncate_suffix)
{
    CHECK_OK(append_range(fx->s, 1, 100, 1));
    CHECK_OK(fx->s->truncate(fx->s->impl, 41));
    check_bounds(fx, 1, 40);
    int rv;
    term_of_store(fx, 41, &rv);
    CHECK_EQ(rv, CRAFT_EUNAVAILABLE);
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    check_bounds(fx, 1, 40);
    /* The follower takes the new leader's entries in their place. */
    CHECK_OK(append_range(fx->s, 41, 70, 2));
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    check_bounds(fx, 1, 70);
    check_range(fx, 1, 70, term_truncated);
    /* Past the end: nothing to do. */
    CHECK_OK(fx->s->truncate(fx->s->impl, 71));
    CHECK_OK(fx->s->truncate(fx->s->impl, 1000));
    check_bounds(fx, 1, 70);
    CHECK_EQ(fx->s->truncate(fx->s->impl, 0), CRAFT_EINVAL);
}

STORE_TEST(truncate_everything)
{
    CHECK_OK(append_range(fx->s, 1, 50, 1));
    CHECK_OK(fx->s->truncate(fx->s->impl, 1));
    check_bounds(fx, 1, 0);
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    check_bounds(fx, 1, 0);
    CHECK_OK(append_range(fx->s, 1, 5, 2));
    check_bounds(fx, 1, 5);
}

STORE_TEST(truncate_below_first_is_compacted)
{
    CHECK_OK(append_range(fx->s, 1, 50, 1));
    CHECK_OK(fx->s->compact(fx->s->impl, 10));
    CHECK_EQ(fx->s->truncate(fx->s->impl, 10), CRAFT_ECOMPACTED);
    CHECK_OK(fx->s->truncate(fx->s->impl, 11));
    check_bounds(fx, 11, 10);
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    check_bounds(fx, 11, 10);
    CHECK_OK(append_range(fx->s, 11, 12, 1));
    check_bounds(fx, 11, 12);
}

STORE_TEST(compact_prefix)
{
    CHECK_OK(append_range(fx->s, 1, 400, 1));
    CHECK_OK(fx->s->compact(fx->s->impl, 100));
    check_bounds(fx, 101, 400);
    /* Compacting below the first index again changes nothing. */
    CHECK_OK(fx->s->compact(fx->s->impl, 50));
    CHECK_OK(fx->s->compact(fx->s->impl, 100));
    check_bounds(fx, 101, 400);
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    check_bounds(fx, 101, 400);
    check_range(fx, 101, 400, term_one);
    CHECK_OK(fx->s->compact(fx->s->impl, 399));
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    check_bounds(fx, 400, 400);
    check_range(fx, 400, 400, term_one);
    CHECK_OK(append_range(fx->s, 401, 450, 1));
    check_range(fx, 400, 450, term_one);
}

STORE_TEST(compact_whole_log_then_append)
{
    CHECK_OK(append_range(fx->s, 1, 30, 1));
    CHECK_OK(fx->s->compact(fx->s->impl, 30));
    check_bounds(fx, 31, 30);
    int rv;
    CHECK_EQ(term_of_store(fx, 30, &rv), 1);
    CHECK_OK(rv);
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    check_bounds(fx, 31, 30);
    CHECK_EQ(term_of_store(fx, 30, &rv), 1);
    CHECK_OK(rv);
    /* An append after the compaction point is checked against the compacted entry's term. */
    struct craft_entry older = {0, 31, CRAFT_ENTRY_COMMAND, "x", 1};
    CHECK_EQ(fx->s->append(fx->s->impl, &older, 1), CRAFT_EINVAL);
    CHECK_OK(append_range(fx->s, 31, 40, 2));
    check_bounds(fx, 31, 40);
}

STORE_TEST(compact_past_the_end)
{
    /* After installing a snapshot that is ahead of its log, a follower drops the whole log. */
    CHECK_OK(append_range(fx->s, 1, 20, 1));
    CHECK_OK(fx->s->compact(fx->s->impl, 1000));
    check_bounds(fx, 1001, 1000);
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    check_bounds(fx, 1001, 1000);
    CHECK_OK(append_range(fx->s, 1001, 1010, 5));
    check_bounds(fx, 1001, 1010);
    int rv;
    CHECK_EQ(term_of_store(fx, 1005, &rv), 5);
    CHECK_OK(rv);
}

/* --- snapshots --- */

static void make_meta(struct fx *fx, struct craft_snapshot_meta *m, craft_index index,
                      craft_term term, uint64_t size)
{
    memset(m, 0, sizeof *m);
    m->index = index;
    m->term = term;
    m->conf_index = 1;
    m->size = size;
    craft_configuration_init(&m->conf);
    CHECK_OK(craft_configuration_add(&m->conf, &fx->user_alloc.a, 1, "127.0.0.1:9001",
                                     CRAFT_VOTER));
    CHECK_OK(craft_configuration_add(&m->conf, &fx->user_alloc.a, 2, "127.0.0.1:9002",
                                     CRAFT_VOTER));
    CHECK_OK(craft_configuration_add(&m->conf, &fx->user_alloc.a, 3, "127.0.0.1:9003",
                                     CRAFT_LEARNER));
}

static uint8_t snap_byte(uint64_t seed, uint64_t off)
{
    return (uint8_t)((off * 2654435761u) >> 13 ^ seed);
}

/* Writes a snapshot of size bytes in chunks of chunk bytes and commits it. */
static int write_snapshot(struct fx *fx, craft_index index, craft_term term, uint64_t size,
                          size_t chunk, uint64_t seed)
{
    struct craft_snapshot_meta m;
    make_meta(fx, &m, index, term, size);
    void *w = NULL;
    int rv = fx->s->snapshot_begin(fx->s->impl, &m, &w);
    craft_configuration_close(&m.conf, &fx->user_alloc.a);
    if (rv != 0) {
        return rv;
    }
    uint8_t *buf = malloc(chunk);
    for (uint64_t off = 0; off < size; off += chunk) {
        size_t len = size - off < chunk ? (size_t)(size - off) : chunk;
        for (size_t k = 0; k < len; k++) {
            buf[k] = snap_byte(seed, off + k);
        }
        rv = fx->s->snapshot_write(fx->s->impl, w, buf, len);
        if (rv != 0) {
            free(buf);
            fx->s->snapshot_abort(fx->s->impl, w);
            return rv;
        }
    }
    free(buf);
    return fx->s->snapshot_commit(fx->s->impl, w);
}

/* Reads the snapshot through reader r in chunks and checks every byte. */
static void check_snapshot_bytes(struct fx *fx, void *r, uint64_t size, size_t chunk,
                                 uint64_t seed)
{
    uint8_t *buf = malloc(chunk);
    uint64_t off = 0;
    for (;;) {
        size_t n = 0;
        int rv = fx->s->snapshot_read(fx->s->impl, r, off, buf, chunk, &n);
        if (rv != 0) {
            free(buf);
            FAIL("snapshot_read at %llu: %d", (unsigned long long)off, rv);
        }
        if (n == 0) {
            break;
        }
        for (size_t k = 0; k < n; k++) {
            if (buf[k] != snap_byte(seed, off + k)) {
                free(buf);
                FAIL("snapshot byte %llu differs", (unsigned long long)(off + k));
            }
        }
        off += n;
    }
    free(buf);
    CHECK_EQ(off, size);
}

static void check_snapshot(struct fx *fx, craft_index index, craft_term term, uint64_t size,
                           uint64_t seed)
{
    struct craft_snapshot_meta m;
    CHECK_OK(fx->s->snapshot_meta(fx->s->impl, &fx->user_alloc.a, &m));
    CHECK_EQ(m.index, index);
    CHECK_EQ(m.term, term);
    CHECK_EQ(m.size, size);
    CHECK_EQ(m.conf_index, 1);
    CHECK_EQ(m.conf.n, 3);
    bool conf_ok = m.conf.n == 3 && m.conf.servers[2].id == 3 &&
                   m.conf.servers[2].role == CRAFT_LEARNER &&
                   strcmp(m.conf.servers[1].address, "127.0.0.1:9002") == 0;
    craft_configuration_close(&m.conf, &fx->user_alloc.a);
    CHECK(conf_ok);
    void *r = NULL;
    CHECK_OK(fx->s->snapshot_open(fx->s->impl, &r));
    check_snapshot_bytes(fx, r, size, 1000, seed);
    fx->s->snapshot_close(fx->s->impl, r);
}

STORE_TEST(snapshot_roundtrip)
{
    CHECK_OK(append_range(fx->s, 1, 60, 1));
    CHECK_OK(write_snapshot(fx, 50, 1, 100000, 4096, 7));
    check_snapshot(fx, 50, 1, 100000, 7);
    /* The log still holds what it held: the snapshot matches it. */
    check_bounds(fx, 1, 60);
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    check_snapshot(fx, 50, 1, 100000, 7);
    check_bounds(fx, 1, 60);
    CHECK_OK(fx->s->compact(fx->s->impl, 50));
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    check_bounds(fx, 51, 60);
    int rv;
    CHECK_EQ(term_of_store(fx, 50, &rv), 1);
    CHECK_OK(rv);
}

STORE_TEST(snapshot_read_edges)
{
    CHECK_OK(write_snapshot(fx, 5, 1, 10, 3, 1));
    void *r = NULL;
    CHECK_OK(fx->s->snapshot_open(fx->s->impl, &r));
    uint8_t buf[32];
    size_t n = 99;
    CHECK_OK(fx->s->snapshot_read(fx->s->impl, r, 8, buf, sizeof buf, &n));
    CHECK_EQ(n, 2);
    CHECK_EQ(buf[0], snap_byte(1, 8));
    CHECK_OK(fx->s->snapshot_read(fx->s->impl, r, 10, buf, sizeof buf, &n));
    CHECK_EQ(n, 0);
    CHECK_EQ(fx->s->snapshot_read(fx->s->impl, r, 11, buf, sizeof buf, &n), CRAFT_EINVAL);
    fx->s->snapshot_close(fx->s->impl, r);
}

STORE_TEST(empty_snapshot)
{
    CHECK_OK(write_snapshot(fx, 3, 1, 0, 16, 0));
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    check_snapshot(fx, 3, 1, 0, 0);
}

STORE_TEST(snapshot_abort_leaves_nothing)
{
    struct craft_snapshot_meta m;
    make_meta(fx, &m, 10, 1, 0);
    void *w = NULL;
    CHECK_OK(fx->s->snapshot_begin(fx->s->impl, &m, &w));
    craft_configuration_close(&m.conf, &fx->user_alloc.a);
    CHECK_OK(fx->s->snapshot_write(fx->s->impl, w, "abc", 3));
    fx->s->snapshot_abort(fx->s->impl, w);
    struct craft_snapshot_meta got;
    CHECK_EQ(fx->s->snapshot_meta(fx->s->impl, &fx->user_alloc.a, &got), CRAFT_ENOTFOUND);
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    CHECK_EQ(fx->s->snapshot_meta(fx->s->impl, &fx->user_alloc.a, &got), CRAFT_ENOTFOUND);
}

STORE_TEST(snapshot_size_mismatch_fails_commit)
{
    struct craft_snapshot_meta m;
    make_meta(fx, &m, 10, 1, 5);
    void *w = NULL;
    CHECK_OK(fx->s->snapshot_begin(fx->s->impl, &m, &w));
    craft_configuration_close(&m.conf, &fx->user_alloc.a);
    CHECK_OK(fx->s->snapshot_write(fx->s->impl, w, "abc", 3));
    /* The commit consumes the writer even when it fails. */
    CHECK_EQ(fx->s->snapshot_commit(fx->s->impl, w), CRAFT_EINVAL);
    struct craft_snapshot_meta got;
    CHECK_EQ(fx->s->snapshot_meta(fx->s->impl, &fx->user_alloc.a, &got), CRAFT_ENOTFOUND);
}

STORE_TEST(snapshot_replaced_reader_keeps_old_bytes)
{
    CHECK_OK(append_range(fx->s, 1, 30, 1));
    CHECK_OK(write_snapshot(fx, 10, 1, 5000, 999, 1));
    void *r = NULL;
    CHECK_OK(fx->s->snapshot_open(fx->s->impl, &r));
    CHECK_OK(write_snapshot(fx, 20, 1, 7000, 1234, 2));
    /* A leader sending the old snapshot to a follower finishes sending it. */
    check_snapshot_bytes(fx, r, 5000, 777, 1);
    fx->s->snapshot_close(fx->s->impl, r);
    check_snapshot(fx, 20, 1, 7000, 2);
    /* An older snapshot than the latest is refused. */
    CHECK_EQ(write_snapshot(fx, 15, 1, 10, 10, 3), CRAFT_EINVAL);
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    check_snapshot(fx, 20, 1, 7000, 2);
}

STORE_TEST(snapshot_ahead_of_log_discards_log)
{
    CHECK_OK(append_range(fx->s, 1, 30, 1));
    CHECK_OK(write_snapshot(fx, 100, 4, 64, 64, 9));
    /* Paper Figure 13, step 7: the log no longer continues from the snapshot. */
    check_bounds(fx, 101, 100);
    int rv;
    CHECK_EQ(term_of_store(fx, 100, &rv), 4);
    CHECK_OK(rv);
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    check_bounds(fx, 101, 100);
    CHECK_EQ(term_of_store(fx, 100, &rv), 4);
    CHECK_OK(rv);
    CHECK_OK(append_range(fx->s, 101, 110, 4));
    check_bounds(fx, 101, 110);
    check_snapshot(fx, 100, 4, 64, 9);
}

STORE_TEST(snapshot_conflicting_with_log_discards_log)
{
    CHECK_OK(append_range(fx->s, 1, 30, 1));
    CHECK_OK(write_snapshot(fx, 20, 2, 64, 64, 9));
    check_bounds(fx, 21, 20);
    fx_reopen(fx);
    if (harness_failed()) {
        return;
    }
    check_bounds(fx, 21, 20);
    CHECK_OK(append_range(fx->s, 21, 25, 2));
    check_bounds(fx, 21, 25);
}

/* --- A random walk against a reference model ---------------------------------------------- */

struct model {
    craft_index base;
    craft_term base_term;
    craft_term *terms; /* terms[i] for base < i <= last */
    craft_index last;
};

/* A tiny deterministic PRNG (no rand()). */
static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void check_against_model(struct fx *fx, const struct model *m)
{
    check_bounds(fx, m->base + 1, m->last);
    if (m->last > m->base) {
        struct craft_entry *es = NULL;
        size_t n = 0;
        uint8_t buf[301];
        CHECK_OK(fx->s->entries(fx->s->impl, m->base + 1, m->last, &fx->user_alloc.a, &es, &n));
        bool ok = n == m->last - m->base;
        for (size_t k = 0; ok && k < n; k++) {
            craft_index i = m->base + 1 + k;
            size_t want = payload(i, m->terms[i], buf);
            ok = es[k].index == i && es[k].term == m->terms[i] && es[k].size == want &&
                 memcmp(es[k].data, buf, want) == 0;
        }
        craft_free(&fx->user_alloc.a, es);
        CHECK(ok);
    }
}

static void random_walk(struct fx *fx, uint64_t seed, int steps)
{
    struct model m = {0, 0, NULL, 0};
    size_t cap = 1024;
    m.terms = calloc(cap, sizeof *m.terms);
    craft_term cur_term = 1;
    for (int step = 0; step < steps && !harness_failed(); step++) {
        uint64_t r = next_rand(&seed) % 100;
        if (r < 55) {
            craft_index n = 1 + next_rand(&seed) % 40;
            if (next_rand(&seed) % 4 == 0) {
                cur_term++;
            }
            while (m.last + n + 1 >= cap) {
                cap *= 2;
                m.terms = realloc(m.terms, cap * sizeof *m.terms);
            }
            CHECK_OK(append_range(fx->s, m.last + 1, m.last + n, cur_term));
            for (craft_index i = m.last + 1; i <= m.last + n; i++) {
                m.terms[i] = cur_term;
            }
            m.last += n;
        } else if (r < 70) {
            if (m.last > m.base) {
                craft_index from = m.base + 1 + next_rand(&seed) % (m.last - m.base);
                CHECK_OK(fx->s->truncate(fx->s->impl, from));
                m.last = from - 1;
            }
        } else if (r < 85) {
            if (m.last > m.base) {
                craft_index upto = m.base + 1 + next_rand(&seed) % (m.last - m.base);
                CHECK_OK(fx->s->compact(fx->s->impl, upto));
                m.base_term = m.terms[upto];
                m.base = upto;
            }
        } else if (r < 95) {
            check_against_model(fx, &m);
        } else {
            fx_reopen(fx);
            if (harness_failed()) {
                break;
            }
        }
        if (m.last > m.base || m.base > 0) {
            int rv;
            craft_term t = term_of_store(fx, m.last, &rv);
            if (m.last > 0 && (m.last > m.base || m.base_term != 0)) {
                CHECK_OK(rv);
                CHECK_EQ(t, m.last > m.base ? m.terms[m.last] : m.base_term);
            }
        }
    }
    if (!harness_failed()) {
        check_against_model(fx, &m);
    }
    free(m.terms);
}

STORE_TEST(random_walk_against_model)
{
    int seeds = harness_env_int("CRAFT_STORE_SEEDS", 5);
    for (int k = 0; k < seeds && !harness_failed(); k++) {
        if (k > 0) {
            /* Each walk starts from an empty store. */
            craft_store_close(fx->s);
            fx->s = NULL;
            if (fx->f->durable) {
                fx->dir = harness_tmpdir();
            }
            CHECK_OK(fx->f->open(fx));
        }
        random_walk(fx, 0x9e3779b97f4a7c15ull + (uint64_t)k, 400);
    }
}

/* --- Out of memory ------------------------------------------------------------------------ */

STORE_TEST(append_out_of_memory_leaves_log_unchanged)
{
    CHECK_OK(append_range(fx->s, 1, 10, 1));
    bool failed_once = false;
    for (long k = 0; k < 200; k++) {
        fx->store_alloc.fail_after = k;
        int rv = append_range(fx->s, 11, 40, 1);
        fx->store_alloc.fail_after = -1;
        if (rv == 0) {
            break;
        }
        failed_once = true;
        CHECK_EQ(rv, CRAFT_ENOMEM);
        check_bounds(fx, 1, 10);
        if (harness_failed()) {
            return;
        }
    }
    CHECK(failed_once);
    check_bounds(fx, 1, 40);
    check_range(fx, 1, 10, term_one);
}

/* --- Many entries (the simulator's load) --------------------------------------------------- */

STORE_TEST(many_entries_with_rolling_compaction)
{
    /* Append in batches and keep only a window, as a node with regular snapshots does. */
    const craft_index total = (craft_index)harness_env_int("CRAFT_STORE_MANY", 200) * 100;
    for (craft_index lo = 1; lo <= total; lo += 100) {
        CHECK_OK(append_range(fx->s, lo, lo + 99, 1));
        if (lo > 1000) {
            CHECK_OK(fx->s->compact(fx->s->impl, lo - 1000));
        }
    }
    /* The last batch started at total - 99 and compacted up to total - 1099. */
    check_bounds(fx, total - 1098, total);
    check_range(fx, total - 500, total, term_one);
}

HARNESS_MAIN()
