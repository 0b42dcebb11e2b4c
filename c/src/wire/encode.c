/*
 * Encoding: msgpack-c's packer writes every value (so the bytes are whatever the reference
 * msgpack implementation produces, always in the shortest format), through a write callback
 * that appends to a craft_wire_buf. The buffer is grown once up front from an estimate of the
 * message's size, so the callback almost never reallocates.
 *
 * The layout of each message is in docs/wire.md; the order of the pack calls below is that
 * layout, and decode.c reads the same fields in the same order.
 */
#include <msgpack.h>
#include <string.h>

#include "wire/internal.h"

/* --- The buffer ----------------------------------------------------------------------------- */

void craft_wire_buf_init(struct craft_wire_buf *b, const struct craft_allocator *a)
{
    b->base = NULL;
    b->len = 0;
    b->cap = 0;
    b->alloc = a;
}

void craft_wire_buf_close(struct craft_wire_buf *b)
{
    craft_free(b->alloc, b->base);
    b->base = NULL;
    b->len = 0;
    b->cap = 0;
}

void craft_wire_buf_reset(struct craft_wire_buf *b)
{
    b->len = 0;
}

int craft_wire_buf_reserve(struct craft_wire_buf *b, size_t n)
{
    if (n <= b->cap - b->len) {
        return 0;
    }
    if (n > SIZE_MAX - b->len) {
        return CRAFT_ETOOBIG;
    }
    size_t need = b->len + n;
    /* Doubling keeps appends amortized O(1). */
    size_t cap = b->cap > SIZE_MAX / 2 ? SIZE_MAX : b->cap * 2;
    if (cap < need) {
        cap = need;
    }
    if (cap < 256) {
        cap = 256;
    }
    uint8_t *p = craft_realloc(b->alloc, b->base, cap);
    if (p == NULL) {
        return CRAFT_ENOMEM;
    }
    b->base = p;
    b->cap = cap;
    return 0;
}

/* --- The packer's sink ---------------------------------------------------------------------- */

struct sink {
    struct craft_wire_buf *b;
    int rc; /* the first failure; every later write is refused */
};

static int sink_write(void *data, const char *buf, size_t len)
{
    struct sink *s = data;
    if (s->rc != 0) {
        return -1;
    }
    if (len == 0) {
        return 0; /* an empty bin body may come with buf == NULL: no memcpy from it */
    }
    if (len > s->b->cap - s->b->len) {
        int rc = craft_wire_buf_reserve(s->b, len);
        if (rc != 0) {
            s->rc = rc;
            return -1;
        }
    }
    memcpy(s->b->base + s->b->len, buf, len);
    s->b->len += len;
    return 0;
}

/* The packer's return values are not checked call by call: the sink remembers the first
 * failure and refuses everything after it, and the caller looks at it once at the end. */
static void pack_bool(msgpack_packer *pk, bool v)
{
    if (v) {
        msgpack_pack_true(pk);
    } else {
        msgpack_pack_false(pk);
    }
}

static void pack_bytes(msgpack_packer *pk, const void *data, size_t size)
{
    msgpack_pack_bin(pk, size);
    msgpack_pack_bin_body(pk, data, size);
}

static void pack_address(msgpack_packer *pk, const char *addr)
{
    size_t n = strlen(addr); /* validated: terminated within CRAFT_ADDRESS_MAX */
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, addr, n);
}

static void pack_header(msgpack_packer *pk, size_t n_fields, int type, craft_id from, craft_id to,
                        craft_term term)
{
    msgpack_pack_array(pk, CRAFT__WIRE_HEADER_FIELDS + n_fields);
    msgpack_pack_uint64(pk, CRAFT_WIRE_VERSION);
    msgpack_pack_uint64(pk, (uint64_t)type);
    msgpack_pack_uint64(pk, from);
    msgpack_pack_uint64(pk, to);
    msgpack_pack_uint64(pk, term);
}

static void pack_configuration(msgpack_packer *pk, const struct craft_configuration *c)
{
    msgpack_pack_array(pk, c->n);
    for (unsigned i = 0; i < c->n; i++) {
        const struct craft_server *s = &c->servers[i];
        msgpack_pack_array(pk, 3);
        msgpack_pack_uint64(pk, s->id);
        msgpack_pack_uint64(pk, s->role);
        pack_address(pk, s->address);
    }
}

static void pack_raft(msgpack_packer *pk, const struct craft_message *m)
{
    switch (m->type) {
    case CRAFT_MSG_REQUEST_VOTE: {
        const struct craft_request_vote *rv = &m->u.request_vote;
        pack_header(pk, 4, m->type, m->from, m->to, m->term);
        msgpack_pack_uint64(pk, rv->last_log_index);
        msgpack_pack_uint64(pk, rv->last_log_term);
        pack_bool(pk, rv->pre_vote);
        pack_bool(pk, rv->transfer);
        break;
    }
    case CRAFT_MSG_REQUEST_VOTE_RESULT: {
        const struct craft_request_vote_result *r = &m->u.request_vote_result;
        pack_header(pk, 2, m->type, m->from, m->to, m->term);
        pack_bool(pk, r->granted);
        pack_bool(pk, r->pre_vote);
        break;
    }
    case CRAFT_MSG_APPEND_ENTRIES: {
        const struct craft_append_entries *ae = &m->u.append_entries;
        pack_header(pk, 5, m->type, m->from, m->to, m->term);
        msgpack_pack_uint64(pk, ae->prev_index);
        msgpack_pack_uint64(pk, ae->prev_term);
        msgpack_pack_uint64(pk, ae->commit);
        msgpack_pack_uint64(pk, ae->ctx);
        msgpack_pack_array(pk, ae->n_entries);
        for (size_t i = 0; i < ae->n_entries; i++) {
            const struct craft_entry *e = &ae->entries[i];
            /* No index: it is prev_index + 1 + i (validated). */
            msgpack_pack_array(pk, 3);
            msgpack_pack_uint64(pk, e->term);
            msgpack_pack_uint64(pk, e->type);
            pack_bytes(pk, e->data, e->size);
        }
        break;
    }
    case CRAFT_MSG_APPEND_ENTRIES_RESULT: {
        const struct craft_append_entries_result *r = &m->u.append_entries_result;
        pack_header(pk, 6, m->type, m->from, m->to, m->term);
        pack_bool(pk, r->rejected);
        msgpack_pack_uint64(pk, r->index);
        msgpack_pack_uint64(pk, r->hint_index);
        msgpack_pack_uint64(pk, r->hint_term);
        msgpack_pack_uint64(pk, r->last_index);
        msgpack_pack_uint64(pk, r->ctx);
        break;
    }
    case CRAFT_MSG_INSTALL_SNAPSHOT: {
        const struct craft_install_snapshot *is = &m->u.install_snapshot;
        pack_header(pk, 4, m->type, m->from, m->to, m->term);
        msgpack_pack_array(pk, 5);
        msgpack_pack_uint64(pk, is->meta.index);
        msgpack_pack_uint64(pk, is->meta.term);
        msgpack_pack_uint64(pk, is->meta.conf_index);
        msgpack_pack_uint64(pk, is->meta.size);
        pack_configuration(pk, &is->meta.conf);
        msgpack_pack_uint64(pk, is->offset);
        pack_bytes(pk, is->data, is->size);
        pack_bool(pk, is->done);
        break;
    }
    case CRAFT_MSG_INSTALL_SNAPSHOT_RESULT: {
        const struct craft_install_snapshot_result *r = &m->u.install_snapshot_result;
        pack_header(pk, 4, m->type, m->from, m->to, m->term);
        msgpack_pack_uint64(pk, r->index);
        msgpack_pack_uint64(pk, r->offset);
        pack_bool(pk, r->rejected);
        pack_bool(pk, r->done);
        break;
    }
    case CRAFT_MSG_TIMEOUT_NOW:
        pack_header(pk, 0, m->type, m->from, m->to, m->term);
        break;
    }
}

static void pack_message(msgpack_packer *pk, const struct craft_wire_message *m)
{
    switch (m->type) {
    case CRAFT_WIRE_HANDSHAKE: {
        const struct craft_wire_handshake *h = &m->u.handshake;
        pack_header(pk, 3, m->type, h->from, h->to, h->term);
        msgpack_pack_uint64(pk, h->cluster_id);
        msgpack_pack_uint64(pk, h->features);
        pack_address(pk, h->address);
        break;
    }
    case CRAFT_WIRE_REQUEST: {
        const struct craft_wire_request *r = &m->u.request;
        pack_header(pk, 3, m->type, r->from, r->to, r->term);
        msgpack_pack_uint64(pk, r->id);
        msgpack_pack_uint64(pk, r->kind);
        pack_bytes(pk, r->payload, r->size);
        break;
    }
    case CRAFT_WIRE_RESPONSE: {
        const struct craft_wire_response *r = &m->u.response;
        pack_header(pk, 6, m->type, r->from, r->to, r->term);
        msgpack_pack_uint64(pk, r->id);
        msgpack_pack_int64(pk, r->error);
        msgpack_pack_uint64(pk, r->index);
        msgpack_pack_uint64(pk, r->leader_id);
        pack_address(pk, r->leader_address);
        pack_bytes(pk, r->payload, r->size);
        break;
    }
    default:
        pack_raft(pk, &m->u.raft);
        break;
    }
}

/* An upper bound on the encoded size, close enough that the buffer is grown once: 10 bytes
 * per integer (9 at most, plus slack), the byte strings themselves, a few bytes of headers. */
static size_t estimate(const struct craft_wire_message *m)
{
    size_t n = 128;
    switch (m->type) {
    case CRAFT_MSG_APPEND_ENTRIES: {
        const struct craft_append_entries *ae = &m->u.raft.u.append_entries;
        for (size_t i = 0; i < ae->n_entries; i++) {
            n += 24 + ae->entries[i].size;
        }
        break;
    }
    case CRAFT_MSG_INSTALL_SNAPSHOT: {
        const struct craft_install_snapshot *is = &m->u.raft.u.install_snapshot;
        n += is->size + (size_t)is->meta.conf.n * (24 + CRAFT_ADDRESS_MAX);
        break;
    }
    case CRAFT_WIRE_REQUEST:
        n += m->u.request.size;
        break;
    case CRAFT_WIRE_RESPONSE:
        n += m->u.response.size + CRAFT_ADDRESS_MAX;
        break;
    case CRAFT_WIRE_HANDSHAKE:
        n += CRAFT_ADDRESS_MAX;
        break;
    default:
        break;
    }
    return n;
}

int craft_wire_encode_message(struct craft_wire_buf *b, const struct craft_wire_message *m)
{
    const char *why = NULL;
    int rc = craft__wire_validate(m, b->alloc, &why);
    if (rc == CRAFT_EMALFORMED) {
        return CRAFT_EINVAL;
    }
    if (rc != 0) {
        return rc;
    }

    size_t start = b->len;
    /* The estimate only sizes the buffer: an overflow of it (impossible for a message that
     * fits in memory) would merely mean more growth later. */
    rc = craft_wire_buf_reserve(b, estimate(m));
    if (rc != 0) {
        return rc;
    }
    b->len += CRAFT_WIRE_HEADER_SIZE; /* the length prefix, written below */

    struct sink s = {b, 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s, sink_write);
    pack_message(&pk, m);
    if (s.rc != 0) {
        b->len = start;
        return s.rc;
    }

    size_t body = b->len - start - CRAFT_WIRE_HEADER_SIZE;
    if ((uint64_t)body > UINT32_MAX) {
        b->len = start;
        return CRAFT_ETOOBIG;
    }
    uint8_t *p = b->base + start;
    p[0] = (uint8_t)(body >> 24);
    p[1] = (uint8_t)(body >> 16);
    p[2] = (uint8_t)(body >> 8);
    p[3] = (uint8_t)body;
    return 0;
}

int craft_wire_encode(struct craft_wire_buf *b, const struct craft_message *m)
{
    /* Only Raft types here: a runtime tag would read the union as the wrong struct. */
    if (m->type < 1 || m->type > CRAFT_MSG_TYPE_MAX) {
        return CRAFT_EINVAL;
    }
    struct craft_wire_message wm;
    wm.type = m->type;
    wm.u.raft = *m;
    return craft_wire_encode_message(b, &wm);
}
