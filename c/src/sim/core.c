/*
 * The protocol core each simulated node runs: craft's own (craft.h), or another implementation
 * the user brought (craft_sim_options.core: a student's Raft in a teaching lab, a port being
 * checked). Every other file of the simulator reaches a core only through these functions, so
 * the network, the disks, crashes and the invariant checker treat both alike.
 */
#include <string.h>

#include "sim_internal.h"

static const struct craft_sim_core *ext(const struct craft_sim *s)
{
    return s->o.core;
}

int craft__sim_core_new(struct craft_sim *s, unsigned i, const struct craft_config *c,
                        const struct craft_boot *b)
{
    struct craft__sim_node *sn = &s->nodes[i];
    sn->core = NULL;
    sn->ext = NULL;
    if (ext(s) == NULL) {
        return craft_node_new(c, b, &sn->core);
    }
    void *core = NULL;
    int rc = ext(s)->create(ext(s)->ud, c, b, &core);
    if (rc == 0 && core == NULL) {
        rc = CRAFT_EINVAL; /* a core that says it made nothing */
    }
    if (rc == 0) {
        sn->ext = core;
    }
    return rc;
}

void craft__sim_core_free(struct craft_sim *s, unsigned i)
{
    struct craft__sim_node *sn = &s->nodes[i];
    if (sn->core != NULL) {
        craft_node_free(sn->core);
        sn->core = NULL;
    }
    if (sn->ext != NULL) {
        ext(s)->destroy(ext(s)->ud, sn->ext);
        sn->ext = NULL;
    }
}

int craft__sim_core_step(struct craft_sim *s, unsigned i, const struct craft_message *m)
{
    struct craft__sim_node *sn = &s->nodes[i];
    return sn->core != NULL ? craft_step(sn->core, m) : ext(s)->step(ext(s)->ud, sn->ext, m);
}

int craft__sim_core_tick(struct craft_sim *s, unsigned i)
{
    struct craft__sim_node *sn = &s->nodes[i];
    return sn->core != NULL ? craft_tick(sn->core) : ext(s)->tick(ext(s)->ud, sn->ext);
}

int craft__sim_core_propose(struct craft_sim *s, unsigned i, const void *data, size_t size,
                            craft_index *index, craft_term *term)
{
    struct craft__sim_node *sn = &s->nodes[i];
    if (sn->core != NULL) {
        return craft_propose(sn->core, data, size, index, term);
    }
    return ext(s)->propose(ext(s)->ud, sn->ext, data, size, index, term);
}

int craft__sim_core_take(struct craft_sim *s, unsigned i, struct craft_update *u)
{
    struct craft__sim_node *sn = &s->nodes[i];
    if (sn->core != NULL) {
        if (!craft_has_update(sn->core)) {
            return 0;
        }
        int rc = craft_take_update(sn->core, u);
        return rc == 0 ? 1 : rc;
    }
    memset(u, 0, sizeof(*u));
    return ext(s)->take_update(ext(s)->ud, sn->ext, u);
}

int craft__sim_core_persisted(struct craft_sim *s, unsigned i, uint64_t seq)
{
    struct craft__sim_node *sn = &s->nodes[i];
    if (sn->core != NULL) {
        return craft_persisted(sn->core, seq);
    }
    return ext(s)->persisted(ext(s)->ud, sn->ext, seq);
}

int craft__sim_core_snapshot_taken(struct craft_sim *s, unsigned i, craft_index index,
                                   uint64_t size, craft_index *compact_upto)
{
    struct craft__sim_node *sn = &s->nodes[i];
    *compact_upto = 0;
    if (sn->core != NULL) {
        return craft_snapshot_taken(sn->core, index, size, compact_upto);
    }
    return ext(s)->snapshot_taken(ext(s)->ud, sn->ext, index, size, compact_upto);
}

void craft__sim_core_status(const struct craft_sim *s, unsigned i,
                            struct craft_sim_core_status *out)
{
    const struct craft__sim_node *sn = &s->nodes[i];
    memset(out, 0, sizeof(*out));
    if (sn->core != NULL) {
        const struct craft_node *c = sn->core;
        out->role = craft_node_role(c);
        out->term = craft_node_term(c);
        out->vote = craft_node_vote(c);
        out->leader = craft_node_leader(c);
        out->commit = craft_node_commit(c);
        out->first_index = craft_node_first_index(c);
        out->last_index = craft_node_last_index(c);
        out->last_term = craft_node_term_at(c, out->last_index);
        out->voters = craft__sim_voters_of(craft_node_configuration(c, NULL));
        return;
    }
    if (sn->ext != NULL && ext(s)->status(ext(s)->ud, sn->ext, out) != 0) {
        memset(out, 0, sizeof(*out));
    }
}

craft_term craft__sim_core_term_at(const struct craft_sim *s, unsigned i, craft_index index)
{
    const struct craft__sim_node *sn = &s->nodes[i];
    if (sn->core != NULL) {
        return craft_node_term_at(sn->core, index);
    }
    return sn->ext != NULL ? ext(s)->term_at(ext(s)->ud, sn->ext, index) : 0;
}

uint64_t craft__sim_core_voters(const struct craft_sim *s, unsigned i)
{
    const struct craft__sim_node *sn = &s->nodes[i];
    if (sn->core != NULL) {
        return craft__sim_voters_of(craft_node_configuration(sn->core, NULL));
    }
    struct craft_sim_core_status st;
    craft__sim_core_status(s, i, &st);
    return st.voters;
}

struct craft_node *craft__sim_core_native(const struct craft_sim *s, unsigned i)
{
    return s->nodes[i].core;
}
