/* Linearizable reads without writing to the log (thesis 6.4).
 *
 * ReadIndex: the leader (1) makes sure it has committed an entry of its own term, so that its
 * commit index is at least every index committed before it became leader; (2) records its commit
 * index as the read index; (3) sends a heartbeat round and waits until a majority acknowledges
 * it, which proves it was still the leader when the read arrived (a deposed leader never gets
 * that majority, so its reads never complete); (4) hands the read to the driver, which serves it
 * once the state machine has applied up to the read index.
 *
 * Reads arriving between two updates share one heartbeat round (sent when the update is taken),
 * so a burst of reads costs one round, not one each.
 *
 * Lease reads (optional, off by default) skip step 3 while a heartbeat round sent less than
 * election_ticks - lease_drift_ticks ago was acknowledged by a majority: no voter that
 * acknowledged it will grant a vote within an election timeout of receiving it (thesis 4.2.3),
 * so no other leader can exist yet. This trusts the tick rates of the servers to differ by less
 * than the drift margin. */
#include "core/node.h"

static int push_ready(struct craft_node *n, uint64_t id, craft_index index, int status)
{
    int rc = craft__reserve(n->alloc, (void **)&n->ready, &n->cap_ready, n->n_ready + 1,
                            sizeof *n->ready);
    if (rc != 0) {
        return rc;
    }
    n->ready[n->n_ready].id = id;
    n->ready[n->n_ready].index = index;
    n->ready[n->n_ready].status = status;
    n->n_ready++;
    return 0;
}

/* The newest heartbeat round acknowledged by a majority of voters (ourselves included). */
static uint64_t quorum_ctx(struct craft_node *n)
{
    return craft__quorum_value(n, CRAFT__Q_ACK_CTX);
}

static bool lease_valid(struct craft_node *n)
{
    if (!n->cfg.lease_reads || !n->cfg.check_quorum || n->lease_lost ||
        n->cfg.lease_drift_ticks >= n->cfg.election_ticks) {
        return false;
    }
    uint64_t q = quorum_ctx(n);
    if (q == 0 || q + CRAFT__LEASE_RING <= n->hb_ctx) {
        return false;
    }
    uint64_t sent = n->hb_tick[q % CRAFT__LEASE_RING];
    return n->ticks - sent < n->cfg.election_ticks - n->cfg.lease_drift_ticks;
}

int craft_read_index(struct craft_node *n, uint64_t id, int mode)
{
    if (n == NULL || (mode != CRAFT_READ_INDEX && mode != CRAFT_READ_LEASE)) {
        return CRAFT_EINVAL;
    }
    if (n->role != CRAFT_LEADER) {
        return CRAFT_ENOTLEADER;
    }
    bool committed_own = n->commit >= n->term_start;
    bool alone = craft_configuration_voters(&n->conf) == 1 && craft__is_voter(n, n->id);
    if (committed_own && (alone || (mode == CRAFT_READ_LEASE && lease_valid(n)))) {
        return push_ready(n, id, n->commit, 0);
    }
    int rc = craft__reserve(n->alloc, (void **)&n->reads, &n->cap_reads, n->n_reads + 1,
                            sizeof *n->reads);
    if (rc != 0) {
        return rc;
    }
    struct craft__read *r = &n->reads[n->n_reads++];
    r->id = id;
    r->index = committed_own ? n->commit : 0;
    r->ctx = 0;
    return 0;
}

/* At update time: one heartbeat round for every read that has none yet. */
int craft__reads_flush(struct craft_node *n)
{
    bool need = false;
    for (size_t i = 0; i < n->n_reads; i++) {
        need |= n->reads[i].ctx == 0;
    }
    if (!need || n->role != CRAFT_LEADER) {
        return 0;
    }
    int rc = craft__broadcast_heartbeat(n);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < n->n_reads; i++) {
        if (n->reads[i].ctx == 0) {
            n->reads[i].ctx = n->hb_ctx;
        }
    }
    return craft__reads_check(n);
}

/* Moves reads whose round a majority acknowledged, and whose index is known, to the output. */
int craft__reads_check(struct craft_node *n)
{
    if (n->n_reads == 0) {
        return 0;
    }
    uint64_t q = quorum_ctx(n);
    size_t kept = 0;
    int rc = 0;
    for (size_t i = 0; i < n->n_reads; i++) {
        struct craft__read *r = &n->reads[i];
        if (r->index == 0 && n->commit >= n->term_start) {
            r->index = n->commit;
        }
        if (rc == 0 && r->ctx != 0 && r->ctx <= q && r->index != 0) {
            rc = push_ready(n, r->id, r->index, 0);
            if (rc == 0) {
                continue;
            }
        }
        n->reads[kept++] = *r;
    }
    n->n_reads = kept;
    return rc;
}

/* Leadership lost: every pending read fails (the caller retries on the new leader). */
void craft__reads_fail_all(struct craft_node *n)
{
    for (size_t i = 0; i < n->n_reads; i++) {
        if (push_ready(n, n->reads[i].id, 0, CRAFT_ENOTLEADER) != 0) {
            break; /* out of memory: the driver's timeout will fail the rest */
        }
    }
    n->n_reads = 0;
}
