/* Outputs: what the driver must persist, send and apply, and the persistence tickets that say
 * when an acknowledgement may leave.
 *
 * The ordering rule is the one of the Raft paper's Figure 2: a server answers a vote or an
 * append only after its stable storage holds what the answer promises. The driver persists
 * updates in ticket order and confirms them with craft_persisted(); acknowledgements created
 * before that wait here (the "deferred" queue), so messages in an update can always be sent at
 * once. A leader's own AppendEntries need no such wait: it may write its log in parallel with
 * replicating it (thesis 10.2.1), and only its persisted index counts toward the commit
 * quorum. */
#include <string.h>

#include "core/node.h"

int craft__reserve(const struct craft_allocator *a, void **arr, size_t *cap, size_t want,
                   size_t elem)
{
    if (want <= *cap) {
        return 0;
    }
    size_t cap2 = *cap == 0 ? 16 : *cap;
    while (cap2 < want) {
        cap2 *= 2;
    }
    void *p = craft_realloc(a, *arr, cap2 * elem);
    if (p == NULL) {
        return CRAFT_ENOMEM;
    }
    *arr = p;
    *cap = cap2;
    return 0;
}

int craft__send(struct craft_node *n, const struct craft_message *m, craft_index lo,
                size_t count)
{
    int rc = craft__reserve(n->alloc, (void **)&n->outbox, &n->cap_outbox, n->n_outbox + 1,
                     sizeof *n->outbox);
    if (rc != 0) {
        return rc;
    }
    struct craft__outmsg *o = &n->outbox[n->n_outbox++];
    o->m = *m;
    o->m.from = n->id;
    o->lo = lo;
    o->n = count;
    o->hi_term = count > 0 ? craft__log_term(&n->log, lo + count - 1) : 0;
    return 0;
}

/* Something must be made durable: the hard state, log entries, or a snapshot chunk. */
static bool dirty(const struct craft_node *n)
{
    return n->hs_dirty || n->unstable_from != 0 || n->chunk_pending;
}

int craft__send_after_persist(struct craft_node *n, const struct craft_message *m)
{
    uint64_t need = dirty(n) ? n->last_seq + 1 : n->last_seq;
    if (need <= n->persisted_seq) {
        return craft__send(n, m, 0, 0);
    }
    int rc = craft__reserve(n->alloc, (void **)&n->deferred, &n->cap_deferred, n->n_deferred + 1,
                     sizeof *n->deferred);
    if (rc != 0) {
        return rc;
    }
    struct craft__deferred *d = &n->deferred[n->n_deferred++];
    d->seq = need;
    d->m = *m;
    d->m.from = n->id;
    return 0;
}

void craft__mark_unstable(struct craft_node *n, craft_index from)
{
    if (n->unstable_from == 0 || from < n->unstable_from) {
        n->unstable_from = from;
    }
    /* What memory holds from here on is no longer what the disk holds. */
    if (n->persisted_index >= from) {
        n->persisted_index = from - 1;
    }
}

void craft__mark_hard_state(struct craft_node *n)
{
    n->hs_dirty = true;
}

/* Moves acknowledgements whose ticket is now durable to the outbox. One created in an older
 * term is dropped: the promise it makes was made to a leader or candidate this node has since
 * moved past, and losing a message is always safe. */
static int release_deferred(struct craft_node *n)
{
    size_t kept = 0;
    int rc = 0;
    for (size_t i = 0; i < n->n_deferred; i++) {
        struct craft__deferred *d = &n->deferred[i];
        if (d->seq > n->persisted_seq) {
            n->deferred[kept++] = *d;
            continue;
        }
        if (d->m.term == n->term && rc == 0) {
            rc = craft__send(n, &d->m, 0, 0);
        }
    }
    n->n_deferred = kept;
    return rc;
}

bool craft_has_update(const struct craft_node *n)
{
    if (n == NULL) {
        return false;
    }
    if (dirty(n) || n->n_outbox > 0 || n->role_changed || n->dropped_from != 0 ||
        n->want_pending || n->n_ready > 0 || n->n_regressions > 0 ||
        (n->snap_forced && !n->snap_asked)) {
        return true;
    }
    for (size_t i = 0; i < n->n_reads; i++) {
        if (n->reads[i].ctx == 0 && n->role == CRAFT_LEADER) {
            return true; /* a heartbeat round to send */
        }
    }
    for (size_t i = 0; i < n->n_deferred; i++) {
        if (n->deferred[i].seq <= n->persisted_seq) {
            return true;
        }
    }
    craft_index applicable = n->commit < n->persisted_index ? n->commit : n->persisted_index;
    return applicable > n->applied;
}

int craft_take_update(struct craft_node *n, struct craft_update *u)
{
    if (n == NULL || u == NULL) {
        return CRAFT_EINVAL;
    }
    memset(u, 0, sizeof *u);
    int rc = craft__reads_flush(n);
    if (rc == 0) {
        rc = release_deferred(n);
    }
    if (rc == 0) {
        rc = craft__reserve(n->alloc, (void **)&n->u_ready, &n->cap_u_ready, n->n_ready,
                            sizeof *n->u_ready);
    }
    if (rc == 0) {
        rc = craft__reserve(n->alloc, (void **)&n->u_regressions, &n->cap_u_regressions,
                            n->n_regressions, sizeof *n->u_regressions);
    }
    if (rc != 0) {
        return rc;
    }

    /* Count the entry pointers needed: persisted entries, message entries, committed. */
    craft_index last = craft__log_last(&n->log);
    size_t n_persist = 0;
    if (n->unstable_from != 0 && n->unstable_from <= last) {
        n_persist = (size_t)(last - n->unstable_from + 1);
    }
    size_t n_msg_entries = 0;
    for (size_t i = 0; i < n->n_outbox; i++) {
        n_msg_entries += n->outbox[i].n;
    }
    craft_index applicable = n->commit < n->persisted_index ? n->commit : n->persisted_index;
    if (applicable < n->applied) {
        applicable = n->applied;
    }
    size_t n_commit = (size_t)(applicable - n->applied);
    rc = craft__reserve(n->alloc, (void **)&n->u_entries, &n->cap_u_entries,
                 n_persist + n_msg_entries + n_commit, sizeof *n->u_entries);
    if (rc == 0) {
        rc = craft__reserve(n->alloc, (void **)&n->u_messages, &n->cap_u_messages, n->n_outbox,
                     sizeof *n->u_messages);
    }
    if (rc == 0 && dirty(n)) {
        rc = craft__reserve(n->alloc, (void **)&n->writes, &n->cap_writes, n->n_writes + 1,
                     sizeof *n->writes);
    }
    if (rc != 0) {
        return rc;
    }
    struct craft_entry *ents = n->u_entries;

    /* 1. What to persist, under a new ticket. */
    if (dirty(n)) {
        struct craft__write *w = &n->writes[n->n_writes++];
        w->seq = ++n->last_seq;
        w->from = n_persist > 0 ? n->unstable_from : 0;
        w->last = last;
        u->seq = w->seq;
        u->hard_state_changed = n->hs_dirty;
        for (size_t k = 0; k < n_persist; k++) {
            ents[k] = *craft__log_get(&n->log, n->unstable_from + k);
        }
        u->entries = ents;
        u->n_entries = n_persist;
        ents += n_persist;
        if (n->chunk_pending) {
            u->snapshot_chunk = &n->chunk;
            u->snapshot_discard_log = n->chunk.done && n->chunk_discard;
            n->chunk_pending = false;
        }
        n->hs_dirty = false;
        n->unstable_from = 0;
    }
    u->hard_state.term = n->term;
    u->hard_state.vote = n->vote;
    u->hard_state.commit = n->commit;

    /* 2. Messages, with entry ranges turned into pointers. */
    size_t nm = 0;
    for (size_t i = 0; i < n->n_outbox; i++) {
        struct craft__outmsg *o = &n->outbox[i];
        struct craft_message *m = &n->u_messages[nm];
        *m = o->m;
        if (o->n > 0) {
            craft_index hi = o->lo + o->n - 1;
            if (o->lo < craft__log_first(&n->log) || craft__log_term(&n->log, hi) != o->hi_term) {
                continue; /* the log moved under it: no longer a message we would send */
            }
            for (size_t k = 0; k < o->n; k++) {
                ents[k] = *craft__log_get(&n->log, o->lo + k);
            }
            m->u.append_entries.entries = ents;
            m->u.append_entries.n_entries = o->n;
            ents += o->n;
        }
        nm++;
    }
    u->messages = n->u_messages;
    u->n_messages = nm;
    n->n_outbox = 0;

    /* 3. Committed entries the local log has made durable. */
    for (size_t k = 0; k < n_commit; k++) {
        ents[k] = *craft__log_get(&n->log, n->applied + 1 + k);
    }
    u->committed = ents;
    u->n_committed = n_commit;
    n->applied = applicable;

    /* 4. A snapshot, once the applied log is big enough. */
    rc = craft__snapshot_check(n);
    if (rc != 0) {
        return rc;
    }
    if (n->want_pending) {
        u->snapshot_wanted = &n->want;
        n->want_pending = false;
    }

    /* 5. Reads that became safe or failed. */
    for (size_t i = 0; i < n->n_ready; i++) {
        n->u_ready[i] = n->ready[i];
    }
    u->reads = n->u_ready;
    u->n_reads = n->n_ready;
    n->n_ready = 0;

    /* 6. Followers whose log went backwards. */
    for (size_t i = 0; i < n->n_regressions; i++) {
        n->u_regressions[i] = n->regressions[i];
    }
    u->regressions = n->u_regressions;
    u->n_regressions = n->n_regressions;
    n->n_regressions = 0;

    u->dropped_from = n->dropped_from;
    n->dropped_from = 0;
    u->role_changed = n->role_changed;
    u->role = n->role;
    u->leader = n->leader;
    u->term = n->term;
    n->role_changed = false;
    n->reported_role = n->role;
    n->reported_leader = n->leader;
    return 0;
}

int craft_persisted(struct craft_node *n, uint64_t seq)
{
    if (n == NULL || seq > n->last_seq) {
        return CRAFT_EINVAL;
    }
    if (seq <= n->persisted_seq) {
        return 0;
    }
    n->persisted_seq = seq;
    size_t popped = 0;
    craft_index durable_last = 0;
    while (popped < n->n_writes && n->writes[popped].seq <= seq) {
        durable_last = n->writes[popped].last;
        popped++;
    }
    memmove(n->writes, n->writes + popped, (n->n_writes - popped) * sizeof *n->writes);
    n->n_writes -= popped;
    if (popped > 0) {
        /* Every write carries all changes made before its ticket was taken, so the disk now
         * holds the log as it was then; what later tickets or pending changes rewrote is not
         * durable yet. */
        craft_index p = durable_last;
        for (size_t i = 0; i < n->n_writes; i++) {
            if (n->writes[i].from != 0 && n->writes[i].from - 1 < p) {
                p = n->writes[i].from - 1;
            }
        }
        if (n->unstable_from != 0 && n->unstable_from - 1 < p) {
            p = n->unstable_from - 1;
        }
        if (p > craft__log_last(&n->log)) {
            p = craft__log_last(&n->log);
        }
        n->persisted_index = p;
    }
    if (n->role == CRAFT_CANDIDATE) {
        return craft__election_persisted(n);
    }
    if (n->role == CRAFT_LEADER) {
        return craft__maybe_commit(n);
    }
    return 0;
}
