/*
 * Byte formats of the session module (craft/session.h), both documented in docs/sessions.md and
 * both language-neutral (unsigned little-endian integers, no padding), because a Lua node and a
 * Python node may serve in one cluster and must read each other's log entries and snapshots:
 *
 *   - the envelope a session command carries at the front of a command entry's payload;
 *   - the serialized session table that travels inside the state machine's snapshot (thesis
 *     6.3: the session table is part of the replicated state, so a server restored from a
 *     snapshot must filter duplicates exactly as one that applied the whole log).
 *
 * Both decoders are total: any byte string either decodes or is refused with an error code;
 * every length is checked against the bytes that remain before it is used or allocated.
 */
#include <string.h>

#include "session_internal.h"

#define TABLE_MAGIC "\xC1\x63\x73\x74" /* 0xC1 "cst" */
#define TABLE_VERSION 1
#define TABLE_HEADER_SIZE (4 + 1 + 8 + 4)   /* magic, version, last index, n sessions */
#define SESSION_RECORD_SIZE (8 + 8 + 8 + 4) /* client, last active, floor, n results */
#define RESULT_RECORD_SIZE (8 + 4)          /* seq, len; then len bytes */

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* ------------------------------------------------------------------------------------------
 * The command envelope
 * ---------------------------------------------------------------------------------------- */

int craft_session_parse(const void *data, size_t size, struct craft_session_header *out)
{
    const uint8_t *p = data;
    if (out == NULL || (data == NULL && size != 0)) {
        return CRAFT_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    if (size < CRAFT_SESSION_MAGIC_SIZE ||
        memcmp(p, CRAFT_SESSION_MAGIC, CRAFT_SESSION_MAGIC_SIZE) != 0) {
        return CRAFT_ENOTFOUND;
    }
    if (size < CRAFT_SESSION_PLAIN_HEADER_SIZE) {
        return CRAFT_EMALFORMED;
    }
    if (p[4] != CRAFT_SESSION_FORMAT_VERSION) {
        return CRAFT_EVERSION;
    }
    out->kind = p[5];
    switch (p[5]) {
    case CRAFT_SESSION_CMD_PLAIN:
        out->payload = p + CRAFT_SESSION_PLAIN_HEADER_SIZE;
        out->payload_len = size - CRAFT_SESSION_PLAIN_HEADER_SIZE;
        return 0;
    case CRAFT_SESSION_CMD_REGISTER:
        return size == CRAFT_SESSION_REGISTER_SIZE ? 0 : CRAFT_EMALFORMED;
    case CRAFT_SESSION_CMD_COMMAND:
        if (size < CRAFT_SESSION_COMMAND_HEADER_SIZE) {
            return CRAFT_EMALFORMED;
        }
        out->client = get_u64(p + 6);
        out->seq = get_u64(p + 14);
        out->ack = get_u64(p + 22);
        /* Sequence numbers start at 1 (ack 0 means "nothing received yet"), and a client
         * cannot have received the result of the command it is sending. */
        if (out->client == 0 || out->seq == 0 || out->ack >= out->seq) {
            return CRAFT_EMALFORMED;
        }
        out->payload = p + CRAFT_SESSION_COMMAND_HEADER_SIZE;
        out->payload_len = size - CRAFT_SESSION_COMMAND_HEADER_SIZE;
        return 0;
    case CRAFT_SESSION_CMD_UNREGISTER:
        if (size != CRAFT_SESSION_UNREGISTER_SIZE) {
            return CRAFT_EMALFORMED;
        }
        out->client = get_u64(p + 6);
        return out->client != 0 ? 0 : CRAFT_EMALFORMED;
    default:
        return CRAFT_EMALFORMED;
    }
}

/* Allocates header + len bytes, writes the magic, version and kind, and copies the payload. */
static int envelope(const struct craft_allocator *a, uint8_t kind, size_t header,
                    const void *payload, size_t len, void **buf, size_t *size)
{
    if (buf == NULL || size == NULL || (payload == NULL && len != 0) || len > SIZE_MAX - header) {
        return CRAFT_EINVAL;
    }
    uint8_t *p = craft_malloc(a, header + len);
    if (p == NULL) {
        return CRAFT_ENOMEM;
    }
    memset(p, 0, header);
    memcpy(p, CRAFT_SESSION_MAGIC, CRAFT_SESSION_MAGIC_SIZE);
    p[4] = CRAFT_SESSION_FORMAT_VERSION;
    p[5] = kind;
    if (len > 0) {
        memcpy(p + header, payload, len);
    }
    *buf = p;
    *size = header + len;
    return 0;
}

int craft_session_encode_register(const struct craft_allocator *a, void **buf, size_t *size)
{
    return envelope(a, CRAFT_SESSION_CMD_REGISTER, CRAFT_SESSION_REGISTER_SIZE, NULL, 0, buf, size);
}

int craft_session_encode_plain(const struct craft_allocator *a, const void *payload, size_t len,
                               void **buf, size_t *size)
{
    return envelope(a, CRAFT_SESSION_CMD_PLAIN, CRAFT_SESSION_PLAIN_HEADER_SIZE, payload, len, buf,
                    size);
}

int craft_session_encode_command(const struct craft_allocator *a, uint64_t client, uint64_t seq,
                                 uint64_t ack, const void *payload, size_t len, void **buf,
                                 size_t *size)
{
    if (client == 0 || seq == 0 || ack >= seq) {
        return CRAFT_EINVAL;
    }
    int rc = envelope(a, CRAFT_SESSION_CMD_COMMAND, CRAFT_SESSION_COMMAND_HEADER_SIZE, payload, len,
                      buf, size);
    if (rc == 0) {
        uint8_t *p = *buf;
        put_u64(p + 6, client);
        put_u64(p + 14, seq);
        put_u64(p + 22, ack);
    }
    return rc;
}

int craft_session_encode_unregister(const struct craft_allocator *a, uint64_t client, void **buf,
                                    size_t *size)
{
    if (client == 0) {
        return CRAFT_EINVAL;
    }
    int rc = envelope(a, CRAFT_SESSION_CMD_UNREGISTER, CRAFT_SESSION_UNREGISTER_SIZE, NULL, 0, buf,
                      size);
    if (rc == 0) {
        put_u64((uint8_t *)*buf + 6, client);
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * The table, for snapshots
 * ---------------------------------------------------------------------------------------- */

int craft_sessions_encode(const struct craft_sessions *s, void **buf, size_t *size)
{
    if (s == NULL || buf == NULL || size == NULL) {
        return CRAFT_EINVAL;
    }
    if (s->pending) {
        /* The command's result is not known yet: a snapshot now would lose it. */
        return CRAFT_ESTATE;
    }
    size_t total = TABLE_HEADER_SIZE;
    for (const struct craft__session *x = s->set.head; x != NULL; x = x->next) {
        size_t add = SESSION_RECORD_SIZE + (size_t)x->n_results * RESULT_RECORD_SIZE;
        for (uint32_t i = 0; i < x->n_results; i++) {
            add += x->results[i].len;
        }
        if (add > SIZE_MAX - total) {
            return CRAFT_ENOMEM;
        }
        total += add;
    }
    uint8_t *p = craft_malloc(s->alloc, total);
    if (p == NULL) {
        return CRAFT_ENOMEM;
    }
    uint8_t *w = p;
    memcpy(w, TABLE_MAGIC, 4);
    w[4] = TABLE_VERSION;
    put_u64(w + 5, s->set.last_index);
    put_u32(w + 13, s->set.count);
    w += TABLE_HEADER_SIZE;
    /* Sessions in activity order, least recent first: the order is part of the state (it
     * decides the next LRU victim), so it is what the bytes keep. */
    for (const struct craft__session *x = s->set.head; x != NULL; x = x->next) {
        put_u64(w, x->client);
        put_u64(w + 8, x->last_active);
        put_u64(w + 16, x->floor);
        put_u32(w + 24, x->n_results);
        w += SESSION_RECORD_SIZE;
        for (uint32_t i = 0; i < x->n_results; i++) {
            const struct craft__session_result *r = &x->results[i];
            put_u64(w, r->seq);
            put_u32(w + 8, (uint32_t)r->len);
            w += RESULT_RECORD_SIZE;
            if (r->len > 0) {
                memcpy(w, r->data, r->len);
                w += r->len;
            }
        }
    }
    *buf = p;
    *size = total;
    return 0;
}

/* Decodes one session record and its results at *pp into a new session. */
static int decode_session(const struct craft_allocator *a, const uint8_t **pp, const uint8_t *end,
                          craft_index last_index, uint64_t prev_active, struct craft__session **out)
{
    const uint8_t *p = *pp;
    if ((size_t)(end - p) < SESSION_RECORD_SIZE) {
        return CRAFT_EMALFORMED;
    }
    uint64_t client = get_u64(p);
    uint64_t last_active = get_u64(p + 8);
    uint64_t floor = get_u64(p + 16);
    uint32_t n = get_u32(p + 24);
    p += SESSION_RECORD_SIZE;
    /* A client id is the index of its REGISTER entry, and a session's activity lies between
     * that and the table's last index; the activity order is strict because each entry
     * touches at most one session. */
    if (client == 0 || client > last_active || last_active > last_index ||
        last_active <= prev_active) {
        return CRAFT_EMALFORMED;
    }
    if (n > (size_t)(end - p) / RESULT_RECORD_SIZE) {
        return CRAFT_EMALFORMED; /* more results than the bytes left could hold */
    }
    struct craft__session *x = craft_calloc(a, 1, sizeof(*x));
    if (x == NULL) {
        return CRAFT_ENOMEM;
    }
    x->client = client;
    x->last_active = last_active;
    x->floor = floor;
    if (n > 0) {
        x->results = craft_calloc(a, n, sizeof(*x->results));
        if (x->results == NULL) {
            craft__session_free(a, x);
            return CRAFT_ENOMEM;
        }
        x->cap_results = n;
    }
    uint64_t prev_seq = floor;
    for (uint32_t i = 0; i < n; i++) {
        if ((size_t)(end - p) < RESULT_RECORD_SIZE) {
            goto malformed;
        }
        uint64_t seq = get_u64(p);
        uint32_t len = get_u32(p + 8);
        p += RESULT_RECORD_SIZE;
        /* Cached results are above the floor and in increasing order. */
        if (seq <= prev_seq || len > (size_t)(end - p)) {
            goto malformed;
        }
        prev_seq = seq;
        struct craft__session_result *r = &x->results[i];
        r->seq = seq;
        if (len > 0) {
            r->data = craft_malloc(a, len);
            if (r->data == NULL) {
                x->n_results = i;
                craft__session_free(a, x);
                return CRAFT_ENOMEM;
            }
            memcpy(r->data, p, len);
            r->len = len;
            p += len;
        }
        x->n_results = i + 1;
    }
    *pp = p;
    *out = x;
    return 0;
malformed:
    craft__session_free(a, x);
    return CRAFT_EMALFORMED;
}

int craft_sessions_decode(struct craft_sessions *s, const void *buf, size_t size)
{
    if (s == NULL || (buf == NULL && size != 0)) {
        return CRAFT_EINVAL;
    }
    const struct craft_allocator *a = s->alloc;
    const uint8_t *p = buf;
    const uint8_t *end = p + size;
    if (size < 5 || memcmp(p, TABLE_MAGIC, 4) != 0) {
        return CRAFT_EMALFORMED;
    }
    if (p[4] != TABLE_VERSION) {
        return CRAFT_EVERSION;
    }
    if (size < TABLE_HEADER_SIZE) {
        return CRAFT_EMALFORMED;
    }
    craft_index last_index = get_u64(p + 5);
    uint32_t n = get_u32(p + 13);
    p += TABLE_HEADER_SIZE;
    if (n > (size_t)(end - p) / SESSION_RECORD_SIZE) {
        return CRAFT_EMALFORMED;
    }

    struct craft__session_set set;
    craft__session_set_init(&set);
    set.last_index = last_index;
    int rc = 0;
    uint64_t prev_active = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct craft__session *x;
        rc = decode_session(a, &p, end, last_index, prev_active, &x);
        if (rc != 0) {
            goto fail;
        }
        prev_active = x->last_active;
        if (craft__session_find(&set, x->client) != NULL) {
            craft__session_free(a, x);
            rc = CRAFT_EMALFORMED;
            goto fail;
        }
        rc = craft__session_reserve(&set, a);
        if (rc != 0) {
            craft__session_free(a, x);
            goto fail;
        }
        craft__session_insert(&set, x);
    }
    if (p != end) {
        rc = CRAFT_EMALFORMED; /* trailing bytes */
        goto fail;
    }

    /* Trim to this table's limits, deterministically (so every replica with the same limits
     * keeps the same sessions): the least recently active sessions go first, and within a
     * session the lowest cached results. */
    while (set.count > s->o.max_sessions) {
        craft__session_remove(&set, a, set.head);
    }
    for (struct craft__session *x = set.head; x != NULL; x = x->next) {
        while (x->n_results > s->o.max_cached_results) {
            craft__session_drop_result(a, x, 0);
        }
    }

    craft__session_set_clear(&s->set, a);
    s->set = set;
    s->pending = false;
    return 0;
fail:
    craft__session_set_clear(&set, a);
    return rc;
}
