/*
 * The safety checker. It never trusts a core's word about other nodes: it mirrors each node's
 * log from the entries the node's updates hand out ("shadow logs" with a hash chain per entry)
 * and keeps a cluster-wide record of every entry known to be committed. Each property of the
 * Raft paper's Figure 3 is then a cheap check at the moment it could first be broken:
 *
 * - Election safety: at most one leader per term (a table term -> leader).
 * - Leader append-only: a leader never overwrites its own log.
 * - Log matching: when a node appends entry i, every other log that holds an entry at i with
 *   the same term must have the same chain hash there, i.e. identical entries 1..i.
 * - Leader completeness: a node that becomes leader of term T holds every entry that was known
 *   committed by a node in a term below T (the committed record's chain hash at that index).
 * - State machine safety: every applied entry equals the committed record at its index, each
 *   incarnation applies 1, 2, 3, ... in order, and a committed entry is never replaced.
 * Plus: commit indexes and terms never go back within an incarnation, and the hard state on
 * disk never changes its vote within a term nor lowers its term.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sim_internal.h"

#define MAX_CHECKED_TERM (1u << 22) /* beyond this the term table would be absurdly large */

static struct craft__sim_slot *slot_at(struct craft__sim_shadow *l, craft_index i)
{
    if (i <= l->base || i > l->base + l->n) {
        return NULL;
    }
    return &l->v[i - l->base - 1];
}

static craft_index last_of(const struct craft__sim_shadow *l)
{
    return l->base + l->n;
}

static int reserve_slots(struct craft_sim *s, struct craft__sim_slot **v, size_t *cap,
                         size_t need)
{
    if (need <= *cap) {
        return 0;
    }
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        c *= 2;
    }
    struct craft__sim_slot *nv = craft_realloc(s->alloc, *v, c * sizeof(*nv));
    if (nv == NULL) {
        return craft__sim_fail(s, CRAFT_ENOMEM, "out of memory in the checker");
    }
    *v = nv;
    *cap = c;
    return 0;
}

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

static int ensure_term(struct craft_sim *s, craft_term t)
{
    if (t < s->n_terms) {
        return 0;
    }
    if (t >= MAX_CHECKED_TERM) {
        return violation(s, "term %" PRIu64 " is implausibly large", t);
    }
    size_t n = s->n_terms ? s->n_terms : 16;
    while (n <= t) {
        n *= 2;
    }
    struct craft__sim_term_info *v = craft_realloc(s->alloc, s->terms, n * sizeof(*v));
    if (v == NULL) {
        return craft__sim_fail(s, CRAFT_ENOMEM, "out of memory in the checker");
    }
    memset(v + s->n_terms, 0, (n - s->n_terms) * sizeof(*v));
    s->terms = v;
    s->n_terms = n;
    return 0;
}

void craft__sim_shadow_close(struct craft_sim *s, struct craft__sim_shadow *l)
{
    craft_free(s->alloc, l->v);
    memset(l, 0, sizeof(*l));
}

static int shadow_push(struct craft_sim *s, struct craft__sim_shadow *l,
                       const struct craft_entry *e)
{
    int rc = reserve_slots(s, &l->v, &l->cap, l->n + 1);
    if (rc != 0) {
        return rc;
    }
    uint64_t prev = l->n ? l->v[l->n - 1].chain : l->base_chain;
    struct craft__sim_slot *sl = &l->v[l->n++];
    sl->term = e->term;
    sl->type = e->type;
    sl->data_hash = craft__sim_hash_bytes(e->data, e->size);
    sl->chain = craft__sim_hash_chain(prev, e->index, e->term, e->type, sl->data_hash);
    sl->voters = 0;
    if (e->type == CRAFT_ENTRY_CONFIG) {
        struct craft_configuration c;
        if (craft_configuration_decode(e->data, e->size, s->alloc, &c) == 0) {
            sl->voters = craft__sim_voters_of(&c);
            craft_configuration_close(&c, s->alloc);
        }
    }
    return 0;
}

int craft__sim_shadow_reset(struct craft_sim *s, unsigned i, craft_index base,
                            craft_term base_term, const struct craft_entry *e, size_t n)
{
    struct craft__sim_shadow *l = &s->nodes[i].log;
    l->n = 0;
    l->base = base;
    if (base == 0) {
        l->base_chain = 0;
    } else if (base <= s->n_committed) {
        /* A snapshot only covers committed entries: continue the cluster's chain. */
        l->base_chain = s->committed[base - 1].chain;
    } else {
        /* Unknowable here; log matching below this base cannot be checked. */
        l->base_chain = craft__sim_hash_chain(0, base, base_term, 0, 0);
    }
    for (size_t k = 0; k < n; k++) {
        int rc = shadow_push(s, l, &e[k]);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int craft__sim_shadow_rebase(struct craft_sim *s, unsigned i, craft_index index,
                             craft_term term, bool discard)
{
    struct craft__sim_shadow *l = &s->nodes[i].log;
    if (index <= l->base) {
        return 0;
    }
    if (!discard && index <= last_of(l)) {
        size_t drop = (size_t)(index - l->base);
        l->base_chain = l->v[drop - 1].chain;
        memmove(l->v, l->v + drop, (l->n - drop) * sizeof(*l->v));
        l->n -= drop;
        l->base = index;
        return 0;
    }
    return craft__sim_shadow_reset(s, i, index, term, NULL, 0);
}

bool craft__sim_committed_chain(const struct craft_sim *s, craft_index index, uint64_t *chain)
{
    if (index == 0 || index > s->n_committed) {
        return false;
    }
    *chain = s->committed[index - 1].chain;
    return true;
}

bool craft__sim_shadow_chain(const struct craft_sim *s, unsigned i, craft_index index,
                             uint64_t *chain)
{
    const struct craft__sim_shadow *l = &s->nodes[i].log;
    if (index == l->base) {
        *chain = l->base_chain;
        return true;
    }
    if (index < l->base || index > last_of(l)) {
        return false;
    }
    *chain = l->v[index - l->base - 1].chain;
    return true;
}

/* Log matching for node i's entry at index: against every other log holding that index. */
static int check_matching(struct craft_sim *s, unsigned i, craft_index index)
{
    const struct craft__sim_slot *mine = slot_at(&s->nodes[i].log, index);
    for (unsigned j = 0; j < s->n; j++) {
        if (j == i) {
            continue;
        }
        const struct craft__sim_slot *theirs = slot_at(&s->nodes[j].log, index);
        if (theirs != NULL && theirs->term == mine->term && theirs->chain != mine->chain) {
            return violation(s,
                             "log matching: n%u and n%u both hold entry %" PRIu64 "/%" PRIu64
                             " but their logs differ at or before it",
                             i + 1, j + 1, index, mine->term);
        }
    }
    return 0;
}

int craft__sim_inv_append(struct craft_sim *s, unsigned i, const struct craft_entry *e,
                          size_t n, bool leader_before)
{
    struct craft__sim_node *sn = &s->nodes[i];
    struct craft__sim_shadow *l = &sn->log;
    if (n == 0) {
        return 0;
    }
    craft_index first = e[0].index;
    if (first <= l->base || first > last_of(l) + 1) {
        return craft__sim_fail(s, CRAFT_EMALFORMED,
                               "n%u handed out entries from %" PRIu64
                               " but its log holds %" PRIu64 "..%" PRIu64,
                               i + 1, first, l->base + 1, last_of(l));
    }
    if (first <= last_of(l) && leader_before) {
        return violation(s,
                         "leader append-only: n%u, leader of term %" PRIu64
                         ", overwrote its log from index %" PRIu64,
                         i + 1, sn->term, first);
    }
    /* Did the node hold the committed entry at first? Then overwriting it loses a committed
     * entry. (A node that never had it, e.g. a stale leader, may put anything there.) */
    bool had_committed = first <= last_of(l) && first <= s->n_committed &&
                         slot_at(l, first)->chain == s->committed[first - 1].chain;
    l->n = first - l->base - 1;
    for (size_t k = 0; k < n; k++) {
        craft_index idx = e[k].index;
        if (idx != first + k) {
            return craft__sim_fail(s, CRAFT_EMALFORMED,
                                   "n%u handed out non-contiguous entries (%" PRIu64
                                   " after %" PRIu64 ")",
                                   i + 1, idx, first + k - 1);
        }
        const struct craft__sim_slot *prev = l->n ? &l->v[l->n - 1] : NULL;
        if (prev != NULL && e[k].term < prev->term) {
            return violation(s,
                             "log terms: n%u appended %" PRIu64 "/%" PRIu64
                             " after an entry of term %" PRIu64,
                             i + 1, idx, e[k].term, prev->term);
        }
        int rc = shadow_push(s, l, &e[k]);
        if (rc != 0) {
            return rc;
        }
        const struct craft__sim_slot *sl = &l->v[l->n - 1];
        if (k == 0 && had_committed && s->committed[idx - 1].chain != sl->chain) {
            return violation(s,
                             "state machine safety: n%u overwrote committed entry %" PRIu64
                             "/%" PRIu64 " with %" PRIu64 "/%" PRIu64,
                             i + 1, idx, s->committed[idx - 1].term, idx, e[k].term);
        }
        rc = check_matching(s, i, idx);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int craft__sim_inv_role(struct craft_sim *s, unsigned i, int role, craft_term term)
{
    if (role != CRAFT_LEADER) {
        return 0;
    }
    int rc = ensure_term(s, term);
    if (rc != 0) {
        return rc;
    }
    craft_id id = s->nodes[i].id;
    if (s->terms[term].leader == id) {
        return 0;
    }
    if (s->terms[term].leader != 0) {
        return violation(s, "election safety: n%" PRIu64 " and n%" PRIu64
                            " are both leaders of term %" PRIu64,
                         s->terms[term].leader, id, term);
    }
    s->terms[term].leader = id;
    /* Leader completeness (paper section 5.4.1): what was committed in an earlier term must
     * be in this leader's log. Entries committed in term T or later may legitimately be
     * missing when a late election for an older term completes. */
    craft_index k = 0;
    for (craft_term t = 0; t < term && t < s->n_terms; t++) {
        if (s->terms[t].max_commit > k) {
            k = s->terms[t].max_commit;
        }
    }
    struct craft__sim_shadow *l = &s->nodes[i].log;
    if (k == 0 || k <= l->base) {
        return 0;
    }
    const struct craft__sim_slot *sl = slot_at(l, k);
    if (sl == NULL || sl->chain != s->committed[k - 1].chain) {
        return violation(s,
                         "leader completeness: n%u became leader of term %" PRIu64
                         " without committed entry %" PRIu64 "/%" PRIu64
                         " (its log ends at %" PRIu64 ")",
                         i + 1, term, k, s->committed[k - 1].term, last_of(l));
    }
    return 0;
}

/* Node i (in term) holds index upto as committed: its log must agree with the committed
 * record, and extends it. */
static int record_committed(struct craft_sim *s, unsigned i, craft_index upto, craft_term term)
{
    struct craft__sim_shadow *l = &s->nodes[i].log;
    if (upto > last_of(l)) {
        return violation(s,
                         "n%u has commit index %" PRIu64 " beyond its last log entry %" PRIu64,
                         i + 1, upto, last_of(l));
    }
    craft_index m = upto < s->n_committed ? upto : s->n_committed;
    if (m > l->base) {
        const struct craft__sim_slot *sl = slot_at(l, m);
        if (sl->chain != s->committed[m - 1].chain) {
            /* Find the first difference for the report. */
            craft_index d = l->base + 1;
            while (d < m && slot_at(l, d)->chain == s->committed[d - 1].chain) {
                d++;
            }
            return violation(s,
                             "state machine safety: n%u commits %" PRIu64 "/%" PRIu64
                             " but %" PRIu64 "/%" PRIu64 " was committed at that index",
                             i + 1, d, slot_at(l, d)->term, d, s->committed[d - 1].term);
        }
    }
    if (upto > s->n_committed) {
        int rc = reserve_slots(s, &s->committed, &s->cap_committed, upto);
        if (rc != 0) {
            return rc;
        }
        if (s->n_committed < l->base) {
            /* The node's snapshot covers entries no one reported: they are committed, but
             * unknown here. Start the record at the snapshot with what we can say. */
            for (craft_index k = s->n_committed + 1; k <= l->base; k++) {
                memset(&s->committed[k - 1], 0, sizeof(s->committed[k - 1]));
            }
            s->committed[l->base - 1].chain = l->base_chain;
            s->n_committed = l->base;
            s->conf_known = false; /* configurations in the gap are unknown */
        }
        for (craft_index k = s->n_committed + 1; k <= upto; k++) {
            s->committed[k - 1] = *slot_at(l, k);
        }
        craft_index from = s->n_committed + 1;
        s->n_committed = upto;
        for (craft_index k = from; k <= upto; k++) {
            if (s->committed[k - 1].type == CRAFT_ENTRY_CONFIG) {
                int crc = craft__sim_inv_conf_committed(s, k, &s->committed[k - 1]);
                if (crc != 0) {
                    return crc;
                }
            }
        }
    }
    int rc = ensure_term(s, term);
    if (rc != 0) {
        return rc;
    }
    if (s->terms[term].max_commit < upto) {
        s->terms[term].max_commit = upto;
    }
    return 0;
}

int craft__sim_inv_commit(struct craft_sim *s, unsigned i, craft_index commit, craft_term term)
{
    struct craft__sim_node *sn = &s->nodes[i];
    if (commit < sn->commit) {
        return violation(s, "commit index of n%u went back from %" PRIu64 " to %" PRIu64,
                         i + 1, sn->commit, commit);
    }
    if (commit == sn->commit) {
        return 0;
    }
    int rc = record_committed(s, i, commit, term);
    if (rc != 0) {
        return rc;
    }
    sn->commit = commit;
    struct craft_sim_event ev;
    craft__sim_event_init(s, &ev, CRAFT_SIM_EV_COMMIT, sn->id);
    ev.index = commit;
    ev.term = term;
    craft__sim_emit(s, &ev);
    return 0;
}

int craft__sim_inv_apply(struct craft_sim *s, unsigned i, const struct craft_entry *e)
{
    struct craft__sim_node *sn = &s->nodes[i];
    craft_index expected = sn->applied_base + sn->n_applied + 1;
    if (e->index != expected) {
        return violation(s, "n%u applied index %" PRIu64 " but the next to apply was %" PRIu64,
                         i + 1, e->index, expected);
    }
    uint64_t h = craft__sim_hash_bytes(e->data, e->size);
    const struct craft__sim_slot *sl = slot_at(&sn->log, e->index);
    if (sl == NULL || sl->term != e->term || sl->data_hash != h || sl->type != e->type) {
        return violation(s,
                         "n%u applied %" PRIu64 "/%" PRIu64 ", which is not the entry its log "
                         "holds at that index",
                         i + 1, e->index, e->term);
    }
    int rc = record_committed(s, i, e->index, sn->term);
    if (rc != 0) {
        return rc;
    }
    const struct craft__sim_slot *c = &s->committed[e->index - 1];
    if (c->term != e->term || c->data_hash != h || c->type != e->type) {
        return violation(s,
                         "state machine safety: n%u applied %" PRIu64 "/%" PRIu64
                         " but %" PRIu64 "/%" PRIu64 " was committed at that index",
                         i + 1, e->index, e->term, e->index, c->term);
    }
    if (sn->n_applied == sn->cap_applied) {
        size_t cap = sn->cap_applied ? sn->cap_applied * 2 : 64;
        struct craft_sim_applied *v = craft_realloc(s->alloc, sn->applied, cap * sizeof(*v));
        if (v == NULL) {
            return craft__sim_fail(s, CRAFT_ENOMEM, "out of memory in the checker");
        }
        sn->applied = v;
        sn->cap_applied = cap;
    }
    struct craft_sim_applied *a = &sn->applied[sn->n_applied++];
    a->index = e->index;
    a->term = e->term;
    a->type = e->type;
    a->hash = h;
    return 0;
}

int craft__sim_inv_durable(struct craft_sim *s, unsigned i, const struct craft_hard_state *hs)
{
    struct craft__sim_node *sn = &s->nodes[i];
    const struct craft_hard_state *old = &sn->durable;
    if (hs->term < old->term) {
        return violation(s, "n%u persisted term %" PRIu64 " after term %" PRIu64, i + 1,
                         hs->term, old->term);
    }
    if (hs->term == old->term && old->vote != 0 && hs->vote != old->vote) {
        return violation(s,
                         "n%u changed its persisted vote in term %" PRIu64 " from n%" PRIu64
                         " to n%" PRIu64,
                         i + 1, hs->term, old->vote, hs->vote);
    }
    sn->durable = *hs;
    return 0;
}

int craft__sim_inv_observe(struct craft_sim *s, unsigned i)
{
    struct craft__sim_node *sn = &s->nodes[i];
    if (!sn->up) {
        return 0;
    }
    struct craft_sim_core_status st;
    craft__sim_core_status(s, i, &st);
    int role = st.role;
    craft_term term = st.term;
    craft_id leader = st.leader;
    if (term < sn->term) {
        return violation(s, "term of n%u went back from %" PRIu64 " to %" PRIu64, i + 1,
                         sn->term, term);
    }
    if (role != sn->role || term != sn->term || leader != sn->leader) {
        struct craft_sim_event ev;
        craft__sim_event_init(s, &ev, CRAFT_SIM_EV_ROLE, sn->id);
        ev.role = role;
        ev.term = term;
        ev.leader = leader;
        craft__sim_emit(s, &ev);
        sn->role = role;
        sn->term = term;
        sn->leader = leader;
    }
    int rc = craft__sim_inv_role(s, i, role, term);
    if (rc != 0) {
        return rc;
    }
    /* The mirror must match the core's own idea of its log, or updates were incomplete. */
    craft_index last = st.last_index;
    struct craft__sim_shadow *l = &sn->log;
    if (last != last_of(l) || (last > l->base && st.last_term != slot_at(l, last)->term)) {
        return craft__sim_fail(s, CRAFT_ESTATE,
                               "n%u's log ends at %" PRIu64 "/%" PRIu64
                               " but its updates handed out a log ending at %" PRIu64,
                               i + 1, last, st.last_term, last_of(l));
    }
    return craft__sim_inv_commit(s, i, st.commit, term);
}

int craft__sim_inv_check_all(struct craft_sim *s)
{
    for (unsigned i = 0; i < s->n; i++) {
        int rc = craft__sim_inv_observe(s, i);
        if (rc != 0) {
            return rc;
        }
    }
    /* Log matching over every pair and every index (the per-event check sees only appends). */
    for (unsigned i = 0; i < s->n; i++) {
        struct craft__sim_shadow *a = &s->nodes[i].log;
        for (craft_index k = a->base + 1; k <= last_of(a); k++) {
            int rc = check_matching(s, i, k);
            if (rc != 0) {
                return rc;
            }
        }
    }
    /* State machine safety over every applied record. */
    for (unsigned i = 0; i < s->n; i++) {
        struct craft__sim_node *sn = &s->nodes[i];
        for (size_t k = 0; k < sn->n_applied; k++) {
            const struct craft_sim_applied *a = &sn->applied[k];
            if (a->index > s->n_committed || s->committed[a->index - 1].term != a->term ||
                s->committed[a->index - 1].data_hash != a->hash) {
                return violation(s,
                                 "state machine safety: n%u applied %" PRIu64 "/%" PRIu64
                                 " which is not the committed entry at that index",
                                 i + 1, a->index, a->term);
            }
        }
    }
    return 0;
}

void craft__sim_inv_close(struct craft_sim *s)
{
    craft_free(s->alloc, s->terms);
    craft_free(s->alloc, s->committed);
    s->terms = NULL;
    s->committed = NULL;
    s->n_terms = s->n_committed = s->cap_committed = 0;
}
