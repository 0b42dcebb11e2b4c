/* Creating a node from what its store holds, proposing, and looking inside. */
#include <string.h>

#include "core/node.h"

void craft_config_init(struct craft_config *c, craft_id id)
{
    memset(c, 0, sizeof *c);
    c->id = id;
    c->election_ticks = 10;
    c->heartbeat_ticks = 1;
    c->pre_vote = true;
    c->check_quorum = true;
    c->max_batch_entries = 1024;
    c->max_batch_bytes = 1024 * 1024;
    c->max_inflight = 64;
    c->seed = id;
    c->snapshot_entries = 16384;
    c->snapshot_bytes = 64 * 1024 * 1024;
    c->snapshot_trailing = 1024;
    c->snapshot_chunk_bytes = 1024 * 1024;
    c->promote_distance = 64;
    c->promote_rounds = 3;
    c->lease_reads = false;
    c->lease_drift_ticks = 2;
}

static int validate_config(const struct craft_config *c)
{
    if (c->id == 0 || c->election_ticks < 2 || c->heartbeat_ticks == 0 ||
        c->heartbeat_ticks >= c->election_ticks || c->max_batch_entries == 0 ||
        c->max_batch_bytes == 0 || c->max_inflight == 0 || c->max_inflight > 1u << 20 ||
        c->snapshot_chunk_bytes == 0 || c->promote_rounds == 0) {
        return CRAFT_EINVAL;
    }
    return 0;
}

static int load(struct craft_node *n, const struct craft_boot *b)
{
    int rc;
    if (b->snapshot != NULL) {
        const struct craft_snapshot_meta *s = b->snapshot;
        if (s->index == 0 || s->term == 0 || s->conf_index > s->index) {
            return CRAFT_EINVAL;
        }
        if (s->index > CRAFT_INDEX_MAX || s->term > CRAFT_TERM_MAX) {
            return CRAFT_ECORRUPT; /* overflow guard (issue 13) */
        }
        craft__log_reset(&n->log, s->index, s->term);
        rc = craft_configuration_copy(&n->snap_conf, &s->conf, n->alloc);
        if (rc != 0) {
            return rc;
        }
        n->snap_conf_index = s->conf_index;
        n->snap_index = s->index;
        n->snap_term = s->term;
        n->snap_size = s->size;
        n->commit = n->applied = s->index;
    }
    if (b->n_entries > 0 && b->entries == NULL) {
        return CRAFT_EINVAL;
    }
    for (size_t k = 0; k < b->n_entries; k++) {
        const struct craft_entry *e = &b->entries[k];
        if (e->index <= n->log.offset) {
            continue; /* kept by the store behind its snapshot: not needed */
        }
        if (e->index != craft__log_last(&n->log) + 1 || e->term < craft__log_last_term(&n->log) ||
            e->type < CRAFT_ENTRY_COMMAND || e->type > CRAFT_ENTRY_CONFIG) {
            return CRAFT_ECORRUPT;
        }
        rc = craft__log_append(&n->log, e->term, e->type, e->data, e->size);
        if (rc != 0) {
            return rc;
        }
    }
    if (b->hard_state.term > CRAFT_TERM_MAX) {
        return CRAFT_ECORRUPT; /* overflow guard (issue 13): term + 1 must not wrap */
    }
    n->term = b->hard_state.term;
    n->vote = b->hard_state.vote;
    if (n->term < craft__log_last_term(&n->log)) {
        return CRAFT_ECORRUPT;
    }
    craft_index c = b->hard_state.commit;
    if (c > craft__log_last(&n->log)) {
        c = craft__log_last(&n->log);
    }
    if (c > n->commit) {
        n->commit = c;
    }
    n->persisted_index = craft__log_last(&n->log);

    /* Empty: no snapshot and no entry. The hard state may hold a term (and a vote) already:
     * a crash can land between the hard state and entry 1 of the bootstrap write (the driver
     * writes the hard state first, docs/core.md), or a joining server may have heard a term
     * before it was told to bootstrap. Entry 1 is the same on every founding server, so
     * writing it now is writing what the others have; the term and vote are kept. */
    bool empty = b->snapshot == NULL && craft__log_last(&n->log) == 0;
    if (empty && b->bootstrap != NULL) {
        /* A new cluster: its first configuration is entry 1 of term 1 on every founding
         * server, identical everywhere, so no election is needed to agree on it. */
        if (craft_configuration_get(b->bootstrap, n->id) == NULL ||
            craft_configuration_voters(b->bootstrap) == 0) {
            return CRAFT_EINVAL;
        }
        void *buf;
        size_t size;
        rc = craft_configuration_encode(b->bootstrap, n->alloc, &buf, &size);
        if (rc != 0) {
            return rc;
        }
        if (n->term < 1) {
            n->term = 1;
        }
        rc = craft__log_append(&n->log, 1, CRAFT_ENTRY_CONFIG, buf, size);
        craft_free(n->alloc, buf);
        if (rc != 0) {
            return rc;
        }
        craft__mark_unstable(n, 1);
        craft__mark_hard_state(n);
    }
    return craft__conf_reload(n);
}

int craft_node_new(const struct craft_config *config, const struct craft_boot *boot,
                   struct craft_node **out)
{
    if (config == NULL || out == NULL || validate_config(config) != 0) {
        return CRAFT_EINVAL;
    }
    struct craft_node *n = craft_calloc(config->alloc, 1, sizeof *n);
    if (n == NULL) {
        return CRAFT_ENOMEM;
    }
    n->cfg = *config;
    n->alloc = config->alloc;
    n->id = config->id;
    n->rng = config->seed ^ (config->id * 0xD6E8FEB86659FD93ull);
    n->role = CRAFT_FOLLOWER;
    n->reported_role = CRAFT_FOLLOWER;
    craft__log_init(&n->log, n->alloc);
    craft_configuration_init(&n->conf);
    craft_configuration_init(&n->snap_conf);
    struct craft_boot empty = {0};
    int rc = load(n, boot != NULL ? boot : &empty);
    if (rc != 0) {
        craft_node_free(n);
        return rc;
    }
    craft__reset_election_timer(n);
    *out = n;
    return 0;
}

void craft_node_free(struct craft_node *n)
{
    if (n == NULL) {
        return;
    }
    craft__log_close(&n->log);
    craft_configuration_close(&n->conf, n->alloc);
    craft_configuration_close(&n->snap_conf, n->alloc);
    craft__progress_free(n);
    craft_free(n->alloc, n->outbox);
    craft_free(n->alloc, n->deferred);
    craft_free(n->alloc, n->writes);
    craft_free(n->alloc, n->u_messages);
    craft_free(n->alloc, n->u_entries);
    craft_free(n->alloc, n->chunk_buf);
    craft_configuration_close(&n->chunk_conf, n->alloc);
    craft_configuration_close(&n->want.conf, n->alloc);
    craft_free(n->alloc, n->reads);
    craft_free(n->alloc, n->ready);
    craft_free(n->alloc, n->u_ready);
    craft_free(n->alloc, n->regressions);
    craft_free(n->alloc, n->u_regressions);
    craft_free(n->alloc, n);
}

int craft_propose_batch(struct craft_node *n, const struct craft_buf *cmds, size_t count,
                        craft_index *first_index, craft_term *term)
{
    if (n == NULL || (count > 0 && cmds == NULL)) {
        return CRAFT_EINVAL;
    }
    if (n->role != CRAFT_LEADER) {
        return CRAFT_ENOTLEADER;
    }
    if (n->transfer_target != 0) {
        return CRAFT_EBUSY; /* thesis 3.10: no new entries while handing over */
    }
    craft_index first = craft__log_last(&n->log) + 1;
    for (size_t k = 0; k < count; k++) {
        if (cmds[k].len > 0 && cmds[k].base == NULL) {
            craft__log_truncate(&n->log, first);
            return CRAFT_EINVAL;
        }
        int rc = craft__log_append(&n->log, n->term, CRAFT_ENTRY_COMMAND, cmds[k].base,
                                   cmds[k].len);
        if (rc != 0) {
            craft__log_truncate(&n->log, first); /* all or nothing */
            return rc;
        }
    }
    if (count > 0) {
        craft__mark_unstable(n, first);
    }
    if (first_index != NULL) {
        *first_index = first;
    }
    if (term != NULL) {
        *term = n->term;
    }
    int rc = craft__broadcast_append(n);
    if (rc != 0) {
        return rc;
    }
    /* A single-voter cluster commits as soon as its own disk has the entries. */
    return craft__maybe_commit(n);
}

int craft_propose(struct craft_node *n, const void *data, size_t size, craft_index *index,
                  craft_term *term)
{
    struct craft_buf b = {data, size};
    return craft_propose_batch(n, &b, 1, index, term);
}

craft_id craft_node_id(const struct craft_node *n)
{
    return n->id;
}

int craft_node_role(const struct craft_node *n)
{
    return n->role;
}

craft_term craft_node_term(const struct craft_node *n)
{
    return n->term;
}

craft_id craft_node_vote(const struct craft_node *n)
{
    return n->vote;
}

craft_id craft_node_leader(const struct craft_node *n)
{
    return n->leader;
}

craft_index craft_node_commit(const struct craft_node *n)
{
    return n->commit;
}

craft_index craft_node_applied(const struct craft_node *n)
{
    return n->applied;
}

craft_index craft_node_first_index(const struct craft_node *n)
{
    return craft__log_first(&n->log);
}

craft_index craft_node_last_index(const struct craft_node *n)
{
    return craft__log_last(&n->log);
}

const struct craft_entry *craft_node_entry(const struct craft_node *n, craft_index i)
{
    return craft__log_get(&n->log, i);
}

craft_term craft_node_term_at(const struct craft_node *n, craft_index i)
{
    return craft__log_term(&n->log, i);
}

craft_index craft_node_snapshot(const struct craft_node *n, craft_term *term, uint64_t *size)
{
    if (term != NULL) {
        *term = n->snap_term;
    }
    if (size != NULL) {
        *size = n->snap_size;
    }
    return n->snap_index;
}

const struct craft_configuration *craft_node_configuration(const struct craft_node *n,
                                                            craft_index *index)
{
    if (index != NULL) {
        *index = n->conf_index;
    }
    return &n->conf;
}

unsigned craft_node_progress(const struct craft_node *n, struct craft_progress_info *out,
                             unsigned max)
{
    if (n->role != CRAFT_LEADER) {
        return 0;
    }
    for (unsigned i = 0; i < n->n_progress && i < max; i++) {
        const struct craft__progress *p = &n->progress[i];
        out[i].id = p->id;
        out[i].role = p->role;
        out[i].mode = p->mode;
        out[i].match = p->id == n->id ? craft__progress_self_match(n) : p->match;
        out[i].next = p->next;
        out[i].inflight = p->inflight_count;
        out[i].recent_active = p->recent_active;
    }
    return n->n_progress;
}
