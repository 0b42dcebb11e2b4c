/*
 * Control of a simulation by a test author: rules that hold, drop, duplicate or delay the
 * messages they select (the network's randomness then leaves those alone), the held messages
 * and their delivery in an order of the author's choosing (etcd-io/raft's deliver-msgs),
 * messages built by hand, a node made to campaign, a node's clock and protocol options, and the
 * per-link counters. With these a paper scenario (Figure 7, Figure 8, the 2015 membership bug)
 * is a short script rather than a search for a seed that happens to produce it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sim_internal.h"

static bool matches(const struct craft_sim_match *mt, const struct craft_message *m)
{
    if (mt == NULL) {
        return true;
    }
    if (mt->types != 0 && (m->type > 31 || (mt->types & (1u << m->type)) == 0)) {
        return false;
    }
    if ((mt->from != 0 && mt->from != m->from) || (mt->to != 0 && mt->to != m->to)) {
        return false;
    }
    return mt->pred == NULL || mt->pred(mt->pred_ud, m);
}

/* ---- rules ------------------------------------------------------------------------------- */

int craft_sim_rule_add(struct craft_sim *s, const struct craft_sim_rule *r, uint64_t *id)
{
    if (r->action < CRAFT_SIM_HOLD || r->action > CRAFT_SIM_DELAY) {
        return CRAFT_EINVAL;
    }
    if (s->n_rules == s->cap_rules) {
        size_t cap = s->cap_rules ? 2 * s->cap_rules : 8;
        struct craft__sim_rule *v = craft_realloc(s->alloc, s->rules, cap * sizeof(*v));
        if (v == NULL) {
            return CRAFT_ENOMEM;
        }
        s->rules = v;
        s->cap_rules = cap;
    }
    struct craft__sim_rule *slot = &s->rules[s->n_rules++];
    slot->id = ++s->next_rule_id;
    slot->r = *r;
    if (id != NULL) {
        *id = slot->id;
    }
    return 0;
}

static void rule_drop_at(struct craft_sim *s, size_t k)
{
    memmove(&s->rules[k], &s->rules[k + 1], (s->n_rules - k - 1) * sizeof(*s->rules));
    s->n_rules--;
}

int craft_sim_rule_remove(struct craft_sim *s, uint64_t id)
{
    for (size_t k = 0; k < s->n_rules; k++) {
        if (s->rules[k].id == id) {
            rule_drop_at(s, k);
            return 0;
        }
    }
    return CRAFT_ENOTFOUND;
}

void craft_sim_rules_clear(struct craft_sim *s)
{
    s->n_rules = 0;
}

int craft__sim_rules_apply(struct craft_sim *s, const struct craft_message *m,
                           uint64_t *delay_ms)
{
    *delay_ms = 0;
    for (size_t k = 0; k < s->n_rules; k++) {
        struct craft__sim_rule *r = &s->rules[k];
        if (!matches(&r->r.match, m)) {
            continue;
        }
        int action = r->r.action;
        *delay_ms = action == CRAFT_SIM_DELAY ? r->r.delay_ms : 0;
        if (r->r.count != 0 && --r->r.count == 0) {
            rule_drop_at(s, k);
        }
        return action;
    }
    return 0;
}

/* ---- held messages ----------------------------------------------------------------------- */

int craft__sim_hold(struct craft_sim *s, struct craft__sim_packet *p)
{
    if (s->n_held == s->cap_held) {
        size_t cap = s->cap_held ? 2 * s->cap_held : 16;
        struct craft__sim_held *v = craft_realloc(s->alloc, s->held, cap * sizeof(*v));
        if (v == NULL) {
            craft__sim_packet_free(s, p);
            return craft__sim_fail(s, CRAFT_ENOMEM, "out of memory holding a message");
        }
        s->held = v;
        s->cap_held = cap;
    }
    s->held[s->n_held++] = (struct craft__sim_held){.id = ++s->next_held_id, .at = s->now, .p = p};
    return 0;
}

size_t craft_sim_held(const struct craft_sim *s, const struct craft_sim_match *m,
                      struct craft_sim_held *out, size_t max)
{
    size_t n = 0;
    for (size_t k = 0; k < s->n_held; k++) {
        const struct craft__sim_held *h = &s->held[k];
        if (!matches(m, &h->p->m)) {
            continue;
        }
        if (n < max) {
            out[n] = (struct craft_sim_held){.id = h->id, .held_at = h->at, .msg = &h->p->m};
        }
        n++;
    }
    return n;
}

/* Removes and returns the first held packet with an id up to limit that m selects. */
static struct craft__sim_packet *take_held(struct craft_sim *s, const struct craft_sim_match *m,
                                           uint64_t limit)
{
    for (size_t k = 0; k < s->n_held && s->held[k].id <= limit; k++) {
        if (!matches(m, &s->held[k].p->m)) {
            continue;
        }
        struct craft__sim_packet *p = s->held[k].p;
        memmove(&s->held[k], &s->held[k + 1], (s->n_held - k - 1) * sizeof(*s->held));
        s->n_held--;
        return p;
    }
    return NULL;
}

int craft_sim_deliver(struct craft_sim *s, const struct craft_sim_match *m, size_t max,
                      size_t *n)
{
    size_t done = 0;
    int rc = s->stop_rc;
    /* Only what is held now: a reaction held during the call waits for the next one. */
    uint64_t limit = s->next_held_id;
    while (rc == 0 && (max == 0 || done < max)) {
        struct craft__sim_packet *p = take_held(s, m, limit);
        if (p == NULL) {
            break;
        }
        done++;
        rc = craft__sim_net_deliver(s, p);
        craft__sim_packet_free(s, p);
    }
    if (n != NULL) {
        *n = done;
    }
    return rc;
}

int craft_sim_discard(struct craft_sim *s, const struct craft_sim_match *m, size_t *n)
{
    size_t done = 0;
    struct craft__sim_packet *p;
    while ((p = take_held(s, m, UINT64_MAX)) != NULL) {
        int type = p->m.type <= CRAFT_MSG_TYPE_MAX ? p->m.type : 0;
        s->stats.dropped[type]++;
        craft__sim_link(s, p->m.from, p->m.to)->dropped++;
        struct craft_sim_event ev;
        craft__sim_event_init(s, &ev, CRAFT_SIM_EV_DROP, p->m.from);
        ev.peer = p->m.to;
        ev.msg = p->m;
        ev.fate = CRAFT_SIM_FATE_RULE;
        craft__sim_emit(s, &ev);
        craft__sim_packet_free(s, p);
        done++;
    }
    if (n != NULL) {
        *n = done;
    }
    return 0;
}

int craft_sim_inject(struct craft_sim *s, const struct craft_message *m, uint64_t delay_ms)
{
    if (s->stop_rc != 0) {
        return s->stop_rc;
    }
    if (m->from == 0 || m->from > s->n || m->to == 0 || m->to > s->n || m->from == m->to ||
        m->type < 1 || m->type > CRAFT_MSG_TYPE_MAX) {
        return CRAFT_EINVAL;
    }
    if (m->type == CRAFT_MSG_APPEND_ENTRIES && m->u.append_entries.n_entries > 0 &&
        m->u.append_entries.entries == NULL) {
        return CRAFT_EINVAL;
    }
    struct craft__sim_packet *p;
    int rc = craft__sim_packet_copy(s, (unsigned)(m->from - 1), m, &p);
    if (rc != 0) {
        return rc;
    }
    p->fate = CRAFT_SIM_FATE_OK;
    p->dst_incarnation = s->nodes[m->to - 1].incarnation;
    int type = m->type;
    s->stats.sent[type]++;
    s->stats.bytes[type] += craft__sim_message_bytes(m);
    struct craft_sim_link_stats *link = craft__sim_link(s, m->from, m->to);
    link->sent++;
    link->bytes += craft__sim_message_bytes(m);
    struct craft_sim_event ev;
    craft__sim_event_init(s, &ev, CRAFT_SIM_EV_SEND, m->from);
    ev.peer = m->to;
    ev.msg = *m;
    ev.fate = CRAFT_SIM_FATE_INJECTED;
    craft__sim_emit(s, &ev);
    rc = craft__sim_schedule(s, s->now + delay_ms, CRAFT__SIM_DELIVER, (unsigned)(m->to - 1), p);
    if (rc != 0) {
        craft__sim_packet_free(s, p);
    }
    return rc;
}

/* ---- time and elections ------------------------------------------------------------------- */

static struct craft__sim_node *node_of(const struct craft_sim *s, craft_id id)
{
    return id >= 1 && id <= s->n ? &s->nodes[id - 1] : NULL;
}

static int tick_once(struct craft_sim *s, unsigned i)
{
    s->stats.ticks++;
    int rc = craft__sim_core_tick(s, i);
    if (rc != 0) {
        return craft__sim_fail(s, rc, "n%u: tick returned %s", i + 1, craft_err_name(rc));
    }
    return craft__sim_drain(s, i);
}

int craft_sim_tick(struct craft_sim *s, craft_id id, unsigned n)
{
    struct craft__sim_node *sn = node_of(s, id);
    if (sn == NULL) {
        return CRAFT_EINVAL;
    }
    if (s->stop_rc != 0) {
        return s->stop_rc;
    }
    if (!sn->up) {
        return CRAFT_ESTATE;
    }
    int rc = 0;
    for (unsigned k = 0; rc == 0 && k < n && sn->up; k++) {
        rc = tick_once(s, (unsigned)(id - 1));
    }
    return rc;
}

static bool campaigning(int role)
{
    return role == CRAFT_PRE_CANDIDATE || role == CRAFT_CANDIDATE || role == CRAFT_LEADER;
}

int craft_sim_campaign(struct craft_sim *s, craft_id id)
{
    struct craft__sim_node *sn = node_of(s, id);
    if (sn == NULL) {
        return CRAFT_EINVAL;
    }
    if (s->stop_rc != 0) {
        return s->stop_rc;
    }
    unsigned i = (unsigned)(id - 1);
    struct craft_sim_core_status st;
    if (!sn->up) {
        return CRAFT_ESTATE;
    }
    craft__sim_core_status(s, i, &st);
    if (st.role == CRAFT_LEADER) {
        return CRAFT_ESTATE;
    }
    if (campaigning(st.role)) {
        return 0;
    }
    struct craft_config c;
    craft_sim_node_config(s, id, &c);
    /* The randomized timeout lies in [election_ticks, 2 * election_ticks). */
    unsigned bound = 2 * c.election_ticks + 1;
    for (unsigned k = 1; k <= bound; k++) {
        int rc = tick_once(s, i);
        if (rc != 0) {
            return rc;
        }
        if (!sn->up) {
            return CRAFT_ESTATE;
        }
        craft__sim_core_status(s, i, &st);
        if (campaigning(st.role)) {
            craft__sim_emit_text(s, CRAFT_SIM_EV_NOTE, id,
                                 "n%" PRIu64 " campaigns: its clock jumped %u ticks", id, k);
            return 0;
        }
    }
    return CRAFT_ESTATE;
}

int craft_sim_set_clock(struct craft_sim *s, craft_id id, unsigned tick_ms)
{
    if (id > s->n || (tick_ms != 0 && tick_ms <= s->o.tick_jitter_ms)) {
        return CRAFT_EINVAL;
    }
    if (s->stop_rc != 0) {
        return s->stop_rc;
    }
    for (unsigned i = 0; i < s->n; i++) {
        struct craft__sim_node *sn = &s->nodes[i];
        if (id != 0 && i != id - 1) {
            continue;
        }
        sn->clock_ms = tick_ms;
        sn->clock_gen++; /* retires the tick already scheduled */
        if (sn->up && tick_ms != 0) {
            uint64_t at = s->now + craft__sim_prng_range(&s->rng, 1, tick_ms);
            int rc = craft__sim_schedule(s, at, CRAFT__SIM_TICK, i,
                                         (void *)(uintptr_t)sn->clock_gen);
            if (rc != 0) {
                return rc;
            }
        }
    }
    char who[32];
    if (id == 0) {
        snprintf(who, sizeof(who), "every clock");
    } else {
        snprintf(who, sizeof(who), "n%" PRIu64 "'s clock", id);
    }
    if (tick_ms != 0) {
        craft__sim_emit_text(s, CRAFT_SIM_EV_NOTE, id, "%s ticks every %ums", who, tick_ms);
    } else {
        craft__sim_emit_text(s, CRAFT_SIM_EV_NOTE, id, "%s stopped", who);
    }
    return 0;
}

unsigned craft_sim_clock(const struct craft_sim *s, craft_id id)
{
    const struct craft__sim_node *sn = node_of(s, id);
    return sn != NULL ? sn->clock_ms : 0;
}

int craft_sim_node_config(const struct craft_sim *s, craft_id id, struct craft_config *out)
{
    const struct craft__sim_node *sn = node_of(s, id);
    if (sn == NULL) {
        return CRAFT_EINVAL;
    }
    *out = sn->has_config ? sn->config : s->o.node;
    out->id = id;
    out->alloc = s->alloc;
    return 0;
}

int craft_sim_set_node_config(struct craft_sim *s, craft_id id, const struct craft_config *c)
{
    struct craft__sim_node *sn = node_of(s, id);
    if (sn == NULL || c->election_ticks == 0 || c->heartbeat_ticks == 0 ||
        c->heartbeat_ticks >= c->election_ticks) {
        return CRAFT_EINVAL;
    }
    sn->config = *c;
    sn->has_config = true;
    return 0;
}

/* ---- counters ----------------------------------------------------------------------------- */

struct craft_sim_link_stats *craft__sim_link(struct craft_sim *s, craft_id from, craft_id to)
{
    return &s->links[(from - 1) * s->n + (to - 1)];
}

int craft_sim_link_stats(const struct craft_sim *s, craft_id from, craft_id to,
                         struct craft_sim_link_stats *out)
{
    if (node_of(s, from) == NULL || node_of(s, to) == NULL) {
        return CRAFT_EINVAL;
    }
    *out = s->links[(from - 1) * s->n + (to - 1)];
    return 0;
}

void craft__sim_control_close(struct craft_sim *s)
{
    for (size_t k = 0; k < s->n_held; k++) {
        craft__sim_packet_free(s, s->held[k].p);
    }
    craft_free(s->alloc, s->held);
    s->held = NULL;
    s->n_held = 0;
    craft_free(s->alloc, s->rules);
    s->rules = NULL;
    s->n_rules = 0;
    craft_free(s->alloc, s->links);
    s->links = NULL;
}
