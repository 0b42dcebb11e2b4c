/*
 * Reads (thesis 6.4) as simulator inputs, and their linearizability check.
 *
 * craft_sim_read asks a node's core for a read index and records, at that moment, the highest
 * index known committed anywhere in the cluster (the checker's committed record, which every
 * node's commit index feeds after every event). A linearizable read must reflect every write
 * that completed before it was asked, so when the core reports the read safe with index i, i
 * must be at least that record: a deposed leader that answered from its own stale commit index
 * would fail here. The read is then served when the node's state machine has applied up to i
 * (the driver's half of the contract in craft.h). A read the core fails (CRAFT_ENOTLEADER) is
 * never served, and a crash cancels the node's open reads.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sim_internal.h"

static int violation(struct craft_sim *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int violation(struct craft_sim *s, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return craft__sim_fail(s, CRAFT_SIM_EVIOLATION, "%s", msg);
}

static void emit(struct craft_sim *s, const struct craft_sim_read *r, int rc, const char *what)
{
    struct craft_sim_event ev;
    craft__sim_event_init(s, &ev, CRAFT_SIM_EV_READ, r->node);
    ev.seq = r->id;
    ev.index = r->index;
    ev.rc = rc;
    snprintf(ev.text, sizeof(ev.text), "%s", what);
    craft__sim_emit(s, &ev);
}

static struct craft__sim_read *find(const struct craft_sim *s, uint64_t id)
{
    for (size_t k = s->n_reads; k > 0; k--) {
        if (s->reads[k - 1].r.id == id) {
            return &s->reads[k - 1];
        }
    }
    return NULL;
}

static void close_open(struct craft_sim *s, size_t k)
{
    s->open[k] = s->open[--s->n_open];
}

int craft_sim_read_mode(struct craft_sim *s, craft_id node, uint64_t id, int mode)
{
    if (s->stop_rc != 0) {
        return s->stop_rc;
    }
    if (node == 0 || node > s->n) {
        return CRAFT_EINVAL;
    }
    if (find(s, id) != NULL) {
        return CRAFT_EEXISTS;
    }
    struct craft__sim_node *sn = &s->nodes[node - 1];
    struct craft_sim_read r;
    memset(&r, 0, sizeof(r));
    r.id = id;
    r.node = node;
    r.mode = (uint8_t)mode;
    r.committed = s->n_committed;
    r.requested_at = s->now;
    if (s->o.core != NULL) {
        return CRAFT_EINVAL; /* craft's core only (sim.h, "Bring your own core") */
    }
    int rc = sn->up ? craft_read_index(sn->core, id, mode) : CRAFT_ESTATE;
    emit(s, &r, rc, "requested");
    if (rc != 0) {
        return rc;
    }
    if (s->n_reads == s->cap_reads) {
        size_t cap = s->cap_reads ? 2 * s->cap_reads : 64;
        struct craft__sim_read *v = craft_realloc(s->alloc, s->reads, cap * sizeof(*v));
        if (v == NULL) {
            return craft__sim_fail(s, CRAFT_ENOMEM, "out of memory recording a read");
        }
        s->reads = v;
        s->cap_reads = cap;
    }
    if (s->n_open == s->cap_open) {
        size_t cap = s->cap_open ? 2 * s->cap_open : 16;
        size_t *v = craft_realloc(s->alloc, s->open, cap * sizeof(*v));
        if (v == NULL) {
            return craft__sim_fail(s, CRAFT_ENOMEM, "out of memory recording a read");
        }
        s->open = v;
        s->cap_open = cap;
    }
    r.state = CRAFT_SIM_READ_PENDING;
    s->reads[s->n_reads].r = r;
    s->reads[s->n_reads].incarnation = sn->incarnation;
    s->open[s->n_open++] = s->n_reads++;
    return craft__sim_drain(s, (unsigned)(node - 1));
}

int craft_sim_read(struct craft_sim *s, craft_id node, uint64_t id)
{
    return craft_sim_read_mode(s, node, id, CRAFT_READ_INDEX);
}

int craft_sim_read_result(const struct craft_sim *s, uint64_t id, struct craft_sim_read *out)
{
    const struct craft__sim_read *r = find(s, id);
    if (r == NULL) {
        return CRAFT_ENOTFOUND;
    }
    *out = r->r;
    return 0;
}

int craft__sim_reads_reported(struct craft_sim *s, unsigned i, const struct craft_read_state *rs,
                              size_t n)
{
    struct craft__sim_node *sn = &s->nodes[i];
    for (size_t k = 0; k < n; k++) {
        size_t o = 0;
        while (o < s->n_open) {
            const struct craft__sim_read *c = &s->reads[s->open[o]];
            if (c->r.node == sn->id && c->r.id == rs[k].id && c->incarnation == sn->incarnation &&
                c->r.state == CRAFT_SIM_READ_PENDING) {
                break;
            }
            o++;
        }
        if (o == s->n_open) {
            return violation(s,
                             "reads: n%u reported read %" PRIu64 " (status %s), which is not "
                             "waiting there (never asked, or reported before)",
                             i + 1, rs[k].id, craft_err_name(rs[k].status));
        }
        struct craft_sim_read *r = &s->reads[s->open[o]].r;
        if (rs[k].status != 0) {
            r->state = CRAFT_SIM_READ_FAILED;
            r->status = rs[k].status;
            r->completed_at = s->now;
            s->stats.reads_failed++;
            close_open(s, o);
            emit(s, r, rs[k].status, "failed");
            if (rs[k].status != CRAFT_ENOTLEADER) {
                return violation(s, "reads: n%u failed read %" PRIu64 " with %s", i + 1, r->id,
                                 craft_err_name(rs[k].status));
            }
            continue;
        }
        r->state = CRAFT_SIM_READ_READY;
        r->index = rs[k].index;
        emit(s, r, 0, "ready");
        if (r->index < r->committed) {
            return violation(s,
                             "read linearizability: n%u confirmed read %" PRIu64
                             " at index %" PRIu64 ", but %" PRIu64
                             " was already committed when it was asked (t=%" PRIu64 "ms)",
                             i + 1, r->id, r->index, r->committed, r->requested_at);
        }
    }
    return 0;
}

int craft__sim_reads_serve(struct craft_sim *s, unsigned i)
{
    struct craft__sim_node *sn = &s->nodes[i];
    craft_index applied = sn->applied_base + sn->n_applied;
    size_t o = 0;
    while (o < s->n_open) {
        struct craft_sim_read *r = &s->reads[s->open[o]].r;
        if (r->node != sn->id || r->state != CRAFT_SIM_READ_READY || applied < r->index) {
            o++;
            continue;
        }
        r->state = CRAFT_SIM_READ_SERVED;
        r->applied = applied;
        r->completed_at = s->now;
        s->stats.reads_served++;
        close_open(s, o);
        emit(s, r, 0, "served");
    }
    return 0;
}

void craft__sim_reads_crash(struct craft_sim *s, unsigned i)
{
    size_t o = 0;
    while (o < s->n_open) {
        struct craft_sim_read *r = &s->reads[s->open[o]].r;
        if (r->node != s->nodes[i].id) {
            o++;
            continue;
        }
        r->state = CRAFT_SIM_READ_FAILED;
        r->status = CRAFT_ECANCELED;
        r->completed_at = s->now;
        s->stats.reads_failed++;
        close_open(s, o);
        emit(s, r, CRAFT_ECANCELED, "failed");
    }
}

void craft__sim_reads_close(struct craft_sim *s)
{
    craft_free(s->alloc, s->reads);
    craft_free(s->alloc, s->open);
    s->reads = NULL;
    s->open = NULL;
    s->n_reads = s->cap_reads = s->n_open = s->cap_open = 0;
}
