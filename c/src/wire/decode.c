/*
 * Decoding: the bounds-checked reader of mp_read.c walks the body in exactly the order
 * encode.c packs it. Each message type has an exact field count; anything else is refused
 * (a new field means a new protocol version, so a peer never silently drops what it does not
 * understand). Arrays are allocated only after their declared count has been checked against
 * the bytes left, so memory stays proportional to the frame. Byte strings are not copied: they
 * point into the body (zero-copy, see craft_wire_decoder in craft/wire.h).
 */
#include <string.h>

#include "wire/internal.h"

/* The fewest bytes one encoded element can take, for checking declared counts:
 * an entry [term, type, data] is at least fixarray + fixint + fixint + empty fixstr; so is a
 * server [id, role, address]. */
#define MIN_ENTRY_BYTES 4
#define MIN_SERVER_BYTES 4

/* Reads a field into a narrower C type, refusing what does not fit instead of truncating it. */
static int read_u8(struct craft__wire_reader *r, uint8_t *out)
{
    uint64_t v;
    int rc = craft__wire_read_uint(r, &v);
    if (rc != 0) {
        return rc;
    }
    if (v > UINT8_MAX) {
        r->error = "small integer field out of range";
        return CRAFT_EMALFORMED;
    }
    *out = (uint8_t)v;
    return 0;
}

/* Propagates the first failure: every reader call goes through TRY. */
#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != 0) {                                                                            \
            return rc_;                                                                            \
        }                                                                                          \
    } while (0)

static int nomem(struct craft__wire_reader *r)
{
    r->error = "out of memory";
    return CRAFT_ENOMEM;
}

static int decode_entries(struct craft_wire_decoder *d, struct craft__wire_reader *r,
                          struct craft_append_entries *ae)
{
    uint32_t n;
    TRY(craft__wire_read_array(r, MIN_ENTRY_BYTES, &n));
    ae->n_entries = n;
    ae->entries = NULL;
    if (n == 0) {
        return 0;
    }
    if ((uint64_t)n > UINT64_MAX - ae->prev_index) {
        r->error = "append_entries: entry indexes overflow";
        return CRAFT_EMALFORMED;
    }
    struct craft_entry *es = craft__wire_alloc(d, (size_t)n * sizeof *es);
    if (es == NULL) {
        return nomem(r);
    }
    for (uint32_t i = 0; i < n; i++) {
        struct craft_entry *e = &es[i];
        TRY(craft__wire_expect_array(r, 3));
        TRY(craft__wire_read_uint(r, &e->term));
        TRY(read_u8(r, &e->type));
        TRY(craft__wire_read_bytes(r, &e->data, &e->size));
        e->index = ae->prev_index + 1 + i;
    }
    ae->entries = es;
    return 0;
}

static int decode_configuration(struct craft_wire_decoder *d, struct craft__wire_reader *r,
                                struct craft_configuration *c)
{
    uint32_t n;
    TRY(craft__wire_read_array(r, MIN_SERVER_BYTES, &n));
    c->n = 0;
    c->servers = NULL;
    if (n == 0) {
        return 0;
    }
    if (n > CRAFT_WIRE_MAX_SERVERS) {
        r->error = "too many servers in a configuration";
        return CRAFT_EMALFORMED;
    }
    struct craft_server *ss = craft__wire_alloc(d, (size_t)n * sizeof *ss);
    if (ss == NULL) {
        return nomem(r);
    }
    for (uint32_t i = 0; i < n; i++) {
        TRY(craft__wire_expect_array(r, 3));
        TRY(craft__wire_read_uint(r, &ss[i].id));
        TRY(read_u8(r, &ss[i].role));
        TRY(craft__wire_read_address(r, ss[i].address));
    }
    c->n = n;
    c->servers = ss;
    return 0;
}

/* The body of a Raft message (after the header), whose array had n_fields elements in all. */
static int decode_raft(struct craft_wire_decoder *d, struct craft__wire_reader *r,
                       uint32_t n_fields, struct craft_message *m)
{
    static const uint8_t body_fields[CRAFT_MSG_TYPE_MAX + 1] = {
        [CRAFT_MSG_REQUEST_VOTE] = 4,     [CRAFT_MSG_REQUEST_VOTE_RESULT] = 2,
        [CRAFT_MSG_APPEND_ENTRIES] = 5,   [CRAFT_MSG_APPEND_ENTRIES_RESULT] = 6,
        [CRAFT_MSG_INSTALL_SNAPSHOT] = 4, [CRAFT_MSG_INSTALL_SNAPSHOT_RESULT] = 4,
        [CRAFT_MSG_TIMEOUT_NOW] = 0,
    };
    if (n_fields != CRAFT__WIRE_HEADER_FIELDS + (uint32_t)body_fields[m->type]) {
        r->error = "wrong number of fields for the message type";
        return CRAFT_EMALFORMED;
    }
    switch (m->type) {
    case CRAFT_MSG_REQUEST_VOTE: {
        struct craft_request_vote *rv = &m->u.request_vote;
        TRY(craft__wire_read_uint(r, &rv->last_log_index));
        TRY(craft__wire_read_uint(r, &rv->last_log_term));
        TRY(craft__wire_read_bool(r, &rv->pre_vote));
        TRY(craft__wire_read_bool(r, &rv->transfer));
        return 0;
    }
    case CRAFT_MSG_REQUEST_VOTE_RESULT: {
        struct craft_request_vote_result *rr = &m->u.request_vote_result;
        TRY(craft__wire_read_bool(r, &rr->granted));
        TRY(craft__wire_read_bool(r, &rr->pre_vote));
        return 0;
    }
    case CRAFT_MSG_APPEND_ENTRIES: {
        struct craft_append_entries *ae = &m->u.append_entries;
        TRY(craft__wire_read_uint(r, &ae->prev_index));
        TRY(craft__wire_read_uint(r, &ae->prev_term));
        TRY(craft__wire_read_uint(r, &ae->commit));
        TRY(craft__wire_read_uint(r, &ae->ctx));
        return decode_entries(d, r, ae);
    }
    case CRAFT_MSG_APPEND_ENTRIES_RESULT: {
        struct craft_append_entries_result *ar = &m->u.append_entries_result;
        TRY(craft__wire_read_bool(r, &ar->rejected));
        TRY(craft__wire_read_uint(r, &ar->index));
        TRY(craft__wire_read_uint(r, &ar->hint_index));
        TRY(craft__wire_read_uint(r, &ar->hint_term));
        TRY(craft__wire_read_uint(r, &ar->last_index));
        TRY(craft__wire_read_uint(r, &ar->ctx));
        return 0;
    }
    case CRAFT_MSG_INSTALL_SNAPSHOT: {
        struct craft_install_snapshot *is = &m->u.install_snapshot;
        TRY(craft__wire_expect_array(r, 5));
        TRY(craft__wire_read_uint(r, &is->meta.index));
        TRY(craft__wire_read_uint(r, &is->meta.term));
        TRY(craft__wire_read_uint(r, &is->meta.conf_index));
        TRY(craft__wire_read_uint(r, &is->meta.size));
        TRY(decode_configuration(d, r, &is->meta.conf));
        TRY(craft__wire_read_uint(r, &is->offset));
        TRY(craft__wire_read_bytes(r, &is->data, &is->size));
        TRY(craft__wire_read_bool(r, &is->done));
        return 0;
    }
    case CRAFT_MSG_INSTALL_SNAPSHOT_RESULT: {
        struct craft_install_snapshot_result *sr = &m->u.install_snapshot_result;
        TRY(craft__wire_read_uint(r, &sr->index));
        TRY(craft__wire_read_uint(r, &sr->offset));
        TRY(craft__wire_read_bool(r, &sr->rejected));
        TRY(craft__wire_read_bool(r, &sr->done));
        return 0;
    }
    case CRAFT_MSG_TIMEOUT_NOW:
        return 0;
    default:
        r->error = "unknown message type";
        return CRAFT_EMALFORMED;
    }
}

static int expect_fields(struct craft__wire_reader *r, uint32_t n_fields, uint32_t body)
{
    if (n_fields != CRAFT__WIRE_HEADER_FIELDS + body) {
        r->error = "wrong number of fields for the message type";
        return CRAFT_EMALFORMED;
    }
    return 0;
}

static int decode_runtime(struct craft__wire_reader *r, uint32_t n_fields, craft_id from,
                          craft_id to, craft_term term, struct craft_wire_message *m)
{
    switch (m->type) {
    case CRAFT_WIRE_HANDSHAKE: {
        struct craft_wire_handshake *h = &m->u.handshake;
        TRY(expect_fields(r, n_fields, 3));
        h->from = from;
        h->to = to;
        h->term = term;
        TRY(craft__wire_read_uint(r, &h->cluster_id));
        TRY(craft__wire_read_uint(r, &h->features));
        TRY(craft__wire_read_address(r, h->address));
        return 0;
    }
    case CRAFT_WIRE_REQUEST: {
        struct craft_wire_request *q = &m->u.request;
        TRY(expect_fields(r, n_fields, 3));
        q->from = from;
        q->to = to;
        q->term = term;
        TRY(craft__wire_read_uint(r, &q->id));
        TRY(read_u8(r, &q->kind));
        TRY(craft__wire_read_bytes(r, &q->payload, &q->size));
        return 0;
    }
    case CRAFT_WIRE_RESPONSE: {
        struct craft_wire_response *p = &m->u.response;
        TRY(expect_fields(r, n_fields, 6));
        p->from = from;
        p->to = to;
        p->term = term;
        TRY(craft__wire_read_uint(r, &p->id));
        int64_t error;
        TRY(craft__wire_read_int(r, &error));
        if (error < INT32_MIN || error > 0) {
            r->error = "response: error code out of range";
            return CRAFT_EMALFORMED;
        }
        p->error = (int)error;
        TRY(craft__wire_read_uint(r, &p->index));
        TRY(craft__wire_read_uint(r, &p->leader_id));
        TRY(craft__wire_read_address(r, p->leader_address));
        TRY(craft__wire_read_bytes(r, &p->payload, &p->size));
        return 0;
    }
    default:
        r->error = "unknown message type";
        return CRAFT_EMALFORMED;
    }
}

static int decode_body(struct craft_wire_decoder *d, struct craft__wire_reader *r,
                       struct craft_wire_message *out)
{
    uint32_t n_fields;
    TRY(craft__wire_read_array(r, 1, &n_fields));
    if (n_fields == 0) {
        r->error = "empty message array";
        return CRAFT_EMALFORMED;
    }
    /* The version comes first and is judged before anything else, so that a later version
     * may change everything after it and still be told apart from garbage. */
    uint64_t version;
    TRY(craft__wire_read_uint(r, &version));
    if (version != CRAFT_WIRE_VERSION) {
        r->error = "unsupported protocol version";
        return CRAFT_EVERSION;
    }
    if (n_fields < CRAFT__WIRE_HEADER_FIELDS) {
        r->error = "message shorter than its header";
        return CRAFT_EMALFORMED;
    }
    uint64_t type;
    craft_id from, to;
    craft_term term;
    TRY(craft__wire_read_uint(r, &type));
    TRY(craft__wire_read_uint(r, &from));
    TRY(craft__wire_read_uint(r, &to));
    TRY(craft__wire_read_uint(r, &term));

    if (type >= 1 && type <= CRAFT_MSG_TYPE_MAX) {
        out->type = (uint8_t)type;
        struct craft_message *m = &out->u.raft;
        m->type = (uint8_t)type;
        m->from = from;
        m->to = to;
        m->term = term;
        TRY(decode_raft(d, r, n_fields, m));
    } else if (type >= CRAFT_WIRE_RUNTIME_TYPE_MIN && type <= CRAFT_WIRE_RUNTIME_TYPE_MAX) {
        out->type = (uint8_t)type;
        TRY(decode_runtime(r, n_fields, from, to, term, out));
    } else {
        r->error = "unknown message type";
        return CRAFT_EMALFORMED;
    }
    if (r->p != r->end) {
        r->error = "trailing bytes after the message";
        return CRAFT_EMALFORMED;
    }
    return 0;
}

int craft_wire_decode(struct craft_wire_decoder *d, const void *body, size_t len,
                      struct craft_wire_message *out)
{
    craft_wire_decoder_reset(d);
    d->error = NULL;
    uint32_t max = d->max_frame != 0 ? d->max_frame : CRAFT_WIRE_MAX_FRAME_DEFAULT;
    if (len > max) {
        d->error = "frame longer than the maximum";
        return CRAFT_ETOOBIG;
    }
    /* Zeroed so that no field of a half-decoded message is ever uninitialized memory. */
    memset(out, 0, sizeof *out);
    if (len == 0) {
        d->error = "empty frame";
        return CRAFT_EMALFORMED;
    }
    struct craft__wire_reader r = {body, (const uint8_t *)body + len, NULL};
    int rc = decode_body(d, &r, out);
    if (rc == 0) {
        rc = craft__wire_validate(out, d->alloc, &r.error);
    }
    if (rc == 0 && d->max_term != 0 && out->type <= CRAFT_WIRE_RAFT_TYPE_MAX &&
        out->u.raft.term > d->max_term) {
        r.error = "term too far ahead of the receiver's (more than 2^32)";
        rc = CRAFT_EMALFORMED;
    }
    if (rc != 0) {
        d->error = r.error != NULL ? r.error : craft_strerror(rc);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

/* Bytes a msgpack integer whose first byte is c takes, 0 if c starts no integer. */
static size_t int_width(uint8_t c)
{
    static const uint8_t widths[8] = {1, 2, 4, 8, 1, 2, 4, 8};
    if (c <= 0x7f || c >= 0xe0) {
        return 1;
    }
    if (c >= 0xcc && c <= 0xd3) {
        return 1 + (size_t)widths[c - 0xcc];
    }
    return 0;
}

int craft_wire_peek_type(const void *body, size_t len, uint64_t *type)
{
    const uint8_t *p = body;
    size_t off;

    if (len == 0) {
        return CRAFT_WIRE_NEED_MORE;
    }
    off = (p[0] & 0xf0) == 0x90 ? 1 : p[0] == 0xdc ? 3 : p[0] == 0xdd ? 5 : 0;
    if (off == 0) {
        return CRAFT_EMALFORMED;
    }
    for (int field = 0; field < 2; field++) {
        struct craft__wire_reader r;
        uint64_t v;
        size_t w;
        if (len <= off) {
            return CRAFT_WIRE_NEED_MORE;
        }
        w = int_width(p[off]);
        if (w == 0) {
            return CRAFT_EMALFORMED;
        }
        if (len < off + w) {
            return CRAFT_WIRE_NEED_MORE;
        }
        r.p = p + off;
        r.end = p + off + w;
        r.error = NULL;
        TRY(craft__wire_read_uint(&r, &v));
        off += w;
        if (field == 0 && v != CRAFT_WIRE_VERSION) {
            return CRAFT_EVERSION;
        }
        *type = v;
    }
    return 0;
}
