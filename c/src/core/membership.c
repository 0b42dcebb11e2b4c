/* The configuration in effect. A server uses the latest configuration in its log, whether or
 * not that entry is committed (thesis 4.1), so the configuration changes when a config entry is
 * appended and reverts when a truncation removes it; the snapshot's configuration is the floor
 * under the log. */
#include "core/node.h"

/* Whether this server, a learner of the configuration of index `index`, was a voter of the
 * configuration before it (the last one below index in the log, else the snapshot's). */
static int demoted_self(struct craft_node *n, craft_index index, bool *out)
{
    *out = false;
    if (index <= 1 || index <= n->snap_conf_index) {
        return 0; /* none before it that we know of: a learner from the start */
    }
    struct craft_configuration prev;
    craft_index prev_index;
    int rc = craft__conf_at(n, index - 1, &prev, &prev_index);
    if (rc != 0) {
        return rc == CRAFT_EMALFORMED || rc == CRAFT_EVERSION ? CRAFT_ECORRUPT : rc;
    }
    const struct craft_server *s = craft_configuration_get(&prev, n->id);
    *out = s != NULL && s->role == CRAFT_VOTER;
    craft_configuration_close(&prev, n->alloc);
    return 0;
}

static int adopt(struct craft_node *n, struct craft_configuration *c, craft_index index)
{
    const struct craft_server *self = craft_configuration_get(c, n->id);
    bool demoted = false;
    if (self != NULL && self->role == CRAFT_LEARNER) {
        int rc = demoted_self(n, index, &demoted);
        if (rc != 0) {
            craft_configuration_close(c, n->alloc);
            return rc;
        }
    }
    craft_configuration_close(&n->conf, n->alloc);
    n->conf = *c;
    n->conf_index = index;
    n->conf_demoted_self = demoted;
    return craft__progress_rebuild(n);
}

int craft__conf_from_entry(struct craft_node *n, const struct craft_entry *e)
{
    struct craft_configuration c;
    int rc = craft_configuration_decode(e->data, e->size, n->alloc, &c);
    if (rc != 0) {
        return rc;
    }
    return adopt(n, &c, e->index);
}

/* Re-derives the configuration from the log after a truncation or at start. */
int craft__conf_reload(struct craft_node *n)
{
    craft_index first = craft__log_first(&n->log);
    for (craft_index i = craft__log_last(&n->log); i >= first && i > 0; i--) {
        const struct craft_entry *e = craft__log_get(&n->log, i);
        if (e->type == CRAFT_ENTRY_CONFIG) {
            if (i == n->conf_index) {
                return 0;
            }
            int rc = craft__conf_from_entry(n, e);
            return rc == CRAFT_EMALFORMED || rc == CRAFT_EVERSION ? CRAFT_ECORRUPT : rc;
        }
    }
    if (n->conf_index == n->snap_conf_index && n->conf_index != 0) {
        return 0;
    }
    struct craft_configuration c;
    int rc = craft_configuration_copy(&c, &n->snap_conf, n->alloc);
    if (rc != 0) {
        return rc;
    }
    return adopt(n, &c, n->snap_conf_index);
}

/* ------------------------------------------------------------------------------------------
 * Changes, one server at a time (thesis 4.2, 4.3).
 *
 * Adding or removing one server keeps every majority of the old configuration overlapping every
 * majority of the new one, so no two leaders can be elected in one term across the change. That
 * argument needs one more rule (Ongaro's 2015 correction to the dissertation): a leader may start
 * a change only once it has committed an entry of its own term, or a change appended by a
 * previous leader and never committed could combine with this one into two disjoint majorities.
 * And only one change may be uncommitted at a time.
 * ---------------------------------------------------------------------------------------- */

static int change_allowed(const struct craft_node *n)
{
    if (n->role != CRAFT_LEADER) {
        return CRAFT_ENOTLEADER;
    }
    if (n->transfer_target != 0 || n->conf_index > n->commit || n->commit < n->term_start) {
        return CRAFT_EBUSY;
    }
    return 0;
}

static int propose_conf(struct craft_node *n, struct craft_configuration *c, craft_index *index)
{
    void *buf;
    size_t size;
    int rc = craft_configuration_encode(c, n->alloc, &buf, &size);
    craft_configuration_close(c, n->alloc);
    if (rc != 0) {
        return rc;
    }
    rc = craft__append_local(n, CRAFT_ENTRY_CONFIG, buf, size);
    craft_free(n->alloc, buf);
    if (rc != 0) {
        return rc;
    }
    if (index != NULL) {
        *index = craft__log_last(&n->log);
    }
    rc = craft__broadcast_append(n);
    if (rc != 0) {
        return rc;
    }
    /* A configuration with a single voter left (this leader) commits on its own. */
    return craft__maybe_commit(n);
}

int craft_add_server(struct craft_node *n, craft_id id, const char *address, bool auto_promote,
                     craft_index *index)
{
    if (n == NULL || id == 0) {
        return CRAFT_EINVAL;
    }
    int rc = change_allowed(n);
    if (rc != 0) {
        return rc;
    }
    if (craft_configuration_get(&n->conf, id) != NULL) {
        return CRAFT_EEXISTS;
    }
    struct craft_configuration c;
    rc = craft_configuration_copy(&c, &n->conf, n->alloc);
    if (rc != 0) {
        return rc;
    }
    /* New servers join as learners and catch up before they vote (thesis 4.2.1), so that
     * adding one cannot stall commits while its log is empty. */
    rc = craft_configuration_add(&c, n->alloc, id, address, CRAFT_LEARNER);
    if (rc != 0) {
        craft_configuration_close(&c, n->alloc);
        return rc;
    }
    if (auto_promote) {
        c.servers[c.n - 1].flags |= CRAFT_SERVER_AUTO_PROMOTE;
    }
    return propose_conf(n, &c, index);
}

/* A learner is caught up once it holds the leader's first entry of this term (so it has
 * answered this leader at all: on a short log, "within promote_distance" would otherwise hold
 * for a learner that never replied, found by the simulator, seed 2781) and is within
 * promote_distance of the leader's last entry. */
static bool caught_up(const struct craft_node *n, const struct craft__progress *p)
{
    return p->match >= n->term_start &&
           p->match + n->cfg.promote_distance >= craft__log_last(&n->log);
}

int craft_promote(struct craft_node *n, craft_id id, craft_index *index)
{
    if (n == NULL) {
        return CRAFT_EINVAL;
    }
    int rc = change_allowed(n);
    if (rc != 0) {
        return rc;
    }
    const struct craft_server *s = craft_configuration_get(&n->conf, id);
    if (s == NULL) {
        return CRAFT_ENOTFOUND;
    }
    if (s->role != CRAFT_LEARNER) {
        return CRAFT_EINVAL;
    }
    struct craft__progress *p = craft__progress_get(n, id);
    if (p == NULL || !caught_up(n, p)) {
        return CRAFT_ESTATE;
    }
    struct craft_configuration c;
    rc = craft_configuration_copy(&c, &n->conf, n->alloc);
    if (rc != 0) {
        return rc;
    }
    for (unsigned i = 0; i < c.n; i++) {
        if (c.servers[i].id == id) {
            c.servers[i].role = CRAFT_VOTER;
            c.servers[i].flags &= (uint8_t)~CRAFT_SERVER_AUTO_PROMOTE;
        }
    }
    return propose_conf(n, &c, index);
}

/* Demotion, the inverse of promotion: a voter becomes a learner (it keeps its log and keeps
 * receiving entries, but no longer votes or counts toward commits). Taking one voter out of the
 * voting set is the same one-server change as removing it (thesis 4.2): every majority of the
 * old voters overlaps every majority of the new ones, so the same rules apply (one change at a
 * time, after the leader committed an entry of its term). A demoted leader goes on leading
 * until the change commits, without counting itself, then steps down (thesis 4.2.2, as for a
 * leader that removes itself). The learner is not promoted again automatically: its
 * auto-promote flag is cleared, and only craft_promote makes it a voter again. */
int craft_demote(struct craft_node *n, craft_id id, craft_index *index)
{
    if (n == NULL) {
        return CRAFT_EINVAL;
    }
    int rc = change_allowed(n);
    if (rc != 0) {
        return rc;
    }
    const struct craft_server *s = craft_configuration_get(&n->conf, id);
    if (s == NULL) {
        return CRAFT_ENOTFOUND;
    }
    if (s->role != CRAFT_VOTER) {
        return CRAFT_EINVAL; /* already a learner */
    }
    if (craft_configuration_voters(&n->conf) == 1) {
        return CRAFT_EINVAL; /* a cluster without voters could never elect a leader again */
    }
    struct craft_configuration c;
    rc = craft_configuration_copy(&c, &n->conf, n->alloc);
    if (rc != 0) {
        return rc;
    }
    for (unsigned i = 0; i < c.n; i++) {
        if (c.servers[i].id == id) {
            c.servers[i].role = CRAFT_LEARNER;
            c.servers[i].flags &= (uint8_t)~CRAFT_SERVER_AUTO_PROMOTE;
        }
    }
    return propose_conf(n, &c, index);
}

int craft_remove_server(struct craft_node *n, craft_id id, craft_index *index)
{
    if (n == NULL) {
        return CRAFT_EINVAL;
    }
    int rc = change_allowed(n);
    if (rc != 0) {
        return rc;
    }
    const struct craft_server *s = craft_configuration_get(&n->conf, id);
    if (s == NULL) {
        return CRAFT_ENOTFOUND;
    }
    if (s->role == CRAFT_VOTER && craft_configuration_voters(&n->conf) == 1) {
        return CRAFT_EINVAL; /* a cluster without voters could never elect a leader again */
    }
    struct craft_configuration c;
    craft_configuration_init(&c);
    for (unsigned i = 0; i < n->conf.n && rc == 0; i++) {
        const struct craft_server *o = &n->conf.servers[i];
        if (o->id != id) {
            rc = craft_configuration_add(&c, n->alloc, o->id, o->address, o->role);
            if (rc == 0) {
                c.servers[c.n - 1].flags = o->flags;
            }
        }
    }
    if (rc != 0) {
        craft_configuration_close(&c, n->alloc);
        return rc;
    }
    return propose_conf(n, &c, index);
}

/* Heartbeat tick on the leader: promote a learner added with auto-promote once it has stayed
 * within promote_distance for promote_rounds rounds. */
int craft__auto_promote_tick(struct craft_node *n)
{
    for (unsigned i = 0; i < n->n_progress; i++) {
        struct craft__progress *p = &n->progress[i];
        const struct craft_server *s = &n->conf.servers[i];
        if (p->role != CRAFT_LEARNER || !(s->flags & CRAFT_SERVER_AUTO_PROMOTE)) {
            continue;
        }
        p->caught_up = caught_up(n, p) ? p->caught_up + 1 : 0;
        if (p->caught_up >= n->cfg.promote_rounds && change_allowed(n) == 0) {
            p->caught_up = 0;
            int rc = craft_promote(n, p->id, NULL);
            if (rc != 0 && rc != CRAFT_ESTATE) {
                return rc;
            }
            return 0; /* one change at a time */
        }
    }
    return 0;
}

/* Thesis 4.2.2: a leader removed from the configuration keeps managing the cluster until the
 * change is committed (without counting itself), then steps down. */
void craft__maybe_step_down_removed(struct craft_node *n)
{
    if (n->role == CRAFT_LEADER && n->conf_index <= n->commit &&
        !craft__is_voter(n, n->id)) {
        craft__become_follower(n, n->term, 0);
    }
}
