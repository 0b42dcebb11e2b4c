/* Majorities: the one place where the core counts voters (the idea of etcd-io/raft's
 * quorum/majority.go). Every decision that needs "a majority of the voters of the configuration
 * in effect" asks here:
 *
 *   elections      a candidate wins with granted votes from a majority, loses once a majority
 *                  rejected it (paper 5.2);
 *   commit         the highest index stored by a majority of voters (paper 5.3, Figure 2:
 *                  "a majority of matchIndex[i] >= N");
 *   reads          the newest heartbeat round acknowledged by a majority (thesis 6.4), which
 *                  also dates the lease of lease reads;
 *   check-quorum   a leader that heard from no majority within an election timeout steps down
 *                  (thesis 6.2).
 *
 * Only voters count, and the node itself only if it is a voter of its configuration: a leader
 * that is removing itself manages the cluster without counting itself (thesis 4.2.2). There is
 * no fixed limit on the number of voters: the scratch array follows the configuration
 * (progress.c sizes it). */
#include "core/node.h"

unsigned craft__quorum_size(unsigned voters)
{
    return voters / 2 + 1;
}

static uint64_t value_of(const struct craft_node *n, const struct craft__progress *p, int what)
{
    bool self = p->id == n->id;
    switch (what) {
    case CRAFT__Q_MATCH:
        /* The leader's own copy counts once it is durable (thesis 10.2.1). */
        return self ? craft__progress_self_match(n) : p->match;
    case CRAFT__Q_ACK_CTX:
        /* The leader trivially acknowledges its own rounds. */
        return self ? n->hb_ctx : p->ack_ctx;
    default:
        return 0;
    }
}

/* Sort the voters' values descending and take the one at position floor(voters / 2): the
 * largest value that at least a majority hold (or exceed). */
uint64_t craft__quorum_value(struct craft_node *n, int what)
{
    unsigned k = 0;
    for (unsigned i = 0; i < n->n_progress; i++) {
        const struct craft__progress *p = &n->progress[i];
        if (p->role != CRAFT_VOTER) {
            continue;
        }
        uint64_t v = value_of(n, p, what);
        unsigned j = k++;
        while (j > 0 && n->quorum_scratch[j - 1] < v) {
            n->quorum_scratch[j] = n->quorum_scratch[j - 1];
            j--;
        }
        n->quorum_scratch[j] = v;
    }
    return k == 0 ? 0 : n->quorum_scratch[k / 2];
}

int craft__quorum_vote_result(const struct craft_node *n)
{
    unsigned voters = 0, granted = 0, rejected = 0;
    for (unsigned i = 0; i < n->n_progress; i++) {
        const struct craft__progress *p = &n->progress[i];
        if (p->role != CRAFT_VOTER) {
            continue;
        }
        voters++;
        granted += p->vote > 0;
        rejected += p->vote < 0;
    }
    unsigned need = craft__quorum_size(voters);
    if (granted >= need) {
        return CRAFT__VOTE_WON;
    }
    if (rejected >= need) {
        return CRAFT__VOTE_LOST;
    }
    return CRAFT__VOTE_PENDING;
}

bool craft__quorum_active(const struct craft_node *n)
{
    unsigned voters = 0, active = 0;
    for (unsigned i = 0; i < n->n_progress; i++) {
        const struct craft__progress *p = &n->progress[i];
        if (p->role == CRAFT_VOTER) {
            voters++;
            active += p->recent_active || p->id == n->id;
        }
    }
    return active >= craft__quorum_size(voters);
}
