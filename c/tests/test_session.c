/* Client sessions (craft/session.h, Raft thesis section 6.3): the envelope, the apply rules
 * (register, apply once, duplicates, out-of-order sequence numbers, acks, bounded caches),
 * expiry by log distance and LRU eviction, snapshots (round trip, continuation, total decoding)
 * and out-of-memory at every allocation. */
#include "harness.h"

#include "craft/session.h"

/* --- Helpers ------------------------------------------------------------------------------- */

/* A tiny deterministic PRNG (splitmix64) for workloads: tests must replay exactly. */
static uint64_t rnd_next(uint64_t *st)
{
    uint64_t z = (*st += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rnd_below(uint64_t *st, uint64_t n)
{
    return n ? rnd_next(st) % n : 0;
}

/* An entry whose data this test owns. */
struct ent {
    craft_index index;
    uint8_t type;
    uint8_t *data;
    size_t size;
};

static struct craft_entry as_entry(const struct ent *x)
{
    struct craft_entry e = {1, x->index, x->type, x->data, x->size};
    return e;
}

static struct ent mk_raw(craft_index index, uint8_t type, const void *data, size_t size)
{
    struct ent x = {index, type, NULL, size};
    if (size > 0) {
        x.data = malloc(size);
        memcpy(x.data, data, size);
    }
    return x;
}

static struct ent mk_register(craft_index index)
{
    struct ent x = {index, CRAFT_ENTRY_COMMAND, NULL, 0};
    void *buf;
    if (craft_session_encode_register(NULL, &buf, &x.size) == 0) {
        x.data = buf;
    }
    return x;
}

static struct ent mk_command(craft_index index, uint64_t client, uint64_t seq, uint64_t ack,
                             const char *payload)
{
    struct ent x = {index, CRAFT_ENTRY_COMMAND, NULL, 0};
    void *buf;
    if (craft_session_encode_command(NULL, client, seq, ack, payload, strlen(payload), &buf,
                                     &x.size) == 0) {
        x.data = buf;
    }
    return x;
}

static struct ent mk_unregister(craft_index index, uint64_t client)
{
    struct ent x = {index, CRAFT_ENTRY_COMMAND, NULL, 0};
    void *buf;
    if (craft_session_encode_unregister(NULL, client, &buf, &x.size) == 0) {
        x.data = buf;
    }
    return x;
}

static void ent_free(struct ent *x)
{
    free(x->data);
    x->data = NULL;
}

/* The user's state machine: a counter. Each application adds one and returns
 * "<counter>:<payload>", so a result names both the application and the command. */
struct fsm {
    uint64_t counter;
    char last[256];
    size_t last_len;
};

/* What one entry did, for comparing tables. */
struct rec {
    int kind;
    uint64_t client, seq;
    char result[256];
    size_t result_len;
    uint32_t expired;
};

/* The driver loop of docs/sessions.md for one entry: apply, and on APPLY run the state machine
 * and record its result. Returns the first error. */
static int drive(struct craft_sessions *s, struct fsm *f, const struct ent *x, struct rec *r)
{
    struct craft_entry e = as_entry(x);
    struct craft_session_outcome o;
    int rc = craft_sessions_apply(s, &e, &o);
    if (rc != 0) {
        return rc;
    }
    memset(r, 0, sizeof(*r));
    r->kind = o.kind;
    r->client = o.client;
    r->seq = o.seq;
    r->expired = o.expired;
    if (o.kind == CRAFT_SESSION_APPLY) {
        f->counter++;
        int n = snprintf(f->last, sizeof(f->last), "%llu:%.*s", (unsigned long long)f->counter,
                         (int)(o.payload_len > 200 ? 200 : o.payload_len), (const char *)o.payload);
        f->last_len = (size_t)n;
        memcpy(r->result, f->last, f->last_len);
        r->result_len = f->last_len;
        do {
            rc = craft_sessions_record(s, o.client, o.seq, f->last, f->last_len);
        } while (rc == CRAFT_ENOMEM); /* retrying is allowed: nothing was recorded */
        return rc;
    }
    if (o.kind == CRAFT_SESSION_DUPLICATE) {
        if (o.result_len > sizeof(r->result)) {
            return CRAFT_EINVAL;
        }
        memcpy(r->result, o.result, o.result_len);
        r->result_len = o.result_len;
    }
    return 0;
}

static void check_rec_eq(const struct rec *a, const struct rec *b)
{
    CHECK_EQ(a->kind, b->kind);
    CHECK_EQ(a->client, b->client);
    CHECK_EQ(a->seq, b->seq);
    CHECK_EQ(a->result_len, b->result_len);
    CHECK(memcmp(a->result, b->result, a->result_len) == 0);
    CHECK_EQ(a->expired, b->expired);
}

/* Applies x and checks the outcome's kind; returns the record. */
static struct rec step_kind(struct craft_sessions *s, struct fsm *f, struct ent x, int kind)
{
    struct rec r;
    memset(&r, 0, sizeof(r));
    int rc = drive(s, f, &x, &r);
    ent_free(&x);
    CHECK_EQ_R(rc, 0, r);
    if (r.kind != kind) {
        harness__fail(__FILE__, __LINE__, "index %llu: outcome %s, expected %s",
                      (unsigned long long)x.index, craft_session_outcome_name(r.kind),
                      craft_session_outcome_name(kind));
    }
    return r;
}

static bool same_encoding(const struct craft_sessions *a, const struct craft_sessions *b)
{
    void *ba, *bb;
    size_t na, nb;
    if (craft_sessions_encode(a, &ba, &na) != 0) {
        return false;
    }
    if (craft_sessions_encode(b, &bb, &nb) != 0) {
        free(ba);
        return false;
    }
    bool same = na == nb && memcmp(ba, bb, na) == 0;
    free(ba);
    free(bb);
    return same;
}

static struct craft_sessions *table(uint32_t max_sessions, uint64_t expire_after,
                                    uint32_t max_cached)
{
    struct craft_sessions_options o;
    craft_sessions_options_init(&o);
    o.max_sessions = max_sessions;
    o.expire_after = expire_after;
    o.max_cached_results = max_cached;
    struct craft_sessions *s = NULL;
    if (craft_sessions_new(NULL, &o, &s) != 0) {
        return NULL;
    }
    return s;
}

/* --- A random workload: several clients that register, pipeline, retry, skip ahead, ack,
 * unregister, plus plain commands, barriers, malformed envelopes and gaps in the indexes. --- */

#define WL_CLIENTS 6

struct workload {
    struct ent *e;
    size_t n;
};

static struct workload workload_make(uint64_t seed, size_t n)
{
    struct workload w = {calloc(n, sizeof(struct ent)), n};
    uint64_t st = seed;
    uint64_t client[WL_CLIENTS] = {0};
    uint64_t next[WL_CLIENTS] = {0};
    uint64_t ack[WL_CLIENTS] = {0};
    craft_index idx = 0;
    for (size_t i = 0; i < n; i++) {
        idx += 1 + (rnd_below(&st, 20) == 0 ? rnd_below(&st, 5) : 0);
        unsigned c = (unsigned)rnd_below(&st, WL_CLIENTS);
        uint64_t r = rnd_below(&st, 100);
        char payload[32];
        snprintf(payload, sizeof(payload), "c%u.%llu", c, (unsigned long long)(next[c] + 1));
        if (client[c] == 0 || r < 6) {
            w.e[i] = mk_register(idx);
            client[c] = idx;
            next[c] = 0;
            ack[c] = 0;
        } else if (r < 7) {
            w.e[i] = mk_unregister(idx, client[c]);
        } else if (r < 12) {
            uint8_t barrier = 0;
            w.e[i] = mk_raw(idx, CRAFT_ENTRY_BARRIER, &barrier, 0);
        } else if (r < 18) {
            w.e[i] = mk_raw(idx, CRAFT_ENTRY_COMMAND, "plain", 5);
        } else if (r < 20) {
            uint8_t bad[8] = {0xC1, 'c', 's', 'n', 1, 9, 0, 0};
            w.e[i] = mk_raw(idx, CRAFT_ENTRY_COMMAND, bad, sizeof(bad));
        } else {
            /* A command: new (sometimes skipping ahead, so seqs arrive out of order), or a
             * retry of one of the last few; ack moves up now and then. */
            uint64_t seq;
            uint64_t k = rnd_below(&st, 10);
            if (k < 5 || next[c] == 0) {
                seq = ++next[c];
                if (k == 0) {
                    seq = next[c] += 1 + rnd_below(&st, 3);
                }
            } else {
                uint64_t back = rnd_below(&st, 6);
                seq = next[c] > back ? next[c] - back : 1;
            }
            if (rnd_below(&st, 4) == 0 && next[c] > 3 && ack[c] < next[c] - 3) {
                ack[c] = next[c] - 3;
            }
            uint64_t a = ack[c] < seq ? ack[c] : seq - 1;
            snprintf(payload, sizeof(payload), "c%u.%llu", c, (unsigned long long)seq);
            w.e[i] = mk_command(idx, client[c], seq, a, payload);
        }
    }
    return w;
}

static void workload_free(struct workload *w)
{
    for (size_t i = 0; i < w->n; i++) {
        ent_free(&w->e[i]);
    }
    free(w->e);
}

/* --- The envelope -------------------------------------------------------------------------- */

TEST(envelope_round_trip)
{
    void *buf;
    size_t size;
    struct craft_session_header h;

    CHECK_OK(craft_session_encode_register(NULL, &buf, &size));
    CHECK_EQ(size, CRAFT_SESSION_REGISTER_SIZE);
    CHECK_OK(craft_session_parse(buf, size, &h));
    CHECK_EQ(h.kind, CRAFT_SESSION_CMD_REGISTER);
    free(buf);

    CHECK_OK(craft_session_encode_command(NULL, 7, 9, 4, "hello", 5, &buf, &size));
    CHECK_EQ(size, CRAFT_SESSION_COMMAND_HEADER_SIZE + 5);
    /* The documented layout: magic, version, kind, then little-endian client, seq, ack. */
    const uint8_t *p = buf;
    CHECK(memcmp(p, "\xC1\x63\x73\x6E\x01\x02\x07\x00", 8) == 0);
    CHECK_EQ(p[14], 9);
    CHECK_EQ(p[22], 4);
    CHECK_OK(craft_session_parse(buf, size, &h));
    CHECK_EQ(h.kind, CRAFT_SESSION_CMD_COMMAND);
    CHECK_EQ(h.client, 7);
    CHECK_EQ(h.seq, 9);
    CHECK_EQ(h.ack, 4);
    CHECK_EQ(h.payload_len, 5);
    CHECK(memcmp(h.payload, "hello", 5) == 0);
    free(buf);

    CHECK_OK(craft_session_encode_unregister(NULL, 7, &buf, &size));
    CHECK_EQ(size, CRAFT_SESSION_UNREGISTER_SIZE);
    CHECK_OK(craft_session_parse(buf, size, &h));
    CHECK_EQ(h.kind, CRAFT_SESSION_CMD_UNREGISTER);
    CHECK_EQ(h.client, 7);
    free(buf);

    CHECK_OK(craft_session_encode_plain(NULL, "xy", 2, &buf, &size));
    CHECK_OK(craft_session_parse(buf, size, &h));
    CHECK_EQ(h.kind, CRAFT_SESSION_CMD_PLAIN);
    CHECK_EQ(h.payload_len, 2);
    free(buf);

    /* Arguments a client could never mean. */
    CHECK_EQ(craft_session_encode_command(NULL, 0, 1, 0, "", 0, &buf, &size), CRAFT_EINVAL);
    CHECK_EQ(craft_session_encode_command(NULL, 1, 0, 0, "", 0, &buf, &size), CRAFT_EINVAL);
    CHECK_EQ(craft_session_encode_command(NULL, 1, 3, 3, "", 0, &buf, &size), CRAFT_EINVAL);
    CHECK_EQ(craft_session_encode_unregister(NULL, 0, &buf, &size), CRAFT_EINVAL);
}

TEST(envelope_parse_is_total)
{
    struct craft_session_header h;
    /* Plain commands: anything that does not start with the magic, including msgpack, JSON and
     * text, which can never start with 0xC1. */
    CHECK_EQ(craft_session_parse("{\"op\":1}", 8, &h), CRAFT_ENOTFOUND);
    CHECK_EQ(craft_session_parse("\x93\x01\x02\x03", 4, &h), CRAFT_ENOTFOUND);
    CHECK_EQ(craft_session_parse("\xC1", 1, &h), CRAFT_ENOTFOUND);
    CHECK_EQ(craft_session_parse(NULL, 0, &h), CRAFT_ENOTFOUND);
    CHECK_EQ(craft_session_parse("\xC1\x63\x73\x6E", 4, &h), CRAFT_EMALFORMED);
    CHECK_EQ(craft_session_parse("\xC1\x63\x73\x6E\x02\x01", 6, &h), CRAFT_EVERSION);
    CHECK_EQ(craft_session_parse("\xC1\x63\x73\x6E\x01\x04", 6, &h), CRAFT_EMALFORMED);
    CHECK_EQ(craft_session_parse("\xC1\x63\x73\x6E\x01\x01x", 7, &h), CRAFT_EMALFORMED);

    /* Every truncation and every bit flip of a command either parses or is refused. */
    void *buf;
    size_t size;
    CHECK_OK(craft_session_encode_command(NULL, 3, 2, 1, "abc", 3, &buf, &size));
    for (size_t cut = 0; cut < CRAFT_SESSION_COMMAND_HEADER_SIZE; cut++) {
        CHECK(craft_session_parse(buf, cut, &h) != 0);
    }
    uint8_t *p = buf;
    for (size_t i = 0; i < size; i++) {
        for (int bit = 0; bit < 8; bit++) {
            p[i] ^= (uint8_t)(1u << bit);
            int rc = craft_session_parse(p, size, &h);
            CHECK(rc == 0 || rc == CRAFT_ENOTFOUND || rc == CRAFT_EMALFORMED ||
                  rc == CRAFT_EVERSION);
            p[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* ack >= seq on the wire is malformed (the encoder refuses to make it). */
    p[22] = 2;
    CHECK_EQ(craft_session_parse(p, size, &h), CRAFT_EMALFORMED);
    free(buf);
}

/* --- Apply rules --------------------------------------------------------------------------- */

TEST(register_command_retry_applies_once)
{
    struct craft_sessions *s = table(16, 0, 16);
    struct fsm f = {0};
    CHECK(s != NULL);
    struct rec r = step_kind(s, &f, mk_register(1), CRAFT_SESSION_REGISTERED);
    CHECK_EQ(r.client, 1); /* the client id is the register entry's index */
    r = step_kind(s, &f, mk_command(2, 1, 1, 0, "incr"), CRAFT_SESSION_APPLY);
    CHECK_STR_EQ(r.result, "1:incr");
    /* The same command retried (e.g. after the leader crashed before answering) and committed
     * twice more: answered from the cache with the FIRST result, never applied again. */
    r = step_kind(s, &f, mk_command(3, 1, 1, 0, "incr"), CRAFT_SESSION_DUPLICATE);
    CHECK_STR_EQ(r.result, "1:incr");
    r = step_kind(s, &f, mk_command(5, 1, 1, 0, "incr"), CRAFT_SESSION_DUPLICATE);
    CHECK_STR_EQ(r.result, "1:incr");
    CHECK_EQ(f.counter, 1);
    r = step_kind(s, &f, mk_command(6, 1, 2, 1, "incr"), CRAFT_SESSION_APPLY);
    CHECK_STR_EQ(r.result, "2:incr");
    CHECK_EQ(f.counter, 2);
    /* An empty result is a result too. */
    struct ent x = mk_command(7, 1, 3, 2, "");
    struct craft_entry e = as_entry(&x);
    struct craft_session_outcome o;
    CHECK_OK(craft_sessions_apply(s, &e, &o));
    CHECK_EQ(o.kind, CRAFT_SESSION_APPLY);
    CHECK_EQ(o.payload_len, 0);
    CHECK_OK(craft_sessions_record(s, 1, 3, NULL, 0));
    ent_free(&x);
    x = mk_command(8, 1, 3, 2, "");
    e = as_entry(&x);
    CHECK_OK(craft_sessions_apply(s, &e, &o));
    CHECK_EQ(o.kind, CRAFT_SESSION_DUPLICATE);
    CHECK_EQ(o.result_len, 0);
    ent_free(&x);
    craft_sessions_free(s);
}

TEST(plain_commands_and_other_entries_pass_through)
{
    struct craft_sessions *s = table(16, 0, 16);
    struct craft_session_outcome o;
    CHECK(s != NULL);
    struct craft_entry e = {1, 1, CRAFT_ENTRY_COMMAND, "set x 1", 7};
    CHECK_OK(craft_sessions_apply(s, &e, &o));
    CHECK_EQ(o.kind, CRAFT_SESSION_NONE);
    CHECK(o.payload == e.data);
    CHECK_EQ(o.payload_len, 7);
    e = (struct craft_entry){1, 2, CRAFT_ENTRY_BARRIER, NULL, 0};
    CHECK_OK(craft_sessions_apply(s, &e, &o));
    CHECK_EQ(o.kind, CRAFT_SESSION_NONE);
    CHECK(o.payload == NULL);
    /* A configuration entry's bytes are never parsed as an envelope. */
    e = (struct craft_entry){1, 3, CRAFT_ENTRY_CONFIG, "\xC1\x63\x73\x6E\x01\x01", 6};
    CHECK_OK(craft_sessions_apply(s, &e, &o));
    CHECK_EQ(o.kind, CRAFT_SESSION_NONE);
    CHECK_EQ(craft_sessions_count(s), 0);
    /* A wrapped plain command is unwrapped. */
    void *buf;
    size_t size;
    CHECK_OK(craft_session_encode_plain(NULL, "get x", 5, &buf, &size));
    e = (struct craft_entry){1, 4, CRAFT_ENTRY_COMMAND, buf, size};
    CHECK_OK(craft_sessions_apply(s, &e, &o));
    CHECK_EQ(o.kind, CRAFT_SESSION_NONE);
    CHECK_EQ(o.payload_len, 5);
    CHECK(memcmp(o.payload, "get x", 5) == 0);
    /* An invalid envelope is refused, not applied. */
    e = (struct craft_entry){1, 5, CRAFT_ENTRY_COMMAND, "\xC1\x63\x73\x6E\x07\x01", 6};
    CHECK_OK(craft_sessions_apply(s, &e, &o));
    CHECK_EQ(o.kind, CRAFT_SESSION_MALFORMED);
    CHECK_EQ(o.error, CRAFT_EVERSION);
    craft_sessions_free(s);

    /* Strict mode: an unwrapped command is refused, so none can be misread. */
    struct craft_sessions_options opt;
    craft_sessions_options_init(&opt);
    opt.strict = true;
    CHECK_OK(craft_sessions_new(NULL, &opt, &s));
    e = (struct craft_entry){1, 1, CRAFT_ENTRY_COMMAND, "set x 1", 7};
    CHECK_OK(craft_sessions_apply(s, &e, &o));
    CHECK_EQ(o.kind, CRAFT_SESSION_MALFORMED);
    CHECK_EQ(o.error, CRAFT_EMALFORMED);
    e = (struct craft_entry){1, 2, CRAFT_ENTRY_COMMAND, buf, size};
    CHECK_OK(craft_sessions_apply(s, &e, &o));
    CHECK_EQ(o.kind, CRAFT_SESSION_NONE);
    CHECK_EQ(o.payload_len, 5);
    free(buf);
    craft_sessions_free(s);
}

/* A client with several commands in flight may see them committed out of order (seq 5 sent to
 * a new leader before the retry of seq 4). Rule: every seq above the session's floor that has
 * not been applied is applied when it is first committed, whatever the order; each retry gets
 * its own first result. */
TEST(out_of_order_sequence_numbers)
{
    struct craft_sessions *s = table(16, 0, 16);
    struct fsm f = {0};
    CHECK(s != NULL);
    step_kind(s, &f, mk_register(1), CRAFT_SESSION_REGISTERED);
    struct rec r = step_kind(s, &f, mk_command(2, 1, 5, 3, "five"), CRAFT_SESSION_APPLY);
    CHECK_STR_EQ(r.result, "1:five");
    r = step_kind(s, &f, mk_command(3, 1, 4, 3, "four"), CRAFT_SESSION_APPLY);
    CHECK_STR_EQ(r.result, "2:four");
    r = step_kind(s, &f, mk_command(4, 1, 5, 3, "five"), CRAFT_SESSION_DUPLICATE);
    CHECK_STR_EQ(r.result, "1:five");
    r = step_kind(s, &f, mk_command(5, 1, 4, 3, "four"), CRAFT_SESSION_DUPLICATE);
    CHECK_STR_EQ(r.result, "2:four");
    /* seq 3 and below were acknowledged with the first command (ack 3): never applied. */
    step_kind(s, &f, mk_command(6, 1, 3, 2, "three"), CRAFT_SESSION_STALE);
    r = step_kind(s, &f, mk_command(7, 1, 7, 3, "seven"), CRAFT_SESSION_APPLY);
    r = step_kind(s, &f, mk_command(8, 1, 6, 3, "six"), CRAFT_SESSION_APPLY);
    CHECK_STR_EQ(r.result, "4:six");
    CHECK_EQ(f.counter, 4);
    craft_sessions_free(s);
}

TEST(ack_discards_cached_results)
{
    struct craft_sessions *s = table(16, 0, 16);
    struct fsm f = {0};
    CHECK(s != NULL);
    step_kind(s, &f, mk_register(1), CRAFT_SESSION_REGISTERED);
    step_kind(s, &f, mk_command(2, 1, 1, 0, "a"), CRAFT_SESSION_APPLY);
    step_kind(s, &f, mk_command(3, 1, 2, 0, "b"), CRAFT_SESSION_APPLY);
    void *buf;
    size_t before, after;
    CHECK_OK(craft_sessions_encode(s, &buf, &before));
    free(buf);
    /* seq 3 says the client has the results of 1 and 2: they are dropped... */
    step_kind(s, &f, mk_command(4, 1, 3, 2, "c"), CRAFT_SESSION_APPLY);
    CHECK_OK(craft_sessions_encode(s, &buf, &after));
    free(buf);
    CHECK(after < before + 20); /* one result (~16 bytes) added, two (~32) dropped */
    /* ...so a late retry of them is refused, never applied a second time. */
    step_kind(s, &f, mk_command(5, 1, 1, 0, "a"), CRAFT_SESSION_STALE);
    step_kind(s, &f, mk_command(6, 1, 2, 1, "b"), CRAFT_SESSION_STALE);
    struct rec r = step_kind(s, &f, mk_command(7, 1, 3, 2, "c"), CRAFT_SESSION_DUPLICATE);
    CHECK_STR_EQ(r.result, "3:c");
    /* An ack never goes back: an old retry carrying a lower ack restores nothing. */
    step_kind(s, &f, mk_command(8, 1, 4, 3, "d"), CRAFT_SESSION_APPLY);
    r = step_kind(s, &f, mk_command(9, 1, 4, 0, "d"), CRAFT_SESSION_DUPLICATE);
    step_kind(s, &f, mk_command(10, 1, 3, 0, "c"), CRAFT_SESSION_STALE);
    CHECK_EQ(f.counter, 4);
    craft_sessions_free(s);
}

TEST(cache_bound_drops_lowest_and_refuses_its_retry)
{
    struct craft_sessions *s = table(16, 0, 3);
    struct fsm f = {0};
    CHECK(s != NULL);
    step_kind(s, &f, mk_register(1), CRAFT_SESSION_REGISTERED);
    craft_index i = 2;
    for (uint64_t seq = 1; seq <= 5; seq++) {
        step_kind(s, &f, mk_command(i++, 1, seq, 0, "x"), CRAFT_SESSION_APPLY);
    }
    /* 3, 4, 5 cached; 1 and 2 dropped: their retries are STALE (at most once). */
    step_kind(s, &f, mk_command(i++, 1, 1, 0, "x"), CRAFT_SESSION_STALE);
    step_kind(s, &f, mk_command(i++, 1, 2, 0, "x"), CRAFT_SESSION_STALE);
    struct rec r = step_kind(s, &f, mk_command(i++, 1, 3, 0, "x"), CRAFT_SESSION_DUPLICATE);
    CHECK_STR_EQ(r.result, "3:x");
    /* Out of order into a full cache, below every cached seq: applied, not kept. */
    step_kind(s, &f, mk_command(i++, 1, 10, 0, "x"), CRAFT_SESSION_APPLY); /* drops 3 */
    step_kind(s, &f, mk_command(i++, 1, 9, 0, "x"), CRAFT_SESSION_APPLY);  /* drops 4 */
    step_kind(s, &f, mk_command(i++, 1, 8, 0, "x"), CRAFT_SESSION_APPLY);  /* drops 5 */
    step_kind(s, &f, mk_command(i++, 1, 7, 0, "x"), CRAFT_SESSION_APPLY);  /* below 8: not kept */
    step_kind(s, &f, mk_command(i++, 1, 7, 0, "x"), CRAFT_SESSION_STALE);
    step_kind(s, &f, mk_command(i++, 1, 6, 0, "x"), CRAFT_SESSION_STALE);
    r = step_kind(s, &f, mk_command(i++, 1, 8, 0, "x"), CRAFT_SESSION_DUPLICATE);
    CHECK_STR_EQ(r.result, "8:x");
    CHECK_EQ(f.counter, 9);
    craft_sessions_free(s);
}

TEST(unknown_sessions_and_unregister)
{
    struct craft_sessions *s = table(16, 0, 16);
    struct fsm f = {0};
    CHECK(s != NULL);
    step_kind(s, &f, mk_command(1, 99, 1, 0, "x"), CRAFT_SESSION_UNKNOWN);
    step_kind(s, &f, mk_register(2), CRAFT_SESSION_REGISTERED);
    /* A session id is an index: a client cannot guess a live one it did not register... but
     * the table only knows what it registered. */
    step_kind(s, &f, mk_command(3, 3, 1, 0, "x"), CRAFT_SESSION_UNKNOWN);
    step_kind(s, &f, mk_command(4, 2, 1, 0, "x"), CRAFT_SESSION_APPLY);
    struct rec r = step_kind(s, &f, mk_unregister(5, 2), CRAFT_SESSION_UNREGISTERED);
    CHECK_EQ(r.client, 2);
    CHECK_EQ(craft_sessions_count(s), 0);
    /* After unregistering, even a retry of an applied command is not applied again. */
    step_kind(s, &f, mk_command(6, 2, 1, 0, "x"), CRAFT_SESSION_UNKNOWN);
    step_kind(s, &f, mk_unregister(7, 2), CRAFT_SESSION_UNKNOWN);
    CHECK_EQ(f.counter, 1);
    craft_sessions_free(s);
}

TEST(driver_protocol_errors)
{
    struct craft_sessions *s = table(16, 0, 16);
    struct craft_session_outcome o;
    CHECK(s != NULL);
    struct craft_sessions_options bad;
    craft_sessions_options_init(&bad);
    bad.max_sessions = 0;
    struct craft_sessions *t;
    CHECK_EQ(craft_sessions_new(NULL, &bad, &t), CRAFT_EINVAL);

    struct ent x = mk_register(5);
    struct craft_entry e = as_entry(&x);
    CHECK_OK(craft_sessions_apply(s, &e, &o));
    CHECK_EQ(craft_sessions_last_index(s), 5);
    /* Indexes must increase (a replayed or reordered entry is a driver bug). */
    CHECK_EQ(craft_sessions_apply(s, &e, &o), CRAFT_EINVAL);
    ent_free(&x);
    CHECK_EQ(craft_sessions_record(s, 5, 1, "r", 1), CRAFT_ESTATE); /* nothing pending */

    x = mk_command(6, 5, 1, 0, "x");
    e = as_entry(&x);
    CHECK_OK(craft_sessions_apply(s, &e, &o));
    CHECK_EQ(o.kind, CRAFT_SESSION_APPLY);
    ent_free(&x);
    /* Until the result is recorded: no other entry, no snapshot. */
    x = mk_raw(7, CRAFT_ENTRY_BARRIER, NULL, 0);
    e = as_entry(&x);
    CHECK_EQ(craft_sessions_apply(s, &e, &o), CRAFT_ESTATE);
    void *buf;
    size_t size;
    CHECK_EQ(craft_sessions_encode(s, &buf, &size), CRAFT_ESTATE);
    CHECK_EQ(craft_sessions_record(s, 5, 2, "r", 1), CRAFT_ESTATE);
    CHECK_EQ(craft_sessions_record(s, 4, 1, "r", 1), CRAFT_ESTATE);
    CHECK_OK(craft_sessions_record(s, 5, 1, "r", 1));
    CHECK_OK(craft_sessions_apply(s, &e, &o));
    ent_free(&x);
    craft_sessions_free(s);
    craft_sessions_free(NULL);
}

/* --- Expiry -------------------------------------------------------------------------------- */

TEST(expiry_by_log_distance_is_exact)
{
    /* expire_after 5: a session last active at index 1 lives through index 6 and is gone when
     * index 7 is applied, whatever that entry is (here its own command). */
    struct craft_sessions *a = table(16, 5, 16), *b = table(16, 5, 16);
    struct fsm fa = {0}, fb = {0};
    CHECK(a != NULL && b != NULL);
    step_kind(a, &fa, mk_register(1), CRAFT_SESSION_REGISTERED);
    step_kind(b, &fb, mk_register(1), CRAFT_SESSION_REGISTERED);
    for (craft_index i = 2; i <= 5; i++) {
        step_kind(a, &fa, mk_raw(i, CRAFT_ENTRY_BARRIER, NULL, 0), CRAFT_SESSION_NONE);
        step_kind(b, &fb, mk_raw(i, CRAFT_ENTRY_BARRIER, NULL, 0), CRAFT_SESSION_NONE);
    }
    step_kind(a, &fa, mk_command(6, 1, 1, 0, "x"), CRAFT_SESSION_APPLY);
    step_kind(b, &fb, mk_raw(6, CRAFT_ENTRY_BARRIER, NULL, 0), CRAFT_SESSION_NONE);
    /* a's session was renewed at 6; b's expires at 7. */
    struct rec r = step_kind(b, &fb, mk_command(7, 1, 1, 0, "x"), CRAFT_SESSION_UNKNOWN);
    CHECK_EQ(r.expired, 1);
    CHECK_EQ(craft_sessions_count(b), 0);
    for (craft_index i = 7; i <= 11; i++) {
        step_kind(a, &fa, mk_raw(i, CRAFT_ENTRY_COMMAND, "p", 1), CRAFT_SESSION_NONE);
    }
    CHECK(craft_sessions_contains(a, 1));
    /* A gap in the indexes counts as distance too: it is the log's index that matters. */
    r = step_kind(a, &fa, mk_raw(20, CRAFT_ENTRY_BARRIER, NULL, 0), CRAFT_SESSION_NONE);
    CHECK_EQ(r.expired, 1);
    CHECK(!craft_sessions_contains(a, 1));
    craft_sessions_free(a);
    craft_sessions_free(b);
}

/* Two replicas fed the same committed entries make the same decisions, entry by entry, and end
 * with byte-identical tables: expiry and eviction depend on the log alone. */
TEST(replicas_fed_the_same_log_agree)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        struct workload w = workload_make(seed, 600);
        struct craft_sessions *a = table(4, 25, 4), *b = table(4, 25, 4);
        struct fsm fa = {0}, fb = {0};
        CHECK(a != NULL && b != NULL);
        uint32_t expired = 0;
        for (size_t i = 0; i < w.n; i++) {
            struct rec ra, rb;
            CHECK_OK(drive(a, &fa, &w.e[i], &ra));
            CHECK_OK(drive(b, &fb, &w.e[i], &rb));
            check_rec_eq(&ra, &rb);
            if (harness_failed()) {
                return;
            }
            expired += ra.expired;
        }
        CHECK(same_encoding(a, b));
        CHECK_EQ(fa.counter, fb.counter);
        CHECK(expired > 0); /* the workload does exercise expiry */
        craft_sessions_free(a);
        craft_sessions_free(b);
        workload_free(&w);
    }
}

TEST(lru_eviction_at_max_sessions)
{
    struct craft_sessions *s = table(3, 0, 16);
    struct fsm f = {0};
    CHECK(s != NULL);
    step_kind(s, &f, mk_register(1), CRAFT_SESSION_REGISTERED);
    step_kind(s, &f, mk_register(2), CRAFT_SESSION_REGISTERED);
    step_kind(s, &f, mk_register(3), CRAFT_SESSION_REGISTERED);
    /* Session 1 becomes the most recently active; 2 is now the least. A duplicate or a stale
     * command counts as activity too: the client is alive. */
    step_kind(s, &f, mk_command(4, 1, 1, 0, "x"), CRAFT_SESSION_APPLY);
    step_kind(s, &f, mk_command(5, 3, 1, 0, "x"), CRAFT_SESSION_APPLY);
    step_kind(s, &f, mk_command(6, 1, 1, 0, "x"), CRAFT_SESSION_DUPLICATE);
    struct rec r = step_kind(s, &f, mk_register(7), CRAFT_SESSION_REGISTERED);
    CHECK_EQ(r.expired, 1);
    CHECK_EQ(craft_sessions_count(s), 3);
    CHECK(!craft_sessions_contains(s, 2));
    CHECK(craft_sessions_contains(s, 1));
    CHECK(craft_sessions_contains(s, 3));
    CHECK(craft_sessions_contains(s, 7));
    /* Next victim: 3 (active at 5), then 1 (active at 6). */
    step_kind(s, &f, mk_register(8), CRAFT_SESSION_REGISTERED);
    CHECK(!craft_sessions_contains(s, 3));
    step_kind(s, &f, mk_register(9), CRAFT_SESSION_REGISTERED);
    CHECK(!craft_sessions_contains(s, 1));
    step_kind(s, &f, mk_command(10, 1, 2, 1, "x"), CRAFT_SESSION_UNKNOWN);
    craft_sessions_free(s);
}

TEST(many_sessions_churn)
{
    /* Enough sessions to grow and shuffle the hash, with registrations, unregistrations and
     * expiries interleaved; lookups must stay right throughout. */
    struct craft_sessions *s = table(5000, 3000, 2);
    struct fsm f = {0};
    CHECK(s != NULL);
    uint64_t st = 42;
    craft_index i = 1;
    bool live[20001] = {false};
    for (int k = 0; k < 20000; k++, i++) {
        uint64_t r = rnd_below(&st, 10);
        if (r < 4) {
            step_kind(s, &f, mk_register(i), CRAFT_SESSION_REGISTERED);
            live[i] = true;
        } else {
            craft_index c = 1 + rnd_below(&st, i - 1 ? i - 1 : 1);
            struct rec rr;
            struct ent x = r < 5 ? mk_unregister(i, c) : mk_command(i, c, 1, 0, "x");
            CHECK_OK(drive(s, &f, &x, &rr));
            ent_free(&x);
            if (rr.kind == CRAFT_SESSION_UNREGISTERED) {
                live[c] = false;
            }
        }
        if (harness_failed()) {
            return;
        }
    }
    /* Cross-check membership against expiry arithmetic: a live session that is not in the
     * table must have been expired (by distance or LRU), never lost otherwise. */
    uint32_t n = 0;
    for (craft_index c = 1; c < i; c++) {
        if (craft_sessions_contains(s, c)) {
            CHECK(live[c]);
            n++;
        }
    }
    CHECK_EQ(n, craft_sessions_count(s));
    CHECK(n > 100);
    craft_sessions_free(s);
}

/* --- Snapshots ----------------------------------------------------------------------------- */

TEST(snapshot_round_trip_continues_identically)
{
    for (uint64_t seed = 1; seed <= 10; seed++) {
        struct workload w = workload_make(seed * 7919, 500);
        for (size_t cut = 0; cut <= w.n; cut += 50) {
            struct craft_sessions *a = table(5, 40, 5), *c = table(5, 40, 5);
            struct fsm fa = {0}, fc = {0};
            CHECK(a != NULL && c != NULL);
            for (size_t i = 0; i < cut; i++) {
                struct rec r;
                CHECK_OK(drive(a, &fa, &w.e[i], &r));
            }
            /* Snapshot a, restore into c (which had its own different state). */
            struct rec junk;
            struct ent x = mk_register(1);
            CHECK_OK(drive(c, &fc, &x, &junk));
            ent_free(&x);
            void *buf;
            size_t size;
            CHECK_OK(craft_sessions_encode(a, &buf, &size));
            CHECK_OK(craft_sessions_decode(c, buf, size));
            fc = fa;
            CHECK_EQ(craft_sessions_last_index(c), craft_sessions_last_index(a));
            CHECK_EQ(craft_sessions_count(c), craft_sessions_count(a));
            /* encode(decode(b)) == b */
            void *buf2;
            size_t size2;
            CHECK_OK(craft_sessions_encode(c, &buf2, &size2));
            CHECK(size == size2 && memcmp(buf, buf2, size) == 0);
            free(buf);
            free(buf2);
            for (size_t i = cut; i < w.n; i++) {
                struct rec ra, rc;
                CHECK_OK(drive(a, &fa, &w.e[i], &ra));
                CHECK_OK(drive(c, &fc, &w.e[i], &rc));
                check_rec_eq(&ra, &rc);
                if (harness_failed()) {
                    return;
                }
            }
            CHECK(same_encoding(a, c));
            CHECK_EQ(fa.counter, fc.counter);
            craft_sessions_free(a);
            craft_sessions_free(c);
        }
        workload_free(&w);
    }
}

/* A table with several sessions and cached results, for the decoding tests. */
static struct craft_sessions *sample_table(void **buf, size_t *size)
{
    struct craft_sessions *s = table(8, 0, 8);
    struct fsm f = {0};
    struct workload w = workload_make(99, 120);
    for (size_t i = 0; s != NULL && i < w.n; i++) {
        struct rec r;
        if (drive(s, &f, &w.e[i], &r) != 0) {
            craft_sessions_free(s);
            s = NULL;
        }
    }
    workload_free(&w);
    if (s != NULL && craft_sessions_encode(s, buf, size) != 0) {
        craft_sessions_free(s);
        s = NULL;
    }
    return s;
}

/* After a decode succeeded on hostile bytes, the table must still work. */
static void exercise(struct craft_sessions *t)
{
    struct fsm f = {0};
    craft_index base = craft_sessions_last_index(t);
    if (base > UINT64_MAX - 100) {
        return;
    }
    struct workload w = workload_make(5, 30);
    for (size_t i = 0; i < w.n; i++) {
        struct rec r;
        w.e[i].index += base;
        int rc = drive(t, &f, &w.e[i], &r);
        CHECK_OK(rc);
    }
    workload_free(&w);
    void *b;
    size_t n;
    CHECK_OK(craft_sessions_encode(t, &b, &n));
    free(b);
}

TEST(decode_every_truncation_and_bit_flip)
{
    void *buf, *before;
    size_t size, before_size;
    struct craft_sessions *s = sample_table(&buf, &size);
    CHECK(s != NULL);
    CHECK(craft_sessions_count(s) > 2);
    CHECK(size > 200);
    struct craft_sessions *t = table(8, 0, 8);
    CHECK_OK(craft_sessions_encode(t, &before, &before_size));
    /* Every proper prefix is refused, and a refused decode leaves the table unchanged. */
    for (size_t cut = 0; cut < size; cut++) {
        CHECK(craft_sessions_decode(t, buf, cut) != 0);
    }
    void *now;
    size_t now_size;
    CHECK_OK(craft_sessions_encode(t, &now, &now_size));
    CHECK(now_size == before_size && memcmp(now, before, now_size) == 0);
    free(now);
    free(before);
    /* Every single bit flip either decodes to a working table or is refused. */
    uint8_t *p = buf;
    unsigned decoded = 0;
    for (size_t i = 0; i < size; i++) {
        for (int bit = 0; bit < 8; bit++) {
            p[i] ^= (uint8_t)(1u << bit);
            int rc = craft_sessions_decode(t, p, size);
            CHECK(rc == 0 || rc == CRAFT_EMALFORMED || rc == CRAFT_EVERSION);
            if (rc == 0) {
                decoded++;
                exercise(t);
                if (harness_failed()) {
                    return;
                }
            }
            p[i] ^= (uint8_t)(1u << bit);
        }
    }
    CHECK(decoded > 0); /* payload bytes of cached results decode fine */
    /* Random multi-byte damage and random strings. */
    uint64_t st = 7;
    uint8_t *q = malloc(size + 64);
    for (int k = 0; k < 20000; k++) {
        size_t n = k % 2 ? size : rnd_below(&st, size + 64);
        if (k % 2) {
            memcpy(q, buf, size);
            for (int j = 0; j < 1 + k % 5; j++) {
                q[rnd_below(&st, size)] = (uint8_t)rnd_next(&st);
            }
        } else {
            for (size_t j = 0; j < n; j++) {
                q[j] = (uint8_t)rnd_next(&st);
            }
            if (n >= 5 && k % 4 == 0) {
                memcpy(q, "\xC1\x63\x73\x74\x01", 5); /* get past the magic */
            }
        }
        int rc = craft_sessions_decode(t, q, n);
        CHECK(rc == 0 || rc == CRAFT_EMALFORMED || rc == CRAFT_EVERSION);
        if (rc == 0) {
            exercise(t);
        }
    }
    free(q);
    /* A huge count in a short buffer is refused before anything is allocated. */
    uint8_t huge[17] = {0xC1, 'c', 's', 't', 1, 9, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
    CHECK_EQ(craft_sessions_decode(t, huge, sizeof(huge)), CRAFT_EMALFORMED);
    CHECK_EQ(craft_sessions_decode(t, "\xC1\x63\x73\x74\x02", 5), CRAFT_EVERSION);
    free(buf);
    craft_sessions_free(s);
    craft_sessions_free(t);
}

TEST(decode_trims_to_smaller_limits)
{
    struct craft_sessions *big = table(10, 0, 10), *small = table(2, 0, 1);
    struct fsm f = {0};
    CHECK(big != NULL && small != NULL);
    for (craft_index i = 1; i <= 4; i++) {
        step_kind(big, &f, mk_register(i), CRAFT_SESSION_REGISTERED);
    }
    step_kind(big, &f, mk_command(5, 1, 1, 0, "a"), CRAFT_SESSION_APPLY);
    step_kind(big, &f, mk_command(6, 1, 2, 0, "b"), CRAFT_SESSION_APPLY);
    void *buf;
    size_t size;
    CHECK_OK(craft_sessions_encode(big, &buf, &size));
    CHECK_OK(craft_sessions_decode(small, buf, size));
    free(buf);
    /* The two most recently active survive (1 at index 6, 4 at index 4). */
    CHECK_EQ(craft_sessions_count(small), 2);
    CHECK(craft_sessions_contains(small, 1));
    CHECK(craft_sessions_contains(small, 4));
    /* Session 1 keeps only its highest result; the dropped one is refused, not re-applied. */
    struct fsm g = {0};
    step_kind(small, &g, mk_command(7, 1, 1, 0, "a"), CRAFT_SESSION_STALE);
    struct rec r = step_kind(small, &g, mk_command(8, 1, 2, 0, "b"), CRAFT_SESSION_DUPLICATE);
    CHECK_STR_EQ(r.result, "2:b");
    craft_sessions_free(big);
    craft_sessions_free(small);
}

/* --- Out of memory ------------------------------------------------------------------------- */

/* An allocator that fails exactly one allocation (the fail_at-th) and keeps count. */
struct failing {
    long n;       /* allocations attempted */
    long fail_at; /* 0: never */
    long live;
    bool off; /* not counting (the test's own checks) */
    bool failed;
};

static bool should_fail(struct failing *f)
{
    if (f->off) {
        return false;
    }
    f->n++;
    if (f->n == f->fail_at) {
        f->failed = true;
        return true;
    }
    return false;
}

static void *f_malloc(void *d, size_t size)
{
    struct failing *f = d;
    if (should_fail(f)) {
        return NULL;
    }
    f->live++;
    return malloc(size);
}

static void *f_calloc(void *d, size_t n, size_t size)
{
    struct failing *f = d;
    if (should_fail(f)) {
        return NULL;
    }
    f->live++;
    return calloc(n, size);
}

static void *f_realloc(void *d, void *p, size_t size)
{
    struct failing *f = d;
    if (should_fail(f)) {
        return NULL;
    }
    if (p == NULL) {
        f->live++;
    }
    return realloc(p, size);
}

static void f_free(void *d, void *p)
{
    struct failing *f = d;
    f->live--;
    free(p);
}

static bool encoding_is(struct craft_sessions *s, const struct craft_allocator *a, const void *b,
                        size_t n)
{
    struct failing *fa = a->data;
    void *x;
    size_t m;
    fa->off = true;
    if (craft_sessions_encode(s, &x, &m) != 0) {
        fa->off = false;
        return false;
    }
    bool same = m == n && memcmp(x, b, n) == 0;
    craft_free(a, x);
    fa->off = false;
    return same;
}

/* Runs the workload (with a snapshot and a restore halfway) under an allocator that fails its
 * fail_at-th allocation. Every failure must be CRAFT_ENOMEM, leave the table unchanged, and be
 * retryable; the run must end exactly as the run without failures. */
static void oom_run(long fail_at, const struct workload *w, void **final, size_t *final_size,
                    long *allocations)
{
    struct failing fa = {0, fail_at, 0, false, false};
    struct craft_allocator a = {&fa, f_malloc, f_calloc, f_realloc, f_free};
    struct craft_sessions_options o;
    craft_sessions_options_init(&o);
    o.max_sessions = 4;
    o.expire_after = 30;
    o.max_cached_results = 3;
    struct craft_sessions *s = NULL;
    int rc = craft_sessions_new(&a, &o, &s);
    if (rc == CRAFT_ENOMEM) {
        CHECK(fa.failed);
        rc = craft_sessions_new(&a, &o, &s);
    }
    CHECK_OK(rc);
    struct fsm f = {0};
    for (size_t i = 0; i < w->n; i++) {
        void *before;
        size_t before_size;
        fa.off = true;
        CHECK_OK(craft_sessions_encode(s, &before, &before_size));
        fa.off = false;
        struct craft_entry e = as_entry(&w->e[i]);
        struct craft_session_outcome out;
        rc = craft_sessions_apply(s, &e, &out);
        if (rc != 0) {
            CHECK_EQ(rc, CRAFT_ENOMEM);
            CHECK(encoding_is(s, &a, before, before_size));
            rc = craft_sessions_apply(s, &e, &out);
        }
        CHECK_OK(rc);
        fa.off = true;
        craft_free(&a, before);
        fa.off = false;
        if (out.kind == CRAFT_SESSION_APPLY) {
            f.counter++;
            char res[32];
            int n = snprintf(res, sizeof(res), "%llu", (unsigned long long)f.counter);
            rc = craft_sessions_record(s, out.client, out.seq, res, (size_t)n);
            if (rc != 0) {
                CHECK_EQ(rc, CRAFT_ENOMEM);
                rc = craft_sessions_record(s, out.client, out.seq, res, (size_t)n);
            }
            CHECK_OK(rc);
        }
        if (i == w->n / 2) {
            void *snap;
            size_t snap_size;
            rc = craft_sessions_encode(s, &snap, &snap_size);
            if (rc != 0) {
                CHECK_EQ(rc, CRAFT_ENOMEM);
                rc = craft_sessions_encode(s, &snap, &snap_size);
            }
            CHECK_OK(rc);
            rc = craft_sessions_decode(s, snap, snap_size);
            if (rc != 0) {
                CHECK_EQ(rc, CRAFT_ENOMEM);
                CHECK(encoding_is(s, &a, snap, snap_size));
                rc = craft_sessions_decode(s, snap, snap_size);
            }
            CHECK_OK(rc);
            craft_free(&a, snap);
        }
        if (harness_failed()) {
            return;
        }
    }
    fa.off = true;
    CHECK_OK(craft_sessions_encode(s, final, final_size));
    void *copy = malloc(*final_size);
    memcpy(copy, *final, *final_size);
    craft_free(&a, *final);
    *final = copy;
    fa.off = false;
    *allocations = fa.n;
    craft_sessions_free(s);
    CHECK_EQ(fa.live, 0);
    if (fail_at > 0) {
        CHECK(fa.failed || fail_at > fa.n);
    }
}

TEST(out_of_memory_at_every_allocation)
{
    struct workload w = workload_make(3, 200);
    void *ref;
    size_t ref_size;
    long total = 0;
    oom_run(0, &w, &ref, &ref_size, &total);
    if (harness_failed()) {
        return;
    }
    CHECK(total > 50);
    for (long k = 1; k <= total; k++) {
        void *got;
        size_t got_size;
        long n;
        oom_run(k, &w, &got, &got_size, &n);
        if (harness_failed()) {
            FAIL("failing allocation %ld of %ld", k, total);
            return;
        }
        CHECK(got_size == ref_size && memcmp(got, ref, ref_size) == 0);
        free(got);
    }
    free(ref);
    workload_free(&w);

    /* The encoders, too. */
    struct failing fa = {0, 1, 0, false, false};
    struct craft_allocator a = {&fa, f_malloc, f_calloc, f_realloc, f_free};
    void *buf;
    size_t size;
    CHECK_EQ(craft_session_encode_command(&a, 1, 1, 0, "x", 1, &buf, &size), CRAFT_ENOMEM);
    fa = (struct failing){0, 1, 0, false, false};
    CHECK_EQ(craft_session_encode_register(&a, &buf, &size), CRAFT_ENOMEM);
    fa = (struct failing){0, 1, 0, false, false};
    struct craft_sessions *s;
    CHECK_EQ(craft_sessions_new(&a, NULL, &s), CRAFT_ENOMEM);
}

HARNESS_MAIN()
