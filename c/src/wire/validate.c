/*
 * The semantic rules of the wire format (docs/wire.md, "Rules"). They are checked on both
 * sides from this one function: the encoder refuses to send a message a peer would reject
 * (a bug in our own core shows up at the sender, with CRAFT_EINVAL, rather than as a dropped
 * connection), and the decoder refuses to hand the core anything that breaks them. The rules
 * are only those that hold for every correct Raft message whatever the receiver's state; the
 * core decides everything that depends on its state.
 */
#include <stdlib.h>
#include <string.h>

#include "wire/internal.h"

/* Under this many servers a quadratic duplicate check is cheaper than sorting a copy. */
#define DUP_SORT_MIN 32

static int bad(const char **why, const char *reason)
{
    *why = reason;
    return CRAFT_EMALFORMED;
}

bool craft__wire_address_ok(const char addr[CRAFT_ADDRESS_MAX])
{
    return memchr(addr, '\0', CRAFT_ADDRESS_MAX) != NULL;
}

static int cmp_id(const void *a, const void *b)
{
    craft_id x = *(const craft_id *)a;
    craft_id y = *(const craft_id *)b;
    return x < y ? -1 : x > y;
}

static int check_duplicates(const struct craft_configuration *c, const struct craft_allocator *a,
                            const char **why)
{
    if (c->n < DUP_SORT_MIN) {
        for (unsigned i = 0; i < c->n; i++) {
            for (unsigned j = i + 1; j < c->n; j++) {
                if (c->servers[i].id == c->servers[j].id) {
                    return bad(why, "duplicate server id in a configuration");
                }
            }
        }
        return 0;
    }
    craft_id *ids = craft_malloc(a, c->n * sizeof *ids);
    if (ids == NULL) {
        *why = "out of memory";
        return CRAFT_ENOMEM;
    }
    for (unsigned i = 0; i < c->n; i++) {
        ids[i] = c->servers[i].id;
    }
    qsort(ids, c->n, sizeof *ids, cmp_id);
    int rc = 0;
    for (unsigned i = 1; i < c->n; i++) {
        if (ids[i] == ids[i - 1]) {
            rc = bad(why, "duplicate server id in a configuration");
            break;
        }
    }
    craft_free(a, ids);
    return rc;
}

/* The same rules as craft_configuration_add(): a nonzero id, a known role, an address that
 * fits, no id twice. */
static int check_configuration(const struct craft_configuration *c, const struct craft_allocator *a,
                               const char **why)
{
    if (c->n > CRAFT_WIRE_MAX_SERVERS) {
        return bad(why, "too many servers in a configuration");
    }
    if (c->n > 0 && c->servers == NULL) {
        return bad(why, "configuration without servers array");
    }
    for (unsigned i = 0; i < c->n; i++) {
        const struct craft_server *s = &c->servers[i];
        if (s->id == 0) {
            return bad(why, "server id 0 in a configuration");
        }
        if (s->role != CRAFT_VOTER && s->role != CRAFT_LEARNER) {
            return bad(why, "unknown server role");
        }
        if (!craft__wire_address_ok(s->address)) {
            return bad(why, "server address too long");
        }
    }
    return check_duplicates(c, a, why);
}

/* Byte strings: a NULL pointer can carry no bytes, and msgpack bin holds at most 2^32 - 1. */
static int check_bytes(const void *data, size_t size, const char **why)
{
    if (size > 0 && data == NULL) {
        return bad(why, "NULL data with a nonzero size");
    }
    if ((uint64_t)size > UINT32_MAX) {
        return bad(why, "byte string longer than 2^32 - 1");
    }
    return 0;
}

static int check_append_entries(const struct craft_message *m, const char **why)
{
    const struct craft_append_entries *ae = &m->u.append_entries;
    if (ae->prev_term > m->term) {
        return bad(why, "append_entries: prev_term above the message term");
    }
    if (ae->n_entries == 0) {
        return 0;
    }
    if (ae->entries == NULL) {
        return bad(why, "append_entries: NULL entries");
    }
    /* Entries follow prev_index without a gap (paper Figure 2: "log entries to store"), so the
     * wire does not carry their indexes at all: they are prev_index + 1, + 2, ... */
    if ((uint64_t)ae->n_entries > UINT64_MAX - ae->prev_index) {
        return bad(why, "append_entries: entry indexes overflow");
    }
    /* Log terms never decrease along a log (paper section 5.3, the Log Matching Property
     * rests on it) and a leader holds no entry of a term above its own. */
    craft_term last = ae->prev_term;
    for (size_t i = 0; i < ae->n_entries; i++) {
        const struct craft_entry *e = &ae->entries[i];
        if (e->index != ae->prev_index + 1 + i) {
            return bad(why, "append_entries: entry indexes not contiguous from prev_index + 1");
        }
        if (e->type < CRAFT_ENTRY_COMMAND || e->type > CRAFT_ENTRY_CONFIG) {
            return bad(why, "append_entries: unknown entry type");
        }
        if (e->term < last) {
            return bad(why, "append_entries: entry terms decrease");
        }
        if (e->term > m->term) {
            return bad(why, "append_entries: entry term above the message term");
        }
        last = e->term;
        int rc = check_bytes(e->data, e->size, why);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int check_install_snapshot(const struct craft_message *m, const struct craft_allocator *a,
                                  const char **why)
{
    const struct craft_install_snapshot *is = &m->u.install_snapshot;
    if (is->meta.term > m->term) {
        return bad(why, "install_snapshot: snapshot term above the message term");
    }
    if (is->meta.conf_index > is->meta.index) {
        return bad(why, "install_snapshot: configuration index past the snapshot index");
    }
    int rc = check_bytes(is->data, is->size, why);
    if (rc != 0) {
        return rc;
    }
    /* A chunk lies inside the snapshot: a receiver may write it at offset without checks. */
    if (is->offset > is->meta.size || (uint64_t)is->size > is->meta.size - is->offset) {
        return bad(why, "install_snapshot: chunk past the end of the snapshot");
    }
    return check_configuration(&is->meta.conf, a, why);
}

static int check_raft(const struct craft_message *m, const struct craft_allocator *a,
                      const char **why)
{
    if (m->from == 0 || m->to == 0) {
        return bad(why, "server id 0 as sender or receiver");
    }
    switch (m->type) {
    case CRAFT_MSG_REQUEST_VOTE:
        /* A candidate's log holds no term above the term it campaigns in. */
        if (m->u.request_vote.last_log_term > m->term) {
            return bad(why, "request_vote: last_log_term above the message term");
        }
        return 0;
    case CRAFT_MSG_APPEND_ENTRIES:
        return check_append_entries(m, why);
    case CRAFT_MSG_INSTALL_SNAPSHOT:
        return check_install_snapshot(m, a, why);
    case CRAFT_MSG_REQUEST_VOTE_RESULT:
    case CRAFT_MSG_APPEND_ENTRIES_RESULT:
    case CRAFT_MSG_INSTALL_SNAPSHOT_RESULT:
    case CRAFT_MSG_TIMEOUT_NOW:
        return 0;
    default:
        return bad(why, "unknown message type");
    }
}

/* Terms and indexes are bounded (CRAFT_TERM_MAX, CRAFT_INDEX_MAX in craft.h): a value a
 * receiver could not add one to, or that no real cluster reaches, is malformed. Without this a
 * single AppendEntries of term 2^64 - 1 was stored and left every node unable to campaign
 * (term + 1 overflowed) for good. */
#define TERM_OK(t) ((t) <= CRAFT_TERM_MAX)
#define INDEX_OK(i) ((i) <= CRAFT_INDEX_MAX)

static int check_raft_bounds(const struct craft_message *m, const char **why)
{
    switch (m->type) {
    case CRAFT_MSG_REQUEST_VOTE:
        if (!INDEX_OK(m->u.request_vote.last_log_index)) {
            return bad(why, "request_vote: last_log_index beyond the index bound");
        }
        return 0;
    case CRAFT_MSG_APPEND_ENTRIES: {
        const struct craft_append_entries *ae = &m->u.append_entries;
        if (!INDEX_OK(ae->prev_index) || !INDEX_OK(ae->commit) ||
            (uint64_t)ae->n_entries > CRAFT_INDEX_MAX - ae->prev_index) {
            return bad(why, "append_entries: index beyond the index bound");
        }
        return 0;
    }
    case CRAFT_MSG_APPEND_ENTRIES_RESULT: {
        const struct craft_append_entries_result *r = &m->u.append_entries_result;
        if (!INDEX_OK(r->index) || !INDEX_OK(r->hint_index) || !INDEX_OK(r->last_index)) {
            return bad(why, "append_entries_result: index beyond the index bound");
        }
        if (!TERM_OK(r->hint_term)) {
            return bad(why, "append_entries_result: hint_term beyond the term bound");
        }
        return 0;
    }
    case CRAFT_MSG_INSTALL_SNAPSHOT:
        if (!INDEX_OK(m->u.install_snapshot.meta.index)) {
            return bad(why, "install_snapshot: snapshot index beyond the index bound");
        }
        return 0;
    case CRAFT_MSG_INSTALL_SNAPSHOT_RESULT:
        if (!INDEX_OK(m->u.install_snapshot_result.index)) {
            return bad(why, "install_snapshot_result: index beyond the index bound");
        }
        return 0;
    default:
        return 0;
    }
}

/* Every term field of a message is at most the header's (checked by the rules above) except
 * hint_term, so the header term and the indexes are what need a bound. */
static int check_bounds(const struct craft_wire_message *m, const char **why)
{
    craft_term term;
    switch (m->type) {
    case CRAFT_WIRE_HANDSHAKE:
        term = m->u.handshake.term;
        break;
    case CRAFT_WIRE_REQUEST:
        term = m->u.request.term;
        break;
    case CRAFT_WIRE_RESPONSE:
        if (!INDEX_OK(m->u.response.index)) {
            return bad(why, "response: index beyond the index bound");
        }
        term = m->u.response.term;
        break;
    default:
        term = m->u.raft.term;
        break;
    }
    if (!TERM_OK(term)) {
        return bad(why, "term beyond the term bound (2^62 - 1)");
    }
    if (m->type >= 1 && m->type <= CRAFT_MSG_TYPE_MAX) {
        return check_raft_bounds(&m->u.raft, why);
    }
    return 0;
}

int craft__wire_validate(const struct craft_wire_message *m, const struct craft_allocator *a,
                         const char **why)
{
    int rc = check_bounds(m, why);
    if (rc != 0) {
        return rc;
    }
    switch (m->type) {
    case CRAFT_WIRE_HANDSHAKE:
        if (!craft__wire_address_ok(m->u.handshake.address)) {
            return bad(why, "handshake: address too long");
        }
        return 0;
    case CRAFT_WIRE_REQUEST:
        if (m->u.request.kind < 1 || m->u.request.kind > CRAFT_WIRE_REQUEST_KIND_MAX) {
            return bad(why, "request: unknown kind");
        }
        return check_bytes(m->u.request.payload, m->u.request.size, why);
    case CRAFT_WIRE_RESPONSE:
        if (m->u.response.error > 0) {
            return bad(why, "response: positive error code");
        }
        if (!craft__wire_address_ok(m->u.response.leader_address)) {
            return bad(why, "response: leader address too long");
        }
        return check_bytes(m->u.response.payload, m->u.response.size, why);
    default:
        if (m->type < 1 || m->type > CRAFT_MSG_TYPE_MAX) {
            return bad(why, "unknown message type");
        }
        if (m->u.raft.type != m->type) {
            return bad(why, "raft message type differs from the tag");
        }
        return check_raft(&m->u.raft, a, why);
    }
}
