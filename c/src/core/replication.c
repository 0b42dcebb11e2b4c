/* Log replication (paper 5.3) and the commit rule (paper 5.4.2).
 *
 * The leader keeps one progress record per follower (progress.c) and sends AppendEntries in
 * batches bounded by max_batch_entries and max_batch_bytes, pipelined up to max_inflight per
 * follower once the logs are known to match. A follower that rejects an AppendEntries returns a
 * conflict hint so that the leader skips a whole term of mismatching entries per round trip
 * instead of one entry (the optimisation sketched at the end of paper 5.3). Heartbeats are
 * AppendEntries without entries whose prev is the follower's match index, so they always
 * succeed, carry the commit index safely, and echo a round counter (ctx) that reads use to
 * confirm leadership. */
#include "core/node.h"

int craft__append_local(struct craft_node *n, uint8_t type, const void *data, size_t size)
{
    int rc = craft__log_append(&n->log, n->term, type, data, size);
    if (rc != 0) {
        return rc;
    }
    craft_index index = craft__log_last(&n->log);
    craft__mark_unstable(n, index);
    if (type == CRAFT_ENTRY_CONFIG) {
        rc = craft__conf_from_entry(n, craft__log_get(&n->log, index));
        if (rc != 0) {
            craft__log_truncate(&n->log, index);
            return rc;
        }
    }
    return 0;
}

/* Sends p what it lacks. heartbeat: an empty AppendEntries at p's match index, whatever the
 * window says. Otherwise, if the window is open, the next batch; empty_ok lets an up-to-date
 * follower get an empty one (to learn a new commit index). */
static int send_append(struct craft_node *n, struct craft__progress *p, bool heartbeat,
                       bool empty_ok)
{
    if (p->id == n->id) {
        return 0;
    }
    struct craft_message m = {0};
    m.type = CRAFT_MSG_APPEND_ENTRIES;
    m.to = p->id;
    m.term = n->term;
    struct craft_append_entries *ae = &m.u.append_entries;
    if (heartbeat) {
        ae->prev_index = p->match;
        ae->prev_term = craft__log_term(&n->log, p->match);
        if (ae->prev_term == 0) {
            ae->prev_index = 0; /* compacted away: index 0 always matches */
        }
        /* The follower holds our log up to match, so it may commit up to there. */
        ae->commit = n->commit < p->match ? n->commit : p->match;
        ae->ctx = n->hb_ctx;
        return craft__send(n, &m, 0, 0);
    }
    if (craft__progress_paused(n, p)) {
        return 0;
    }
    craft_index prev = p->next - 1;
    craft_index last = craft__log_last(&n->log);
    if (prev < n->log.offset || p->mode == CRAFT__SNAPSHOT) {
        /* The entries p needs are compacted: it needs the snapshot (paper section 7). */
        return craft__send_snapshot(n, p);
    }
    size_t count = 0;
    size_t bytes = 0;
    while (prev + count < last && count < n->cfg.max_batch_entries) {
        const struct craft_entry *e = craft__log_get(&n->log, prev + count + 1);
        if (count > 0 && bytes + e->size > n->cfg.max_batch_bytes) {
            break;
        }
        bytes += e->size;
        count++;
    }
    if (count == 0 && p->mode == CRAFT__REPLICATE && !empty_ok) {
        return 0;
    }
    ae->prev_index = prev;
    ae->prev_term = craft__log_term(&n->log, prev);
    ae->commit = n->commit;
    int rc = craft__send(n, &m, prev + 1, count);
    if (rc != 0) {
        return rc;
    }
    craft__progress_sent(n, p, prev + count, count);
    return 0;
}

int craft__send_append(struct craft_node *n, struct craft__progress *p, bool heartbeat)
{
    return send_append(n, p, heartbeat, false);
}

int craft__broadcast_append(struct craft_node *n)
{
    for (unsigned i = 0; i < n->n_progress; i++) {
        int rc = send_append(n, &n->progress[i], false, false);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int craft__broadcast_heartbeat(struct craft_node *n)
{
    n->hb_ctx++;
    n->hb_tick[n->hb_ctx % CRAFT__LEASE_RING] = n->ticks;
    for (unsigned i = 0; i < n->n_progress; i++) {
        int rc = send_append(n, &n->progress[i], true, false);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* Check-quorum (thesis 6.2): a leader that has not heard from a majority of voters within an
 * election timeout steps down, so that clients stuck with a deposed leader find the new one
 * and reads cannot be served by a leader that no longer leads. */
static void check_quorum(struct craft_node *n)
{
    bool active = craft__quorum_active(n);
    for (unsigned i = 0; i < n->n_progress; i++) {
        n->progress[i].recent_active = n->progress[i].id == n->id;
    }
    if (!active) {
        craft__become_follower(n, n->term, 0);
    }
}

int craft__heartbeat_tick(struct craft_node *n)
{
    n->heartbeat_elapsed++;
    n->quorum_elapsed++;
    craft__transfer_tick(n);
    for (unsigned i = 0; i < n->n_progress; i++) {
        craft__snapshot_tick(n, &n->progress[i]);
    }
    if (n->quorum_elapsed >= n->cfg.election_ticks) {
        n->quorum_elapsed = 0;
        if (n->cfg.check_quorum) {
            check_quorum(n);
            if (n->role != CRAFT_LEADER) {
                return 0;
            }
        }
    }
    if (n->heartbeat_elapsed >= n->cfg.heartbeat_ticks) {
        n->heartbeat_elapsed = 0;
        int rc = craft__auto_promote_tick(n);
        if (rc != 0) {
            return rc;
        }
        rc = craft__broadcast_heartbeat(n);
        if (rc != 0) {
            return rc;
        }
        /* Followers waiting for a snapshot chunk that was lost get it again. */
        for (unsigned i = 0; i < n->n_progress; i++) {
            struct craft__progress *p = &n->progress[i];
            if (p->mode == CRAFT__SNAPSHOT && !p->snap_inflight && p->id != n->id) {
                rc = craft__send_snapshot(n, p);
                if (rc != 0) {
                    return rc;
                }
            }
        }
    }
    return 0;
}

/* Paper 5.3/5.4.2: an entry is committed once a majority of voters store it, but a leader only
 * commits entries of its own term by counting replicas (Figure 8 shows why); earlier entries
 * are committed with them by the Log Matching property. */
int craft__maybe_commit(struct craft_node *n)
{
    craft_index q = craft__quorum_value(n, CRAFT__Q_MATCH);
    if (q <= n->commit ||
        (craft__log_term(&n->log, q) != n->term && !n->cfg.unsafe.no_commit_rule)) {
        return 0;
    }
    n->commit = q;
    /* Tell followers at once rather than at the next heartbeat, so that they apply (and
     * answer forwarded proposals) sooner. */
    for (unsigned i = 0; i < n->n_progress; i++) {
        int rc = send_append(n, &n->progress[i], false, true);
        if (rc != 0) {
            return rc;
        }
    }
    int rc = craft__reads_check(n);
    if (rc != 0) {
        return rc;
    }
    craft__maybe_step_down_removed(n);
    return 0;
}

/* etcd's findConflictByTerm: the largest index at or below index whose term is at most term.
 * Everything above it is known not to match a log whose entry at index has that term. */
static craft_index conflict_by_term(const struct craft_node *n, craft_index index, craft_term term)
{
    craft_index last = craft__log_last(&n->log);
    if (index > last) {
        index = last;
    }
    while (index > n->log.offset && craft__log_term(&n->log, index) > term) {
        index--;
    }
    return index;
}

static int validate_entries(const struct craft_node *n, const struct craft_message *m)
{
    const struct craft_append_entries *ae = &m->u.append_entries;
    if (ae->n_entries > 0 && ae->entries == NULL) {
        return CRAFT_EMALFORMED;
    }
    craft_term prev_term = ae->prev_term;
    for (size_t k = 0; k < ae->n_entries; k++) {
        const struct craft_entry *e = &ae->entries[k];
        if (e->index != ae->prev_index + 1 + k || e->term < prev_term || e->term > m->term ||
            e->term == 0 || e->type < CRAFT_ENTRY_COMMAND || e->type > CRAFT_ENTRY_CONFIG ||
            (e->size > 0 && e->data == NULL)) {
            return CRAFT_EMALFORMED;
        }
        if (e->type == CRAFT_ENTRY_CONFIG) {
            struct craft_configuration c;
            int rc = craft_configuration_decode(e->data, e->size, n->alloc, &c);
            if (rc != 0) {
                return rc == CRAFT_ENOMEM ? rc : CRAFT_EMALFORMED;
            }
            craft_configuration_close(&c, n->alloc);
        }
        prev_term = e->term;
    }
    return 0;
}

int craft__recv_append_entries(struct craft_node *n, const struct craft_message *m)
{
    const struct craft_append_entries *ae = &m->u.append_entries;
    int rc = validate_entries(n, m);
    if (rc != 0) {
        return rc;
    }
    /* A candidate that hears from the leader of its term concedes (paper 5.2). */
    if (n->role != CRAFT_FOLLOWER || n->leader != m->from) {
        craft__become_follower(n, n->term, m->from);
    }
    n->election_elapsed = 0;

    struct craft_message r = {0};
    r.type = CRAFT_MSG_APPEND_ENTRIES_RESULT;
    r.to = m->from;
    r.term = n->term;
    struct craft_append_entries_result *res = &r.u.append_entries_result;
    res->ctx = ae->ctx;

    /* Entries up to our commit index are committed, hence identical to the leader's: skip
     * them, and check consistency at the commit index instead. */
    craft_index prev = ae->prev_index;
    craft_term prev_term = ae->prev_term;
    const struct craft_entry *ents = ae->entries;
    size_t count = ae->n_entries;
    if (prev < n->commit) {
        size_t skip = (size_t)(n->commit - prev);
        if (skip >= count) {
            skip = count;
        }
        ents += skip;
        count -= skip;
        prev = n->commit;
        prev_term = craft__log_term(&n->log, prev);
        if (ae->prev_index + ae->n_entries < n->commit) {
            /* Wholly committed already: acknowledge what we hold up to the message's end. */
            res->index = ae->prev_index + ae->n_entries;
            res->last_index = craft__log_last(&n->log);
            return craft__send_after_persist(n, &r);
        }
    }

    /* Paper 5.3: reject if the log does not contain an entry at prev whose term matches. */
    if (craft__log_term(&n->log, prev) != prev_term || prev > craft__log_last(&n->log)) {
        res->rejected = true;
        res->index = ae->prev_index;
        res->hint_index = conflict_by_term(n, prev, prev_term);
        res->hint_term = craft__log_term(&n->log, res->hint_index);
        res->last_index = craft__log_last(&n->log);
        return craft__send(n, &r, 0, 0);
    }

    /* Find the first entry that is new or conflicts; delete the conflicting suffix (it cannot
     * be committed: the leader has every committed entry) and append the rest. */
    size_t k = 0;
    craft_index last = craft__log_last(&n->log);
    while (k < count && ents[k].index <= last && craft__log_term(&n->log, ents[k].index) == ents[k].term) {
        k++;
    }
    if (k < count) {
        craft_index from = ents[k].index;
        if (from <= last) {
            craft__log_truncate(&n->log, from);
            if (n->dropped_from == 0 || from < n->dropped_from) {
                n->dropped_from = from;
            }
            craft__mark_unstable(n, from);
            if (n->conf_index >= from) {
                rc = craft__conf_reload(n);
                if (rc != 0) {
                    return rc;
                }
            }
        }
        for (; k < count; k++) {
            const struct craft_entry *e = &ents[k];
            rc = craft__log_append(&n->log, e->term, e->type, e->data, e->size);
            if (rc != 0) {
                return rc;
            }
            craft__mark_unstable(n, e->index);
            if (e->type == CRAFT_ENTRY_CONFIG) {
                rc = craft__conf_from_entry(n, craft__log_get(&n->log, e->index));
                if (rc != 0) {
                    return rc;
                }
            }
        }
    }

    /* Paper Figure 2: commitIndex = min(leaderCommit, index of last new entry). */
    craft_index last_new = ae->prev_index + ae->n_entries;
    craft_index c = ae->commit < last_new ? ae->commit : last_new;
    if (c > n->commit) {
        n->commit = c;
    }
    res->index = last_new;
    res->last_index = craft__log_last(&n->log);
    return craft__send_after_persist(n, &r);
}

/* A follower rejected a heartbeat at an index it had acknowledged. A heartbeat names the
 * follower's match index, which it acknowledged before the heartbeat left, and in one term the
 * follower only ever adds to what matches the leader (its conflicting suffixes lie above every
 * match), so a durable log never rejects one: this follower's log went backwards. Its disk lost
 * what it had promised to keep (a cut or wiped directory, an older copy put back, a disk that
 * lied about fsync). Raft assumes this never happens; a leader that trusted its old match would
 * probe at match forever and never repair the follower (every probe rejected, next never below
 * match + 1). So: say so (craft_update.regressions), forget the match, and probe from what the
 * follower really holds, guided by its conflict hint as for any rejection. Rejections of
 * heartbeats sent before this moment carry the same news and are ignored (regress_ctx). */
static int log_went_back(struct craft_node *n, struct craft__progress *p,
                         const struct craft_append_entries_result *res)
{
    int rc = craft__reserve(n->alloc, (void **)&n->regressions, &n->cap_regressions,
                            n->n_regressions + 1, sizeof *n->regressions);
    if (rc != 0) {
        return rc;
    }
    struct craft_log_regression *r = &n->regressions[n->n_regressions++];
    r->id = p->id;
    r->match = p->match;
    r->last_index = res->last_index;
    p->regress_ctx = n->hb_ctx;
    p->match = 0;
    craft__progress_become_probe(p);
    craft_index next = conflict_by_term(n, res->hint_index, res->hint_term) + 1;
    if (next > res->last_index + 1) {
        next = res->last_index + 1;
    }
    p->next = next > 0 ? next : 1;
    return send_append(n, p, false, false);
}

int craft__recv_append_entries_result(struct craft_node *n, const struct craft_message *m)
{
    const struct craft_append_entries_result *res = &m->u.append_entries_result;
    struct craft__progress *p = craft__progress_get(n, m->from);
    if (p == NULL || p->id == n->id) {
        return 0;
    }
    p->recent_active = true;
    if (res->ctx > p->ack_ctx && res->ctx <= n->hb_ctx) {
        p->ack_ctx = res->ctx;
        int rc = craft__reads_check(n);
        if (rc != 0) {
            return rc;
        }
    }

    if (res->rejected) {
        if (res->ctx != 0 && res->index != 0 && res->index <= p->match &&
            res->ctx > p->regress_ctx) {
            return log_went_back(n, p, res);
        }
        bool stale = p->mode == CRAFT__REPLICATE ? res->index <= p->match
                                                 : res->index != p->next - 1;
        if (stale) {
            return 0;
        }
        /* Jump back past every entry the hint proves mismatched, never below match + 1 and
         * never above the rejected index. */
        craft_index next = conflict_by_term(n, res->hint_index, res->hint_term) + 1;
        if (next > res->index) {
            next = res->index;
        }
        craft__progress_become_probe(p);
        if (next > p->match + 1) {
            p->next = next;
        }
        return send_append(n, p, false, false);
    }

    if (res->index > p->match) {
        p->match = res->index;
        if (p->next <= p->match) {
            p->next = p->match + 1;
        }
        p->stalls = 0;
        craft__progress_ack(n, p, res->index);
        if (p->mode == CRAFT__PROBE) {
            craft__progress_become_replicate(p);
        }
        int rc = craft__maybe_commit(n);
        if (rc != 0 || n->role != CRAFT_LEADER) {
            return rc;
        }
    } else if (res->ctx != 0 && p->mode == CRAFT__REPLICATE && p->inflight_count > 0) {
        /* Heartbeats keep coming back but an AppendEntries stays unacknowledged: after three
         * rounds it was lost (a merely slow one costs only a probe); restart from match. The
         * follower's last index cannot tell, as stale entries of an older term may pad it. */
        if (++p->stalls >= 3) {
            craft__progress_become_probe(p);
        }
    }
    if (p->mode == CRAFT__PROBE && (res->ctx != 0 || res->index >= p->next - 1)) {
        p->probe_sent = false; /* the probe (or a heartbeat) was answered */
    }
    if (p->id == n->transfer_target) {
        return craft__transfer_progress(n, p);
    }
    if (p->match < craft__log_last(&n->log)) {
        return send_append(n, p, false, false);
    }
    return 0;
}
