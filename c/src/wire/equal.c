/*
 * Equality of two messages by value: what a round trip must preserve. Byte strings compare by
 * contents (a decoded message points into its frame, the original elsewhere), and fields a
 * message type does not carry are ignored.
 */
#include <string.h>

#include "wire/internal.h"

static bool bytes_equal(const void *a, size_t na, const void *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na) == 0);
}

static bool conf_equal(const struct craft_configuration *a, const struct craft_configuration *b)
{
    if (a->n != b->n) {
        return false;
    }
    for (unsigned i = 0; i < a->n; i++) {
        const struct craft_server *x = &a->servers[i];
        const struct craft_server *y = &b->servers[i];
        if (x->id != y->id || x->role != y->role || strcmp(x->address, y->address) != 0) {
            return false;
        }
    }
    return true;
}

static bool raft_equal(const struct craft_message *a, const struct craft_message *b)
{
    if (a->type != b->type || a->from != b->from || a->to != b->to || a->term != b->term) {
        return false;
    }
    switch (a->type) {
    case CRAFT_MSG_REQUEST_VOTE: {
        const struct craft_request_vote *x = &a->u.request_vote, *y = &b->u.request_vote;
        return x->last_log_index == y->last_log_index && x->last_log_term == y->last_log_term &&
               x->pre_vote == y->pre_vote && x->transfer == y->transfer;
    }
    case CRAFT_MSG_REQUEST_VOTE_RESULT: {
        const struct craft_request_vote_result *x = &a->u.request_vote_result,
                                               *y = &b->u.request_vote_result;
        return x->granted == y->granted && x->pre_vote == y->pre_vote;
    }
    case CRAFT_MSG_APPEND_ENTRIES: {
        const struct craft_append_entries *x = &a->u.append_entries, *y = &b->u.append_entries;
        if (x->prev_index != y->prev_index || x->prev_term != y->prev_term ||
            x->commit != y->commit || x->ctx != y->ctx || x->n_entries != y->n_entries) {
            return false;
        }
        for (size_t i = 0; i < x->n_entries; i++) {
            const struct craft_entry *e = &x->entries[i], *f = &y->entries[i];
            if (e->term != f->term || e->index != f->index || e->type != f->type ||
                !bytes_equal(e->data, e->size, f->data, f->size)) {
                return false;
            }
        }
        return true;
    }
    case CRAFT_MSG_APPEND_ENTRIES_RESULT: {
        const struct craft_append_entries_result *x = &a->u.append_entries_result,
                                                 *y = &b->u.append_entries_result;
        return x->rejected == y->rejected && x->index == y->index &&
               x->hint_index == y->hint_index && x->hint_term == y->hint_term &&
               x->last_index == y->last_index && x->ctx == y->ctx;
    }
    case CRAFT_MSG_INSTALL_SNAPSHOT: {
        const struct craft_install_snapshot *x = &a->u.install_snapshot,
                                            *y = &b->u.install_snapshot;
        return x->meta.index == y->meta.index && x->meta.term == y->meta.term &&
               x->meta.conf_index == y->meta.conf_index && x->meta.size == y->meta.size &&
               conf_equal(&x->meta.conf, &y->meta.conf) && x->offset == y->offset &&
               bytes_equal(x->data, x->size, y->data, y->size) && x->done == y->done;
    }
    case CRAFT_MSG_INSTALL_SNAPSHOT_RESULT: {
        const struct craft_install_snapshot_result *x = &a->u.install_snapshot_result,
                                                   *y = &b->u.install_snapshot_result;
        return x->index == y->index && x->offset == y->offset && x->rejected == y->rejected &&
               x->done == y->done;
    }
    case CRAFT_MSG_TIMEOUT_NOW:
        return true;
    default:
        return false;
    }
}

bool craft__wire_message_equal(const struct craft_wire_message *a,
                               const struct craft_wire_message *b)
{
    if (a->type != b->type) {
        return false;
    }
    switch (a->type) {
    case CRAFT_WIRE_HANDSHAKE: {
        const struct craft_wire_handshake *x = &a->u.handshake, *y = &b->u.handshake;
        return x->from == y->from && x->to == y->to && x->term == y->term &&
               x->cluster_id == y->cluster_id && x->features == y->features &&
               strcmp(x->address, y->address) == 0;
    }
    case CRAFT_WIRE_REQUEST: {
        const struct craft_wire_request *x = &a->u.request, *y = &b->u.request;
        return x->from == y->from && x->to == y->to && x->term == y->term && x->id == y->id &&
               x->kind == y->kind && bytes_equal(x->payload, x->size, y->payload, y->size);
    }
    case CRAFT_WIRE_RESPONSE: {
        const struct craft_wire_response *x = &a->u.response, *y = &b->u.response;
        return x->from == y->from && x->to == y->to && x->term == y->term && x->id == y->id &&
               x->error == y->error && x->index == y->index && x->leader_id == y->leader_id &&
               strcmp(x->leader_address, y->leader_address) == 0 &&
               bytes_equal(x->payload, x->size, y->payload, y->size);
    }
    default:
        return raft_equal(&a->u.raft, &b->u.raft);
    }
}
