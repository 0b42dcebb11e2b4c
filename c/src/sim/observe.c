/*
 * Observation for test authors: a node's status whichever core runs it (role, term, commit,
 * the configuration in effect, the leader's progress), its boot count, what its disk holds,
 * and the trace ring as structs. Read-only: nothing here runs events or draws randomness.
 */
#include <string.h>

#include "sim_internal.h"

static const struct craft__sim_node *node_of(const struct craft_sim *s, craft_id id)
{
    return id >= 1 && id <= s->n ? &s->nodes[id - 1] : NULL;
}

uint32_t craft_sim_boots(const struct craft_sim *s, craft_id id)
{
    const struct craft__sim_node *sn = node_of(s, id);
    /* The incarnation counts crashes and restarts: even while up, odd while down. */
    return sn != NULL ? sn->incarnation / 2 + 1 : 0;
}

int craft_sim_status(const struct craft_sim *s, craft_id id, struct craft_sim_node_status *out)
{
    const struct craft__sim_node *sn = node_of(s, id);
    if (sn == NULL) {
        return CRAFT_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    out->id = id;
    out->up = sn->up;
    out->boots = craft_sim_boots(s, id);
    out->applied = sn->applied_base + sn->n_applied;
    out->restored_index = sn->applied_base;
    if (!sn->up) {
        return 0;
    }
    unsigned i = (unsigned)(id - 1);
    struct craft_sim_core_status st;
    craft__sim_core_status(s, i, &st);
    out->role = st.role;
    out->term = st.term;
    out->vote = st.vote;
    out->leader = st.leader;
    out->commit = st.commit;
    out->first_index = st.first_index;
    out->last_index = st.last_index;
    out->last_term = st.last_term;
    out->voters = st.voters;
    const struct craft_node *core = craft__sim_core_native(s, i);
    if (core != NULL) {
        const struct craft_configuration *c = craft_node_configuration(core, &out->conf_index);
        for (unsigned k = 0; c != NULL && k < c->n; k++) {
            if (c->servers[k].role == CRAFT_LEARNER && c->servers[k].id >= 1 &&
                c->servers[k].id <= 64) {
                out->learners |= 1ull << (c->servers[k].id - 1);
            }
        }
        out->transfer_target = craft_node_transfer_target(core);
    }
    return 0;
}

unsigned craft_sim_progress(const struct craft_sim *s, craft_id id,
                            struct craft_progress_info *out, unsigned max)
{
    const struct craft__sim_node *sn = node_of(s, id);
    if (sn == NULL || !sn->up) {
        return 0;
    }
    const struct craft_node *core = craft__sim_core_native(s, (unsigned)(id - 1));
    return core != NULL ? craft_node_progress(core, out, max) : 0;
}

int craft_sim_durable(const struct craft_sim *s, craft_id id, struct craft_sim_durable *out)
{
    const struct craft__sim_node *sn = node_of(s, id);
    if (sn == NULL) {
        return CRAFT_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    struct craft_store *st = sn->store;
    int rc = st->load_hard_state(st->impl, &out->hard_state);
    if (rc == 0) {
        rc = st->bounds(st->impl, &out->first_index, &out->last_index);
    }
    if (rc != 0) {
        return rc;
    }
    struct craft_snapshot_meta meta;
    rc = st->snapshot_meta(st->impl, s->alloc, &meta);
    if (rc == CRAFT_ENOTFOUND) {
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    out->has_snapshot = true;
    out->snapshot_index = meta.index;
    out->snapshot_term = meta.term;
    out->snapshot_size = meta.size;
    out->snapshot_conf_index = meta.conf_index;
    out->snapshot_voters = craft__sim_voters_of(&meta.conf);
    craft_configuration_close(&meta.conf, s->alloc);
    return 0;
}

void craft_sim_dump_events(const struct craft_sim *s,
                           void (*fn)(void *ud, const struct craft_sim_event *ev), void *ud)
{
    size_t depth = s->o.trace_depth;
    if (depth == 0) {
        return;
    }
    size_t start = (s->ring_head + depth - s->ring_len) % depth;
    for (size_t k = 0; k < s->ring_len; k++) {
        fn(ud, &s->ring[(start + k) % depth]);
    }
}
