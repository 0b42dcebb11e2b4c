/*
 * wire_util.h: helpers shared by the wire tests (test_wire_*.c) and the fuzz target: sample
 * messages of every type, a deterministic PRNG, a counting allocator that can fail on demand
 * and records the largest single allocation, a tiny msgpack writer for hand-made hostile
 * bodies (the tests do not include msgpack.h, which belongs to c/src/wire alone), and an
 * independent sanity check of a decoded message.
 *
 * Header-only and static, like harness.h: one test program is one C file. It must not use the
 * harness macros, so that the fuzz target can include it too.
 */
#ifndef CRAFT_TESTS_WIRE_UTIL_H
#define CRAFT_TESTS_WIRE_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "craft.h"
#include "craft/wire.h"

#define WU_UNUSED __attribute__((unused))

/* --- PRNG: splitmix64, deterministic from a seed -------------------------------------------- */
WU_UNUSED static uint64_t wu_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

WU_UNUSED static uint64_t wu_below(uint64_t *s, uint64_t n)
{
    return n == 0 ? 0 : wu_next(s) % n;
}

/* --- Counting allocator ----------------------------------------------------------------------
 * Each block carries a header with its size so that live bytes and the largest request are
 * known. fail_after >= 0 makes that many allocations succeed and every later one fail. */
struct wu_alloc_stats {
    long live;          /* blocks not freed */
    size_t max_request; /* largest single malloc/realloc size asked for */
    long calls;         /* allocations attempted */
    long fail_after;    /* -1: never fail */
};

#define WU_HDR 16

WU_UNUSED static void *wu_malloc(void *data, size_t size)
{
    struct wu_alloc_stats *st = data;
    st->calls++;
    if (size > st->max_request) {
        st->max_request = size;
    }
    if (st->fail_after >= 0 && st->calls > st->fail_after) {
        return NULL;
    }
    unsigned char *p = malloc(size + WU_HDR);
    if (p == NULL) {
        return NULL;
    }
    memcpy(p, &size, sizeof size);
    st->live++;
    return p + WU_HDR;
}

WU_UNUSED static void *wu_calloc(void *data, size_t nmemb, size_t size)
{
    if (size != 0 && nmemb > SIZE_MAX / size) {
        return NULL;
    }
    void *p = wu_malloc(data, nmemb * size);
    if (p != NULL) {
        memset(p, 0, nmemb * size);
    }
    return p;
}

WU_UNUSED static void wu_free(void *data, void *ptr)
{
    struct wu_alloc_stats *st = data;
    if (ptr == NULL) {
        return;
    }
    st->live--;
    free((unsigned char *)ptr - WU_HDR);
}

WU_UNUSED static void *wu_realloc(void *data, void *ptr, size_t size)
{
    if (ptr == NULL) {
        return wu_malloc(data, size);
    }
    size_t old;
    memcpy(&old, (unsigned char *)ptr - WU_HDR, sizeof old);
    void *p = wu_malloc(data, size);
    if (p == NULL) {
        return NULL;
    }
    memcpy(p, ptr, old < size ? old : size);
    wu_free(data, ptr);
    return p;
}

WU_UNUSED static struct craft_allocator wu_allocator(struct wu_alloc_stats *st)
{
    memset(st, 0, sizeof *st);
    st->fail_after = -1;
    struct craft_allocator a = {st, wu_malloc, wu_calloc, wu_realloc, wu_free};
    return a;
}

/* --- A tiny msgpack writer for hand-made bodies --------------------------------------------- */
struct wu_mp {
    uint8_t b[4096];
    size_t n;
};

WU_UNUSED static void wu_raw(struct wu_mp *m, const void *p, size_t n)
{
    if (m->n + n <= sizeof m->b) {
        memcpy(m->b + m->n, p, n);
        m->n += n;
    } else {
        m->n = sizeof m->b + 1; /* overflowed: tests check n <= sizeof b */
    }
}

WU_UNUSED static void wu_byte(struct wu_mp *m, uint8_t c)
{
    wu_raw(m, &c, 1);
}

/* Big-endian integer of w bytes after a format byte. */
WU_UNUSED static void wu_be(struct wu_mp *m, uint8_t fmt, uint64_t v, unsigned w)
{
    wu_byte(m, fmt);
    for (unsigned i = w; i-- > 0;) {
        wu_byte(m, (uint8_t)(v >> (8 * i)));
    }
}

WU_UNUSED static void wu_uint(struct wu_mp *m, uint64_t v)
{
    if (v < 128) {
        wu_byte(m, (uint8_t)v);
    } else if (v <= UINT8_MAX) {
        wu_be(m, 0xcc, v, 1);
    } else if (v <= UINT16_MAX) {
        wu_be(m, 0xcd, v, 2);
    } else if (v <= UINT32_MAX) {
        wu_be(m, 0xce, v, 4);
    } else {
        wu_be(m, 0xcf, v, 8);
    }
}

WU_UNUSED static void wu_arr(struct wu_mp *m, uint32_t n)
{
    if (n < 16) {
        wu_byte(m, (uint8_t)(0x90 | n));
    } else if (n <= UINT16_MAX) {
        wu_be(m, 0xdc, n, 2);
    } else {
        wu_be(m, 0xdd, n, 4);
    }
}

WU_UNUSED static void wu_bool(struct wu_mp *m, bool v)
{
    wu_byte(m, v ? 0xc3 : 0xc2);
}

WU_UNUSED static void wu_bin(struct wu_mp *m, const void *p, size_t n)
{
    if (n <= UINT8_MAX) {
        wu_be(m, 0xc4, n, 1);
    } else {
        wu_be(m, 0xc5, n, 2);
    }
    wu_raw(m, p, n);
}

WU_UNUSED static void wu_str(struct wu_mp *m, const char *s, size_t n)
{
    if (n < 32) {
        wu_byte(m, (uint8_t)(0xa0 | n));
    } else {
        wu_be(m, 0xd9, n, 1);
    }
    wu_raw(m, s, n);
}

/* The common header [1, type, from, to, term] of a message with n_body more fields. */
WU_UNUSED static void wu_header(struct wu_mp *m, uint32_t n_body, uint64_t type)
{
    wu_arr(m, 5 + n_body);
    wu_uint(m, CRAFT_WIRE_VERSION);
    wu_uint(m, type);
    wu_uint(m, 1);
    wu_uint(m, 2);
    wu_uint(m, 7);
}

/* --- Sample messages -------------------------------------------------------------------------
 * Valid messages of every type with edge values. Their storage is static and built once. */
#define WU_N_BIG 1000

static uint8_t wu_payload[1 << 16];
static struct craft_entry wu_entries[WU_N_BIG];
static struct craft_entry wu_few[3];
static struct craft_server wu_servers[5];

WU_UNUSED static size_t wu_samples(struct craft_wire_message *out, size_t max)
{
    size_t n = 0;
    struct craft_wire_message m;
    for (size_t i = 0; i < sizeof wu_payload; i++) {
        wu_payload[i] = (uint8_t)(i * 31 + 7);
    }

#define WU_ADD()                                                                                   \
    do {                                                                                           \
        if (n < max) {                                                                             \
            out[n] = m;                                                                            \
        }                                                                                          \
        n++;                                                                                       \
    } while (0)
#define WU_RAFT(t, f, to_, te)                                                                     \
    memset(&m, 0, sizeof m);                                                                       \
    m.type = (t);                                                                                  \
    m.u.raft.type = (t);                                                                           \
    m.u.raft.from = (f);                                                                           \
    m.u.raft.to = (to_);                                                                           \
    m.u.raft.term = (te)

    WU_RAFT(CRAFT_MSG_REQUEST_VOTE, 1, 2, 0);
    WU_ADD();
    WU_RAFT(CRAFT_MSG_REQUEST_VOTE, UINT64_MAX, UINT64_MAX, CRAFT_TERM_MAX);
    m.u.raft.u.request_vote.last_log_index = CRAFT_INDEX_MAX;
    m.u.raft.u.request_vote.last_log_term = CRAFT_TERM_MAX;
    m.u.raft.u.request_vote.pre_vote = true;
    m.u.raft.u.request_vote.transfer = true;
    WU_ADD();
    WU_RAFT(CRAFT_MSG_REQUEST_VOTE_RESULT, 3, 1, 5);
    m.u.raft.u.request_vote_result.granted = true;
    WU_ADD();
    WU_RAFT(CRAFT_MSG_REQUEST_VOTE_RESULT, 3, 1, 5);
    m.u.raft.u.request_vote_result.pre_vote = true;
    WU_ADD();

    /* Heartbeat: no entries. */
    WU_RAFT(CRAFT_MSG_APPEND_ENTRIES, 1, 2, 9);
    m.u.raft.u.append_entries.prev_index = CRAFT_INDEX_MAX;
    m.u.raft.u.append_entries.prev_term = 9;
    m.u.raft.u.append_entries.commit = CRAFT_INDEX_MAX;
    m.u.raft.u.append_entries.ctx = UINT64_MAX;
    WU_ADD();
    /* Three small entries, one empty, of every type. */
    wu_few[0] = (struct craft_entry){3, 11, CRAFT_ENTRY_BARRIER, NULL, 0};
    wu_few[1] = (struct craft_entry){3, 12, CRAFT_ENTRY_COMMAND, wu_payload, 100};
    wu_few[2] = (struct craft_entry){4, 13, CRAFT_ENTRY_CONFIG, wu_payload + 5, 17};
    WU_RAFT(CRAFT_MSG_APPEND_ENTRIES, 1, 2, 4);
    m.u.raft.u.append_entries.prev_index = 10;
    m.u.raft.u.append_entries.prev_term = 2;
    m.u.raft.u.append_entries.commit = 10;
    m.u.raft.u.append_entries.ctx = 77;
    m.u.raft.u.append_entries.entries = wu_few;
    m.u.raft.u.append_entries.n_entries = 3;
    WU_ADD();
    /* One large entry (64 KiB: bin32 needs more than 65535 bytes, so one byte less too). */
    static struct craft_entry big[2];
    big[0] = (struct craft_entry){1, 1, CRAFT_ENTRY_COMMAND, wu_payload, sizeof wu_payload};
    big[1] = (struct craft_entry){1, 2, CRAFT_ENTRY_COMMAND, wu_payload, 65535};
    WU_RAFT(CRAFT_MSG_APPEND_ENTRIES, 1, 2, 1);
    m.u.raft.u.append_entries.entries = big;
    m.u.raft.u.append_entries.n_entries = 2;
    WU_ADD();
    /* 1,000 entries of 100 bytes. */
    for (size_t i = 0; i < WU_N_BIG; i++) {
        wu_entries[i] =
            (struct craft_entry){5 + i / 300, 1001 + i, CRAFT_ENTRY_COMMAND, wu_payload + i, 100};
    }
    WU_RAFT(CRAFT_MSG_APPEND_ENTRIES, 2, 3, 9);
    m.u.raft.u.append_entries.prev_index = 1000;
    m.u.raft.u.append_entries.prev_term = 5;
    m.u.raft.u.append_entries.commit = 1500;
    m.u.raft.u.append_entries.entries = wu_entries;
    m.u.raft.u.append_entries.n_entries = WU_N_BIG;
    WU_ADD();

    WU_RAFT(CRAFT_MSG_APPEND_ENTRIES_RESULT, 2, 1, 4);
    m.u.raft.u.append_entries_result.index = 13;
    m.u.raft.u.append_entries_result.last_index = 13;
    m.u.raft.u.append_entries_result.ctx = 77;
    WU_ADD();
    WU_RAFT(CRAFT_MSG_APPEND_ENTRIES_RESULT, 2, 1, CRAFT_TERM_MAX);
    m.u.raft.u.append_entries_result.rejected = true;
    m.u.raft.u.append_entries_result.index = CRAFT_INDEX_MAX;
    m.u.raft.u.append_entries_result.hint_index = CRAFT_INDEX_MAX - 1;
    m.u.raft.u.append_entries_result.hint_term = CRAFT_TERM_MAX;
    m.u.raft.u.append_entries_result.last_index = 0;
    m.u.raft.u.append_entries_result.ctx = UINT64_MAX;
    WU_ADD();

    /* A snapshot chunk with a configuration of every shape of address. */
    static char long_addr[CRAFT_ADDRESS_MAX];
    memset(long_addr, 'a', CRAFT_ADDRESS_MAX - 1);
    long_addr[CRAFT_ADDRESS_MAX - 1] = '\0';
    memset(wu_servers, 0, sizeof wu_servers);
    wu_servers[0].id = 1;
    wu_servers[0].role = CRAFT_VOTER;
    strcpy(wu_servers[0].address, "127.0.0.1:9001");
    wu_servers[1].id = UINT64_MAX;
    wu_servers[1].role = CRAFT_LEARNER;
    strcpy(wu_servers[1].address, long_addr);
    wu_servers[2].id = 3;
    wu_servers[2].role = CRAFT_VOTER;
    wu_servers[2].address[0] = '\0';
    WU_RAFT(CRAFT_MSG_INSTALL_SNAPSHOT, 1, 3, 8);
    m.u.raft.u.install_snapshot.meta.index = 5000;
    m.u.raft.u.install_snapshot.meta.term = 7;
    m.u.raft.u.install_snapshot.meta.conf.n = 3;
    m.u.raft.u.install_snapshot.meta.conf.servers = wu_servers;
    m.u.raft.u.install_snapshot.meta.conf_index = 4000;
    m.u.raft.u.install_snapshot.meta.size = 1 << 20;
    m.u.raft.u.install_snapshot.offset = 4096;
    m.u.raft.u.install_snapshot.data = wu_payload;
    m.u.raft.u.install_snapshot.size = 4096;
    WU_ADD();
    /* The last, empty chunk of an empty snapshot with an empty configuration. */
    WU_RAFT(CRAFT_MSG_INSTALL_SNAPSHOT, 1, 3, CRAFT_TERM_MAX);
    m.u.raft.u.install_snapshot.meta.index = CRAFT_INDEX_MAX;
    m.u.raft.u.install_snapshot.meta.term = CRAFT_TERM_MAX;
    m.u.raft.u.install_snapshot.meta.conf_index = CRAFT_INDEX_MAX;
    m.u.raft.u.install_snapshot.meta.size = UINT64_MAX;
    m.u.raft.u.install_snapshot.offset = UINT64_MAX;
    m.u.raft.u.install_snapshot.done = true;
    WU_ADD();

    WU_RAFT(CRAFT_MSG_INSTALL_SNAPSHOT_RESULT, 3, 1, 8);
    m.u.raft.u.install_snapshot_result.index = 5000;
    m.u.raft.u.install_snapshot_result.offset = 8192;
    WU_ADD();
    WU_RAFT(CRAFT_MSG_INSTALL_SNAPSHOT_RESULT, 3, 1, 8);
    m.u.raft.u.install_snapshot_result.index = CRAFT_INDEX_MAX;
    m.u.raft.u.install_snapshot_result.offset = UINT64_MAX;
    m.u.raft.u.install_snapshot_result.rejected = true;
    m.u.raft.u.install_snapshot_result.done = true;
    WU_ADD();

    WU_RAFT(CRAFT_MSG_TIMEOUT_NOW, 1, 2, 3);
    WU_ADD();

    memset(&m, 0, sizeof m);
    m.type = CRAFT_WIRE_HANDSHAKE;
    m.u.handshake.from = 2;
    m.u.handshake.to = 1;
    m.u.handshake.term = 4;
    m.u.handshake.cluster_id = UINT64_C(0xc0ffee0123456789);
    strcpy(m.u.handshake.address, "10.0.0.2:7002");
    WU_ADD();
    memset(&m, 0, sizeof m);
    m.type = CRAFT_WIRE_HANDSHAKE; /* a plain client: no id, no address */
    m.u.handshake.cluster_id = UINT64_MAX;
    m.u.handshake.features = UINT64_MAX;
    WU_ADD();

    memset(&m, 0, sizeof m);
    m.type = CRAFT_WIRE_REQUEST;
    m.u.request.from = 2;
    m.u.request.to = 1;
    m.u.request.id = UINT64_MAX;
    m.u.request.kind = CRAFT_WIRE_PROPOSE;
    m.u.request.payload = wu_payload;
    m.u.request.size = 100;
    WU_ADD();
    memset(&m, 0, sizeof m);
    m.type = CRAFT_WIRE_REQUEST;
    m.u.request.id = 1;
    m.u.request.kind = CRAFT_WIRE_READ;
    WU_ADD();

    memset(&m, 0, sizeof m);
    m.type = CRAFT_WIRE_RESPONSE;
    m.u.response.from = 1;
    m.u.response.to = 2;
    m.u.response.id = 42;
    m.u.response.index = 1234;
    m.u.response.payload = wu_payload;
    m.u.response.size = 8;
    WU_ADD();
    memset(&m, 0, sizeof m);
    m.type = CRAFT_WIRE_RESPONSE;
    m.u.response.from = 3;
    m.u.response.to = 2;
    m.u.response.id = 43;
    m.u.response.error = CRAFT_ENOTLEADER;
    m.u.response.leader_id = 1;
    strcpy(m.u.response.leader_address, "127.0.0.1:9001");
    WU_ADD();
    memset(&m, 0, sizeof m);
    m.type = CRAFT_WIRE_RESPONSE;
    m.u.response.error = INT32_MIN;
    WU_ADD();

#undef WU_ADD
#undef WU_RAFT
    return n;
}

/* --- An independent sanity check of a decoded message ----------------------------------------
 * What any successfully decoded message must satisfy, written without looking at validate.c:
 * known type, in-range enums, contiguous entries, terminated addresses, byte strings inside the
 * input [lo, hi). Returns NULL or what is wrong. */
WU_UNUSED static bool wu_inside(const void *p, size_t n, const uint8_t *lo, const uint8_t *hi)
{
    if (n == 0) {
        return true;
    }
    const uint8_t *q = p;
    return q >= lo && q <= hi && n <= (size_t)(hi - q);
}

WU_UNUSED static bool wu_addr_ok(const char *a)
{
    return memchr(a, 0, CRAFT_ADDRESS_MAX) != NULL;
}

WU_UNUSED static const char *wu_insane(const struct craft_wire_message *m, const void *input,
                                       size_t len)
{
    const uint8_t *lo = input, *hi = lo + len;
    switch (m->type) {
    case CRAFT_WIRE_HANDSHAKE:
        return wu_addr_ok(m->u.handshake.address) ? NULL : "handshake address";
    case CRAFT_WIRE_REQUEST:
        if (m->u.request.kind < CRAFT_WIRE_PROPOSE ||
            m->u.request.kind > CRAFT_WIRE_REQUEST_KIND_MAX) {
            return "request kind";
        }
        return wu_inside(m->u.request.payload, m->u.request.size, lo, hi) ? NULL
                                                                          : "request payload";
    case CRAFT_WIRE_RESPONSE:
        if (m->u.response.error > 0 || !wu_addr_ok(m->u.response.leader_address)) {
            return "response error or address";
        }
        return wu_inside(m->u.response.payload, m->u.response.size, lo, hi) ? NULL
                                                                            : "response payload";
    default:
        break;
    }
    if (m->type < 1 || m->type > CRAFT_MSG_TYPE_MAX || m->u.raft.type != m->type) {
        return "type";
    }
    const struct craft_message *r = &m->u.raft;
    if (r->from == 0 || r->to == 0) {
        return "zero id";
    }
    if (r->type == CRAFT_MSG_APPEND_ENTRIES) {
        const struct craft_append_entries *ae = &r->u.append_entries;
        if (ae->n_entries > len) {
            return "more entries than bytes";
        }
        for (size_t i = 0; i < ae->n_entries; i++) {
            const struct craft_entry *e = &ae->entries[i];
            if (e->index != ae->prev_index + 1 + i || e->index == 0) {
                return "entry index";
            }
            if (e->type < 1 || e->type > 3) {
                return "entry type";
            }
            if (e->term > r->term || (i > 0 && e->term < ae->entries[i - 1].term)) {
                return "entry term";
            }
            if (!wu_inside(e->data, e->size, lo, hi)) {
                return "entry data";
            }
        }
    }
    if (r->type == CRAFT_MSG_INSTALL_SNAPSHOT) {
        const struct craft_install_snapshot *is = &r->u.install_snapshot;
        if (is->meta.conf.n > CRAFT_WIRE_MAX_SERVERS) {
            return "servers";
        }
        for (unsigned i = 0; i < is->meta.conf.n; i++) {
            const struct craft_server *s = &is->meta.conf.servers[i];
            if (s->id == 0 || (s->role != 1 && s->role != 2) || !wu_addr_ok(s->address)) {
                return "server";
            }
            for (unsigned j = 0; j < i; j++) {
                if (is->meta.conf.servers[j].id == s->id) {
                    return "duplicate server";
                }
            }
        }
        if (!wu_inside(is->data, is->size, lo, hi)) {
            return "chunk data";
        }
        if (is->offset > is->meta.size || is->size > is->meta.size - is->offset) {
            return "chunk range";
        }
    }
    return NULL;
}

#endif /* CRAFT_TESTS_WIRE_UTIL_H */
