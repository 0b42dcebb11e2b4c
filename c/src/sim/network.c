/*
 * The virtual network. A message is copied when sent (the core's pointers die at its next
 * call), may be lost or duplicated then, and is delivered after a random delay, which is what
 * reorders messages. Partitions, cuts and crashes are judged on arrival: a message sent before
 * a partition formed is lost if it lands after, as with a real cable pulled mid-flight.
 */
#include <inttypes.h>
#include <string.h>

#include "sim_internal.h"

size_t craft__sim_message_bytes(const struct craft_message *m)
{
    /* An estimate of the encoded size, for the counters only: a header (version, type, from,
     * to, term) plus the fields of each message, entries with a small header each. */
    size_t n = 24;
    switch (m->type) {
        case CRAFT_MSG_REQUEST_VOTE:
            n += 18;
            break;
        case CRAFT_MSG_REQUEST_VOTE_RESULT:
            n += 2;
            break;
        case CRAFT_MSG_APPEND_ENTRIES:
            n += 32;
            for (size_t k = 0; k < m->u.append_entries.n_entries; k++) {
                n += 17 + m->u.append_entries.entries[k].size;
            }
            break;
        case CRAFT_MSG_APPEND_ENTRIES_RESULT:
            n += 41;
            break;
        case CRAFT_MSG_INSTALL_SNAPSHOT: {
            const struct craft_install_snapshot *is = &m->u.install_snapshot;
            n += 58 + is->size;
            for (unsigned k = 0; k < is->meta.conf.n; k++) {
                n += 10 + strlen(is->meta.conf.servers[k].address);
            }
            break;
        }
        case CRAFT_MSG_INSTALL_SNAPSHOT_RESULT:
            n += 18;
            break;
        default:
            break;
    }
    return n;
}

void craft__sim_packet_free(struct craft_sim *s, struct craft__sim_packet *p)
{
    if (p == NULL) {
        return;
    }
    craft_free(s->alloc, p->entries_block);
    craft_free(s->alloc, p->snap_data);
    if (p->m.type == CRAFT_MSG_INSTALL_SNAPSHOT) {
        craft_configuration_close(&p->m.u.install_snapshot.meta.conf, s->alloc);
    }
    craft_free(s->alloc, p);
}

/* Reads [offset, offset + size) of the sender's latest snapshot: the core leaves InstallSnapshot
 * data to the driver (craft.h). */
static int read_snapshot(struct craft_sim *s, unsigned from, craft_index index, uint64_t offset,
                         size_t size, void *buf)
{
    struct craft_store *st = s->nodes[from].store;
    /* A node that just installed a snapshot knows it before its disk has stored it: until
     * then it cannot send it, as a real driver could not. */
    struct craft_snapshot_meta meta;
    int rc = st->snapshot_meta(st->impl, s->alloc, &meta);
    if (rc != 0) {
        return rc == CRAFT_ENOTFOUND ? CRAFT_EUNAVAILABLE : rc;
    }
    craft_configuration_close(&meta.conf, s->alloc);
    if (meta.index != index) {
        return CRAFT_EUNAVAILABLE;
    }
    void *reader = NULL;
    rc = st->snapshot_open(st->impl, &reader);
    if (rc != 0) {
        return rc;
    }
    size_t got = 0;
    while (got < size) {
        size_t k = 0;
        rc = st->snapshot_read(st->impl, reader, offset + got, (char *)buf + got, size - got, &k);
        if (rc != 0) {
            break;
        }
        if (k == 0) {
            rc = CRAFT_EUNAVAILABLE; /* the core asked for bytes past the end */
            break;
        }
        got += k;
    }
    st->snapshot_close(st->impl, reader);
    return rc;
}

int craft__sim_packet_copy(struct craft_sim *s, unsigned from, const struct craft_message *m,
                           struct craft__sim_packet **out)
{
    struct craft__sim_packet *p = craft_calloc(s->alloc, 1, sizeof(*p));
    if (p == NULL) {
        return CRAFT_ENOMEM;
    }
    p->m = *m;
    int rc = 0;
    if (m->type == CRAFT_MSG_APPEND_ENTRIES && m->u.append_entries.n_entries > 0) {
        const struct craft_append_entries *ae = &m->u.append_entries;
        size_t total = ae->n_entries * sizeof(struct craft_entry);
        for (size_t k = 0; k < ae->n_entries; k++) {
            total += ae->entries[k].size;
        }
        struct craft_entry *copy = craft_malloc(s->alloc, total);
        if (copy == NULL) {
            craft_free(s->alloc, p);
            return CRAFT_ENOMEM;
        }
        char *payload = (char *)(copy + ae->n_entries);
        for (size_t k = 0; k < ae->n_entries; k++) {
            copy[k] = ae->entries[k];
            if (ae->entries[k].size > 0) {
                memcpy(payload, ae->entries[k].data, ae->entries[k].size);
                copy[k].data = payload;
                payload += ae->entries[k].size;
            } else {
                copy[k].data = NULL;
            }
        }
        p->entries_block = copy;
        p->m.u.append_entries.entries = copy;
    } else if (m->type == CRAFT_MSG_APPEND_ENTRIES) {
        p->m.u.append_entries.entries = NULL;
    } else if (m->type == CRAFT_MSG_INSTALL_SNAPSHOT) {
        const struct craft_install_snapshot *is = &m->u.install_snapshot;
        struct craft_install_snapshot *dst = &p->m.u.install_snapshot;
        craft_configuration_init(&dst->meta.conf);
        rc = craft_configuration_copy(&dst->meta.conf, &is->meta.conf, s->alloc);
        if (rc == 0 && is->size > 0) {
            p->snap_data = craft_malloc(s->alloc, is->size);
            if (p->snap_data == NULL) {
                rc = CRAFT_ENOMEM;
            } else if (is->data != NULL) {
                memcpy(p->snap_data, is->data, is->size);
            } else {
                rc = read_snapshot(s, from, is->meta.index, is->offset, is->size,
                                   p->snap_data);
            }
        }
        dst->data = p->snap_data;
        if (rc != 0) {
            craft__sim_packet_free(s, p);
            return rc;
        }
    }
    *out = p;
    return 0;
}

/* Copies m into flight (fate OK or DUPLICATED), or into the held list (HELD), extra ms later
 * than the network's delay. */
static int enqueue(struct craft_sim *s, unsigned from, const struct craft_message *m,
                   uint8_t fate, uint64_t extra)
{
    struct craft__sim_packet *p;
    int rc = craft__sim_packet_copy(s, from, m, &p);
    if (rc == CRAFT_EUNAVAILABLE) {
        craft__sim_emit_text(s, CRAFT_SIM_EV_NOTE, from + 1,
                             "n%u cannot send snapshot %" PRIu64 ": not in its store yet",
                             from + 1, m->u.install_snapshot.meta.index);
        return 0;
    }
    if (rc != 0) {
        return craft__sim_fail(s, rc, "n%u: copying a %s message failed: %s", from + 1,
                               craft__sim_msg_name(m->type), craft_err_name(rc));
    }
    p->fate = fate;
    p->dst_incarnation = s->nodes[m->to - 1].incarnation;
    if (fate == CRAFT_SIM_FATE_HELD) {
        p->fate = CRAFT_SIM_FATE_OK;
        return craft__sim_hold(s, p);
    }
    uint64_t delay = extra +
                     craft__sim_prng_range(&s->rng, s->o.min_delay_ms, s->o.max_delay_ms);
    rc = craft__sim_schedule(s, s->now + delay, CRAFT__SIM_DELIVER, (unsigned)(m->to - 1), p);
    if (rc != 0) {
        craft__sim_packet_free(s, p);
    }
    return rc;
}

int craft__sim_net_send(struct craft_sim *s, unsigned from, const struct craft_message *m)
{
    int type = m->type <= CRAFT_MSG_TYPE_MAX ? m->type : 0;
    s->stats.sent[type]++;
    s->stats.bytes[type] += craft__sim_message_bytes(m);

    struct craft_sim_event ev;
    craft__sim_event_init(s, &ev, CRAFT_SIM_EV_SEND, m->from);
    ev.peer = m->to;
    ev.msg = *m;
    if (m->from != from + 1) {
        return craft__sim_fail(s, CRAFT_EMALFORMED, "n%u sent a %s message with from=%llu",
                               from + 1, craft__sim_msg_name(m->type),
                               (unsigned long long)m->from);
    }
    if (m->to == 0 || m->to > s->n) {
        ev.fate = CRAFT_SIM_FATE_UNKNOWN;
        s->stats.dropped[type]++;
        craft__sim_emit(s, &ev);
        return 0;
    }
    struct craft_sim_link_stats *link = craft__sim_link(s, m->from, m->to);
    link->sent++;
    link->bytes += craft__sim_message_bytes(m);
    /* The test author's rules first (control.c), then the network's own randomness. */
    uint64_t extra = 0;
    int action = craft__sim_rules_apply(s, m, &extra);
    if (action == CRAFT_SIM_DROP) {
        ev.fate = CRAFT_SIM_FATE_RULE;
        s->stats.dropped[type]++;
        link->dropped++;
        craft__sim_emit(s, &ev);
        return 0;
    }
    if (action == CRAFT_SIM_HOLD) {
        ev.fate = CRAFT_SIM_FATE_HELD;
        link->held++;
        craft__sim_emit(s, &ev);
        return enqueue(s, from, m, CRAFT_SIM_FATE_HELD, 0);
    }
    if (action == 0 && craft__sim_prng_chance(&s->rng, s->o.drop_rate)) {
        ev.fate = CRAFT_SIM_FATE_LOST;
        s->stats.dropped[type]++;
        link->dropped++;
        craft__sim_emit(s, &ev);
        return 0;
    }
    craft__sim_emit(s, &ev);
    int rc = enqueue(s, from, m, CRAFT_SIM_FATE_OK, extra);
    if (rc == 0 && (action == CRAFT_SIM_DUPLICATE ||
                    (action == 0 && craft__sim_prng_chance(&s->rng, s->o.dup_rate)))) {
        s->stats.duplicated[type]++;
        rc = enqueue(s, from, m, CRAFT_SIM_FATE_DUPLICATED, extra);
    }
    return rc;
}

int craft__sim_net_deliver(struct craft_sim *s, struct craft__sim_packet *p)
{
    const struct craft_message *m = &p->m;
    int type = m->type <= CRAFT_MSG_TYPE_MAX ? m->type : 0;
    unsigned from = (unsigned)(m->from - 1), to = (unsigned)(m->to - 1);
    struct craft__sim_node *dst = &s->nodes[to];

    struct craft_sim_event ev;
    craft__sim_event_init(s, &ev, CRAFT_SIM_EV_DELIVER, m->from);
    ev.peer = m->to;
    ev.msg = *m;
    ev.fate = p->fate;
    if (!dst->up || dst->incarnation != p->dst_incarnation) {
        ev.kind = CRAFT_SIM_EV_DROP;
        ev.fate = CRAFT_SIM_FATE_DOWN;
    } else if (s->group_of[from] != s->group_of[to] || s->cut[from * s->n + to]) {
        ev.kind = CRAFT_SIM_EV_DROP;
        ev.fate = CRAFT_SIM_FATE_PARTITIONED;
    }
    craft__sim_emit(s, &ev);
    struct craft_sim_link_stats *link = craft__sim_link(s, m->from, m->to);
    if (ev.kind == CRAFT_SIM_EV_DROP) {
        s->stats.dropped[type]++;
        link->dropped++;
        return 0;
    }
    s->stats.delivered[type]++;
    link->delivered++;
    if (m->type == CRAFT_MSG_REQUEST_VOTE_RESULT && m->u.request_vote_result.granted &&
        !m->u.request_vote_result.pre_vote) {
        craft__sim_inv_grant(s, to, m->from, m->term);
    }
    int rc = craft__sim_core_step(s, to, m);
    if (rc != 0) {
        /* The simulator only delivers what a core produced: any error here is a bug. */
        return craft__sim_fail(s, rc, "n%u: craft_step(%s from n%u) returned %s", to + 1,
                               craft__sim_msg_name(m->type), from + 1, craft_err_name(rc));
    }
    return craft__sim_drain(s, to);
}
