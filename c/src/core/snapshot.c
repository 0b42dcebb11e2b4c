/* Snapshots and log compaction (paper section 7).
 *
 * The state machine lives in the driver, so the core cannot take a snapshot itself: when the
 * applied part of the log passes the configured thresholds it asks for one (snapshot_wanted in an
 * update, with the metadata to store), and when the driver reports it durable
 * (craft_snapshot_taken) it compacts its log, keeping a trailing window so that followers that
 * are only a little behind still catch up from the log.
 *
 * A follower that needs compacted entries gets the snapshot by InstallSnapshot in chunks
 * (Figure 13). One chunk is in flight at a time; the follower acknowledges the offset it has
 * stored, so a lost chunk is resent from there (after an election timeout without an answer)
 * and a follower that restarted mid-transfer asks for offset 0. The last chunk installs it: a
 * follower whose log already holds the snapshot's last entry keeps the entries after it;
 * otherwise it discards its whole log (Figure 13, steps 6 and 7). A snapshot never moves a
 * follower backwards: one at or below its commit index is acknowledged and ignored. */
#include <string.h>

#include "core/node.h"

/* The configuration in effect at index: the last config entry at or before it, else the
 * snapshot's. */
int craft__conf_at(struct craft_node *n, craft_index index, struct craft_configuration *out,
                   craft_index *conf_index)
{
    for (craft_index i = index; i > n->log.offset; i--) {
        const struct craft_entry *e = craft__log_get(&n->log, i);
        if (e != NULL && e->type == CRAFT_ENTRY_CONFIG) {
            *conf_index = i;
            return craft_configuration_decode(e->data, e->size, n->alloc, out);
        }
    }
    *conf_index = n->snap_conf_index;
    return craft_configuration_copy(out, &n->snap_conf, n->alloc);
}

/* Called when the update is assembled: asks for a snapshot once the applied log is big. */
int craft__snapshot_check(struct craft_node *n)
{
    if (n->snap_asked || n->applied <= n->snap_index) {
        return 0;
    }
    bool big = n->snap_forced ||
               (n->cfg.snapshot_entries > 0 &&
                n->applied - n->snap_index >= n->cfg.snapshot_entries) ||
               (n->cfg.snapshot_bytes > 0 && n->log.bytes >= n->cfg.snapshot_bytes);
    if (!big) {
        return 0;
    }
    craft_configuration_close(&n->want.conf, n->alloc);
    memset(&n->want, 0, sizeof n->want);
    int rc = craft__conf_at(n, n->applied, &n->want.conf, &n->want.conf_index);
    if (rc != 0) {
        return rc;
    }
    n->want.index = n->applied;
    n->want.term = craft__log_term(&n->log, n->applied);
    n->snap_asked = true;
    n->snap_forced = false;
    n->want_pending = true;
    return 0;
}

int craft_snapshot_request(struct craft_node *n, craft_index *index)
{
    if (n == NULL) {
        return CRAFT_EINVAL;
    }
    craft_index at = 0;
    if (n->snap_asked) {
        at = n->want.index; /* one is being taken: it is the answer */
    } else if (n->applied > n->snap_index) {
        n->snap_forced = true; /* craft__snapshot_check asks at the next update */
        at = n->applied;
    }
    if (index != NULL) {
        *index = at;
    }
    return 0;
}

int craft_snapshot_taken(struct craft_node *n, craft_index index, uint64_t size,
                         craft_index *compact_upto)
{
    if (compact_upto != NULL) {
        *compact_upto = 0;
    }
    if (n == NULL) {
        return CRAFT_EINVAL;
    }
    n->snap_asked = false;
    if (index == 0) {
        return 0; /* the driver failed to take it; ask again later */
    }
    if (index <= n->snap_index) {
        return 0; /* never backwards: a newer one was installed meanwhile */
    }
    if (index > n->applied || index < n->log.offset) {
        return CRAFT_EINVAL;
    }
    struct craft_configuration conf;
    craft_index conf_index;
    int rc = craft__conf_at(n, index, &conf, &conf_index);
    if (rc != 0) {
        return rc;
    }
    craft_configuration_close(&n->snap_conf, n->alloc);
    n->snap_conf = conf;
    n->snap_conf_index = conf_index;
    n->snap_index = index;
    n->snap_term = craft__log_term(&n->log, index);
    n->snap_size = size;
    craft_index upto = index > n->cfg.snapshot_trailing ? index - n->cfg.snapshot_trailing : 0;
    if (upto > n->log.offset) {
        craft__log_compact(&n->log, upto);
        if (compact_upto != NULL) {
            *compact_upto = upto;
        }
    }
    return 0;
}

/* Sends p the next chunk of our latest snapshot (p needs entries we compacted). */
int craft__send_snapshot(struct craft_node *n, struct craft__progress *p)
{
    if (n->snap_index == 0) {
        return 0; /* nothing was compacted without a snapshot: cannot happen */
    }
    if (p->mode != CRAFT__SNAPSHOT || p->snap_index != n->snap_index) {
        p->mode = CRAFT__SNAPSHOT;
        p->snap_index = n->snap_index;
        p->snap_offset = 0;
        p->snap_inflight = false;
        p->inflight_count = 0;
    }
    if (p->snap_inflight) {
        return 0;
    }
    struct craft_message m = {0};
    m.type = CRAFT_MSG_INSTALL_SNAPSHOT;
    m.to = p->id;
    m.term = n->term;
    struct craft_install_snapshot *is = &m.u.install_snapshot;
    is->meta.index = n->snap_index;
    is->meta.term = n->snap_term;
    is->meta.conf = n->snap_conf;
    is->meta.conf_index = n->snap_conf_index;
    is->meta.size = n->snap_size;
    is->offset = p->snap_offset < n->snap_size ? p->snap_offset : n->snap_size;
    uint64_t left = n->snap_size - is->offset;
    is->size = left < n->cfg.snapshot_chunk_bytes ? (size_t)left : n->cfg.snapshot_chunk_bytes;
    is->data = NULL; /* filled by the driver from its snapshot store */
    is->done = is->offset + is->size >= n->snap_size;
    p->snap_inflight = true;
    p->snap_wait = 0;
    return craft__send(n, &m, 0, 0);
}

/* Heartbeat tick on the leader: a chunk unanswered for an election timeout was lost. */
void craft__snapshot_tick(struct craft_node *n, struct craft__progress *p)
{
    if (p->mode == CRAFT__SNAPSHOT && p->snap_inflight &&
        ++p->snap_wait >= n->cfg.election_ticks) {
        p->snap_inflight = false;
    }
}

int craft__recv_install_snapshot_result(struct craft_node *n, const struct craft_message *m)
{
    const struct craft_install_snapshot_result *res = &m->u.install_snapshot_result;
    struct craft__progress *p = craft__progress_get(n, m->from);
    if (p == NULL || p->id == n->id) {
        return 0;
    }
    p->recent_active = true;
    if (p->mode != CRAFT__SNAPSHOT || res->index != p->snap_index) {
        return 0; /* about another snapshot, or we gave up on this one */
    }
    p->snap_inflight = false;
    if (res->done) {
        if (res->index > p->match) {
            p->match = res->index;
        }
        craft__progress_become_replicate(p);
        int rc = craft__maybe_commit(n);
        if (rc != 0 || n->role != CRAFT_LEADER) {
            return rc;
        }
        return craft__send_append(n, p, false);
    }
    p->snap_offset = res->rejected ? 0 : res->offset;
    return craft__send_snapshot(n, p);
}

static int copy_chunk(struct craft_node *n, const struct craft_install_snapshot *is)
{
    int rc = craft__reserve(n->alloc, &n->chunk_buf, &n->cap_chunk_buf, is->size ? is->size : 1,
                            1);
    if (rc != 0) {
        return rc;
    }
    if (is->size > 0) {
        memcpy(n->chunk_buf, is->data, is->size);
    }
    craft_configuration_close(&n->chunk_conf, n->alloc);
    rc = craft_configuration_copy(&n->chunk_conf, &is->meta.conf, n->alloc);
    if (rc != 0) {
        return rc;
    }
    n->chunk = *is;
    n->chunk.data = n->chunk_buf;
    n->chunk.meta.conf = n->chunk_conf;
    return 0;
}

/* Figure 13, steps 5 to 8: the last chunk replaces the state machine and the log. */
static int install(struct craft_node *n, const struct craft_snapshot_meta *meta)
{
    struct craft_configuration conf;
    int rc = craft_configuration_copy(&conf, &meta->conf, n->alloc);
    if (rc != 0) {
        return rc;
    }
    bool keep = craft__log_term(&n->log, meta->index) == meta->term &&
                meta->index <= craft__log_last(&n->log);
    if (keep) {
        craft__log_compact(&n->log, meta->index);
    } else {
        /* Proposals in the discarded log past our commit index cannot be accounted for. */
        craft_index from = n->commit + 1;
        if (from <= craft__log_last(&n->log) &&
            (n->dropped_from == 0 || from < n->dropped_from)) {
            n->dropped_from = from;
        }
        craft__log_reset(&n->log, meta->index, meta->term);
    }
    n->chunk_discard = !keep;
    craft_configuration_close(&n->snap_conf, n->alloc);
    n->snap_conf = conf;
    n->snap_conf_index = meta->conf_index;
    n->snap_index = meta->index;
    n->snap_term = meta->term;
    n->snap_size = meta->size;
    if (n->commit < meta->index) {
        n->commit = meta->index;
    }
    n->applied = meta->index; /* the driver restores the state machine from it */
    craft__mark_unstable(n, meta->index + 1);
    n->conf_index = 0; /* force a reload: the log's last configuration may be gone */
    return craft__conf_reload(n);
}

int craft__recv_install_snapshot(struct craft_node *n, const struct craft_message *m)
{
    const struct craft_install_snapshot *is = &m->u.install_snapshot;
    const struct craft_snapshot_meta *meta = &is->meta;
    if (meta->index == 0 || meta->term == 0 || meta->term > m->term ||
        meta->conf_index > meta->index || is->offset > meta->size ||
        is->size > meta->size - is->offset || (is->size > 0 && is->data == NULL) ||
        is->done != (is->offset + is->size == meta->size) ||
        craft_configuration_voters(&meta->conf) == 0) {
        return CRAFT_EMALFORMED;
    }
    if (n->role != CRAFT_FOLLOWER || n->leader != m->from) {
        craft__become_follower(n, n->term, m->from);
    }
    n->election_elapsed = 0;

    struct craft_message r = {0};
    r.type = CRAFT_MSG_INSTALL_SNAPSHOT_RESULT;
    r.to = m->from;
    r.term = n->term;
    struct craft_install_snapshot_result *res = &r.u.install_snapshot_result;
    res->index = meta->index;

    if (meta->index <= n->commit) {
        /* We already hold everything it covers: never go backwards (section 7). */
        res->done = true;
        res->offset = meta->size;
        return craft__send_after_persist(n, &r);
    }
    if (is->offset == 0 && !n->chunk_pending) {
        n->recv_index = meta->index;
        n->recv_term = meta->term;
        n->recv_offset = 0;
    }
    if (n->chunk_pending || meta->index != n->recv_index || meta->term != n->recv_term ||
        is->offset != n->recv_offset) {
        /* Out of order, a duplicate, or another snapshot: say where we are. */
        res->offset = meta->index == n->recv_index ? n->recv_offset : 0;
        return craft__send(n, &r, 0, 0);
    }
    int rc = copy_chunk(n, is);
    if (rc != 0) {
        return rc;
    }
    n->chunk_pending = true;
    n->chunk_discard = false;
    n->recv_offset += is->size;
    if (is->done) {
        rc = install(n, meta);
        if (rc != 0) {
            return rc;
        }
        n->recv_index = 0;
        res->done = true;
    }
    res->offset = n->recv_offset;
    return craft__send_after_persist(n, &r);
}
