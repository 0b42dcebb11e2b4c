/* Resources per source (issue 13): what one client, or one source IP, may hold of a node.
 *
 * Anyone who can reach the port can open connections and send partial frames. Without limits,
 * 1,100 idle client connections kept real clients out, and eight partial 60 MiB frames took a
 * node to +427 MiB. So:
 *
 * - A connection is pending until its handshake (TLS, then craft's) is done. At most
 *   max_pending are; a new one makes room by closing the oldest pending connection of the
 *   source IP that holds the most, so a flood from one address evicts its own connections and a
 *   peer from elsewhere still gets through. Pending connections also die after
 *   handshake_timeout_ms (conn.c).
 * - A handshaken connection that is not a member of the configuration (a client, or a server we
 *   do not know) counts against max_clients and max_clients_per_ip; beyond them it is refused at
 *   its handshake. Members are not counted: peers can always connect (and each has one
 *   connection: a newer one replaces the older, conn.c).
 * - Every byte of a partial frame kept between reads counts against read_budget, for all
 *   connections together. A non-member that would exceed it is closed; a member that would
 *   exceed it first closes the non-members holding the largest buffers, then takes what it
 *   needs anyway (members are few, and each is bounded by max_frame).
 */
#include <inttypes.h>
#include <string.h>

#include "uv/transport_internal.h"

bool craft__limits_privileged(const struct craft__conn *c)
{
    return c->kind == CRAFT__KIND_OUTGOING || c->kind == CRAFT__KIND_MEMBER;
}

static struct craft__source *source_find(struct craft__transport *t, const uint8_t ip[16])
{
    for (size_t i = 0; i < t->n_sources; i++) {
        if (memcmp(t->sources[i].ip, ip, 16) == 0) {
            return &t->sources[i];
        }
    }
    return NULL;
}

static struct craft__source *source_get(struct craft__transport *t, const uint8_t ip[16])
{
    struct craft__source *s = source_find(t, ip);

    if (s != NULL) {
        return s;
    }
    if (t->n_sources == t->cap_sources) {
        size_t cap = t->cap_sources ? 2 * t->cap_sources : 16;
        struct craft__source *grown = craft_realloc(t->alloc, t->sources, cap * sizeof *grown);
        if (grown == NULL) {
            return NULL;
        }
        t->sources = grown;
        t->cap_sources = cap;
    }
    s = &t->sources[t->n_sources++];
    memcpy(s->ip, ip, 16);
    s->pending = s->clients = 0;
    return s;
}

/* Drops a source that holds nothing any more (the table stays as small as the set of sources
 * with open connections). */
static void source_trim(struct craft__transport *t, struct craft__source *s)
{
    if (s->pending == 0 && s->clients == 0) {
        *s = t->sources[--t->n_sources];
    }
}

/* The pending connection to close when there are too many: the oldest of the source IP that
 * holds the most. */
static struct craft__conn *pending_victim(struct craft__transport *t)
{
    struct craft__source *worst = NULL;
    struct craft__conn *victim = NULL;

    for (size_t i = 0; i < t->n_sources; i++) {
        if (worst == NULL || t->sources[i].pending > worst->pending) {
            worst = &t->sources[i];
        }
    }
    if (worst == NULL || worst->pending == 0) {
        return NULL;
    }
    for (struct craft__conn *c = t->conns; c != NULL; c = c->next) {
        if (c->kind == CRAFT__KIND_PENDING && c->state != CRAFT__CONN_CLOSING &&
            memcmp(c->ip, worst->ip, 16) == 0 && (victim == NULL || c->seq < victim->seq)) {
            victim = c;
        }
    }
    return victim;
}

int craft__limits_accepted(struct craft__conn *c)
{
    struct craft__transport *t = c->t;
    struct craft__source *s;

    while (t->n_pending >= t->o.max_pending) {
        struct craft__conn *v = pending_victim(t);
        if (v == NULL) {
            break;
        }
        t->stats.evicted++;
        craft__transport_log(t, CRAFT__LOG_WARN,
                             "transport: closing connection from %s: more than %u connections "
                             "without a handshake, it is the oldest of its address",
                             v->name, t->o.max_pending);
        craft__conn_close(v, true);
    }
    s = source_get(t, c->ip);
    if (s == NULL) {
        return CRAFT_ENOMEM;
    }
    s->pending++;
    t->n_pending++;
    c->kind = CRAFT__KIND_PENDING;
    c->seq = t->next_seq++;
    return 0;
}

const char *craft__limits_handshaken(struct craft__conn *c, bool member)
{
    struct craft__transport *t = c->t;
    struct craft__source *s = source_find(t, c->ip);

    if (c->kind != CRAFT__KIND_PENDING || s == NULL) {
        return NULL; /* outgoing */
    }
    if (!member && t->n_clients >= t->o.max_clients) {
        return "too many client connections (max_clients)";
    }
    if (!member && s->clients >= t->o.max_clients_per_ip) {
        return "too many client connections from its address (max_clients_per_ip)";
    }
    s->pending--;
    t->n_pending--;
    if (member) {
        c->kind = CRAFT__KIND_MEMBER;
        source_trim(t, s);
    } else {
        c->kind = CRAFT__KIND_CLIENT;
        s->clients++;
        t->n_clients++;
    }
    return NULL;
}

void craft__limits_closed(struct craft__conn *c)
{
    struct craft__transport *t = c->t;
    struct craft__source *s;

    t->read_bytes -= c->rcap;
    c->rcap = 0; /* rbuf itself is freed with the connection */
    if (c->kind != CRAFT__KIND_PENDING && c->kind != CRAFT__KIND_CLIENT) {
        return;
    }
    s = source_find(t, c->ip);
    if (s != NULL) {
        if (c->kind == CRAFT__KIND_PENDING) {
            s->pending--;
            t->n_pending--;
        } else {
            s->clients--;
            t->n_clients--;
        }
        source_trim(t, s);
    }
    c->kind = 0;
}

bool craft__limits_may_grow(struct craft__conn *c, size_t grow)
{
    struct craft__transport *t = c->t;

    if (t->read_bytes + grow <= t->o.read_budget) {
        return true;
    }
    if (!craft__limits_privileged(c)) {
        return false;
    }
    /* Make room: the non-members holding the most go first. */
    while (t->read_bytes + grow > t->o.read_budget) {
        struct craft__conn *v = NULL;
        for (struct craft__conn *o = t->conns; o != NULL; o = o->next) {
            if (o != c && !craft__limits_privileged(o) && o->state != CRAFT__CONN_CLOSING &&
                o->rcap > 0 && (v == NULL || o->rcap > v->rcap)) {
                v = o;
            }
        }
        if (v == NULL) {
            break;
        }
        t->stats.evicted++;
        craft__transport_log(t, CRAFT__LOG_WARN,
                             "transport: closing connection from %s (%zu bytes of a partial frame)"
                             ": the read budget of %zu bytes is needed by server %" PRIu64,
                             v->name, v->rlen, t->o.read_budget, c->remote);
        craft__conn_close(v, true);
    }
    return true;
}
